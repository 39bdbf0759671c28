//! The TensorRT builder, `trtexec`: found, asked its version, and run on
//! one ONNX file per plan.

use offramp_engines::{Error, Precision, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The TensorRT builder, driven through `trtexec` (shipped with TensorRT and
/// JetPack under /usr/src/tensorrt/bin).
pub(super) struct Trtexec {
    pub(super) path: PathBuf,
    /// `10.3.0`, as the manifest records it.
    pub(super) version: String,
    /// The same as TensorRT encodes it (100300), as calibration caches do.
    pub(super) version_number: u64,
}

impl Trtexec {
    pub(super) fn find() -> Result<Self> {
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
    pub(super) fn build(
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
pub(super) fn format_trt_version(n: u64) -> String {
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
