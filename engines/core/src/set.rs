//! Opening an engine set: everything is checked before any engine is built.

use crate::manifest::{CriterionKind, Manifest, Segment, TensorSpec, FORMAT_VERSION};
use crate::{sha256_file, Error, Result};
use std::path::{Path, PathBuf};

/// A validated engine set on disk.
#[derive(Debug, Clone)]
pub struct EngineSet {
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

impl EngineSet {
    /// Reads `dir/manifest.toml` and checks: the format version; that every
    /// artifact exists and matches its SHA-256; that segment `i` finds each of
    /// its inputs among the outputs of segment `i - 1` (or the model inputs)
    /// with the same shape and dtype; that every exit's feature fits the head;
    /// that the head's state input and output agree; and the criterion.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| Error::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest = parse(&manifest_path, &text)?;
        let set = Self {
            dir,
            manifest_path,
            manifest,
        };
        set.check_artifacts()?;
        set.check_chain()?;
        Ok(set)
    }

    /// Writes `manifest` into `dir/manifest.toml` (used by build and calibrate).
    pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
        let path = dir.join("manifest.toml");
        let text = manifest.to_toml().map_err(|e| Error::ManifestSyntax {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // Write then rename: a crash never leaves a half-written manifest.
        let tmp = dir.join(".manifest.toml.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    pub fn artifact_path(&self, artifact: &str) -> PathBuf {
        self.dir.join(artifact)
    }

    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.manifest_path.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn check_artifacts(&self) -> Result<()> {
        let m = &self.manifest;
        let entries = m
            .exits
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("exits[{i}]"), &s.artifact, &s.sha256))
            .chain(std::iter::once((
                "head".to_string(),
                &m.head.artifact,
                &m.head.sha256,
            )));
        for (field, artifact, sha) in entries {
            // Artifacts live inside the set: no absolute paths or `..`.
            if Path::new(artifact)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(self.invalid(
                    format!("{field}.artifact"),
                    format!("{artifact:?} must be a file name inside the engine-set directory"),
                ));
            }
            let path = self.artifact_path(artifact);
            if !path.is_file() {
                return Err(Error::MissingArtifact {
                    path: self.manifest_path.clone(),
                    field: format!("{field}.artifact"),
                    artifact: path,
                });
            }
            let actual = sha256_file(&path)?;
            if !actual.eq_ignore_ascii_case(sha) {
                return Err(Error::ChecksumMismatch {
                    path: self.manifest_path.clone(),
                    field: format!("{field}.sha256"),
                    artifact: path,
                    expected: sha.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    fn check_chain(&self) -> Result<()> {
        let m = &self.manifest;
        if m.exits.is_empty() {
            return Err(self.invalid("exits", "an engine set needs at least one exit"));
        }
        let mut available: &[TensorSpec] = &m.inputs;
        let mut source = "inputs".to_string();
        for (i, seg) in m.exits.iter().enumerate() {
            for (k, input) in seg.inputs.iter().enumerate() {
                let field = format!("exits[{i}].inputs[{k}]");
                let Some(from) = available.iter().find(|t| t.name == input.name) else {
                    return Err(self.invalid(
                        field,
                        format!("{:?} is not among the outputs of {source}", input.name),
                    ));
                };
                if from.shape != input.shape || from.dtype != input.dtype {
                    return Err(self.invalid(
                        field,
                        format!(
                            "{:?} is {:?} {:?} but {source} provides {:?} {:?}",
                            input.name, input.dtype, input.shape, from.dtype, from.shape
                        ),
                    ));
                }
            }
            self.check_feature(i, seg)?;
            available = &seg.outputs;
            source = format!("exits[{}] ({})", i, seg.name);
        }
        let h = &m.head;
        let spec = |list: &[TensorSpec], name: &str, field: &str| -> Result<TensorSpec> {
            list.iter()
                .find(|t| t.name == name)
                .cloned()
                .ok_or_else(|| {
                    self.invalid(
                        format!("head.{field}"),
                        format!("{name:?} is not a tensor of the head"),
                    )
                })
        };
        let state_in = spec(&h.inputs, &h.state_input, "state_input")?;
        let state_out = spec(&h.outputs, &h.state_output, "state_output")?;
        let action = spec(&h.outputs, &h.action_output, "action_output")?;
        spec(&h.inputs, &h.feature_input, "feature_input")?;
        if state_in.shape != state_out.shape {
            return Err(self.invalid(
                "head.state_output",
                format!(
                    "state output {:?} has shape {:?} but the state input {:?} has {:?}: the recurrent state cannot carry over",
                    state_out.name, state_out.shape, state_in.name, state_in.shape
                ),
            ));
        }
        if h.inputs.len() != 2 {
            return Err(self.invalid(
                "head.inputs",
                "the head takes exactly a feature and a state",
            ));
        }
        self.check_criterion(action.elements())?;
        self.check_preprocess()
    }

    /// The image input must be [1, 3, H, W]; the instruction input must exist
    /// and be [1, K]; std must be positive.
    fn check_preprocess(&self) -> Result<()> {
        let m = &self.manifest;
        let Some(p) = &m.preprocess else {
            return Ok(());
        };
        if let Some(k) = p.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(self.invalid(
                format!("preprocess.std[{k}]"),
                format!("{} is not a positive number", p.std[k]),
            ));
        }
        if let Some(k) = p.mean.iter().position(|s| !s.is_finite()) {
            return Err(self.invalid(
                format!("preprocess.mean[{k}]"),
                format!("{} is not a number", p.mean[k]),
            ));
        }
        let image = m.inputs.first().map(|t| t.shape.as_slice());
        if !matches!(image, Some([1, 3, h, w]) if *h > 0 && *w > 0) {
            return Err(self.invalid(
                "inputs[0].shape",
                format!(
                    "preprocessing writes an image [1, 3, H, W], but the first input is {image:?}"
                ),
            ));
        }
        if let Some(name) = &p.instruction {
            match m.inputs.iter().find(|t| &t.name == name) {
                Some(t) if t.shape.len() == 2 && t.shape[0] == 1 && t.shape[1] > 0 => {}
                Some(t) => {
                    return Err(self.invalid(
                        "preprocess.instruction",
                        format!("{name:?} is {:?}; a one-hot instruction is [1, K]", t.shape),
                    ))
                }
                None => {
                    return Err(self.invalid(
                        "preprocess.instruction",
                        format!("{name:?} is not a model input"),
                    ))
                }
            }
        }
        Ok(())
    }

    fn check_feature(&self, i: usize, seg: &Segment) -> Result<()> {
        let h = &self.manifest.head;
        let Some(feature) = seg.outputs.iter().find(|t| t.name == seg.feature) else {
            return Err(self.invalid(
                format!("exits[{i}].feature"),
                format!("{:?} is not an output of this segment", seg.feature),
            ));
        };
        if let Some(head_in) = h.input(&h.feature_input) {
            if head_in.shape != feature.shape || head_in.dtype != feature.dtype {
                return Err(self.invalid(
                    format!("exits[{i}].feature"),
                    format!(
                        "{:?} is {:?} but the head's {:?} expects {:?}",
                        feature.name, feature.shape, head_in.name, head_in.shape
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_criterion(&self, action_dims: usize) -> Result<()> {
        let m = &self.manifest;
        let c = &m.criterion;
        let n = m.exits.len();
        if !c.thresholds.is_empty() && c.thresholds.len() != n - 1 {
            return Err(self.invalid(
                "criterion.thresholds",
                format!(
                    "{} thresholds for {} exits: need one per exit but the last ({}), or none before calibration",
                    c.thresholds.len(),
                    n,
                    n - 1
                ),
            ));
        }
        if let Some((k, t)) = c
            .thresholds
            .iter()
            .enumerate()
            .find(|(_, t)| t.is_nan() || **t < 0.0)
        {
            return Err(self.invalid(
                format!("criterion.thresholds[{k}]"),
                format!("{t} is not a threshold (must be >= 0)"),
            ));
        }
        if let Some(d) = c.continuous_dims.iter().find(|d| **d >= action_dims) {
            return Err(self.invalid(
                "criterion.continuous_dims",
                format!("dimension {d} does not exist: the action has {action_dims}"),
            ));
        }
        if let Some(r) = &c.exit0_reference {
            let seg0 = m
                .exits
                .first()
                .and_then(|s| s.outputs.iter().find(|t| &t.name == r));
            let head_feature = m.head.input(&m.head.feature_input);
            match (seg0, head_feature) {
                (Some(t), Some(f)) if t.shape == f.shape => {}
                (Some(t), Some(f)) => {
                    return Err(self.invalid(
                        "criterion.exit0_reference",
                        format!(
                            "{r:?} is {:?} but the head's feature is {:?}",
                            t.shape, f.shape
                        ),
                    ))
                }
                _ => {
                    return Err(self.invalid(
                        "criterion.exit0_reference",
                        format!("{r:?} is not an output of exits[0]"),
                    ))
                }
            }
        }
        if let Some(d) = c.deepest_exit.filter(|d| *d >= n) {
            return Err(self.invalid(
                "criterion.deepest_exit",
                format!("{d} is past the last exit ({})", n - 1),
            ));
        }
        if c.kind == CriterionKind::Fixed && c.fixed_exit.is_none_or(|e| e >= n) {
            return Err(self.invalid(
                "criterion.fixed_exit",
                format!("the fixed criterion needs an exit in 0..{n}"),
            ));
        }
        Ok(())
    }
}

/// Parses the manifest text, checking the format version first so that a
/// manifest from a newer offramp gets that message, not a field error.
fn parse(path: &Path, text: &str) -> Result<Manifest> {
    let syntax = |e: toml::de::Error| Error::ManifestSyntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    };
    let table: toml::Table = toml::from_str(text).map_err(syntax)?;
    match table.get("format_version").and_then(|v| v.as_integer()) {
        Some(v) if v == i64::from(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(Error::UnknownVersion {
                path: path.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            })
        }
        None => {
            return Err(Error::ManifestSyntax {
                path: path.to_path_buf(),
                message: "missing integer field `format_version`".into(),
            })
        }
    }
    toml::from_str(text).map_err(syntax)
}
