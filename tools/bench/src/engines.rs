//! `offramp bench engines`: per-segment latency of the CPU backends (tract,
//! and offramp's onnxruntime backend where the library opens) against
//! onnxruntime from Python on the same files and, given a TensorRT build of
//! the same model, its plans, measured in one run. Prints JSON.

use anyhow::{bail, Context};
use offramp_engines::{Engine, EngineSet, TensorSpec};
use offramp_engines_cpu::{CpuEngine, OpTime};
use offramp_runtime::stats::Summary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct SegmentBench {
    pub artifact: String,
    pub macs: u64,
    pub tract_us: Summary,
    /// With `--ops`: where tract's time goes, by operator kind, slowest
    /// first (timed separately, after `tract_us`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tract_ops: Option<Vec<OpTime>>,
    pub onnxruntime_us: Option<OrtTimes>,
    /// tract p50 / onnxruntime p50.
    pub tract_over_onnxruntime: Option<f64>,
    /// offramp's onnxruntime backend ([`offramp_engines_onnxruntime`]) on
    /// the same file, back to back, and in chain order with cold caches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offramp_onnxruntime_us: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offramp_onnxruntime_chain_cold_us: Option<Summary>,
    /// offramp's onnxruntime backend p50 / onnxruntime's own (Python) p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offramp_onnxruntime_over_onnxruntime: Option<f64>,
    /// tract in chain order, as a robot runs a frame: every segment (and
    /// the head on its exit) one after another, the caches flushed between
    /// frames (the `tract_us` figures run one segment back to back, its
    /// weights hot in cache).
    pub chain_cold_us: Summary,
    /// The TensorRT plan of this segment: host wall time of a run (copies
    /// in, inference, copies out, synchronize)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorrt_us: Option<Summary>,
    /// ...and the GPU's time for the same, from CUDA events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorrt_device_us: Option<Summary>,
    /// tract p50 / TensorRT wall p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tract_over_tensorrt: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EngineBench {
    pub model: String,
    pub iters: usize,
    pub threads: usize,
    pub segments: Vec<SegmentBench>,
    /// Why there is no onnxruntime column, if there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnxruntime_missing: Option<String>,
    /// The library offramp's onnxruntime backend opened, or why it did not.
    pub offramp_onnxruntime: Result<String, String>,
}

/// tools/onnx/ort_bench.py, built into the binary and handed to Python with
/// `-c`: an installed offramp (a robot's bundle) has no source tree to find
/// it in.
const ORT_BENCH: &str = include_str!("../../onnx/ort_bench.py");

/// What tools/onnx/ort_bench.py reports per file, µs.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct OrtTimes {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

fn time_tract(
    path: &Path,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    iters: usize,
    ops: bool,
) -> anyhow::Result<(Summary, Option<Vec<OpTime>>)> {
    let mut e = CpuEngine::load(path, inputs, outputs)?;
    let t = time_engine(&mut e, inputs, outputs, iters)?;
    let ops = ops.then(|| e.op_times(iters)).transpose()?;
    Ok((t, ops))
}

