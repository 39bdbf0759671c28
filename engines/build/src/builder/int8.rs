//! Where INT8 gets its scales: a TensorRT calibration cache, checked before
//! anything is built, or the graphs' own QuantizeLinear / DequantizeLinear
//! nodes.

use super::trtexec::{format_trt_version, Trtexec};
use super::{BuildOptions, SourceModel};
use offramp_engines::{Error, Precision, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

/// The option that names a calibration cache, for error messages.
fn cache_option(path: &Path) -> String {
    format!("--int8-calibration-cache {}", path.display())
}

/// A TensorRT INT8 calibration cache that exists and has a cache's header.
#[derive(Debug)]
pub(super) struct Calibration {
    pub(super) path: PathBuf,
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
    pub(super) fn check_version(&self, trt: &Trtexec) -> Result<()> {
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
pub(super) fn int8_calibration(
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
    let artifacts = src.files().into_iter().map(|(field, file)| (file, field));
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
            unquantized.push(file);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::build;
    use offramp_engines::BackendKind;

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
