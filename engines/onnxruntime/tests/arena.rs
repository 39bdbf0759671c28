//! onnxruntime's scratch memory: every session of the process draws on one
//! arena, so a chain's segments (run one after another) reuse one scratch
//! instead of holding one each. A test binary of its own: it reads the
//! process's resident memory, which no other test may move meanwhile.

#[path = "../../build/tests/common/mod.rs"]
mod common;
use common::*;
use offramp_build::builder::{build, BuildOptions};
use offramp_build::init::{init, InitOptions};
use offramp_engines::{BackendKind, Chain, EngineSet, Precision};
use offramp_engines_onnxruntime::{load_chain, Options};
use std::path::PathBuf;

/// `VmRSS` in kB / 1,000, the unit the figures below were measured in.
fn resident_mb() -> f64 {
    offramp_engines::resident_bytes().unwrap() as f64 / 1024.0 / 1e3
}

/// Runs every exit of `chain` twice.
fn run(set: &EngineSet, chain: Chain) -> Chain {
    let mut chain = chain;
    for _ in 0..2 {
        for i in 0..set.manifest.exits.len() {
            chain.run_exit(i).unwrap();
        }
    }
    chain
}

#[test]
#[ignore = "needs the onnxruntime library (scripts/test.sh sets OFFRAMP_ONNXRUNTIME_LIB) and Python with onnx"]
fn the_segments_share_one_scratch_arena() {
    // Small weights, large activations: a 4-block transformer on 785 tokens
    // of width 32 (attention scores of 4 heads: 9.9 MB a block).
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(python())
        .arg(repo().join("tools/onnx/make_scale_model.py"))
        .arg(dir.path())
        .args([
            "--blocks", "4", "--width", "32", "--heads", "4", "--patch", "8",
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let src = dir.path().join("src");
    init(&InitOptions {
        onnx: dir.path().join("full.onnx"),
        out: Some(src.clone()),
    })
    .unwrap();
    let out = dir.path().join("set");
    build(
        &BuildOptions {
            onnx_dir: src,
            out_dir: out.clone(),
            backend: BackendKind::Onnxruntime,
            precision: Precision::Fp32,
            int8_calibration_cache: None,
            offramp_version: "test".into(),
        },
        &mut |_| {},
    )
    .unwrap();
    let set = EngineSet::open(&out).unwrap();
    let library = std::env::var_os("OFFRAMP_ONNXRUNTIME_LIB").map(PathBuf::from);
    let options = Options {
        library: Some(library.expect("OFFRAMP_ONNXRUNTIME_LIB")),
        threads: 1,
    };
    // The first chain's runs fill the arena; a second chain, loaded and run
    // the same way, finds its scratch there.
    let loaded = resident_mb();
    let first = run(&set, load_chain(&set, &options).unwrap());
    let scratch = resident_mb() - loaded;
    let before = resident_mb();
    let second = run(&set, load_chain(&set, &options).unwrap());
    let again = resident_mb() - before;
    eprintln!("first chain: {scratch:.1} MB, a second one: {again:.1} MB");
    assert!(
        scratch > 8.0,
        "the model must need scratch: {scratch:.1} MB"
    );
    assert!(
        again < 0.5 * scratch,
        "a second chain took {again:.1} MB more, the first {scratch:.1} MB: scratch is not shared"
    );
    drop((first, second));
}
