//! The offline compiler of engine sets: what `offramp split` and
//! `offramp build` run, on a development machine or (for TensorRT plans,
//! which are built where they run) on the robot.
//!
//! * [`analyze`]: what an ONNX segment costs and takes, from its graph
//!   (FLOPs, parameters, activation memory, tensor specs).
//! * [`split`] (feature `split`): one full ONNX export of a multi-exit model
//!   cut into one segment per exit, checked against the full model.
//! * [`init`] (feature `split`): a draft `model.toml` read off the graphs
//!   of an export (per-segment files, or one full export, then split).
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
pub mod init;
#[cfg(feature = "split")]
pub mod split;

use std::path::Path;

/// An error naming `path`, its `field` and what is wrong.
pub(crate) fn invalid(
    path: &Path,
    field: &str,
    message: impl Into<String>,
) -> offramp_engines::Error {
    offramp_engines::Error::Invalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// An I/O error on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> offramp_engines::Error + '_ {
    move |source| offramp_engines::Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
