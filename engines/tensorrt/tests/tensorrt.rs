//! The TensorRT backend, driven for real through the shim ABI against the
//! CPU test double of `shim/trt_double.c` (built by build.rs): binding by
//! name, the shared activation scratch, copies and stream order, timing
//! events, chained exits, and every refusal (version, GPU, shim, library,
//! plan, tensors), each a clear error naming what is wrong.

// One copy of the engine tests' helpers, kept with the builder's tests.
#[path = "../../build/tests/common/mod.rs"]
mod common;
use common::*;
use offramp_engines::manifest::TensorSpec;
use offramp_engines::{sha256_file, BackendKind, Chain, Engine, EngineSet, Role};
use offramp_engines_tensorrt::{check_device, check_version, load_chain, Options, TrtVersion};
use std::path::{Path, PathBuf};

/// The CPU test double of the shim: $OFFRAMP_TRT_DOUBLE when set (a test
/// executable run from a bundle on another machine), else where build.rs
/// put it.
fn double() -> PathBuf {
    std::env::var_os("OFFRAMP_TRT_DOUBLE")
        .map_or_else(|| PathBuf::from(env!("OFFRAMP_TRT_DOUBLE")), PathBuf::from)
}
const ORIN: &str = "Orin (compute 8.7)";

/// A "libnvinfer" for the double: what TensorRT and GPU it pretends to
/// be. One file per identity: the backend opens a library once per path.
fn fake_library(dir: &Path, version: i32, device: Option<(&str, i32, i32)>) -> PathBuf {
    let mut text = format!("offramp-trt-double-library 1\nversion {version}\n");
    if let Some((name, major, minor)) = device {
        text += &format!("device {name}\ncompute {major} {minor}\n");
    }
    let tag: String = format!("{version}-{device:?}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let path = dir.join(format!("libnvinfer-{tag}.txt"));
    std::fs::write(&path, text).unwrap();
    path
}

fn options(library: &Path) -> Options {
    Options {
        shim: Some(double()),
        library: Some(library.to_path_buf()),
        eager: false,
    }
}

/// The double's weights: output `k`, input `j`, both in manifest order.
fn weight(k: usize, j: usize) -> f64 {
    0.5 + 0.25 * j as f64 + 0.125 * k as f64
}

fn bias(k: usize) -> f64 {
    0.0625 * (k + 1) as f64
}

/// Scratch bytes of engine `role`: differs per engine, so "the largest"
/// is one of them only.
fn scratch(role: Role, outputs: &[TensorSpec]) -> usize {
    let base = outputs.iter().map(TensorSpec::bytes).max().unwrap_or(0);
    base + match role {
        Role::Segment(i) => 1024 * (i + 1),
        Role::Head => 512,
    }
}

const COST_US: f64 = 250.0;

/// A plan for the double. Tensors are listed outputs first and in
/// reverse order, so a backend that binds by position, not by name,
/// computes something else.
fn plan_text(role: Role, inputs: &[TensorSpec], outputs: &[TensorSpec], built: i32) -> String {
    let mut t = format!(
        "offramp-trt-double-plan 1\nbuilt {built}\nscratch {}\ncost_us {COST_US}\n",
        scratch(role, outputs)
    );
    let line = |kind: &str, s: &TensorSpec| {
        let dims: Vec<String> = s.shape.iter().map(usize::to_string).collect();
        format!("{kind} {} 0 {}\n", s.name, dims.join(" "))
    };
    for s in outputs.iter().rev() {
        t += &line("output", s);
    }
    for s in inputs.iter().rev() {
        t += &line("input", s);
    }
    for (k, o) in outputs.iter().enumerate() {
        for (j, i) in inputs.iter().enumerate() {
            t += &format!("weight {} {} {}\n", o.name, i.name, weight(k, j));
        }
        t += &format!("bias {} {}\n", o.name, bias(k));
    }
    t
}

/// What the double computes, in the order it sums (inputs as the plan
/// lists them: reversed), so results match bit for bit.
struct Reference {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl Engine for Reference {
    fn run(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> offramp_engines::Result<()> {
        for (k, out) in outputs.iter_mut().enumerate() {
            for (e, slot) in out.iter_mut().enumerate() {
                let mut acc = bias(k);
                for j in (0..self.inputs.len()).rev() {
                    acc += weight(k, j) * inputs[j][e % inputs[j].len()] as f64;
                }
                *slot = acc as f32;
            }
        }
        assert_eq!(outputs.len(), self.outputs.len());
        Ok(())
    }
}

/// The tiny model's set turned into a TensorRT set of double plans,
/// built with TensorRT `version` for `device`.
fn double_set(version: &str, built: i32, device: &str) -> (tempfile::TempDir, EngineSet) {
    let (dir, set) = built_tiny();
    let mut m = set.manifest.clone();
    m.build.backend = BackendKind::Tensorrt;
    m.build.tensorrt_version = Some(version.into());
    m.build.target_device = device.into();
    for (i, seg) in m.exits.iter_mut().enumerate() {
        seg.artifact = format!("segment{i}.plan");
        let path = dir.path().join(&seg.artifact);
        std::fs::write(
            &path,
            plan_text(Role::Segment(i), &seg.inputs, &seg.outputs, built),
        )
        .unwrap();
        seg.sha256 = sha256_file(&path).unwrap();
    }
    let head = m.head.as_mut().unwrap();
    head.artifact = "head.plan".into();
    let path = dir.path().join("head.plan");
    std::fs::write(
        &path,
        plan_text(Role::Head, &head.inputs, &head.outputs, built),
    )
    .unwrap();
    head.sha256 = sha256_file(&path).unwrap();
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    (dir, set)
}

fn orin_set() -> (tempfile::TempDir, EngineSet) {
    double_set("10.3.0", 100300, ORIN)
}

fn orin_library(dir: &Path) -> PathBuf {
    fake_library(dir, 100300, Some(("Orin", 8, 7)))
}

fn load_err(set: &EngineSet, opts: &Options) -> String {
    match load_chain(set, opts) {
        Ok(_) => panic!("the chain loaded"),
        Err(e) => e.to_string(),
    }
}

/// The double's counters for the library opened from `library`: live
/// allocations, their bytes, inferences run, stream synchronizations,
/// CUDA graphs captured, graph launches, copies host to device, copies
/// device to host.
fn stats(library: &Path) -> [i64; 8] {
    type Stats = unsafe extern "C" fn(*const std::ffi::c_char, *mut i64) -> i32;
    // SAFETY: the double, already loaded by the backend; the hook's
    // signature is the one trt_double.c defines.
    let lib = unsafe { libloading::Library::new(double()) }.unwrap();
    let f = unsafe { lib.get::<Stats>(b"ofr_trt_double_stats\0") }.unwrap();
    let path = std::ffi::CString::new(library.to_str().unwrap()).unwrap();
    let mut out = [0i64; 8];
    assert_eq!(unsafe { f(path.as_ptr(), out.as_mut_ptr()) }, 0);
    out
}

/// Runs every exit and the head on each exit's feature, `frames` times;
/// returns every output in order.
fn run_all(chain: &mut Chain, frames: u32, state_len: usize) -> Vec<Vec<f32>> {
    let mut seen = Vec::new();
    for f in 0..frames {
        for (k, input) in chain.inputs_mut().iter_mut().enumerate() {
            let p = pattern(input.len(), 7 + f * 3 + k as u32);
            input.copy_from_slice(&p);
        }
        let mut state = vec![0.0f32; state_len];
        for i in 0..chain.exits() {
            chain.run_exit(i).unwrap();
            seen.push(chain.feature(i).to_vec());
            let (action, next) = chain.run_head(i, &state[..]).unwrap();
            seen.push(action.to_vec());
            state = next.to_vec();
        }
    }
    seen
}

fn head_state_len(set: &EngineSet) -> usize {
    set.manifest.state_len()
}

#[test]
fn chained_exits_through_the_backend_equal_the_reference_bit_for_bit() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut trt = load_chain(&set, &options(&library)).unwrap();
    let mut reference = reference_chain(&set);
    let n = head_state_len(&set);
    let got = run_all(&mut trt, 3, n);
    let want = run_all(&mut reference, 3, n);
    assert_eq!(got.len(), want.len());
    assert!(got.iter().flatten().any(|v| *v != 0.0));
    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "output {n} differs");
    }
    // Every run waited for its stream once, after its inference.
    let runs = 3 * 2 * set.manifest.exits.len() as i64;
    let [_, _, executed, synced, captured, launched, ..] = stats(&library);
    assert_eq!(executed, runs);
    assert_eq!(synced, runs);
    // Each engine ran once as an ordinary enqueue, was captured, and
    // replayed its graph from the second run on.
    let engines = set.manifest.exits.len() as i64 + 1;
    assert_eq!(captured, engines);
    assert_eq!(launched, runs - engines);
}

