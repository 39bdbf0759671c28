//! The offline compiler of engine sets: what `offramp split` and
//! `offramp build` run, on a development machine or (for TensorRT plans,
//! which are built where they run) on the robot.
//!
//! * [`analyze`]: what an ONNX segment costs and takes, from its graph
//!   (FLOPs, parameters, activation memory, tensor specs).
//! * [`split`] (feature `split`): one full ONNX export of a multi-exit model
//!   cut into one segment per exit, checked against the full model.
//! * [`builder`]: ONNX segments and a `model.toml` turned into an engine set
//!   (a CPU set, or TensorRT plans through trtexec).
//!
//! A crate of its own, beside the format (`offramp-engines`) and the
//! backends, so that the real-time crates (`offramp-runtime` and what it
//! links) carry none of it: only the `offramp` command does, and the
//! splitter only with its `split` feature.

pub mod analyze;
pub mod builder;
#[cfg(feature = "split")]
pub mod split;
