//! The CPU backend on a thread pool (`set_threads`): the chain computes what
//! it computes on one thread, and the pool is there. A file of its own: the
//! executor is process-wide.

#[path = "../../build/tests/common/mod.rs"]
mod common;
use common::*;
use offramp_engines_cpu::{load_chain, set_threads, threads};

/// Every output of every exit of the tiny model, on the given inputs.
fn outputs(set: &offramp_engines::EngineSet) -> Vec<f32> {
    chain_outputs(set, load_chain(set).unwrap())
}

fn pool_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("offramp-tract"))
        .count()
}

#[test]
fn a_thread_pool_computes_what_one_thread_does() {
    let (_dir, set) = built_tiny();
    let one = outputs(&set);
    // The tiny model's products are below tract's threading thresholds:
    // lowered, every product and row-wise kernel splits across the pool.
    tract_linalg::multithread::set_threading_panel_threshold(1);
    tract_linalg::multithread::set_threading_mac_threshold(1);
    tract_linalg::multithread::set_threading_element_threshold(1);
    assert_eq!(threads(), 1, "tract's default");
    set_threads(3).unwrap();
    assert_eq!(threads(), 3, "what reports say");
    let three = outputs(&set);
    // rayon starts its threads as the pool is built, each naming itself.
    let started = std::time::Instant::now();
    while pool_threads() < 3 && started.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pool_threads(), 3, "the pool's threads");
    assert_eq!(one.len(), three.len());
    let worst = max_abs_diff(&one, &three);
    eprintln!("max |3 threads - 1 thread| = {worst:e}");
    assert!(worst <= 1e-5, "{worst}");
    // Back to the calling thread: the pool goes with its last user.
    set_threads(1).unwrap();
    assert_eq!(outputs(&set), one);
}
