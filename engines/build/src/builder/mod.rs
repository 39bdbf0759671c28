//! Turning ONNX segments into an engine set (`offramp build`).
//!
//! The input directory holds the segments, the head and a `model.toml` that
//! says which file is which:
//!
//! ```toml
//! model = "demo-vla"
//! exits = ["segment0.onnx", "segment1.onnx"]
//! feature = "feature"          # the output of each segment the head reads
//! [head]
//! artifact = "head.onnx"
//! feature_input = "feature"
//! state_input = "h_in"
//! state_output = "h_out"
//! action_output = "action"
//! [criterion]
//! kind = "action-consistency"
//! continuous_dims = [0, 1]
//! ```
//!
//! Without a head, `action_output` names each segment's action instead of
//! `feature` and `[head]`; with `kind = "learned"`, `confidence_output`
//! names each segment's exit confidence.
//!
//! Tensor names, shapes and costs come from the graphs themselves.
//!
//! INT8 needs a scale for every quantized tensor. TensorRT gets them from a
//! calibration cache (`--int8-calibration-cache`) or from QuantizeLinear /
//! DequantizeLinear nodes in the graphs; without either its scales are
//! placeholders and the plan computes nonsense, so [`build`] refuses INT8
//! before writing anything unless every graph has one or the other.
//!
//! Here: the source description and the build itself. Beside it: `int8`
//! (where INT8 scales come from, refused before anything is built),
//! `trtexec` (the TensorRT builder), `instruction` (token-id instructions
//! through the model's tokenizer) and `device` (the target device the
//! manifest records).

mod device;
mod instruction;
mod int8;
pub(crate) mod prepare;
mod source;
mod trtexec;

pub use device::parse_nvidia_smi;
pub use source::check_model_toml;
pub use trtexec::parse_trtexec_version;

use crate::analyze::{analyze, Analysis};
use crate::{invalid, io};
use device::{cpu_name, gpu_name};
use instruction::tokenize_instructions;
use int8::int8_calibration;
use offramp_engines::manifest::{
    BackendKind, BuildInfo, Head, Manifest, Precision, Segment, FORMAT_VERSION,
};
use offramp_engines::{sha256_file, EngineSet, Error, Result};
use prepare::prepare;
use source::{read_source, SourceModel};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trtexec::Trtexec;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub onnx_dir: PathBuf,
    pub out_dir: PathBuf,
    pub backend: BackendKind,
    pub precision: Precision,
    /// TensorRT INT8 calibration cache (`--precision int8` only): the
    /// per-tensor scales TensorRT reads instead of calibrating. Required for
    /// INT8 unless every graph carries its own QuantizeLinear /
    /// DequantizeLinear scales.
    pub int8_calibration_cache: Option<PathBuf>,
    /// Version string of the offramp doing the build.
    pub offramp_version: String,
}

/// Progress reported while building.
#[derive(Debug, Clone)]
pub enum Progress {
    /// `total` artifacts will be processed.
    Start {
        total: usize,
    },
    /// Starting on one artifact.
    Artifact {
        name: String,
    },
    Done,
}

/// One row of the summary table.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub artifact: String,
    pub macs: u64,
    pub cumulative_macs: u64,
    pub params: u64,
    pub peak_activation_bytes: u64,
}

