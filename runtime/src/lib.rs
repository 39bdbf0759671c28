//! The offramp runtime as a library: what the `offramp` binary runs and its
//! tests and benchmarks exercise.
//!
//! * [`camera`]: frame sources and the newest-frame handoff.
//! * [`preprocess`]: camera frame → model input, allocation-free (and
//!   `cuda_preprocess`, the same on the GPU, with `--features cuda`).
//! * [`exit_chain`]: the DeeR early-exit loop over an engine set.
//! * [`calibrate`]: DeeR thresholds under compute, latency and memory budgets.
//! * [`refine`]: closed-loop refinement of the thresholds (and DeeR's
//!   Bayesian optimisation, the baseline it is compared with).
//! * [`power`]: power rails and energy counters, for profiling.
//! * [`recorder`]: the per-frame flight recorder.
//! * [`run_loop`]: camera → preprocess → exit chain → actuator, with deadlines.
//! * [`host_mcu`], [`pty`]: the firmware's control logic on the host, behind
//!   a real serial device node.
//! * [`zenoh_link`]: actions and telemetry over zenoh.
//! * [`closed_loop`]: the runtime driving the simulator, for evaluation.

pub mod calibrate;
pub mod camera;
pub mod closed_loop;
#[cfg(feature = "cuda")]
pub mod cuda_preprocess;
pub mod exit_chain;
pub mod host_mcu;
pub mod pixfmt;
pub mod power;
pub mod preprocess;
pub mod pty;
pub mod recorder;
pub mod refine;
pub mod run_loop;
#[cfg(feature = "v4l")]
pub mod v4l_source;
pub mod zenoh_link;
