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

use crate::analyze::{analyze, Analysis};
use crate::manifest::{
    ActionSpec, BackendKind, BuildInfo, Criterion, CriterionKind, Head, Manifest, OffloadSpec,
    Precision, Preprocess, Segment, FORMAT_VERSION,
};
use crate::{sha256_file, Chain, EngineSet, Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

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
    let src: SourceModel = toml::from_str(&text).map_err(|e| Error::SourceSyntax {
        path: path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    if src.exits.is_empty() {
        return Err(invalid(&path, "exits", "list at least one exit segment"));
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
    Ok((path, src))
}

/// Builds an engine set and returns its manifest and summary rows. The set is
/// re-opened (every check of [`EngineSet::open`]) and, for the CPU backend,
/// every engine is loaded once before this returns.
pub fn build(
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
        Chain::load(&set, BackendKind::Cpu)?;
    }
    progress(Progress::Done);
    let rows = summary(&set.manifest);
    Ok((set.manifest, rows))
}

/// Turns `instruction_texts` into `instruction_ids` with the model's
/// `tokenizer.json`, padded to the instruction input's length L (read from
/// `first_segment`) with the tokenizer's pad id (0 if it sets none). A text
/// longer than L is refused: cutting an instruction short changes what it
/// says.
fn tokenize_instructions(
    dir: &Path,
    source_path: &Path,
    p: &mut Preprocess,
    first_segment: &str,
) -> Result<()> {
    let Some(file) = p.tokenizer.take() else {
        if !p.instruction_texts.is_empty() && p.instruction_ids.is_empty() {
            return Err(invalid(
                source_path,
                "preprocess.tokenizer",
                "instruction_texts need the tokenizer.json that turns them into ids",
            ));
        }
        return Ok(());
    };
    if !p.instruction_ids.is_empty() {
        return Err(invalid(
            source_path,
            "preprocess.instruction_ids",
            "give the ids or a tokenizer with instruction_texts, not both",
        ));
    }
    if p.instruction_texts.is_empty() {
        return Err(invalid(
            source_path,
            "preprocess.instruction_texts",
            "a tokenizer needs the instruction texts to tokenize, instruction 0 first",
        ));
    }
    let name = p.instruction.as_deref().unwrap_or_default();
    let inputs = analyze(&dir.join(first_segment))?.inputs;
    let Some(len) = inputs
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| match t.shape.as_slice() {
            [1, l] => Some(*l),
            _ => None,
        })
    else {
        return Err(invalid(
            source_path,
            "preprocess.instruction",
            format!("{name:?} is not a [1, L] input of segment 0, for the token ids"),
        ));
    };
    let path = dir.join(&file);
    let tok = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
        invalid(
            source_path,
            "preprocess.tokenizer",
            format!("{}: not a readable tokenizer.json: {e}", path.display()),
        )
    })?;
    let pad = tok.get_padding().map_or(0, |pp| i64::from(pp.pad_id));
    let mut ids = Vec::with_capacity(p.instruction_texts.len());
    for (k, text) in p.instruction_texts.iter().enumerate() {
        // With the special tokens (BOS, CLS, EOS) the tokenizer's post-
        // processor adds: what `tokenizer(text)` gives in Python, and so
        // what the model was trained on.
        let enc = tok.encode(text.as_str(), true).map_err(|e| {
            invalid(
                source_path,
                &format!("preprocess.instruction_texts[{k}]"),
                format!("{text:?}: {e}"),
            )
        })?;
        // Without padding or truncation the ids are the text's own.
        let own: Vec<i64> = enc
            .get_ids()
            .iter()
            .zip(enc.get_attention_mask())
            .filter(|(_, m)| **m == 1)
            .map(|(id, _)| i64::from(*id))
            .collect();
        if own.len() > len || !enc.get_overflowing().is_empty() {
            return Err(invalid(
                source_path,
                &format!("preprocess.instruction_texts[{k}]"),
                format!(
                    "{text:?} is {} tokens or more; {name:?} takes {len}",
                    own.len().max(len + 1)
                ),
            ));
        }
        let mut row = own;
        row.resize(len, pad);
        ids.push(row);
    }
    p.instruction_ids = ids;
    Ok(())
}