/// Copies per frame of [`run_all`]: host to device (each segment's
/// inputs, each head run's two) and device to host (each segment's
/// outputs, each head run's two).
fn copies_per_frame(set: &EngineSet) -> (i64, i64) {
    let m = &set.manifest;
    let head = m.head.as_ref().unwrap();
    let per = |f: &dyn Fn(&offramp_engines::manifest::Segment) -> usize| {
        m.exits.iter().map(|s| f(s) as i64).sum::<i64>()
    };
    let heads = m.exits.len() as i64;
    (
        per(&|s| s.inputs.len()) + heads * head.inputs.len() as i64,
        per(&|s| s.outputs.len()) + heads * head.outputs.len() as i64,
    )
}

#[test]
fn tensors_between_segments_stay_on_the_gpu() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let m = &set.manifest;
    let exits = m.exits.len();
    // What segment i + 1 reads of segment i's outputs, the feature aside.
    let hidden: usize = (1..exits)
        .map(|i| {
            m.exits[i]
                .inputs
                .iter()
                .filter(|t| {
                    m.exits[i - 1].outputs.iter().any(|o| o.name == t.name)
                        && Some(&t.name) != m.exits[i - 1].feature.as_ref()
                })
                .count()
        })
        .sum();
    assert!(hidden >= exits - 1, "the tiny model carries hidden states");
    let mut trt = load_chain(&set, &options(&library)).unwrap();
    let before = stats(&library);
    assert_eq!(trt.keep_between_segments_on_device(|_, _| false), hidden);
    for i in 0..exits - 1 {
        let k = trt.output_index(i, &format!("hidden{i}"));
        assert!(trt.output_on_device(i, k.unwrap()), "hidden{i}");
    }
    // Each linked input's own buffer is freed.
    let after = stats(&library);
    assert_eq!(after[0], before[0] - hidden as i64);
    // The chain computes the same, bit for bit, and copies less.
    let mut reference = reference_chain(&set);
    let n = head_state_len(&set);
    let frames = 3;
    let got = run_all(&mut trt, frames, n);
    assert_eq!(got, run_all(&mut reference, frames, n));
    let (htod, dtoh) = copies_per_frame(&set);
    let [.., got_htod, got_dtoh] = stats(&library);
    let f = frames as i64;
    assert_eq!(got_htod, f * (htod - hidden as i64));
    assert_eq!(got_dtoh, f * (dtoh - hidden as i64));
    // Graphs captured with the linked addresses replay them.
    let [_, _, _, _, captured, launched, ..] = stats(&library);
    assert_eq!(captured, exits as i64 + 1);
    assert_eq!(launched, f * 2 * exits as i64 - (exits as i64 + 1));
}

