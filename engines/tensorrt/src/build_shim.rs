//! `offramp build-shim`: compiles the TensorRT shim on the machine that
//! runs it, against that machine's TensorRT and CUDA headers, and checks the
//! result loads. The sources travel inside the offramp binary, so a bundle
//! needs nothing else.

use super::abi;
use super::TrtVersion;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim's sources, as compiled into this binary.
pub const SHIM_SOURCE: &str = include_str!("../shim/trt_shim.cpp");
pub const SHIM_HEADER: &str = include_str!("../shim/trt_shim.h");

/// Where TensorRT's headers are looked for when not given: JetPack's
/// libnvinfer-dev, Debian/Ubuntu packages, the tarball's usual place.
pub const TENSORRT_INCLUDE_DIRS: &[&str] = &[
    "/usr/include/aarch64-linux-gnu",
    "/usr/include/x86_64-linux-gnu",
    "/usr/include",
    "/usr/local/tensorrt/include",
];

/// CUDA's headers and runtime library: JetPack and the CUDA toolkit.
pub const CUDA_DIRS: &[&str] = &["/usr/local/cuda"];

#[derive(Debug, Clone)]
pub struct ShimBuild {
    /// Directory with NvInferRuntime.h; `None`: the first of
    /// [`TENSORRT_INCLUDE_DIRS`] that has it.
    pub tensorrt_include: Option<PathBuf>,
    /// CUDA toolkit root (include/, lib64/ or targets/*/lib); `None`: the
    /// first of [`CUDA_DIRS`].
    pub cuda: Option<PathBuf>,
    /// Where the library goes.
    pub out: PathBuf,
    /// The C++ compiler.
    pub cxx: String,
}

/// What a shim library says of itself, and whether it opens TensorRT.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShimInfo {
    pub path: PathBuf,
    pub abi_version: i32,
    /// The TensorRT headers it was compiled against.
    pub headers: String,
    /// The TensorRT library it opened...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// ...or why it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_error: Option<String>,
}

fn first_with(dirs: &[&str], file: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(PathBuf::from)
        .find(|d| d.join(file).is_file())
}

/// Compiles the shim into `b.out`; errors name what is missing and where
/// it was looked for.
pub fn build_shim(b: &ShimBuild) -> Result<PathBuf, String> {
    let trt = match &b.tensorrt_include {
        Some(d) if d.join("NvInferRuntime.h").is_file() => d.clone(),
        Some(d) => {
            return Err(format!(
                "{}: no NvInferRuntime.h there (give TensorRT's include directory)",
                d.display()
            ))
        }
        None => first_with(TENSORRT_INCLUDE_DIRS, "NvInferRuntime.h").ok_or_else(|| {
            format!(
                "TensorRT's headers (NvInferRuntime.h) are not in {}: install libnvinfer-dev \
                 (JetPack: `sudo apt install nvidia-tensorrt-dev`) or pass --tensorrt-include",
                TENSORRT_INCLUDE_DIRS.join(", ")
            )
        })?,
    };
    let cuda = match &b.cuda {
        Some(d) => d.clone(),
        None => CUDA_DIRS
            .iter()
            .map(PathBuf::from)
            .find(|d| d.is_dir())
            .ok_or_else(|| {
                format!(
                "no CUDA toolkit in {}: install it (JetPack: `sudo apt install cuda-toolkit`) or \
                 pass --cuda",
                CUDA_DIRS.join(", ")
            )
            })?,
    };
    let include = cuda.join("include");
    if !include.join("cuda_runtime_api.h").is_file() {
        return Err(format!(
            "{}: no cuda_runtime_api.h there (is {} a CUDA toolkit?)",
            include.display(),
            cuda.display()
        ));
    }
    let lib = [
        "lib64",
        "lib",
        "targets/aarch64-linux/lib",
        "targets/x86_64-linux/lib",
    ]
    .iter()
    .map(|l| cuda.join(l))
    .find(|d| d.join("libcudart.so").exists())
    .ok_or_else(|| format!("{}: no lib64/libcudart.so under it", cuda.display()))?;
    let work = tempdir_near(&b.out)?;
    let src = work.join("trt_shim.cpp");
    std::fs::write(&src, SHIM_SOURCE)
        .and_then(|_| std::fs::write(work.join("trt_shim.h"), SHIM_HEADER))
        .map_err(|e| format!("{}: {e}", work.display()))?;
    let tmp = work.join(abi::SHIM_FILE);
    let out = Command::new(&b.cxx)
        .args(["-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(&work)
        .arg("-isystem")
        .arg(&trt)
        .arg("-isystem")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lcudart", "-ldl"])
        .output()
        .map_err(|e| format!("running {}: {e}", b.cxx))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(format!(
            "{} failed ({}) compiling the shim against {}:\n{}",
            b.cxx,
            out.status,
            trt.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let moved = std::fs::rename(&tmp, &b.out).map_err(|e| format!("{}: {e}", b.out.display()));
    let _ = std::fs::remove_dir_all(&work);
    moved?;
    Ok(b.out.clone())
}

/// A scratch directory beside `out`, so the final rename stays on one
/// file system.
fn tempdir_near(out: &Path) -> Result<PathBuf, String> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let dir = parent.join(format!(".offramp-build-shim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Loads the shim at `path`, checks its ABI, and tries to open libnvinfer
/// (`library`, or the one its headers name) through it.
pub fn inspect_shim(path: &Path, library: Option<&Path>) -> Result<ShimInfo, String> {
    let (path, abi) = abi::load_shim(Some(path))?;
    // SAFETY: no arguments.
    let headers = unsafe { (abi.ofr_trt_header_version)() };
    let headers = TrtVersion::from_header(headers)
        .map(|v| v.to_string())
        .unwrap_or_else(|| format!("unknown ({headers})"));
    let library = abi::open(Some(&path), library)
        .and_then(|lib| lib.trt_version())
        .map(|v| v.to_string());
    let (library, library_error) = match library {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    Ok(ShimInfo {
        path,
        abi_version: abi::ABI_VERSION,
        headers,
        library,
        library_error,
    })
}