/// The option that names a calibration cache, for error messages.
fn cache_option(path: &Path) -> String {
    format!("--int8-calibration-cache {}", path.display())
}

/// A TensorRT INT8 calibration cache that exists and has a cache's header.
#[derive(Debug)]
struct Calibration {
    path: PathBuf,
    /// The TensorRT version that wrote it, as TensorRT encodes it (100300).
    version: u64,
}

impl Calibration {
    /// Reads the header, `TRT-<version>-<calibrator>` (what
    /// `IInt8Calibrator::writeCalibrationCache` writes, e.g.
    /// `TRT-100300-EntropyCalibration2`), so that a wrong file is named here
    /// rather than failing, or being ignored, inside trtexec.
    fn open(path: &Path) -> Result<Self> {
        let refuse = |message: String| Error::BuildOption {
            option: cache_option(path),
            message,
        };
        let file = std::fs::File::open(path)
            .map_err(|e| refuse(format!("cannot read the calibration cache: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| refuse(format!("cannot read the calibration cache: {e}")))?;
        if meta.is_dir() {
            return Err(refuse(
                "is a directory; pass the calibration cache file itself".into(),
            ));
        }
        let mut first = Vec::new();
        BufReader::new(file)
            .take(256)
            .read_until(b'\n', &mut first)
            .map_err(|e| refuse(format!("cannot read the calibration cache: {e}")))?;
        let first = String::from_utf8_lossy(&first);
        let first = first.trim_end();
        let version = parse_cache_header(first).ok_or_else(|| {
            refuse(format!(
                "is not a TensorRT calibration cache: it starts with {first:?}, a cache \
                 starts with `TRT-<version>-<calibrator>` (e.g. TRT-100300-EntropyCalibration2)"
            ))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            version,
        })
    }

    /// TensorRT skips a cache written by another TensorRT version, and then
    /// has no calibration data at all: refuse rather than build a plan with
    /// meaningless scales.
    fn check_version(&self, trt: &Trtexec) -> Result<()> {
        if self.version == trt.version_number {
            return Ok(());
        }
        Err(Error::BuildOption {
            option: cache_option(&self.path),
            message: format!(
                "written by TensorRT {} but {} is TensorRT {}; TensorRT ignores a cache \
                 from another version, so recalibrate with this one",
                format_trt_version(self.version),
                trt.path.display(),
                trt.version
            ),
        })
    }
}

/// `TRT-100300-EntropyCalibration2` → 100300.
fn parse_cache_header(line: &str) -> Option<u64> {
    let (version, calibrator) = line.strip_prefix("TRT-")?.split_once('-')?;
    if calibrator.is_empty() {
        return None;
    }
    version.parse().ok()
}

/// Decides where INT8 gets its scales, before anything is built: the
/// calibration cache when one is given, else the graphs' own Q/DQ nodes,
/// which every graph must then have. `None`: no cache to pass to trtexec.
fn int8_calibration(
    opts: &BuildOptions,
    src: &SourceModel,
    source_path: &Path,
) -> Result<Option<Calibration>> {
    let precision = match opts.precision {
        Precision::Int8 => None,
        Precision::Fp16 => Some("fp16"),
        Precision::Fp32 => Some("fp32"),
    };
    if let Some(precision) = precision {
        // Silently ignoring it would let the user believe the plan is INT8.
        return match &opts.int8_calibration_cache {
            Some(p) => Err(Error::BuildOption {
                option: cache_option(p),
                message: format!(
                    "a calibration cache is only used with --precision int8, and this build is {precision}"
                ),
            }),
            None => Ok(None),
        };
    }
    if let Some(p) = &opts.int8_calibration_cache {
        return Calibration::open(p).map(Some);
    }
    let artifacts = src
        .exits
        .iter()
        .enumerate()
        .map(|(i, f)| (f, format!("exits[{i}]")))
        .chain(
            src.head
                .iter()
                .map(|h| (&h.artifact, "head.artifact".to_string())),
        );
    let mut unquantized = Vec::new();
    for (file, field) in artifacts {
        let onnx = opts.onnx_dir.join(file);
        if !onnx.is_file() {
            return Err(Error::MissingArtifact {
                path: source_path.to_path_buf(),
                field,
                artifact: onnx,
            });
        }
        if !explicitly_quantized(&onnx)? {
            unquantized.push(file.as_str());
        }
    }
    if unquantized.is_empty() {
        return Ok(None);
    }
    Err(Error::BuildOption {
        option: "--precision int8".into(),
        message: format!(
            "TensorRT needs calibration data or explicit quantization scales \
             (QuantizeLinear/DequantizeLinear nodes) to build INT8; without them its scales \
             are placeholders and the plan's outputs are meaningless. No \
             --int8-calibration-cache was given and {} in {} {} no Q/DQ nodes. Pass \
             --int8-calibration-cache FILE (a TensorRT calibration cache made by calibrating \
             these graphs on representative inputs with the TensorRT version that builds), \
             export the graphs with Q/DQ nodes, or build with --precision fp16",
            unquantized.join(", "),
            opts.onnx_dir.display(),
            if unquantized.len() == 1 {
                "has"
            } else {
                "have"
            },
        ),
    })
}

/// Whether the ONNX file has QuantizeLinear/DequantizeLinear nodes, which
/// put TensorRT in explicit quantization: it takes the scales from them.
fn explicitly_quantized(onnx: &Path) -> Result<bool> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(onnx)
        .map_err(|e| Error::Load {
            artifact: onnx.to_path_buf(),
            backend: "tensorrt",
            message: format!("not a readable ONNX model: {e:#}"),
        })?;
    Ok(proto.graph.as_ref().is_some_and(has_qdq))
}

/// Q/DQ nodes of the default ONNX domain (TensorRT's ONNX parser reads
/// those), in the graph or any subgraph (If, Loop, Scan bodies).
fn has_qdq(graph: &pb::GraphProto) -> bool {
    graph.node.iter().any(|n| {
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        (default_domain && matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear"))
            || n.attribute
                .iter()
                .any(|a| a.g.as_ref().is_some_and(has_qdq) || a.graphs.iter().any(has_qdq))
    })
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

fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name") || l.starts_with("Model"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    });
    format!(
        "{} CPU ({})",
        std::env::consts::ARCH,
        model.unwrap_or_else(|| "unknown model".into())
    )
}

/// The GPU as [`crate::manifest::device_identity`] names it, the way the
/// TensorRT loader will see it: from CUDA when this build has it, else from
/// `nvidia-smi`, else the device tree's model (which the loader will refuse
/// as a mismatch rather than run a plan on the wrong GPU).
fn gpu_name() -> String {
    #[cfg(feature = "tensorrt")]
    if let Ok(id) = crate::tensorrt::cuda_device_identity() {
        return id;
    }
    if let Ok(out) = Command::new("nvidia-smi")
        .args(["--query-gpu=name,compute_cap", "--format=csv,noheader"])
        .output()
    {
        if out.status.success() {
            if let Some(id) = parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)) {
                return id;
            }
        }
    }
    std::fs::read_to_string("/proc/device-tree/model")
        .map(|s| s.trim_end_matches('\0').trim().to_string())
        .unwrap_or_else(|_| "unknown NVIDIA GPU".into())
}

/// `NVIDIA H100 80GB HBM3, 9.0` → `NVIDIA H100 80GB HBM3 (compute 9.0)`.
pub fn parse_nvidia_smi(csv: &str) -> Option<String> {
    let line = csv.lines().next()?;
    let (name, cap) = line.rsplit_once(',')?;
    let (maj, min) = cap.trim().split_once('.')?;
    Some(crate::manifest::device_identity(
        name,
        maj.parse().ok()?,
        min.parse().ok()?,
    ))
}

/// The TensorRT builder, driven through `trtexec` (shipped with TensorRT and
/// JetPack under /usr/src/tensorrt/bin).
struct Trtexec {
    path: PathBuf,
    /// `10.3.0`, as the manifest records it.
    version: String,
    /// The same as TensorRT encodes it (100300), as calibration caches do.
    version_number: u64,
}

impl Trtexec {
    fn find() -> Result<Self> {
        let candidates = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("trtexec"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/src/tensorrt/bin/trtexec")]);
        let path = candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| Error::Unavailable {
            what: "offramp build --backend tensorrt".into(),
            backend: "tensorrt",
            why: "trtexec not found on PATH or in /usr/src/tensorrt/bin (install TensorRT, or build on the Jetson)".into(),
        })?;
        let out = Command::new(&path)
            .arg("--help")
            .output()
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let version_number = trtexec_version_number(&text).ok_or_else(|| Error::Unavailable {
            what: path.display().to_string(),
            backend: "tensorrt",
            why: "could not read the TensorRT version from `trtexec --help`".into(),
        })?;
        Ok(Self {
            path,
            version: format_trt_version(version_number),
            version_number,
        })
    }