#[test]
fn without_links_every_tensor_is_copied() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut trt = load_chain(&set, &options(&library)).unwrap();
    let n = head_state_len(&set);
    run_all(&mut trt, 2, n);
    let (htod, dtoh) = copies_per_frame(&set);
    let [.., got_htod, got_dtoh] = stats(&library);
    assert_eq!((got_htod, got_dtoh), (2 * htod, 2 * dtoh));
    // After the first run the addresses are fixed (graphs hold them).
    assert_eq!(trt.keep_between_segments_on_device(|_, _| false), 0);
    let mut reference = reference_chain(&set);
    assert_eq!(run_all(&mut trt, 2, n), run_all(&mut reference, 2, n));
}

#[test]
fn outputs_the_host_reads_stay_copied() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut trt = load_chain(&set, &options(&library)).unwrap();
    assert_eq!(
        trt.keep_between_segments_on_device(|i, _| i == 0),
        set.manifest.exits.len() - 2
    );
    let k = trt.output_index(0, "hidden0").unwrap();
    assert!(!trt.output_on_device(0, k));
    let mut reference = reference_chain(&set);
    let n = head_state_len(&set);
    assert_eq!(run_all(&mut trt, 2, n), run_all(&mut reference, 2, n));
}

#[test]
fn an_engine_tensorrt_cannot_capture_runs_without_a_graph() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut m = set.manifest.clone();
    let path = dir.path().join(&m.exits[1].artifact);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text + "capture no\n").unwrap();
    m.exits[1].sha256 = sha256_file(&path).unwrap();
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    let mut trt = load_chain(&set, &options(&library)).unwrap();
    let mut reference = reference_chain(&set);
    let n = head_state_len(&set);
    assert_eq!(run_all(&mut trt, 3, n), run_all(&mut reference, 3, n));
    let [_, _, executed, _, captured, launched, ..] = stats(&library);
    let exits = set.manifest.exits.len() as i64;
    assert_eq!(executed, 3 * 2 * exits);
    // Every engine but segment 1 replays a graph from its second run;
    // segment 1 enqueues on each of its three.
    assert_eq!(captured, exits);
    assert_eq!(launched, 3 * 2 * exits - (exits + 1) - 2);
}