/// Builds an engine set and returns its manifest and summary rows. The set is
/// re-opened (every check of [`EngineSet::open`]) and, for the CPU backend,
/// every engine is loaded once before this returns.
///
/// The set is built in a staging directory beside `out_dir` and its files
/// move into `out_dir` only once all of it built, checked and (CPU) loaded:
/// a refused build leaves `out_dir` as it was (absent, or the set it held).
pub fn build(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Manifest, Vec<Row>)> {
    let out = &opts.out_dir;
    let stage = match out.file_name() {
        Some(name) => out.with_file_name(format!(
            ".{}.building-{}",
            name.to_string_lossy(),
            std::process::id()
        )),
        None => out.join(format!(".building-{}", std::process::id())),
    };
    let staged = BuildOptions {
        out_dir: stage.clone(),
        ..opts.clone()
    };
    // TensorRT's timing cache from an earlier build speeds this one up.
    let cache = out.join("timing.cache");
    if cache.is_file() {
        std::fs::create_dir_all(&stage).map_err(io(&stage))?;
        std::fs::copy(&cache, stage.join("timing.cache")).map_err(io(&cache))?;
    }
    let in_place = match (opts.onnx_dir.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let built = build_into(&staged, in_place, progress);
    let moved = built.and_then(|(manifest, rows)| {
        std::fs::create_dir_all(out).map_err(io(out))?;
        // The manifest last: until it moves, the old set (if any) stays
        // the one its manifest describes.
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&stage)
            .map_err(io(&stage))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(io(&stage))?;
        names.sort_by_key(|n| n == "manifest.toml");
        for name in names {
            let dst = out.join(&name);
            std::fs::rename(stage.join(&name), &dst).map_err(io(&dst))?;
        }
        Ok((manifest, rows))
    });
    let _ = std::fs::remove_dir_all(&stage);
    moved
}

/// [`build`] into `opts.out_dir` (the staging directory).
fn build_into(
    opts: &BuildOptions,
    in_place: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Manifest, Vec<Row>)> {
    let (source_path, src, problems) = read_source(&opts.onnx_dir)?;
    if opts.backend.runs_onnx() && opts.precision != Precision::Fp32 {
        return Err(invalid(
            &source_path,
            "precision",
            format!(
                "the {} backend runs fp32 only, not {:?}",
                opts.backend.name(),
                opts.precision
            ),
        ));
    }
    // Every refusal comes before the output directory is created: a refused
    // build leaves nothing behind.
    let calibration = int8_calibration(opts, &src, &source_path)?;
    let trt = match opts.backend {
        BackendKind::Tensorrt => Some(Trtexec::find()?),
        BackendKind::Cpu | BackendKind::Onnxruntime => None,
    };
    if let (Some(t), Some(c)) = (&trt, &calibration) {
        c.check_version(t)?;
    }
    // Every graph read and checked against the description (all problems
    // at once), and renamed or reshaped where the description says so.
    let work = opts.out_dir.join(".prepared");
    let prepared = prepare(
        &opts.onnx_dir,
        &source_path,
        &src,
        problems,
        &work,
        in_place,
    );
    let built = prepared
        .and_then(|p| build_prepared(opts, &trt, calibration, &source_path, src, p, progress));
    let _ = std::fs::remove_dir_all(&work);
    built
}

