//! Exit thresholds for offramp.
//!
//! * [`solve`]: DeeR's budget solve on recorded deltas (pure arithmetic).
//! * [`calibrate`]: run the model on calibration episodes (simulated or
//!   recorded), collect the deltas, solve under compute, latency and memory
//!   budgets.
//! * [`memory`]: the heap a loaded model holds up to each exit, measured,
//!   for the memory budget.
//! * [`eval`]: closed-loop evaluation of a policy in a task
//!   ([`offramp_runtime::closed_loop::Task`]: the simulator implements it), and
//!   [`paired`]: two policies compared on the same episodes, with 95 %
//!   intervals.
//! * [`refine`]: closed-loop refinement on the budget (successive halving
//!   with common random numbers), and [`bayes`], DeeR's Bayesian
//!   optimisation, the baseline it is compared with.
//!
//! * [`offline`]: the offline curve: budgets and fixed exits on recorded
//!   episodes, actions against the full model's and the recorded ones.
//! * [`seeds`]: the simulator's seed ranges, one per use (training,
//!   calibration, validation, test...).
//!
//! Dependencies run one way: solve ← eval ← refine ← calibrate.

pub mod bayes;
pub mod calibrate;
pub mod eval;
pub mod memory;
pub mod offline;
pub mod paired;
pub mod refine;
pub mod seeds;
pub mod solve;
pub mod sweep;