    /// Builds `onnx` into a plan in `out_dir`; returns the plan's file name.
    /// `calibration` is the INT8 calibration cache (None for explicitly
    /// quantized graphs, whose Q/DQ nodes carry the scales).
    fn build(
        &self,
        onnx: &Path,
        out_dir: &Path,
        precision: Precision,
        calibration: Option<&Path>,
    ) -> Result<String> {
        let stem = onnx
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("segment");
        let plan = format!("{stem}.plan");
        let mut cmd = Command::new(&self.path);
        cmd.arg(format!("--onnx={}", onnx.display()))
            .arg(format!("--saveEngine={}", out_dir.join(&plan).display()))
            .arg(format!(
                "--timingCacheFile={}",
                out_dir.join("timing.cache").display()
            ))
            .arg("--skipInference");
        match precision {
            Precision::Fp32 => {}
            Precision::Fp16 => {
                cmd.arg("--fp16");
            }
            Precision::Int8 => {
                // FP16 as well: layers TensorRT has no INT8 scale for may run
                // in FP16 rather than FP32.
                cmd.args(["--int8", "--fp16"]);
                if let Some(cache) = calibration {
                    cmd.arg(format!("--calib={}", cache.display()));
                }
            }
        }
        let out = cmd.output().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        if !out.status.success() {
            let tail: String = String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::Load {
                artifact: onnx.to_path_buf(),
                backend: "tensorrt",
                message: format!("trtexec failed ({}):\n{tail}", out.status),
            });
        }
        Ok(plan)
    }
}

