//! Compiles the TensorRT shim (feature `tensorrt`) when TensorRT's headers are
//! found; otherwise the backend reports at run time that the shim is missing.
//!
//! Headers: `TENSORRT_INCLUDE_DIR`, else the JetPack / Debian-package places.
//! TensorRT's headers include `cuda_runtime_api.h`: `CUDA_INCLUDE_DIR` (one or
//! more directories separated by `:`), else `/usr/local/cuda/include`.
//! Nothing is linked: the shim opens libnvinfer with dlopen.

#[cfg(feature = "tensorrt")]
use std::env;
#[cfg(feature = "tensorrt")]
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(offramp_trt_shim)");
    println!("cargo::rerun-if-env-changed=TENSORRT_INCLUDE_DIR");
    println!("cargo::rerun-if-env-changed=CUDA_INCLUDE_DIR");
    println!("cargo::rerun-if-changed=shim/trt_shim.cpp");
    println!("cargo::rerun-if-changed=shim/trt_shim.h");
    #[cfg(feature = "tensorrt")]
    if std::env::var_os("CARGO_FEATURE_TENSORRT").is_some() {
        build_shim();
    }
}

#[cfg(feature = "tensorrt")]
fn tensorrt_include() -> Option<PathBuf> {
    let candidates = env::var_os("TENSORRT_INCLUDE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/include/aarch64-linux-gnu",
                "/usr/include/x86_64-linux-gnu",
                "/usr/include",
                "/usr/local/tensorrt/include",
            ]
            .map(PathBuf::from),
        );
    candidates
        .into_iter()
        .find(|d| d.join("NvInferRuntime.h").is_file())
}

#[cfg(feature = "tensorrt")]
fn cuda_includes() -> Vec<PathBuf> {
    match env::var("CUDA_INCLUDE_DIR") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![PathBuf::from("/usr/local/cuda/include")],
    }
}

#[cfg(feature = "tensorrt")]
fn build_shim() {
    let Some(trt) = tensorrt_include() else {
        println!(
            "cargo::warning=TensorRT headers not found (set TENSORRT_INCLUDE_DIR): \
             the tensorrt backend is built without its shim and reports so at run time"
        );
        return;
    };
    let cuda = cuda_includes();
    if !cuda.iter().any(|d| d.join("cuda_runtime_api.h").is_file()) {
        println!(
            "cargo::warning=cuda_runtime_api.h not found in {} (set CUDA_INCLUDE_DIR): \
             the tensorrt backend is built without its shim",
            cuda.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        return;
    }
    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .file(Path::new("shim/trt_shim.cpp"))
        .warnings_into_errors(true)
        .flag("-Wall")
        .flag("-Wextra");
    // -isystem: TensorRT's own headers warn about their deprecated plugin APIs.
    b.flag(format!("-isystem{}", trt.display()));
    for d in &cuda {
        b.flag(format!("-isystem{}", d.display()));
    }
    b.compile("offramp_trt_shim");
    println!("cargo::rustc-link-lib=dl");
    println!("cargo::rustc-link-lib=stdc++");
    println!("cargo::rustc-cfg=offramp_trt_shim");
}
