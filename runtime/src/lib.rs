//! The offramp runtime as a library: what the `offramp` binary runs and its
//! tests and benchmarks exercise.
//!
//! * [`preprocess`]: camera frame → model input, allocation-free.
//! * [`exit_chain`]: the DeeR early-exit loop over an engine set.
//! * [`closed_loop`]: the runtime driving the simulator, for evaluation.

pub mod closed_loop;
pub mod exit_chain;
pub mod preprocess;
