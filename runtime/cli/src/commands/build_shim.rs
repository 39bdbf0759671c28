//! `offramp build-shim`: compile the TensorRT shim here, against this
//! machine's TensorRT and CUDA, and check that it opens TensorRT.

use anyhow::{anyhow, Context};
use offramp_engines_tensorrt::abi::SHIM_FILE;
use offramp_engines_tensorrt::build_shim::{build_shim, inspect_shim, ShimBuild};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// TensorRT's include directory (with NvInferRuntime.h); default: the
    /// first of /usr/include/aarch64-linux-gnu (JetPack),
    /// /usr/include/x86_64-linux-gnu, /usr/include, /usr/local/tensorrt/include.
    #[arg(long, value_name = "DIR")]
    tensorrt_include: Option<PathBuf>,
    /// The CUDA toolkit (include/ and lib64/ under it); default /usr/local/cuda.
    #[arg(long, value_name = "DIR")]
    cuda: Option<PathBuf>,
    /// Where to write the library; default: ../lib/libofframp_trt_shim.so
    /// next to this binary, where offramp looks for it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The C++ compiler.
    #[arg(long, default_value = "c++")]
    cxx: String,
    /// libnvinfer to open for the check; default libnvinfer.so.<major of
    /// the headers> from the loader's path.
    #[arg(long, value_name = "FILE")]
    library: Option<PathBuf>,
    /// Only check an existing shim library; build nothing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tensorrt_include", "cuda", "out", "cxx"])]
    check: Option<PathBuf>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let path = match a.check {
        Some(p) => p,
        None => {
            let out = match a.out {
                Some(o) => o,
                None => std::env::current_exe()
                    .context("locating this binary")?
                    .parent()
                    .map(|d| d.join("../lib").join(SHIM_FILE))
                    .ok_or_else(|| anyhow!("this binary has no parent directory: pass --out"))?,
            };
            let built = build_shim(&ShimBuild {
                tensorrt_include: a.tensorrt_include,
                cuda: a.cuda,
                out,
                cxx: a.cxx,
            })
            .map_err(|e| anyhow!(e))
            .context("building the TensorRT shim")?;
            tracing::info!(path = %built.display(), "built the TensorRT shim");
            built
        }
    };
    let info = inspect_shim(&path, a.library.as_deref()).map_err(|e| anyhow!(e))?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    if let Some(e) = &info.library_error {
        return Err(anyhow!("{e}")).with_context(|| {
            format!(
                "{} loads, but cannot open TensorRT through it",
                info.path.display()
            )
        });
    }
    Ok(())
}
