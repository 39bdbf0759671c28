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
mod trtexec;

pub use device::parse_nvidia_smi;
pub use trtexec::parse_trtexec_version;

use crate::analyze::{analyze, Analysis};
use device::{cpu_name, gpu_name};
use instruction::tokenize_instructions;
use int8::int8_calibration;
use offramp_engines::manifest::{
    ActionSpec, BackendKind, BuildInfo, Criterion, CriterionKind, Head, Manifest, OffloadSpec,
    Precision, Preprocess, Segment, FORMAT_VERSION,
};
use offramp_engines::{sha256_file, EngineSet, Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trtexec::Trtexec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceHead {
    artifact: String,
    feature_input: String,
    #[serde(default)]
    state_input: Option<String>,
    #[serde(default)]
    state_output: Option<String>,
    action_output: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceModel {
    model: String,
    exits: Vec<String>,
    /// With a `[head]`: the output of each segment the head reads.
    #[serde(default)]
    feature: Option<String>,
    /// Without a head: the output of each segment that is its action.
    #[serde(default)]
    action_output: Option<String>,
    /// The learned criterion: the output of each segment (but the last)
    /// that is its exit's confidence.
    #[serde(default)]
    confidence_output: Option<String>,
    #[serde(default)]
    head: Option<SourceHead>,
    #[serde(default)]
    action: ActionSpec,
    criterion: Criterion,
    #[serde(default)]
    preprocess: Option<Preprocess>,
    #[serde(default)]
    offload: Option<OffloadSpec>,
}

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

fn invalid(path: &Path, field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn read_source(dir: &Path) -> Result<(PathBuf, SourceModel)> {
    let path = dir.join("model.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let src = parse_source(dir, &path, &text)?;
    Ok((path, src))
}

/// Checks `text` as the `model.toml` in `dir`, as `offramp build` does
/// before it reads any graph.
pub fn check_model_toml(dir: &Path, text: &str) -> Result<()> {
    parse_source(dir, &dir.join("model.toml"), text).map(|_| ())
}

fn parse_source(dir: &Path, path: &Path, text: &str) -> Result<SourceModel> {
    let path = path.to_path_buf();
    let src: SourceModel = toml::from_str(text).map_err(|e| Error::SourceSyntax {
        path: path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    if src.exits.is_empty() {
        return Err(invalid(&path, "exits", "list at least one exit segment"));
    }
    // Every file it names lies beside it (and is written beside the
    // manifest): checked before anything is read or copied.
    let named = src
        .exits
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("exits[{i}]"), e))
        .chain(
            src.head
                .iter()
                .map(|h| ("head.artifact".to_string(), &h.artifact)),
        )
        .chain(
            src.preprocess
                .iter()
                .filter_map(|p| p.tokenizer.as_ref())
                .map(|t| ("preprocess.tokenizer".to_string(), t)),
        );
    for (field, name) in named {
        offramp_engines::join_inside(dir, name).map_err(|why| invalid(&path, &field, why))?;
    }
    match (&src.head, &src.feature, &src.action_output) {
        (Some(_), Some(_), None) | (None, None, Some(_)) => {}
        (Some(_), None, _) => {
            return Err(invalid(
                &path,
                "feature",
                "missing: a model with a [head] names the output of each segment the head reads",
            ))
        }
        (Some(_), Some(_), Some(_)) => {
            return Err(invalid(
                &path,
                "action_output",
                "a model with a [head] takes its actions from the head; drop action_output (or the [head])",
            ))
        }
        (None, _, None) => {
            return Err(invalid(
                &path,
                "action_output",
                "missing: without a [head], name the output of each segment that is its action",
            ))
        }
        (None, Some(_), Some(_)) => {
            return Err(invalid(
                &path,
                "feature",
                "a feature is what a head reads, and this model has no [head]",
            ))
        }
    }
    match (&src.confidence_output, src.criterion.kind) {
        (None, CriterionKind::Learned) => {
            return Err(invalid(
                &path,
                "confidence_output",
                "missing: the learned criterion reads each exit's confidence; name the output of each segment that is it",
            ))
        }
        (Some(_), k) if k != CriterionKind::Learned => {
            return Err(invalid(
                &path,
                "confidence_output",
                "only the learned criterion (criterion.kind = \"learned\") reads a confidence",
            ))
        }
        _ => {}
    }
    Ok(src)
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
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
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
    let built = build_into(&staged, progress);
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
    progress: &mut dyn FnMut(Progress),
) -> Result<(Manifest, Vec<Row>)> {
    let (source_path, mut src) = read_source(&opts.onnx_dir)?;
    if opts.backend == BackendKind::Cpu && opts.precision != Precision::Fp32 {
        return Err(invalid(
            &source_path,
            "precision",
            format!("the cpu backend runs fp32 only, not {:?}", opts.precision),
        ));
    }
    // Every refusal comes before the output directory is created: a refused
    // build leaves nothing behind.
    let calibration = int8_calibration(opts, &src, &source_path)?;
    let trt = match opts.backend {
        BackendKind::Tensorrt => Some(Trtexec::find()?),
        BackendKind::Cpu => None,
    };
    if let (Some(t), Some(c)) = (&trt, &calibration) {
        c.check_version(t)?;
    }
    if let Some(p) = src.preprocess.as_mut() {
        tokenize_instructions(&opts.onnx_dir, &source_path, p, &src.exits[0])?;
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
    let mut produce = |file: &str, field: &str| -> Result<(Analysis, String, String)> {
        progress(Progress::Artifact {
            name: file.to_string(),
        });
        let onnx = opts.onnx_dir.join(file);
        if !onnx.is_file() {
            return Err(Error::MissingArtifact {
                path: source_path.clone(),
                field: field.to_string(),
                artifact: onnx,
            });
        }
        let a = analyze(&onnx)?;
        opset = Some(a.opset);
        let artifact = match &trt {
            None => {
                let dst = opts.out_dir.join(file);
                // Building in place (out = onnx dir): copying a file onto
                // itself would truncate it.
                let same = match (dst.canonicalize(), onnx.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if !same {
                    std::fs::copy(&onnx, &dst).map_err(|source| Error::Io {
                        path: dst.clone(),
                        source,
                    })?;
                }
                file.to_string()
            }
            Some(t) => t.build(
                &onnx,
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
    for (i, file) in src.exits.iter().enumerate() {
        let (a, artifact, sha256) = produce(file, &format!("exits[{i}]"))?;
        if i == 0 {
            inputs = a.inputs.clone();
        }
        // The last exit always stops: it may have no confidence.
        let confidence = src
            .confidence_output
            .clone()
            .filter(|c| a.outputs.iter().any(|t| &t.name == c));
        exits.push(Segment {
            name: format!("exit{i}"),
            artifact,
            sha256,
            inputs: a.inputs,
            outputs: a.outputs,
            feature: src.feature.clone(),
            action: src.action_output.clone(),
            confidence,
            cost: a.cost,
        });
    }
    let head = match src.head {
        Some(h) => {
            let (a, artifact, sha256) = produce(&h.artifact, "head.artifact")?;
            Some(Head {
                artifact,
                sha256,
                inputs: a.inputs,
                outputs: a.outputs,
                feature_input: h.feature_input,
                state_input: h.state_input,
                state_output: h.state_output,
                action_output: h.action_output,
                cost: a.cost,
            })
        }
        None => None,
    };
    if let Some(o) = opset {
        tools.insert("onnx_opset".to_string(), o.to_string());
    }
    let (target_device, tensorrt_version) = match &trt {
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
    if opts.backend == BackendKind::Cpu {
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

/// The tract version this build links (kept in step with Cargo.toml).
pub const TRACT_VERSION: &str = "0.23";
