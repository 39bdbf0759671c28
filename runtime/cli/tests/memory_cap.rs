//! `offramp calibrate --max-memory-mb` caps the deployment so that the
//! loaded model fits: the cap is stored in the manifest, exits past it are
//! not loaded, and the heap a runtime holds for the capped set is under the
//! budget, while the whole model would not be.
//!
//! This test measures the heap itself (its own counting allocator, a
//! separate process from the calibrating binary), by loading a pipeline
//! and running a frame, as the runtime does.

mod common;
use common::{demo_dir, offramp};
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Heap bytes a pipeline on `set` holds after one frame.
fn held(set: &EngineSet) -> i64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut p = Pipeline::open(set, BackendKind::Cpu, (32, 32)).unwrap();
    p.infer(&[0u8; 32 * 32 * 3], ExitPolicy::All, None).unwrap();
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(p);
    bytes
}

#[test]
fn a_memory_budget_caps_what_is_loaded_and_the_capped_model_fits() {
    let full = EngineSet::open(demo_dir()).unwrap();
    let mut capped_at_1 = full.clone();
    capped_at_1.manifest.criterion.deepest_exit = Some(1);
    let (whole, two) = (held(&full), held(&capped_at_1));
    // A budget between "exits 1-2" and "exits 1-3" as loaded.
    let mut capped_at_2 = full.clone();
    capped_at_2.manifest.criterion.deepest_exit = Some(2);
    let three = held(&capped_at_2);
    let budget_mb = (two + three) as f64 / 2.0 / 1e6;
    eprintln!(
        "heap held: exits 1-2 {two} B, 1-3 {three} B, all 4 {whole} B; budget {budget_mb:.3} MB"
    );
    // The weights `offramp run` reports follow what is loaded, and the
    // loaded chain holds at least their fp32 bytes.
    let params = |s: &EngineSet| s.manifest.loaded_params();
    assert!(params(&capped_at_1) < params(&capped_at_2) && params(&capped_at_2) < params(&full));
    for (set, held) in [(&capped_at_1, two), (&capped_at_2, three), (&full, whole)] {
        assert!(
            held as u64 >= 4 * params(set),
            "{held} B held, {} params",
            params(set)
        );
    }

    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(demo_dir()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let budget = format!("{budget_mb}");
    let (ok, out, err) = offramp(&[
        "calibrate",
        "--engines",
        dir.path().to_str().unwrap(),
        "--budget-ratio",
        "0.3",
        "--max-memory-mb",
        &budget,
        "--sim-episodes",
        "2",
        "--iterations",
        "1",
    ]);
    assert!(ok, "{out}\n{err}");
    let set = EngineSet::open(dir.path()).unwrap();
    assert_eq!(set.manifest.criterion.deepest_exit, Some(1), "{out}");
    let bytes = held(&set);
    eprintln!("calibrated set holds {bytes} B");
    assert!(
        (bytes as f64) <= budget_mb * 1e6,
        "{bytes} B held for a {budget_mb} MB budget"
    );
    assert!(
        (whole as f64) > budget_mb * 1e6,
        "the test budget must bind"
    );
}
