//! Engine sets: one engine per exit segment of a multi-exit model, plus the
//! shared recurrent action head, described by a `manifest.toml`.
//!
//! * [`manifest`]: the on-disk format.
//! * [`EngineSet::open`]: loads a manifest and checks everything before any
//!   engine is built: format version, files, checksums, and that consecutive
//!   segments and the head fit together. Each failure names the file and field.
//! * [`Engine`]: one runnable segment.
//! * [`join_inside`]: the one checked way a name read from a file becomes a
//!   path inside its directory.
//! * [`Chain`]: the engines of a set with every buffer allocated once from the
//!   manifest, run exit by exit; [`Chain::with_engines`] builds it from any
//!   backend's engines.
//!
//! This crate holds the format and the runtime's contract only, and links no
//! backend and no model tooling. The rest lives beside it, in crates of their
//! own, so that a binary links only what it uses:
//!
//! * `offramp-engines-cpu` (`engines/cpu`): the CPU backend, on tract.
//! * `offramp-engines-tensorrt` (`engines/tensorrt`): the TensorRT backend,
//!   plans run through a C ABI shim loaded at run time (`shim/`).
//! * `offramp-build` (`engines/build`): the offline compiler behind
//!   `offramp build` and `offramp split`: ONNX analysis (FLOPs, parameters,
//!   activation memory), the splitter, and the engine-set builder.
//! * `offramp_runtime::backend::load_chain` picks the backend of a
//!   [`BackendKind`].

pub mod cache;
mod chain;
mod error;
mod heap;
mod inside;
pub mod manifest;
mod set;
mod sha;

pub use chain::{Chain, Role, MAX_IO};
pub use error::{check_arity, position_by_name, run_error, Error, Result};
pub use heap::{peak_resident_bytes, resident_bytes, return_freed_memory};
pub use inside::join_inside;
pub use manifest::{BackendKind, Manifest, Precision, TensorSpec};
pub use set::EngineSet;
pub use sha::sha256_file;

/// One runnable segment. `run` reads the inputs and writes the outputs in the
/// order and shapes of the manifest; the caller owns every buffer.
pub trait Engine: Send {
    fn run(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()>;

    /// Device time of the last `run` (copies in, the kernels, copies out),
    /// from CUDA events, for backends that run on a GPU; `None` on the CPU,
    /// whose time is the host clock's.
    fn device_seconds(&self) -> Option<f32> {
        None
    }

    /// For backends whose tensors live in GPU memory: input `k`'s device
    /// buffer, for a producer on the same GPU (the CUDA preprocessing) to
    /// fill directly, device to device. From this call on, `run` no longer
    /// copies input `k` from its host slice: the producer must have written
    /// the buffer, and finished, before each run. `None`: the backend has
    /// no device buffers (the CPU) or no input `k`.
    fn device_input(&mut self, k: usize) -> Option<DeviceTensor> {
        let _ = k;
        None
    }

    /// For backends whose tensors live in GPU memory: output `k`'s device
    /// buffer, which the next segment can read in place
    /// ([`Engine::read_input_from`]). Changes nothing by itself.
    fn device_output(&self, k: usize) -> Option<DeviceTensor> {
        let _ = k;
        None
    }

    /// Reads input `k` from `src`, a buffer another engine of the same chain
    /// writes on the same GPU (its [`Engine::device_output`]), instead of
    /// copying it in from the host slice; the engine's own buffer for it is
    /// freed. Only before the first `run` (a captured CUDA graph keeps the
    /// addresses it saw) and for a buffer of the input's size; `false`:
    /// nothing changed.
    ///
    /// # Safety
    ///
    /// `src` must be a device buffer of at least `src.bytes` on this
    /// engine's GPU that stays allocated, and is written only by the engine
    /// that handed it out, for as long as this engine runs.
    unsafe fn read_input_from(&mut self, k: usize, src: DeviceTensor) -> bool {
        let _ = (k, src);
        false
    }

    /// Stops copying output `k` back to its host slice after each run (the
    /// slice keeps what it held): only the GPU reads it, through
    /// [`Engine::read_input_from`]. `false`: nothing changed.
    fn keep_output_on_device(&mut self, k: usize) -> bool {
        let _ = k;
        false
    }
}

/// A device buffer an engine reads an input from or writes an output to
/// (see [`Engine::device_input`], [`Engine::device_output`]): a CUDA device
/// address in device 0's primary context, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTensor {
    pub address: u64,
    pub bytes: usize,
}
