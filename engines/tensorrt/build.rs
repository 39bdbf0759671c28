//! Compiles the CPU test double of the TensorRT shim (`shim/trt_double.c`,
//! C: no C++ compiler needed) into a shared library for the tests, and tells
//! them where it is (`OFFRAMP_TRT_DOUBLE`). The real shim is not compiled
//! here: it needs TensorRT's headers and is built on the robot
//! (`offramp build-shim`, `scripts/check-trt-shim.sh`).

fn main() {
    println!("cargo::rerun-if-changed=shim/trt_double.c");
    println!("cargo::rerun-if-changed=shim/trt_shim.h");
    double::build();
}

mod double {
    use std::path::PathBuf;

    pub fn build() {
        let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
            return;
        };
        let so = out.join("libofframp_trt_double.so");
        let compiler = match cc::Build::new()
            .cargo_metadata(false)
            .opt_level(1)
            .try_get_compiler()
        {
            Ok(c) => c,
            Err(e) => {
                println!("cargo::warning=no C compiler for the TensorRT test double: {e}");
                return;
            }
        };
        let status = compiler
            .to_command()
            .args([
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-shared",
                "-fPIC",
            ])
            .arg("shim/trt_double.c")
            .arg("-o")
            .arg(&so)
            .arg("-lpthread")
            .status();
        match status {
            Ok(s) if s.success() => {
                println!("cargo::rustc-env=OFFRAMP_TRT_DOUBLE={}", so.display());
            }
            other => println!(
                "cargo::warning=compiling the TensorRT test double failed ({other:?}): \
                 the tensorrt tests will not build"
            ),
        }
    }
}
