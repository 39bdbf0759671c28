//! A second CPU backend: each exit segment's ONNX graph run by onnxruntime.
//!
//! onnxruntime is not linked: its C API is opened at run time from the
//! library the machine already has (the onnxruntime Python wheel's
//! `onnxruntime/capi/libonnxruntime.so.*`, JetPack's or a distribution's
//! package, a release tarball), named by `OFFRAMP_ONNXRUNTIME_LIB` or found
//! by the system loader as `libonnxruntime.so.1`. The API is asked for at
//! version [`MIN_API_VERSION`] (onnxruntime 1.14), so any later library
//! serves, and every function called exists in it.
//!
//! A set is built for it with `offramp build --backend onnxruntime`: the
//! same ONNX files as the tract set, the choice written into the manifest.
//! Each engine owns its input and output buffers, wrapped as onnxruntime
//! values once at load; a run copies the inputs in, runs the session into
//! the bound outputs and copies them out, allocating nothing on the Rust
//! side (onnxruntime's arena serves its scratch, reused from the first run
//! on: one arena for every session of the process, since the segments run
//! one after another).

mod api;
mod engine;

pub use api::{Runtime, MIN_API_VERSION};
pub use engine::OrtEngine;

use offramp_engines::{Chain, EngineSet, Result};
use std::path::PathBuf;

/// Where the library is and how many threads each session uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The onnxruntime shared library; `None`: the system loader's
    /// `libonnxruntime.so.1` (then `libonnxruntime.so`).
    pub library: Option<PathBuf>,
    /// Intra-op threads of every session (the calling thread among them).
    pub threads: usize,
}

impl Options {
    /// `OFFRAMP_ONNXRUNTIME_LIB`, if set, on `threads` threads.
    pub fn from_env(threads: usize) -> Self {
        Self {
            library: std::env::var_os("OFFRAMP_ONNXRUNTIME_LIB").map(PathBuf::from),
            threads,
        }
    }
}

/// Builds every engine of `set` as an onnxruntime session.
pub fn load_chain(set: &EngineSet, options: &Options) -> Result<Chain> {
    let rt = Runtime::get(options.library.as_deref())?;
    Chain::with_engines(set, |_, path, inputs, outputs| {
        Ok(Box::new(OrtEngine::load(
            rt,
            path,
            inputs,
            outputs,
            options.threads,
        )?))
    })
}
