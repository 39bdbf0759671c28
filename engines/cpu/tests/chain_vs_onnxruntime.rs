//! The CPU backend: its chain computes what onnxruntime computes, within 1e-5,
//! and its per-operator profile accounts for its plan.

// One copy of the engine tests' helpers, kept with the builder's tests.
#[path = "../../build/tests/common/mod.rs"]
mod common;
use common::*;
use offramp_engines::BackendKind;
use offramp_engines_cpu::load_chain;
use std::process::Command;

#[test]
#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
fn chain_matches_onnxruntime() {
    let (dir, set) = built_tiny();
    let m = &set.manifest;
    let mut chain = load_chain(&set).unwrap();
    assert_eq!(chain.exits(), 3);

    let state_len = m.state_len();
    let head = m.head.as_ref().unwrap();
    let mut flat = Vec::new();
    for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
        let v = pattern(buf.len(), 11 + k as u32);
        buf.copy_from_slice(&v);
        flat.extend_from_slice(&v);
    }
    let state = pattern(state_len, 99);
    flat.extend_from_slice(&state);

    let mut ours = Vec::new();
    for i in 0..chain.exits() {
        chain.run_exit(i).unwrap();
        for k in 0..m.exits[i].outputs.len() {
            ours.extend_from_slice(chain.exit_output(i, k));
        }
        let (action, next) = chain.run_head(i, &state).unwrap();
        // Head outputs in manifest order.
        let (a, s) = (action.to_vec(), next.to_vec());
        for spec in &head.outputs {
            if spec.name == head.action_output {
                ours.extend_from_slice(&a);
            } else {
                ours.extend_from_slice(&s);
            }
        }
    }

    let input = dir.path().join("in.f32");
    let output = dir.path().join("out.f32");
    f32s_to_file(&input, &flat);
    let script = repo().join("tools/onnx/ort_chain.py");
    let run = Command::new(python())
        .arg(&script)
        .arg("--onnx")
        .arg(tiny_onnx())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("start python (set OFFRAMP_PYTHON, or run scripts/test.sh)");
    assert!(
        run.status.success(),
        "onnxruntime reference failed (needs `pip install onnxruntime numpy`; scripts/test.sh sets it up): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let reference: Vec<f32> = f32s_from_file(&output);
    assert_eq!(reference.len(), ours.len());
    let worst = max_abs_diff(&ours, &reference);
    assert!(worst <= 1e-5, "max |tract - onnxruntime| = {worst:e}");
    // Not vacuous: the outputs are not all zero and exits differ.
    assert!(ours.iter().any(|v| v.abs() > 0.1));
    let a0 = chain.run_head(0, &state).unwrap().0.to_vec();
    let a2 = chain.run_head(2, &state).unwrap().0.to_vec();
    assert_ne!(a0, a2);
    eprintln!(
        "max |tract - onnxruntime| over {} values: {worst:e}",
        ours.len()
    );
}

#[test]
fn manifest_records_costs_and_build_info() {
    let (_dir, set) = built_tiny();
    let m = &set.manifest;
    assert_eq!(m.model, "tiny-test");
    assert_eq!(m.build.backend, BackendKind::Cpu);
    assert_eq!(
        m.build.tools.get("onnx_opset").map(String::as_str),
        Some("17")
    );
    // Every segment has the same block; segment 0 adds the patch embedding.
    assert!(m.exits[0].cost.macs > m.exits[1].cost.macs);
    assert_eq!(m.exits[1].cost.macs, m.exits[2].cost.macs);
    // One block of D=32 over 17 tokens has 157,760 matmul MACs: qkv
    // 17·32·96 + scores 2·17·17·16 + values 2·17·17·16 + proj 17·32·32 + mlp
    // 2·17·32·64. tract's cost model also counts the element-wise FMAs of
    // LayerNorm, GELU and the softmax scaling (178,532 in all).
    let macs = m.exits[1].cost.macs;
    assert!((157_760..=157_760 * 115 / 100).contains(&macs), "{macs}");
    assert_eq!(
        m.cumulative_macs(1),
        m.exits[0].cost.macs + m.exits[1].cost.macs + 2 * m.head_macs()
    );
    // qkv 32·96+96, proj 32·32+32, mlp 32·64+64 + 64·32+32, two LayerNorms
    // 4·32, and four scalar constants (GELU, attention scale).
    assert_eq!(m.exits[1].cost.params, 8_548);
    assert!(m.exits[1].cost.peak_activation_bytes >= 17 * 96 * 4);
    assert!(m.head_macs() > 0);
}

#[test]
fn op_times_account_for_every_node_and_leave_the_engine_as_it_was() {
    use offramp_engines::Engine;
    use offramp_engines_cpu::CpuEngine;
    let (_dir, set) = built_tiny();
    let exit = &set.manifest.exits[0];
    let mut e = CpuEngine::load(
        &set.artifact_path(&exit.artifact),
        &exit.inputs,
        &exit.outputs,
    )
    .unwrap();
    let ins: Vec<Vec<f32>> = exit
        .inputs
        .iter()
        .enumerate()
        .map(|(k, s)| pattern(s.elements(), 3 + k as u32))
        .collect();
    let in_refs: Vec<&[f32]> = ins.iter().map(Vec::as_slice).collect();
    let run = |e: &mut CpuEngine| {
        let mut outs: Vec<Vec<f32>> = exit
            .outputs
            .iter()
            .map(|s| vec![0.0; s.elements()])
            .collect();
        let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        e.run(&in_refs, &mut refs).unwrap();
        outs
    };
    let before = run(&mut e);
    let ops = e.op_times(20).unwrap();
    // Node counts are per run, not summed over the runs.
    let nodes = |ops: &[offramp_engines_cpu::OpTime]| {
        ops.iter()
            .map(|o| (o.op.clone(), o.nodes))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(nodes(&ops), nodes(&e.op_times(1).unwrap()));
    assert!(e.op_times(0).unwrap().is_empty());
    // Every kind once, slowest first, each with its nodes and some time.
    assert!(!ops.is_empty());
    assert!(ops.windows(2).all(|w| w[0].us >= w[1].us), "{ops:?}");
    assert!(ops.iter().all(|o| o.nodes >= 1 && o.us > 0.0), "{ops:?}");
    let names: std::collections::BTreeSet<_> = ops.iter().map(|o| &o.op).collect();
    assert_eq!(names.len(), ops.len(), "{ops:?}");
    assert!(ops.iter().any(|o| o.op.contains("MatMul")), "{ops:?}");
    // The engine still computes the same outputs from the same inputs.
    assert_eq!(run(&mut e), before);
}
