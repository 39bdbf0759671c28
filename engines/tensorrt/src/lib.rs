//! The TensorRT backend: serialized plans run through the C ABI of
//! `shim/trt_shim.h` (TensorRT has no C API).
//!
//! * The shim is a shared library of its own, built on the robot against
//!   its TensorRT and CUDA headers (`offramp build-shim`) and opened at run
//!   time ([`abi`]); libnvinfer is opened by the shim. This code therefore
//!   compiles everywhere, and CI runs it against a CPU test double of the
//!   same ABI (`shim/trt_double.c`).
//! * Plans only run on the TensorRT version and GPU they were built for: the
//!   loader compares both with the manifest's `[build]` and refuses a mismatch.
//! * Exits run one after another, so every execution context gets the same
//!   activation scratch (user-managed memory), sized to the largest need.
//! * Each tensor has one device buffer for the engine's life; its address is
//!   given to TensorRT once at load. Every run queues the copies in, the
//!   inference and the copies out on one stream and waits for it once.
//! * A segment can read the previous segment's output in place
//!   ([`offramp_engines::Engine::read_input_from`]): hidden states then stay on the
//!   GPU between segments, with no copy out and back in.
//! * After its first (ordinary) run, each engine's inference is captured
//!   into a CUDA graph and replayed from then on: one launch instead of one
//!   per layer, which is most of a small segment's CPU cost. The graph holds
//!   the inference only; the host copies stay outside it (pageable memory
//!   cannot be captured). An engine TensorRT refuses to capture runs as
//!   before, with a warning. The chain as a whole is not one graph: the exit
//!   decision between two segments is taken on the host.
//!
//! A crate of its own, beside the format (`offramp-engines`), so that only a
//! build with the `tensorrt` feature (`offramp_runtime::backend::load_chain`,
//! `offramp build-shim`) links cudarc and libloading; the shim's sources
//! (`shim/`) live here with the Rust side of their ABI.

pub mod abi;
mod backend;
pub mod build_shim;

pub use backend::open_library;
pub use offramp_engines::manifest::device_identity;
use offramp_engines::manifest::TensorSpec;
use offramp_engines::{Chain, EngineSet, Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// A TensorRT version as major.minor.patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TrtVersion {
    /// Decodes `getInferLibVersion()`: 10.x encodes major·10000 + minor·100 +
    /// patch (100300), 8.x major·1000 + minor·100 + patch (8601).
    pub fn from_lib(v: i32) -> Option<Self> {
        let v = u32::try_from(v).ok()?;
        let (major, rest) = if v >= 100_000 {
            (v / 10_000, v % 10_000)
        } else {
            (v / 1000, v % 1000)
        };
        (major > 0).then_some(Self {
            major,
            minor: rest / 100,
            patch: rest % 100,
        })
    }

    /// Decodes the shim's `ofr_trt_header_version()`: major·10000 +
    /// minor·100 + patch for every major, 8 included.
    pub fn from_header(v: i32) -> Option<Self> {
        let v = u32::try_from(v).ok()?;
        (v >= 10_000).then_some(Self {
            major: v / 10_000,
            minor: v / 100 % 100,
            patch: v % 100,
        })
    }

    /// Parses "10.3.0" (as written by `offramp build` into the manifest).
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = it.next()??;
        let minor = it.next().unwrap_or(Some(0))?;
        let patch = it.next().unwrap_or(Some(0))?;
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Checks that plans built with `built` (the manifest's `build.tensorrt_version`)
/// can run on TensorRT `found`: TensorRT refuses plans from any other version.
pub fn check_version(set: &EngineSet, found: TrtVersion) -> Result<()> {
    let field = "build.tensorrt_version";
    let invalid = |message: String| Error::Invalid {
        path: set.manifest_path.clone(),
        field: field.into(),
        message,
    };
    let built = set
        .manifest
        .build
        .tensorrt_version
        .as_deref()
        .ok_or_else(|| invalid("missing: this engine set was not built for TensorRT".into()))?;
    let built_v = TrtVersion::parse(built)
        .ok_or_else(|| invalid(format!("{built:?} is not a version like 10.3.0")))?;
    if built_v != found {
        return Err(invalid(format!(
            "the plans were built with TensorRT {built_v} but this machine has TensorRT {found}; \
             rebuild them here with `offramp build --backend tensorrt`"
        )));
    }
    Ok(())
}

/// Checks the GPU the plans were built for against the one found.
pub fn check_device(set: &EngineSet, found: &str) -> Result<()> {
    let built = &set.manifest.build.target_device;
    if built != found {
        return Err(Error::Invalid {
            path: set.manifest_path.clone(),
            field: "build.target_device".into(),
            message: format!(
                "the plans were built for {built:?} but this machine's GPU is {found:?}; \
                 rebuild them here with `offramp build --backend tensorrt`"
            ),
        });
    }
    Ok(())
}

/// The first CUDA device as [`device_identity`] names it; an error when this
/// machine has no NVIDIA driver or no device.
pub fn cuda_device_identity() -> Result<String, String> {
    // SAFETY: only probes for the library; cudarc panics without it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("libcuda.so was not found: this machine has no NVIDIA driver".into());
    }
    let ctx = cudarc::driver::CudaContext::new(0).map_err(|e| format!("CUDA: {e}"))?;
    let name = ctx.name().map_err(|e| format!("CUDA: {e}"))?;
    let (maj, min) = ctx.compute_capability().map_err(|e| format!("CUDA: {e}"))?;
    Ok(device_identity(&name, maj, min))
}

fn unavailable(what: &Path, why: impl Into<String>) -> Error {
    Error::Unavailable {
        what: what.display().to_string(),
        backend: "tensorrt",
        why: why.into(),
    }
}

/// Which shim and libnvinfer a TensorRT chain uses.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The shim library; `None`: the first of [`abi::shim_candidates`].
    pub shim: Option<PathBuf>,
    /// libnvinfer; `None`: `libnvinfer.so.<major>` of the shim's headers,
    /// from the loader's path.
    pub library: Option<PathBuf>,
    /// Never capture CUDA graphs: every run enqueues its inference.
    pub eager: bool,
}

