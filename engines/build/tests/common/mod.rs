//! Shared by the engine tests of offramp-build, offramp-engines-cpu and
//! offramp-engines-tensorrt (the latter two include this file by path).
#![allow(dead_code)]

use offramp_build::builder::{build, BuildOptions};
use offramp_engines::{BackendKind, EngineSet, Precision};
use std::path::{Path, PathBuf};

/// The repository's files: $OFFRAMP_REPO when set (a test executable run
/// from a bundle on another machine, `scripts/gpu-check.sh --prebuilt`),
/// else the checkout it was built from.
pub fn repo() -> PathBuf {
    std::env::var_os("OFFRAMP_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

pub fn tiny_onnx() -> PathBuf {
    repo().join("engines/models/testdata/tiny")
}

/// Builds the tiny model for the CPU backend into a fresh directory.
pub fn built_tiny() -> (tempfile::TempDir, EngineSet) {
    let dir = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        onnx_dir: tiny_onnx(),
        out_dir: dir.path().to_path_buf(),
        backend: BackendKind::Cpu,
        precision: Precision::Fp32,
        int8_calibration_cache: None,
        offramp_version: "test".into(),
    };
    build(&opts, &mut |_| {}).expect("tiny model builds");
    let set = EngineSet::open(dir.path()).expect("built set opens");
    (dir, set)
}

/// Builds the CPU set of the `model.toml` in `src` into `out`.
pub fn build_dir(src: &Path, out: &Path) -> offramp_engines::Result<()> {
    let opts = BuildOptions {
        onnx_dir: src.to_path_buf(),
        out_dir: out.to_path_buf(),
        backend: BackendKind::Cpu,
        precision: Precision::Fp32,
        int8_calibration_cache: None,
        offramp_version: "test".into(),
    };
    build(&opts, &mut |_| {}).map(|_| ())
}

/// The Python with onnxruntime: $OFFRAMP_PYTHON (scripts/test.sh sets it to
/// its venv), else python3.
pub fn python() -> String {
    std::env::var("OFFRAMP_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Deterministic, varied test input in [-1, 1).
pub fn pattern(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The largest |a − b| over two outputs of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "outputs of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Writes raw little-endian f32 (the Python references' input format).
pub fn f32s_to_file(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Reads raw little-endian f32 (the Python references' output format).
pub fn f32s_from_file(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Every output of every exit and the head of `chain` (a chain of `set`),
/// on fixed inputs: what two backends or thread counts must agree on.
pub fn chain_outputs(set: &EngineSet, mut chain: offramp_engines::Chain) -> Vec<f32> {
    for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
        let v = pattern(buf.len(), 3 + k as u32);
        buf.copy_from_slice(&v);
    }
    let state = pattern(set.manifest.state_len(), 7);
    let mut all = Vec::new();
    for i in 0..chain.exits() {
        chain.run_exit(i).unwrap();
        for k in 0..set.manifest.exits[i].outputs.len() {
            all.extend_from_slice(chain.exit_output(i, k));
        }
        all.extend_from_slice(chain.run_head(i, &state).unwrap().0);
    }
    all
}
