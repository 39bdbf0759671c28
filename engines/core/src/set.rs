//! Opening an engine set: everything is checked before any engine is built.

use crate::manifest::{
    ActionKind, CriterionKind, DType, Manifest, Segment, TensorSpec, FORMAT_VERSION,
};
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
        Self::checked(dir, manifest_path, &text)
    }

    /// Parses `text` as the manifest of the set in `dir` and checks it as
    /// [`EngineSet::open`] says: what `open` and `write_manifest` share.
    fn checked(dir: PathBuf, manifest_path: PathBuf, text: &str) -> Result<Self> {
        let manifest = parse(&manifest_path, text)?;
        let set = Self {
            dir,
            manifest_path,
            manifest,
        };
        set.check_artifacts()?;
        set.check_chain()?;
        Ok(set)
    }

    /// Parses `text` as the manifest at `manifest_path` and checks
    /// everything [`EngineSet::open`] checks but the artifacts (their
    /// presence and checksums): a manifest's fields and chain, from text.
    pub fn check_text(manifest_path: &Path, text: &str) -> Result<Manifest> {
        let set = Self {
            dir: manifest_path
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            manifest_path: manifest_path.to_path_buf(),
            manifest: parse(manifest_path, text)?,
        };
        set.check_chain()?;
        Ok(set.manifest)
    }

    /// Writes `manifest` into `dir/manifest.toml` (used by build and
    /// calibrate), only if it loads back: it is checked as
    /// [`EngineSet::open`] checks a set (its fields, the artifacts' checksums,
    /// the chain) before it replaces the old one, so a manifest the runtime
    /// would refuse (a fixed exit past a calibrated cap, say) is an error
    /// here and the set on disk stays as it was. Returns the set as written
    /// (checked already: no need to open it again and hash every artifact
    /// once more).
    pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<Self> {
        let path = dir.join("manifest.toml");
        let text = manifest.to_toml().map_err(|e| Error::ManifestSyntax {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let set = Self::checked(dir.to_path_buf(), path.clone(), &text)?;
        // Write then rename: a crash never leaves a half-written manifest.
        let tmp = dir.join(".manifest.toml.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        Ok(set)
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
            .chain(
                m.head
                    .iter()
                    .map(|h| ("head".to_string(), &h.artifact, &h.sha256)),
            );
        for (field, artifact, sha) in entries {
            // Artifacts live inside the set: no absolute paths or `..`.
            let path = crate::join_inside(&self.dir, artifact)
                .map_err(|why| self.invalid(format!("{field}.artifact"), why))?;
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
        if let Some(o) = &m.offload {
            for (field, v) in [
                ("offload.max_abs_state", o.max_abs_state),
                ("offload.max_abs_action", o.max_abs_action),
            ] {
                if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                    return Err(self.invalid(field, format!("{v}: must be finite and above 0")));
                }
            }
        }
        // Token ids (i64) feed only the instruction input; the image and
        // every tensor between segments are f32.
        let instruction = m.preprocess.as_ref().and_then(|p| p.instruction.as_ref());
        if let Some((k, t)) = m
            .inputs
            .iter()
            .enumerate()
            .find(|(_, t)| t.dtype != DType::F32 && Some(&t.name) != instruction)
        {
            return Err(self.invalid(
                format!("inputs[{k}]"),
                format!(
                    "{:?} is {:?}; only the instruction input ([preprocess] instruction) may hold token ids (i64)",
                    t.name, t.dtype
                ),
            ));
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
        self.check_head()?;
        let action = self.check_action()?;
        self.check_criterion(action)?;
        self.check_preprocess()
    }

    /// A head reads a feature and, if recurrent, a state whose input and
    /// output agree; a set without a head reads every exit's own action.
    fn check_head(&self) -> Result<()> {
        let m = &self.manifest;
        let Some(h) = &m.head else {
            for (i, seg) in m.exits.iter().enumerate() {
                if seg.feature.is_some() {
                    return Err(self.invalid(
                        format!("exits[{i}].feature"),
                        "a feature is what a head reads, and this set has no [head]: name the segment's action output (`action = ...`) instead",
                    ));
                }
            }
            return Ok(());
        };
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
        spec(&h.outputs, &h.action_output, "action_output")?;
        spec(&h.inputs, &h.feature_input, "feature_input")?;
        // The inputs beside the feature: the state, and the cache's tensors.
        let cache_inputs = match &h.cache {
            Some(c) => {
                c.resolve(h)
                    .map_err(|(field, message)| self.invalid(field, message))?;
                c.inputs().count()
            }
            None => 0,
        };
        let with_cache = if cache_inputs > 0 {
            format!(" and the cache's {cache_inputs}")
        } else {
            String::new()
        };
        match (&h.state_input, &h.state_output) {
            (Some(i), Some(o)) => {
                let state_in = spec(&h.inputs, i, "state_input")?;
                let state_out = spec(&h.outputs, o, "state_output")?;
                if state_in.shape != state_out.shape {
                    return Err(self.invalid(
                        "head.state_output",
                        format!(
                            "state output {:?} has shape {:?} but the state input {:?} has {:?}: the recurrent state cannot carry over",
                            state_out.name, state_out.shape, state_in.name, state_in.shape
                        ),
                    ));
                }
                if h.inputs.len() != 2 + cache_inputs {
                    return Err(self.invalid(
                        "head.inputs",
                        format!(
                            "a recurrent head takes exactly a feature and a state{with_cache}; this one has {} inputs",
                            h.inputs.len()
                        ),
                    ));
                }
            }
            (None, None) => {
                if h.inputs.len() != 1 + cache_inputs {
                    return Err(self.invalid(
                        "head.inputs",
                        format!(
                            "a stateless head takes only the feature{with_cache}; this one has {} inputs (a recurrent head names state_input and state_output)",
                            h.inputs.len()
                        ),
                    ));
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(self.invalid(
                    "head",
                    "state_input and state_output go together: name both (recurrent head) or neither (stateless)",
                ))
            }
        }
        if h.cache.is_some() && m.offload.is_some() {
            return Err(self.invalid(
                "offload",
                "a head with a cache cannot be served by another device: the cache lives on the robot",
            ));
        }
        for (i, seg) in m.exits.iter().enumerate() {
            if seg.action.is_some() {
                return Err(self.invalid(
                    format!("exits[{i}].action"),
                    "this set's actions come from its [head]; a segment's own action output is for sets without a head",
                ));
            }
        }
        Ok(())
    }

    /// Every exit's action tensor has the same shape, and a token action
    /// matches its bins; returns the dimensions the runtime hands on.
    fn check_action(&self) -> Result<usize> {
        let m = &self.manifest;
        let Some(tensor) = m.action_tensor() else {
            let message = match m.exits.first().and_then(|s| s.action.as_ref()) {
                Some(name) => format!("{name:?} is not an output of this segment"),
                None => "missing: a set without a [head] names each segment's action output (`action = ...`)".into(),
            };
            return Err(self.invalid("exits[0].action", message));
        };
        if m.head.is_none() {
            for (i, seg) in m.exits.iter().enumerate() {
                let Some(name) = &seg.action else {
                    return Err(self.invalid(
                        format!("exits[{i}].action"),
                        "missing: a set without a [head] names each segment's action output",
                    ));
                };
                match seg.outputs.iter().find(|t| &t.name == name) {
                    Some(t) if t.shape == tensor.shape => {}
                    Some(t) => {
                        return Err(self.invalid(
                            format!("exits[{i}].action"),
                            format!(
                                "{name:?} is {:?} but exit 0's action is {:?}: every exit must emit the same action",
                                t.shape, tensor.shape
                            ),
                        ))
                    }
                    None => {
                        return Err(self.invalid(
                            format!("exits[{i}].action"),
                            format!("{name:?} is not an output of this segment"),
                        ))
                    }
                }
            }
        }
        let a = &m.action;
        match a.kind {
            ActionKind::Continuous => {
                if !a.bins.is_empty() {
                    return Err(self.invalid(
                        "action.bins",
                        "bins are for token actions (`kind = \"tokens\"`)",
                    ));
                }
                Ok(tensor.elements())
            }
            ActionKind::Tokens => {
                let b = a.bins_per_dim();
                if a.bins.is_empty() || b < 2 {
                    return Err(self.invalid(
                        "action.bins",
                        "token actions need the bin centres of each dimension, at least 2 per dimension",
                    ));
                }
                if let Some(d) = a.bins.iter().position(|row| row.len() != b) {
                    return Err(self.invalid(
                        format!("action.bins[{d}]"),
                        format!(
                            "{} bins but dimension 0 has {b}: every dimension has the same number",
                            a.bins[d].len()
                        ),
                    ));
                }
                if let Some((d, k)) =
                    a.bins.iter().enumerate().find_map(|(d, row)| {
                        row.iter().position(|x| !x.is_finite()).map(|k| (d, k))
                    })
                {
                    return Err(self.invalid(
                        format!("action.bins[{d}][{k}]"),
                        format!("{} is not a number", a.bins[d][k]),
                    ));
                }
                let want = [1, a.bins.len(), b];
                if tensor.shape != want {
                    return Err(self.invalid(
                        "action.bins",
                        format!(
                            "{} dimensions of {b} bins need an action tensor {want:?}, but {:?} is {:?}",
                            a.bins.len(),
                            tensor.name,
                            tensor.shape
                        ),
                    ));
                }
                Ok(a.bins.len())
            }
        }
    }

    /// Each image input must be an f32 model input [1, 3, H, W] with a
    /// positive std; the instruction input must exist and be [1, K].
    fn check_preprocess(&self) -> Result<()> {
        let m = &self.manifest;
        let Some(p) = &m.preprocess else {
            return Ok(());
        };
        match (p.images.is_empty(), p.mean.is_some(), p.std.is_some()) {
            (true, true, true) => {}
            (true, _, _) => {
                return Err(self.invalid(
                    if p.mean.is_none() { "preprocess.mean" } else { "preprocess.std" },
                    "missing: give mean and std (one camera) or [[preprocess.images]] (one per image input)",
                ))
            }
            (false, false, false) => {}
            (false, _, _) => {
                return Err(self.invalid(
                    "preprocess.images",
                    "with [[preprocess.images]] each image input has its own mean and std; remove preprocess.mean and preprocess.std",
                ))
            }
        }
        let images = p.image_inputs(&m.inputs);
        for (k, img) in images.iter().enumerate() {
            let at = |f: &str| match (p.images.is_empty(), f) {
                // One camera: the image input is the first model input.
                (true, "input") => "inputs[0]".to_string(),
                (true, _) => format!("preprocess.{f}"),
                (false, _) => format!("preprocess.images[{k}].{f}"),
            };
            if let Some(c) = img.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(self.invalid(
                    format!("{}[{c}]", at("std")),
                    format!("{} is not a positive number", img.std[c]),
                ));
            }
            if let Some(c) = img.mean.iter().position(|s| !s.is_finite()) {
                return Err(self.invalid(
                    format!("{}[{c}]", at("mean")),
                    format!("{} is not a number", img.mean[c]),
                ));
            }
            let Some(t) = m.inputs.iter().find(|t| t.name == img.input) else {
                return Err(self.invalid(
                    at("input"),
                    format!(
                        "{:?} is not a model input (the inputs are {:?})",
                        img.input,
                        m.inputs.iter().map(|t| &t.name).collect::<Vec<_>>()
                    ),
                ));
            };
            if images[..k].iter().any(|o| o.input == img.input) {
                return Err(self.invalid(
                    at("input"),
                    format!("{:?} is fed by two cameras", img.input),
                ));
            }
            if p.instruction.as_deref() == Some(img.input.as_str()) {
                return Err(self.invalid(
                    at("input"),
                    format!("{:?} is the instruction input", img.input),
                ));
            }
            let ok = t.dtype == DType::F32
                && matches!(t.shape.as_slice(), [1, 3, h, w] if *h > 0 && *w > 0);
            if !ok {
                let which = if p.images.is_empty() {
                    "inputs[0].shape".to_string()
                } else {
                    at("input")
                };
                return Err(self.invalid(
                    which,
                    format!(
                        "preprocessing writes an f32 image [1, 3, H, W], but {:?} is {:?} {:?}",
                        t.name, t.dtype, t.shape
                    ),
                ));
            }
        }
        if let Some(name) = &p.instruction {
            let Some(t) = m.inputs.iter().find(|t| &t.name == name) else {
                return Err(self.invalid(
                    "preprocess.instruction",
                    format!("{name:?} is not a model input"),
                ));
            };
            let len = match t.shape.as_slice() {
                [1, n] if *n > 0 => *n,
                _ => {
                    return Err(self.invalid(
                        "preprocess.instruction",
                        format!(
                            "{name:?} is {:?}; an instruction is [1, K] (one-hot) or [1, L] (token ids)",
                            t.shape
                        ),
                    ))
                }
            };
            match t.dtype {
                DType::F32 if !p.instruction_ids.is_empty() => {
                    return Err(self.invalid(
                        "preprocess.instruction_ids",
                        format!("{name:?} is a one-hot f32 input; token ids need an i64 input"),
                    ))
                }
                DType::F32 => {}
                DType::I64 => {
                    if p.instruction_ids.is_empty() {
                        return Err(self.invalid(
                            "preprocess.instruction_ids",
                            format!(
                                "{name:?} takes token ids: list each instruction's ids (or its text and a tokenizer in model.toml)"
                            ),
                        ));
                    }
                    for (k, ids) in p.instruction_ids.iter().enumerate() {
                        if ids.len() != len {
                            return Err(self.invalid(
                                format!("preprocess.instruction_ids[{k}]"),
                                format!("{} ids; {name:?} takes {len}", ids.len()),
                            ));
                        }
                        if let Some(id) = ids.iter().find(|id| !(0..1 << 24).contains(*id)) {
                            return Err(self.invalid(
                                format!("preprocess.instruction_ids[{k}]"),
                                format!("token id {id} is outside 0..2^24"),
                            ));
                        }
                    }
                }
            }
        }
        // The runtime feeds camera images and the instruction, nothing
        // else: another input would stay zero on every frame.
        if let Some((k, t)) = m.inputs.iter().enumerate().find(|(_, t)| {
            !images.iter().any(|i| i.input == t.name) && p.instruction.as_ref() != Some(&t.name)
        }) {
            return Err(self.invalid(
                format!("inputs[{k}]"),
                format!(
                    "{:?} is neither an image input ({}) nor the instruction input: offramp feeds \
                     camera frames and the instruction only (name each camera's input in \
                     [[preprocess.images]], the instruction in preprocess.instruction)",
                    t.name,
                    images
                        .iter()
                        .map(|i| i.input.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn check_feature(&self, i: usize, seg: &Segment) -> Result<()> {
        let Some(h) = &self.manifest.head else {
            return Ok(());
        };
        let Some(name) = &seg.feature else {
            return Err(self.invalid(
                format!("exits[{i}].feature"),
                "missing: name the output of this segment that the head reads",
            ));
        };
        let Some(feature) = seg.outputs.iter().find(|t| &t.name == name) else {
            return Err(self.invalid(
                format!("exits[{i}].feature"),
                format!("{name:?} is not an output of this segment"),
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
            // With a head, the reference is a feature the head turns into
            // an action; without one it is an action itself.
            let (want, what) = match &m.head {
                Some(h) => (h.input(&h.feature_input), "the head's feature"),
                None => (m.action_tensor(), "exit 0's action"),
            };
            match (seg0, want) {
                (Some(t), Some(f)) if t.shape == f.shape => {}
                (Some(t), Some(f)) => {
                    return Err(self.invalid(
                        "criterion.exit0_reference",
                        format!("{r:?} is {:?} but {what} is {:?}", t.shape, f.shape),
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
        // The learned criterion reads each exit's confidence output: one
        // value per exit but the last (which always stops); other kinds
        // read none.
        for (i, seg) in m.exits.iter().enumerate() {
            let field = format!("exits[{i}].confidence");
            match (&seg.confidence, c.kind == CriterionKind::Learned) {
                (None, true) if i + 1 < n => {
                    return Err(self.invalid(
                        field,
                        "missing: the learned criterion reads each exit's confidence (every exit but the last)",
                    ))
                }
                (Some(_), false) => {
                    return Err(self.invalid(
                        field,
                        format!(
                            "only the learned criterion reads a confidence; this set's is {:?}",
                            c.kind
                        ),
                    ))
                }
                (Some(name), true) => match seg.outputs.iter().find(|t| &t.name == name) {
                    Some(t) if t.elements() == 1 && t.dtype == DType::F32 => {}
                    Some(t) => {
                        return Err(self.invalid(
                            field,
                            format!(
                                "{name:?} is {:?} {:?}; a confidence is one f32 value",
                                t.dtype, t.shape
                            ),
                        ))
                    }
                    None => {
                        return Err(self.invalid(
                            field,
                            format!("{name:?} is not an output of this segment"),
                        ))
                    }
                },
                _ => {}
            }
        }
        if c.kind == CriterionKind::Fixed && c.fixed_exit.is_none_or(|e| e >= n) {
            return Err(self.invalid(
                "criterion.fixed_exit",
                format!("the fixed criterion needs an exit in 0..{n}"),
            ));
        }
        // The runtime loads exits up to deepest_exit only; a fixed exit past
        // it would otherwise be clamped, silently running another exit.
        if let (CriterionKind::Fixed, Some(e), Some(d)) = (c.kind, c.fixed_exit, c.deepest_exit) {
            if e > d {
                return Err(self.invalid(
                    "criterion.fixed_exit",
                    format!("{e} is past criterion.deepest_exit ({d}), the last exit loaded"),
                ));
            }
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
