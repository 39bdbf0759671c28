//! The CUDA preprocessing against the CPU one. Without an NVIDIA GPU (CI,
//! this project's VMs) the comparison skips with the reason and the error
//! path is what is tested: a clear error, never a panic.
#![cfg(feature = "cuda")]

use offramp_runtime::cuda_preprocess::{
    available, compile_kernels, compile_kernels_with, CudaPreprocess, CudaPreprocessError,
};
use offramp_runtime::nvrtc::Nvrtc;
use offramp_runtime::preprocess::{PreprocessError, Preprocessor};

fn frame(w: usize, h: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..w * h * 3)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Smooth structure plus noise, like a camera image.
            (((i / 3) % w) as u32 * 255 / w as u32 / 2 + (x % 128)) as u8
        })
        .collect()
}

/// Skips a GPU-only test without a GPU, saying why; under
/// OFFRAMP_REQUIRE_GPU (scripts/gpu-check.sh) a missing GPU fails instead.
fn skip(why: &str) {
    assert!(
        std::env::var_os("OFFRAMP_REQUIRE_GPU").is_none(),
        "OFFRAMP_REQUIRE_GPU is set but {why}"
    );
    eprintln!("skipping: {why}");
}

/// The kernels as PTX: both entry points, and no fused multiply-add (the
/// CPU path rounds after every multiply and add).
fn check_ptx(nvrtc: &Nvrtc) {
    let ptx = compile_kernels_with(nvrtc)
        .unwrap_or_else(|e| panic!("{} {:?}: {e}", nvrtc.path(), nvrtc.version()))
        .to_src();
    for entry in [".entry offramp_h_pass", ".entry offramp_v_pass"] {
        assert!(ptx.contains(entry), "{}: no {entry}", nvrtc.path());
    }
    assert!(
        !ptx.contains("fma.rn.f32"),
        "{}: contracted to FMA",
        nvrtc.path()
    );
    eprintln!(
        "compiled with {} (CUDA {:?})",
        nvrtc.path(),
        nvrtc.version()
    );
}

#[test]
fn kernels_compile_with_nvrtc_where_it_is_installed() {
    // NVRTC needs no GPU. CI names CUDA 12's and 13's libraries (from the
    // nvidia-cuda-nvrtc wheels) in OFFRAMP_NVRTC_TEST_LIBS; elsewhere the
    // library the runtime would find is used, or the test skips.
    if let Some(list) = std::env::var_os("OFFRAMP_NVRTC_TEST_LIBS") {
        for path in list.to_string_lossy().split(':') {
            check_ptx(&Nvrtc::open(path).unwrap());
        }
        return;
    }
    match Nvrtc::get() {
        Ok(nvrtc) => check_ptx(nvrtc),
        Err(why) => skip(&why),
    }
    // What the runtime calls gives the same.
    match compile_kernels() {
        Ok(_) | Err(CudaPreprocessError::Unavailable(_)) => {}
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn without_a_gpu_the_error_says_why() {
    let cpu = Preprocessor::new((640, 480), (32, 32), [0.5; 3], [0.25; 3]).unwrap();
    match available() {
        Err(why) => match CudaPreprocess::new(&cpu) {
            Err(CudaPreprocessError::Unavailable(w)) => assert_eq!(w, why),
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("CUDA preprocessing started although {why}"),
        },
        Ok(()) => {
            // A GPU is here: creation must work (the comparison test checks
            // the numbers).
            CudaPreprocess::new(&cpu).unwrap();
        }
    }
}

#[test]
fn matches_the_cpu_preprocessing_within_1e_5() {
    if let Err(why) = available() {
        return skip(&why);
    }
    for (src, dst) in [
        ((640, 480), (32, 32)),
        ((32, 32), (32, 32)),
        ((1280, 720), (224, 224)),
    ] {
        let mut cpu =
            Preprocessor::new(src, dst, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).unwrap();
        let mut gpu = CudaPreprocess::new(&cpu).unwrap();
        let n = dst.0 * dst.1 * 3;
        let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
        for seed in 1..4 {
            let f = frame(src.0, src.1, seed);
            cpu.run(&f, &mut a).unwrap();
            gpu.run(&f).unwrap();
            gpu.read(&mut b).unwrap();
            let max = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            eprintln!(
                "{src:?} -> {dst:?}: max |cpu - gpu| = {max:e}, gpu {:.3} ms",
                gpu.last_gpu_ms().unwrap()
            );
            assert!(max <= 1e-5, "{src:?} -> {dst:?}: {max}");
        }
        assert!(matches!(
            gpu.run(&[0u8; 10]),
            Err(CudaPreprocessError::Frame(PreprocessError::FrameSize {
                got: 10,
                ..
            }))
        ));
    }
}

#[test]
fn writes_its_tensor_into_an_engines_device_buffer() {
    if let Err(why) = available() {
        return skip(&why);
    }
    use cudarc::driver::{CudaContext, DevicePtr};
    let cpu = Preprocessor::new((640, 480), (64, 64), [0.5; 3], [0.25; 3]).unwrap();
    let mut gpu = CudaPreprocess::new(&cpu).unwrap();
    // Stands for a TensorRT engine's input buffer: device memory in the
    // same primary context, owned by someone else, on another stream.
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    let n = 64 * 64 * 3;
    let engine_input = stream.alloc_zeros::<f32>(n).unwrap();
    let address = {
        let (p, _sync) = engine_input.device_ptr(&stream);
        p
    };
    gpu.run(&frame(640, 480, 5)).unwrap();
    gpu.write_device(offramp_engines::DeviceTensor {
        address,
        bytes: n * 4,
    })
    .unwrap();
    let mut want = vec![0.0f32; n];
    gpu.read(&mut want).unwrap();
    let got = stream.clone_dtoh(&engine_input).unwrap();
    assert_eq!(got, want);
    assert!(got.iter().any(|v| *v != 0.0));
    // A buffer of another size is refused, naming both.
    let e = gpu
        .write_device(offramp_engines::DeviceTensor {
            address,
            bytes: 4 * 10,
        })
        .unwrap_err();
    assert!(
        matches!(e, CudaPreprocessError::OutputSize { got: 10, .. }),
        "{e}"
    );
}