#[test]
fn eager_runs_capture_no_graph() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let opts = Options {
        eager: true,
        ..options(&library)
    };
    let mut trt = load_chain(&set, &opts).unwrap();
    let mut reference = reference_chain(&set);
    let n = head_state_len(&set);
    assert_eq!(run_all(&mut trt, 2, n), run_all(&mut reference, 2, n));
    let [_, _, executed, _, captured, launched, ..] = stats(&library);
    assert_eq!(executed, 2 * 2 * set.manifest.exits.len() as i64);
    assert_eq!((captured, launched), (0, 0));
}

#[test]
fn one_scratch_as_large_as_the_largest_context_serves_every_exit() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let chain = load_chain(&set, &options(&library)).unwrap();
    let m = &set.manifest;
    let mut tensors = 0i64;
    let mut tensor_bytes = 0i64;
    let mut largest = 0usize;
    for (i, seg) in m.exits.iter().enumerate() {
        for t in seg.inputs.iter().chain(&seg.outputs) {
            tensors += 1;
            tensor_bytes += t.bytes() as i64;
        }
        largest = largest.max(scratch(Role::Segment(i), &seg.outputs));
    }
    let head = m.head.as_ref().unwrap();
    for t in head.inputs.iter().chain(&head.outputs) {
        tensors += 1;
        tensor_bytes += t.bytes() as i64;
    }
    largest = largest.max(scratch(Role::Head, &head.outputs));
    let [allocations, bytes, ..] = stats(&library);
    assert_eq!(
        allocations,
        tensors + 1,
        "one buffer per tensor, one scratch"
    );
    assert_eq!(bytes, tensor_bytes + largest as i64);
    drop(chain);
    assert_eq!(
        stats(&library)[..2],
        [0, 0],
        "everything freed with the chain"
    );
}

fn reference_chain(set: &EngineSet) -> Chain {
    Chain::with_engines(set, |_, _, inputs, outputs| {
        Ok(Box::new(Reference {
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        }))
    })
    .unwrap()
}

