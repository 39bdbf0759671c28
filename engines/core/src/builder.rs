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
//! Tensor names, shapes and costs come from the graphs themselves.

use crate::analyze::{analyze, Analysis};
use crate::manifest::{
    BackendKind, BuildInfo, Criterion, Head, Manifest, Precision, Preprocess, Segment,
    FORMAT_VERSION,
};
use crate::{sha256_file, Chain, EngineSet, Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceHead {
    artifact: String,
    feature_input: String,
    state_input: String,
    state_output: String,
    action_output: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceModel {
    model: String,
    exits: Vec<String>,
    feature: String,
    head: SourceHead,
    criterion: Criterion,
    #[serde(default)]
    preprocess: Option<Preprocess>,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub onnx_dir: PathBuf,
    pub out_dir: PathBuf,
    pub backend: BackendKind,
    pub precision: Precision,
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
    let src: SourceModel = toml::from_str(&text).map_err(|e| Error::ManifestSyntax {
        path: path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    if src.exits.is_empty() {
        return Err(invalid(&path, "exits", "list at least one exit segment"));
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
    let (source_path, src) = read_source(&opts.onnx_dir)?;
    if opts.backend == BackendKind::Cpu && opts.precision != Precision::Fp32 {
        return Err(invalid(
            &source_path,
            "precision",
            format!("the cpu backend runs fp32 only, not {:?}", opts.precision),
        ));
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| Error::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    progress(Progress::Start {
        total: src.exits.len() + 1,
    });

    let trt = match opts.backend {
        BackendKind::Tensorrt => Some(Trtexec::find()?),
        BackendKind::Cpu => None,
    };
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
            Some(t) => t.build(&onnx, &opts.out_dir, opts.precision)?,
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
        exits.push(Segment {
            name: format!("exit{i}"),
            artifact,
            sha256,
            inputs: a.inputs,
            outputs: a.outputs,
            feature: src.feature.clone(),
            cost: a.cost,
        });
    }
    let (a, artifact, sha256) = produce(&src.head.artifact, "head.artifact")?;
    let head = Head {
        artifact,
        sha256,
        inputs: a.inputs,
        outputs: a.outputs,
        feature_input: src.head.feature_input,
        state_input: src.head.state_input,
        state_output: src.head.state_output,
        action_output: src.head.action_output,
        cost: a.cost,
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
        criterion: src.criterion,
        preprocess: src.preprocess,
    };
    EngineSet::write_manifest(&opts.out_dir, &manifest)?;
    let set = EngineSet::open(&opts.out_dir)?;
    if opts.backend == BackendKind::Cpu {
        Chain::load(&set, BackendKind::Cpu)?;
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
    rows.push(Row {
        name: "head".into(),
        artifact: m.head.artifact.clone(),
        macs: m.head.cost.macs,
        cumulative_macs: 0,
        params: m.head.cost.params,
        peak_activation_bytes: m.head.cost.peak_activation_bytes,
    });
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
    version: String,
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
        let version = parse_trtexec_version(&text).ok_or_else(|| Error::Unavailable {
            what: path.display().to_string(),
            backend: "tensorrt",
            why: "could not read the TensorRT version from `trtexec --help`".into(),
        })?;
        Ok(Self { path, version })
    }

    /// Builds `onnx` into a plan in `out_dir`; returns the plan's file name.
    fn build(&self, onnx: &Path, out_dir: &Path, precision: Precision) -> Result<String> {
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
                cmd.args(["--int8", "--fp16"]);
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

/// `[TensorRT v100300]` → `10.3.0`; `TensorRT version: 8.6.1` style also.
pub fn parse_trtexec_version(text: &str) -> Option<String> {
    let start = text.find("[TensorRT v")? + "[TensorRT v".len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let n: u64 = digits.parse().ok()?;
    // TRT 10: MMmmpp (100300); TRT 8: Mmmpp (8601).
    let (major, minor, patch) = if n >= 100_000 {
        (n / 10_000, n / 100 % 100, n % 100)
    } else {
        (n / 1_000, n / 100 % 10, n % 100)
    };
    Some(format!("{major}.{minor}.{patch}"))
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
}