/// `[TensorRT v100300]` → `10.3.0`; `[TensorRT v8601]` → `8.6.1`.
pub fn parse_trtexec_version(text: &str) -> Option<String> {
    trtexec_version_number(text).map(format_trt_version)
}

/// `[TensorRT v100300]` → 100300.
fn trtexec_version_number(text: &str) -> Option<u64> {
    let start = text.find("[TensorRT v")? + "[TensorRT v".len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// TensorRT's version number as major.minor.patch.
fn format_trt_version(n: u64) -> String {
    // TRT 10: MMmmpp (100300); TRT 8: Mmmpp (8601).
    let (major, minor, patch) = if n >= 100_000 {
        (n / 10_000, n / 100 % 100, n % 100)
    } else {
        (n / 1_000, n / 100 % 10, n % 100)
    };
    format!("{major}.{minor}.{patch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_names() {
        assert_eq!(
            parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\n").as_deref(),
            Some("NVIDIA H100 80GB HBM3 (compute 9.0)")
        );
        assert_eq!(parse_nvidia_smi("garbage"), None);
    }

    #[test]
    fn trtexec_versions() {
        assert_eq!(
            parse_trtexec_version(
                "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help"
            )
            .as_deref(),
            Some("10.3.0")
        );
        assert_eq!(
            parse_trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # ./trtexec")
                .as_deref(),
            Some("8.6.1")
        );
        assert_eq!(parse_trtexec_version("no version here"), None);
    }

    fn tiny() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testdata/tiny")
    }

    fn tensorrt_opts(out: &Path, precision: Precision, cache: Option<PathBuf>) -> BuildOptions {
        BuildOptions {
            onnx_dir: tiny(),
            out_dir: out.to_path_buf(),
            backend: BackendKind::Tensorrt,
            precision,
            int8_calibration_cache: cache,
            offramp_version: "test".into(),
        }
    }

    /// The refusal comes before the output directory exists and before
    /// trtexec is looked for, so it is the same on machines with and without
    /// TensorRT.
    #[test]
    fn int8_without_scales_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("set");
        let e = build(&tensorrt_opts(&out, Precision::Int8, None), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--precision int8: TensorRT needs calibration data"),
            "{e}"
        );
        assert!(e.contains("the plan's outputs are meaningless"), "{e}");
        assert!(
            e.contains("segment0.onnx, segment1.onnx, segment2.onnx, head.onnx in "),
            "{e}"
        );
        assert!(e.contains("Pass --int8-calibration-cache FILE"), "{e}");
        assert!(!out.exists(), "a refused build created {}", out.display());
    }

    #[test]
    fn a_bad_calibration_cache_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("set");
        let err = |precision, cache: PathBuf| {
            build(&tensorrt_opts(&out, precision, Some(cache)), &mut |_| {})
                .unwrap_err()
                .to_string()
        };
        let missing = tmp.path().join("missing.cache");
        let e = err(Precision::Int8, missing.clone());
        assert!(
            e.starts_with(&format!(
                "--int8-calibration-cache {}: cannot read the calibration cache: ",
                missing.display()
            )),
            "{e}"
        );
        let e = err(Precision::Int8, tmp.path().to_path_buf());
        assert!(e.contains("is a directory"), "{e}");
        // An ONNX file where the cache should be.
        let e = err(Precision::Int8, tiny().join("head.onnx"));
        assert!(
            e.contains("head.onnx: is not a TensorRT calibration cache"),
            "{e}"
        );
        let cache = tmp.path().join("calib.cache");
        std::fs::write(
            &cache,
            "TRT-100300-EntropyCalibration2\nfeature: 3c008912\n",
        )
        .unwrap();
        let e = err(Precision::Fp16, cache);
        assert!(
            e.contains("only used with --precision int8, and this build is fp16"),
            "{e}"
        );
        assert!(!out.exists(), "a refused build created {}", out.display());
    }

    #[test]
    fn calibration_cache_headers() {
        assert_eq!(
            parse_cache_header("TRT-100300-EntropyCalibration2"),
            Some(100_300)
        );
        assert_eq!(parse_cache_header("TRT-8601-MinMaxCalibration"), Some(8601));
        assert_eq!(parse_cache_header("TRT-8601-"), None);
        assert_eq!(parse_cache_header("TRT-x-EntropyCalibration2"), None);
        assert_eq!(parse_cache_header("\u{8}\u{7}onnx"), None);
        assert_eq!(format_trt_version(100_300), "10.3.0");
        assert_eq!(format_trt_version(8601), "8.6.1");
    }

    fn node(op: &str, domain: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            domain: domain.into(),
            ..Default::default()
        }
    }

    #[test]
    fn qdq_nodes_are_found_in_graphs_and_subgraphs() {
        let plain = pb::GraphProto {
            node: vec![node("Conv", ""), node("Relu", "")],
            ..Default::default()
        };
        assert!(!has_qdq(&plain));
        let mut g = plain.clone();
        g.node.push(node("DequantizeLinear", "ai.onnx"));
        assert!(has_qdq(&g));
        let mut g = plain.clone();
        g.node.push(node("QuantizeLinear", ""));
        assert!(has_qdq(&g));
        // Another domain's op of that name is not ONNX Q/DQ.
        let mut g = plain.clone();
        g.node.push(node("QuantizeLinear", "com.microsoft"));
        assert!(!has_qdq(&g));
        // Inside an If branch.
        let mut branch = plain.clone();
        branch.node.push(node("DequantizeLinear", ""));
        let mut g = plain.clone();
        g.node.push(pb::NodeProto {
            attribute: vec![pb::AttributeProto {
                name: "then_branch".into(),
                g: Some(branch),
                ..Default::default()
            }],
            ..node("If", "")
        });
        assert!(has_qdq(&g));
        // The tiny test model has none.
        assert!(!explicitly_quantized(&tiny().join("segment0.onnx")).unwrap());
    }
}
