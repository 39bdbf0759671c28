//! The CUDA preprocessing against the CPU one. Without an NVIDIA GPU (CI,
//! this project's VMs) the comparison skips with the reason and the error
//! path is what is tested: a clear error, never a panic.
#![cfg(feature = "cuda")]

use offramp_runtime::cuda_preprocess::{
    available, compile_kernels, CudaPreprocess, CudaPreprocessError,
};
use offramp_runtime::preprocess::Preprocessor;

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

#[test]
fn kernels_compile_with_nvrtc_where_it_is_installed() {
    // NVRTC needs no GPU: a machine with the CUDA toolkit (or the
    // nvidia-cuda-nvrtc wheel on LD_LIBRARY_PATH) checks the kernel source.
    match compile_kernels() {
        Ok(ptx) => {
            let text = ptx.to_src();
            assert!(text.contains("offramp_h_pass") && text.contains("offramp_v_pass"));
        }
        Err(CudaPreprocessError::Unavailable(why)) => {
            eprintln!("skipping the NVRTC compile: {why}")
        }
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
        eprintln!("skipping the CUDA comparison: {why}");
        return;
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
            Err(CudaPreprocessError::FrameSize { got: 10, .. })
        ));
    }
}
