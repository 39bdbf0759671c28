//! The onnxruntime backend against the library a machine has (CI: the
//! onnxruntime Python wheel's, `OFFRAMP_ONNXRUNTIME_LIB` set by
//! scripts/steps/env.sh): the chain computes what tract computes, the
//! manifest's tensors are checked by name, type and shape at load, and a run
//! allocates nothing on the Rust side.

#[path = "../../build/tests/common/mod.rs"]
mod common;
use common::*;
use offramp_engines::Chain;
use offramp_engines_onnxruntime::{load_chain, Options, OrtEngine, Runtime};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

const NEEDS: &str = "needs the onnxruntime library (scripts/test.sh sets OFFRAMP_ONNXRUNTIME_LIB)";

fn options(threads: usize) -> Options {
    let library = std::env::var_os("OFFRAMP_ONNXRUNTIME_LIB")
        .map(PathBuf::from)
        .expect("OFFRAMP_ONNXRUNTIME_LIB: the onnxruntime library these tests run against");
    Options {
        library: Some(library),
        threads,
    }
}

#[test]
#[ignore = "needs the onnxruntime library (scripts/test.sh sets OFFRAMP_ONNXRUNTIME_LIB)"]
fn the_chain_computes_what_tract_computes() {
    let (_dir, set) = built_tiny();
    let tract = chain_outputs(&set, offramp_engines_cpu::load_chain(&set).unwrap());
    for threads in [1, 2] {
        let ort = chain_outputs(&set, load_chain(&set, &options(threads)).expect(NEEDS));
        assert_eq!(ort.len(), tract.len());
        let worst = max_abs_diff(&ort, &tract);
        eprintln!("max |onnxruntime ({threads} threads) - tract| = {worst:e}");
        assert!(worst <= 1e-5, "{worst}");
    }
    let rt = Runtime::get(None).unwrap();
    assert!(rt.version.starts_with("1."), "{}", rt.version);
}

#[test]
#[ignore = "needs the onnxruntime library (scripts/test.sh sets OFFRAMP_ONNXRUNTIME_LIB)"]
fn a_manifest_that_disagrees_with_the_graph_is_refused_naming_both() {
    let (_dir, set) = built_tiny();
    let rt = Runtime::get(options(1).library.as_deref()).expect(NEEDS);
    let exit = &set.manifest.exits[0];
    let path = set.dir.join(&exit.artifact);
    let mut inputs = exit.inputs.clone();
    inputs[0].name = "not_there".into();
    let e = OrtEngine::load(rt, &path, &inputs, &exit.outputs, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("no input named \"not_there\""), "{e}");
    assert!(e.contains(&exit.inputs[0].name), "the graph's inputs: {e}");
    // An input the graph needs that the manifest leaves out would fail
    // every run: refused at load.
    let fewer = &exit.inputs[..exit.inputs.len() - 1];
    let e = OrtEngine::load(rt, &path, fewer, &exit.outputs, 1)
        .err()
        .unwrap()
        .to_string();
    let left_out = &exit.inputs[exit.inputs.len() - 1].name;
    assert!(
        e.contains("also needs input(s)") && e.contains(left_out.as_str()),
        "{e}"
    );
    let mut outputs = exit.outputs.clone();
    outputs[0].shape[1] += 1;
    let e = OrtEngine::load(rt, &path, &exit.inputs, &outputs, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&format!("output {:?}", outputs[0].name)), "{e}");
    assert!(e.contains("the manifest says"), "{e}");
    // A second library in the same process is refused, naming the first.
    let e = Runtime::get(Some(std::path::Path::new("/elsewhere/libonnxruntime.so")))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already open in this process"), "{e}");
}

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Rust allocations on this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = COUNT.with(Cell::get);
    f();
    COUNT.with(Cell::get) - before
}

/// A run copies into buffers made at load and runs the session into values
/// made at load: no Rust allocation per run, where tract makes hundreds
/// (onnxruntime's own scratch comes from its arena, filled by the first run).
#[test]
#[ignore = "needs the onnxruntime library (scripts/test.sh sets OFFRAMP_ONNXRUNTIME_LIB)"]
fn a_run_allocates_nothing_after_the_first() {
    let (_dir, set) = built_tiny();
    let state = pattern(set.manifest.state_len(), 7);
    let mut counts = Vec::new();
    for backend in ["onnxruntime", "tract"] {
        let mut chain = match backend {
            "onnxruntime" => load_chain(&set, &options(1)).expect(NEEDS),
            _ => offramp_engines_cpu::load_chain(&set).unwrap(),
        };
        let frame = |chain: &mut Chain| {
            for i in 0..chain.exits() {
                chain.run_exit(i).unwrap();
                chain.run_head(i, &state).unwrap();
            }
        };
        frame(&mut chain);
        counts.push(allocations(|| {
            for _ in 0..100 {
                frame(&mut chain);
            }
        }));
    }
    eprintln!(
        "allocations in 100 frames: onnxruntime {}, tract {}",
        counts[0], counts[1]
    );
    assert_eq!(counts[0], 0);
    // The count sees allocations at all (tract's per-node tensors).
    assert!(counts[1] > 100, "{}", counts[1]);
}