/// `iters` runs of `e` back to back, after a tenth as warm-up.
fn time_engine(
    e: &mut dyn Engine,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    iters: usize,
) -> anyhow::Result<Summary> {
    let ins: Vec<Vec<f32>> = inputs.iter().map(|s| vec![0.1; s.elements()]).collect();
    let mut outs: Vec<Vec<f32>> = outputs.iter().map(|s| vec![0.0; s.elements()]).collect();
    let in_refs: Vec<&[f32]> = ins.iter().map(Vec::as_slice).collect();
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + iters / 10 {
        let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        let t = Instant::now();
        e.run(&in_refs, &mut out_refs)?;
        if i >= iters / 10 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Summary::of(&samples).context("no samples")
}

/// Bytes written between frames of the chain-order timing: more than any
/// last-level cache, so each frame starts with cold caches.
const FLUSH_BYTES: usize = 64 << 20;

/// Each segment's time (and the head's, on the last exit, last) when the
/// whole chain runs frame after frame with the caches flushed between
/// frames; `frames` frames after a tenth as warm-up.
fn time_chain_cold(
    set: &EngineSet,
    mut chain: offramp_engines::Chain,
    frames: usize,
) -> anyhow::Result<Vec<Summary>> {
    let n = chain.exits();
    let state = vec![0.0; set.manifest.state_len()];
    let head = set.manifest.head.is_some();
    let mut samples = vec![Vec::with_capacity(frames); n + head as usize];
    let mut flush = vec![0u8; FLUSH_BYTES];
    for f in 0..frames + frames / 10 {
        for (k, b) in flush.iter_mut().enumerate().step_by(64) {
            *b = b.wrapping_add(k as u8 | 1);
        }
        std::hint::black_box(&flush);
        for i in 0..n {
            let t = Instant::now();
            chain.run_exit(i)?;
            let dt = t.elapsed().as_secs_f64() * 1e6;
            let t = Instant::now();
            if head && i + 1 == n {
                chain.run_head(i, &state)?;
            }
            if f >= frames / 10 {
                samples[i].push(dt);
                if head && i + 1 == n {
                    samples[n].push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
    samples
        .iter()
        .map(|s| Summary::of(s).context("no samples"))
        .collect()
}

/// Wall and device time of each segment of a TensorRT set, the head last
/// (on the deepest exit's feature), `iters` runs each after a tenth as
/// warm-up.
#[cfg(feature = "tensorrt")]
fn time_tensorrt(
    dir: &Path,
    cpu: &EngineSet,
    iters: usize,
) -> anyhow::Result<Vec<(Summary, Summary)>> {
    use offramp_engines::BackendKind;
    let set = EngineSet::open(dir)?;
    let m = &set.manifest;
    if m.build.backend != BackendKind::Tensorrt {
        bail!("{}: --tensorrt takes a TensorRT engine set", dir.display());
    }
    if m.model != cpu.manifest.model || m.exits.len() != cpu.manifest.exits.len() {
        bail!(
            "{}: model {:?} with {} exits, but the CPU set is {:?} with {}",
            dir.display(),
            m.model,
            m.exits.len(),
            cpu.manifest.model,
            cpu.manifest.exits.len()
        );
    }
    let mut chain = offramp_runtime::backend::load_chain(&set, BackendKind::Tensorrt)?;
    // As the runtime runs it: hidden states stay on the GPU between
    // segments (only the features are read here).
    let kept = chain.keep_between_segments_on_device(|_, _| false);
    tracing::info!(tensors = kept, "kept on the GPU between segments");
    for input in chain.inputs_mut() {
        input.fill(0.1);
    }
    let state = vec![0.0f32; m.state_len()];
    let exits = chain.exits();
    for i in 0..exits {
        chain.run_exit(i)?;
    }
    let mut out = Vec::new();
    for part in 0..exits + m.head.is_some() as usize {
        let (mut wall, mut device) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
        for k in 0..iters + iters / 10 {
            let t = Instant::now();
            if part < exits {
                chain.run_exit(part)?;
            } else {
                chain.run_head(exits - 1, &state)?;
            }
            let w = t.elapsed().as_secs_f64() * 1e6;
            let d = chain.take_device_seconds();
            if k >= iters / 10 {
                wall.push(w);
                device.extend(d.map(|s| f64::from(s) * 1e6));
            }
        }
        out.push((
            Summary::of(&wall).context("no samples")?,
            Summary::of(&device).context("the TensorRT backend reported no device time")?,
        ));
    }
    Ok(out)
}

/// Times every segment of the CPU set `engines` with tract on `threads`
/// threads, and onnxruntime on as many intra-op threads (and a TensorRT
/// build of the same model, if given).
pub fn run(
    engines: &Path,
    tensorrt: Option<&Path>,
    iters: usize,
    ops: bool,
    python: &str,
    threads: usize,
) -> anyhow::Result<EngineBench> {
    let set = EngineSet::open(engines)?;
    offramp_engines_cpu::set_threads(threads)?;
    #[cfg(feature = "tensorrt")]
    let trt = tensorrt
        .map(|dir| time_tensorrt(dir, &set, iters))
        .transpose()?;
    #[cfg(not(feature = "tensorrt"))]
    let trt: Option<Vec<(Summary, Summary)>> = match tensorrt {
        Some(dir) => bail!(
            "{}: this offramp was built without the `tensorrt` feature",
            dir.display()
        ),
        None => None,
    };
    let m = &set.manifest;
    if !m.build.backend.runs_onnx() {
        bail!(
            "{}: bench engines compares CPU engine sets (ONNX artifacts)",
            engines.display()
        );
    }
    let mut parts: Vec<(PathBuf, &[TensorSpec], &[TensorSpec], u64)> = m
        .exits
        .iter()
        .map(|s| {
            (
                set.artifact_path(&s.artifact),
                &s.inputs[..],
                &s.outputs[..],
                s.cost.macs,
            )
        })
        .collect();
    if let Some(h) = &m.head {
        parts.push((
            set.artifact_path(&h.artifact),
            &h.inputs,
            &h.outputs,
            h.cost.macs,
        ));
    }

    // onnxruntime first, in its own process, then tract: same files, same run.
    let ort = std::process::Command::new(python)
        .arg("-c")
        .arg(ORT_BENCH)
        .arg("--iters")
        .arg(iters.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .args(parts.iter().map(|p| &p.0))
        .output();
    let (ort, missing): (BTreeMap<String, OrtTimes>, _) = match ort {
        Ok(o) if o.status.success() => (
            serde_json::from_slice(&o.stdout).context("onnxruntime bench output")?,
            None,
        ),
        Ok(o) => (
            BTreeMap::new(),
            Some(
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
                    .to_string(),
            ),
        ),
        Err(e) => (BTreeMap::new(), Some(format!("{python}: {e}"))),
    };
    if let Some(why) = &missing {
        tracing::warn!("no onnxruntime column: {why}");
    }
    let cold = time_chain_cold(&set, offramp_engines_cpu::load_chain(&set)?, iters)?;
    // offramp's onnxruntime backend, where the library opens.
    let options = offramp_engines_onnxruntime::Options::from_env(threads);
    // An optional column: a library that does not open, or a set it
    // refuses, leaves it out and says why.
    let mut rt = offramp_engines_onnxruntime::Runtime::get(options.library.as_deref())
        .map_err(|e| e.to_string());
    let ort_cold = match &rt {
        Ok(_) => match offramp_engines_onnxruntime::load_chain(&set, &options) {
            Ok(chain) => Some(time_chain_cold(&set, chain, iters)?),
            Err(e) => {
                rt = Err(e.to_string());
                None
            }
        },
        Err(_) => None,
    };
    if let Err(e) = &rt {
        tracing::warn!("no offramp onnxruntime column: {e}");
    }
    let mut segments = Vec::new();
    for (k, (path, ins, outs, macs)) in parts.iter().enumerate() {
        let (tract_us, tract_ops) = time_tract(path, ins, outs, iters, ops)?;
        let ort_us = ort.get(&path.display().to_string()).copied();
        let offramp_ort = match &rt {
            Ok(rt) => {
                let mut e =
                    offramp_engines_onnxruntime::OrtEngine::load(rt, path, ins, outs, threads)?;
                Some(time_engine(&mut e, ins, outs, iters)?)
            }
            Err(_) => None,
        };
        let (tensorrt_us, tensorrt_device_us) =
            trt.as_ref().and_then(|t| t.get(k).cloned()).unzip();
        segments.push(SegmentBench {
            artifact: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            macs: *macs,
            tract_over_onnxruntime: ort_us.map(|o| tract_us.p50 / o.p50_us),
            offramp_onnxruntime_over_onnxruntime: offramp_ort
                .zip(ort_us)
                .map(|(a, o)| a.p50 / o.p50_us),
            offramp_onnxruntime_us: offramp_ort,
            offramp_onnxruntime_chain_cold_us: ort_cold.as_ref().map(|c| c[k]),
            chain_cold_us: cold[k],
            tract_over_tensorrt: tensorrt_us.as_ref().map(|t| tract_us.p50 / t.p50),
            tensorrt_us,
            tensorrt_device_us,
            tract_us,
            tract_ops,
            onnxruntime_us: ort_us,
        });
    }
    Ok(EngineBench {
        model: m.model.clone(),
        iters,
        threads,
        segments,
        onnxruntime_missing: missing,
        offramp_onnxruntime: rt
            .map(|rt| format!("onnxruntime {} from {}", rt.version, rt.library.display())),
    })
}