impl Options {
    /// `OFFRAMP_TRT_SHIM`, `OFFRAMP_TENSORRT_LIB` and `OFFRAMP_TRT_EAGER=1`,
    /// where set.
    pub fn from_env() -> Self {
        Self {
            shim: std::env::var_os("OFFRAMP_TRT_SHIM").map(PathBuf::from),
            library: std::env::var_os("OFFRAMP_TENSORRT_LIB").map(PathBuf::from),
            eager: std::env::var_os("OFFRAMP_TRT_EAGER").is_some_and(|v| v == "1"),
        }
    }
}

/// Builds every engine of `set` as a TensorRT plan, through the shim and
/// library `opts` names; one activation scratch serves every exit. (What
/// `offramp_runtime::backend::load_chain` does for TensorRT sets, with
/// [`Options::from_env`].)
pub fn load_chain(set: &EngineSet, opts: &Options) -> Result<Chain> {
    let mut loader = backend::Loader::new(set, opts)?;
    let chain = Chain::with_engines(set, |_, path, inputs, outputs| {
        loader.load(path, inputs, outputs)
    })?;
    loader.finish()?;
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decode_both_encodings() {
        let v10 = TrtVersion::from_lib(100300).unwrap();
        assert_eq!(v10.to_string(), "10.3.0");
        assert_eq!(TrtVersion::from_lib(8601).unwrap().to_string(), "8.6.1");
        assert_eq!(TrtVersion::from_lib(101601).unwrap().to_string(), "10.16.1");
        assert_eq!(TrtVersion::from_lib(0), None);
        assert_eq!(TrtVersion::from_lib(-5), None);
        // The shim's header version uses one encoding for every major.
        assert_eq!(TrtVersion::from_header(80503).unwrap().to_string(), "8.5.3");
        assert_eq!(
            TrtVersion::from_header(110100).unwrap().to_string(),
            "11.1.0"
        );
        assert_eq!(TrtVersion::from_header(8601), None);
        assert_eq!(TrtVersion::parse("10.3.0"), Some(v10));
        assert_eq!(TrtVersion::parse("10.3").unwrap().to_string(), "10.3.0");
        assert_eq!(TrtVersion::parse("ten"), None);
    }

    #[test]
    fn device_identity_format() {
        assert_eq!(device_identity(" Orin ", 8, 7), "Orin (compute 8.7)");
    }
}