/// [`build_into`] from the prepared graphs.
fn build_prepared(
    opts: &BuildOptions,
    trt: &Option<Trtexec>,
    calibration: Option<int8::Calibration>,
    source_path: &Path,
    mut src: SourceModel,
    prepared: prepare::Prepared,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Manifest, Vec<Row>)> {
    if let Some(p) = src.preprocess.as_mut() {
        tokenize_instructions(&opts.onnx_dir, source_path, p, &prepared.paths[0])?;
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| Error::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    progress(Progress::Start {
        total: src.exits.len() + src.head.is_some() as usize,
    });

    let mut tools = BTreeMap::new();
    let mut opset = None;
    let mut produce = |onnx: &Path, file: &str| -> Result<(Analysis, String, String)> {
        progress(Progress::Artifact {
            name: file.to_string(),
        });
        let a = analyze(onnx)?;
        opset = Some(a.opset);
        let artifact = match trt {
            None => {
                let dst = opts.out_dir.join(file);
                std::fs::copy(onnx, &dst).map_err(|source| Error::Io {
                    path: dst.clone(),
                    source,
                })?;
                file.to_string()
            }
            Some(t) => t.build(
                onnx,
                &opts.out_dir,
                opts.precision,
                calibration.as_ref().map(|c| c.path.as_path()),
            )?,
        };
        let sha = sha256_file(&opts.out_dir.join(&artifact))?;
        Ok((a, artifact, sha))
    };

    let mut exits = Vec::with_capacity(src.exits.len());
    let mut inputs = Vec::new();
    for (i, e) in src.exits.iter().enumerate() {
        let (a, artifact, sha256) = produce(&prepared.paths[i], &e.file)?;
        if i == 0 {
            inputs = a.inputs.clone();
        }
        exits.push(Segment {
            name: format!("exit{i}"),
            artifact,
            sha256,
            inputs: a.inputs,
            outputs: a.outputs,
            feature: prepared.feature[i].clone(),
            action: prepared.action[i].clone(),
            confidence: prepared.confidence[i].clone(),
            cost: a.cost,
        });
    }
    let head = match src.head {
        Some(h) => {
            let (a, artifact, sha256) = produce(&prepared.paths[src.exits.len()], &h.artifact)?;
            Some(Head {
                artifact,
                sha256,
                inputs: a.inputs,
                outputs: a.outputs,
                feature_input: h.feature_input,
                state_input: h.state_input,
                state_output: h.state_output,
                action_output: h.action_output,
                cache: h.cache,
                cost: a.cost,
            })
        }
        None => None,
    };
    if let Some(o) = opset {
        tools.insert("onnx_opset".to_string(), o.to_string());
    }
    let (target_device, tensorrt_version) = match trt {
        None => {
            tools.insert("tract".to_string(), TRACT_VERSION.to_string());
            (cpu_name(), None)
        }
        Some(t) => {
            tools.insert("tensorrt".to_string(), t.version.clone());
            (gpu_name(), Some(t.version.clone()))
        }
    };
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model: src.model,
        build: BuildInfo {
            backend: opts.backend,
            precision: opts.precision,
            offramp_version: opts.offramp_version.clone(),
            tools,
            target_device,
            tensorrt_version,
        },
        inputs,
        exits,
        head,
        action: src.action,
        criterion: src.criterion,
        preprocess: src.preprocess,
        offload: src.offload,
    };
    let set = EngineSet::write_manifest(&opts.out_dir, &manifest)?;
    // The segments load as the robot loads them (an onnxruntime set's are
    // the same ONNX files: tract reads them here, onnxruntime on the robot).
    if opts.backend.runs_onnx() {
        offramp_engines_cpu::load_chain(&set)?;
    }
    progress(Progress::Done);
    let rows = summary(&set.manifest);
    Ok((set.manifest, rows))
}

/// The summary table of a manifest, one row per exit plus the head.
pub fn summary(m: &Manifest) -> Vec<Row> {
    let mut rows: Vec<Row> = m
        .exits
        .iter()
        .enumerate()
        .map(|(i, s)| Row {
            name: s.name.clone(),
            artifact: s.artifact.clone(),
            macs: s.cost.macs,
            cumulative_macs: m.cumulative_macs(i),
            params: s.cost.params,
            peak_activation_bytes: s.cost.peak_activation_bytes,
        })
        .collect();
    if let Some(h) = &m.head {
        rows.push(Row {
            name: "head".into(),
            artifact: h.artifact.clone(),
            macs: h.cost.macs,
            cumulative_macs: 0,
            params: h.cost.params,
            peak_activation_bytes: h.cost.peak_activation_bytes,
        });
    }
    rows
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The summary table `offramp build` prints: per exit MACs, FLOPs (2 × MACs), cumulative cost with
/// the head, parameters and peak activation memory.
pub fn summary_table(rows: &[Row], m: &Manifest) -> String {
    let full = m.cumulative_macs(m.exits.len().saturating_sub(1)).max(1);
    let mut s = format!(
        "{:<8} {:<16} {:>10} {:>10} {:>14} {:>8} {:>10} {:>12}\n",
        "exit", "artifact", "MACs", "FLOPs", "cum. w/ head", "of full", "params", "peak act."
    );
    for r in rows {
        let (cum, share) = if r.name == "head" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                human(r.cumulative_macs),
                format!("{:.0}%", 100.0 * r.cumulative_macs as f64 / full as f64),
            )
        };
        s += &format!(
            "{:<8} {:<16} {:>10} {:>10} {:>14} {:>8} {:>10} {:>12}\n",
            r.name,
            r.artifact,
            human(r.macs),
            human(2 * r.macs),
            cum,
            share,
            human(r.params),
            format!("{}B", human(r.peak_activation_bytes)),
        );
    }
    s
}

/// The tract version this build links (kept in step with Cargo.toml).
pub const TRACT_VERSION: &str = "0.23";