#[test]
fn an_input_filled_on_the_device_is_used_instead_of_the_host_copy() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut trt = load_chain(&set, &options(&library)).unwrap();
    let mut reference = reference_chain(&set);
    for (k, (a, b)) in trt
        .inputs_mut()
        .iter_mut()
        .zip(reference.inputs_mut())
        .enumerate()
    {
        let p = pattern(a.len(), 40 + k as u32);
        a.copy_from_slice(&p);
        b.copy_from_slice(&p);
    }
    // The producer (the CUDA preprocessing on a GPU) writes input 0 in
    // device memory; the double's device memory is host memory.
    let n = trt.inputs_mut()[0].len();
    let image = pattern(n, 99);
    let dev = trt.device_input(0).unwrap();
    assert_eq!(dev.bytes, n * 4);
    // SAFETY: `dev` is a live allocation of `n` f32s (the double's).
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), dev.address as *mut f32, n) };
    // Stale host data must not overwrite it.
    trt.inputs_mut()[0].fill(f32::NAN);
    reference.inputs_mut()[0].copy_from_slice(&image);
    trt.run_exit(0).unwrap();
    reference.run_exit(0).unwrap();
    assert!(trt.feature(0).iter().all(|v| v.is_finite()));
    assert_eq!(trt.feature(0), reference.feature(0));
    // The CPU backend has no device buffers: the host input stays.
    let (_d, cpu) = built_tiny();
    let mut cpu = offramp_engines_cpu::load_chain(&cpu).unwrap();
    assert_eq!(cpu.device_input(0), None);
}

#[test]
fn device_time_is_the_time_between_the_events() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut chain = load_chain(&set, &options(&library)).unwrap();
    chain.run_exit(0).unwrap();
    chain.run_exit(1).unwrap();
    let s = chain.take_device_seconds().unwrap();
    assert!((s - 2.0 * COST_US as f32 * 1e-6).abs() < 1e-9, "{s}");
    assert_eq!(chain.take_device_seconds(), None);
}

#[test]
fn plans_of_another_tensorrt_version_are_refused_naming_both() {
    let (dir, set) = orin_set();
    let library = fake_library(dir.path(), 100001, Some(("Orin", 8, 7)));
    let e = load_err(&set, &options(&library));
    assert!(
        e.contains("manifest.toml: field `build.tensorrt_version`"),
        "{e}"
    );
    assert!(e.contains("built with TensorRT 10.3.0"), "{e}");
    assert!(e.contains("this machine has TensorRT 10.0.1"), "{e}");
    assert!(e.contains("offramp build --backend tensorrt"), "{e}");
    // The manifest agrees with the library, the plan itself does not:
    // TensorRT's own refusal, naming the plan.
    let (dir, set) = double_set("10.3.0", 100001, ORIN);
    let library = orin_library(dir.path());
    let e = load_err(&set, &options(&library));
    assert!(
        e.contains("segment0.plan: cannot be loaded by the tensorrt backend"),
        "{e}"
    );
    assert!(e.contains("Serialization"), "{e}");
}

#[test]
fn a_library_of_another_major_is_refused_by_the_shim() {
    let (dir, set) = double_set("11.1.0", 110100, ORIN);
    let library = fake_library(dir.path(), 110100, Some(("Orin", 8, 7)));
    let e = load_err(&set, &options(&library));
    assert!(
        e.contains("is TensorRT 11.x but this shim was built against 10.x headers"),
        "{e}"
    );
    assert!(e.contains("offramp build-shim"), "{e}");
}

#[test]
fn plans_for_another_gpu_are_refused_naming_both() {
    let (dir, set) = orin_set();
    let library = fake_library(dir.path(), 100300, Some(("NVIDIA H100 80GB HBM3", 9, 0)));
    let e = load_err(&set, &options(&library));
    assert!(e.contains("field `build.target_device`"), "{e}");
    assert!(e.contains("\"Orin (compute 8.7)\""), "{e}");
    assert!(e.contains("\"NVIDIA H100 80GB HBM3 (compute 9.0)\""), "{e}");
    let library = fake_library(dir.path(), 100300, None);
    let e = load_err(&set, &options(&library));
    assert!(e.contains("no CUDA-capable device"), "{e}");
}

#[test]
fn a_corrupt_plan_is_refused_naming_it() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut m = set.manifest.clone();
    let path = dir.path().join(&m.exits[1].artifact);
    std::fs::write(&path, b"\x7fELF not a plan at all").unwrap();
    m.exits[1].sha256 = sha256_file(&path).unwrap();
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    let e = load_err(&set, &options(&library));
    assert!(
        e.contains("segment1.plan: cannot be loaded by the tensorrt backend"),
        "{e}"
    );
    assert!(e.contains("Magic tag does not match"), "{e}");
}

/// Rewrites segment 1's plan with `edit` applied to its text.
fn with_plan(edit: impl Fn(String) -> String) -> String {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let mut m = set.manifest.clone();
    let path = dir.path().join(&m.exits[1].artifact);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    m.exits[1].sha256 = sha256_file(&path).unwrap();
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    load_err(&set, &options(&library))
}

#[test]
fn a_plan_whose_tensors_differ_from_the_manifest_is_refused_naming_the_tensor() {
    let (_, set) = orin_set();
    let seg = &set.manifest.exits[1];
    let out = &seg.outputs[0];
    let dims: Vec<String> = out.shape.iter().map(usize::to_string).collect();
    let decl = format!("output {} 0 {}", out.name, dims.join(" "));
    // A wrong shape.
    let e = with_plan(|t| t.replace(&decl, &format!("output {} 0 1 3", out.name)));
    assert!(e.contains("segment1.plan"), "{e}");
    assert!(
        e.contains(&format!("output {:?} is dtype 0 shape [1, 3]", out.name)),
        "{e}"
    );
    // fp16 IO.
    let e = with_plan(|t| t.replace(&decl, &format!("output {} 1 {}", out.name, dims.join(" "))));
    assert!(e.contains("is dtype 1"), "{e}");
    assert!(e.contains("keep IO in fp32"), "{e}");
    // A tensor under another name.
    let e = with_plan(|t| t.replace(&format!(" {} ", out.name), " renamed "));
    assert!(
        e.contains(&format!("the plan has no output named {:?}", out.name)),
        "{e}"
    );
}

#[test]
fn a_missing_or_foreign_shim_or_library_is_a_clear_error() {
    let (dir, set) = orin_set();
    let library = orin_library(dir.path());
    let e = load_err(
        &set,
        &Options {
            shim: Some("/nonexistent/libofframp_trt_shim.so".into()),
            library: Some(library.clone()),
            eager: false,
        },
    );
    assert!(e.contains("the tensorrt backend is not available"), "{e}");
    assert!(
        e.contains("cannot open the TensorRT shim /nonexistent/libofframp_trt_shim.so"),
        "{e}"
    );
    let e = load_err(
        &set,
        &Options {
            shim: Some("libm.so.6".into()),
            library: Some(library.clone()),
            eager: false,
        },
    );
    assert!(
        e.contains("libm.so.6 is not an offramp TensorRT shim"),
        "{e}"
    );
    assert!(e.contains("ofr_trt_abi_version"), "{e}");
    let e = load_err(&set, &options(Path::new("/nonexistent/libnvinfer.so.10")));
    assert!(
        e.contains("cannot open /nonexistent/libnvinfer.so.10"),
        "{e}"
    );
    let not_trt = dir.path().join("libnotnvinfer.so");
    std::fs::write(&not_trt, "something else\n").unwrap();
    let e = load_err(&set, &options(&not_trt));
    assert!(e.contains("lacks getInferLibVersion"), "{e}");
}

#[test]
fn without_a_shim_the_error_says_how_to_build_one() {
    // No OFFRAMP_TRT_SHIM in the test environment and no shim next to
    // the test binary or in /opt/offramp/lib.
    if std::env::var_os("OFFRAMP_TRT_SHIM").is_some()
        || Path::new("/opt/offramp/lib/libofframp_trt_shim.so").exists()
    {
        return;
    }
    let (_dir, set) = orin_set();
    let e = load_chain(&set, &Options::from_env())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("libofframp_trt_shim.so) was not found"), "{e}");
    assert!(e.contains("offramp build-shim"), "{e}");
}

#[test]
fn the_version_checks_name_both_sides() {
    let (_dir, set) = orin_set();
    check_version(&set, TrtVersion::parse("10.3.0").unwrap()).unwrap();
    let (_dir, cpu) = built_tiny();
    let e = check_version(&cpu, TrtVersion::parse("10.3.0").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("field `build.tensorrt_version`: missing"), "{e}");
    check_device(&set, ORIN).unwrap();
}
