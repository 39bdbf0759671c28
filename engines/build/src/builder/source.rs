//! The source description, `model.toml`: which ONNX file is which exit, and
//! what the exporter named each tensor.
//!
//! An exit is a file name, or a table that also says what that segment
//! calls its tensors, so an export needs no renaming by hand:
//!
//! ```toml
//! [[exits]]
//! file = "block0.onnx"
//! action = "action0"                 # this segment's action output
//! [[exits]]
//! file = "block1.onnx"
//! action = "action1"
//! inputs = { x_in = "x_out" }        # this segment's input = the previous segment's output
//! ```
//!
//! Top-level `action_output`, `feature` and `confidence_output` name the
//! tensor of every exit that does not name its own.

use crate::invalid;
use offramp_engines::manifest::{ActionSpec, Criterion, CriterionKind, OffloadSpec, Preprocess};
use offramp_engines::{Error, Result};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceHead {
    pub artifact: String,
    pub feature_input: String,
    #[serde(default)]
    pub state_input: Option<String>,
    #[serde(default)]
    pub state_output: Option<String>,
    pub action_output: String,
    /// A temporal attention head's cache, as the manifest's `[head.cache]`.
    #[serde(default)]
    pub cache: Option<offramp_engines::cache::CacheSpec>,
}

/// One exit segment: its file and, where the export names them its own
/// way, its tensors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceExit {
    pub file: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub feature: Option<String>,
    #[serde(default)]
    pub confidence: Option<String>,
    /// This segment's input → the previous segment's output it reads (an
    /// input not listed reads the output of its own name).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

/// `exits` entries are a file name or a table.
fn exit_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SourceExit>, D::Error> {
    struct Entry(SourceExit);
    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = SourceExit;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a segment's ONNX file name, or a table with its `file`")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<SourceExit, E> {
                    Ok(SourceExit {
                        file: v.to_string(),
                        ..SourceExit::default()
                    })
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SourceExit, A::Error> {
                    SourceExit::deserialize(de::value::MapAccessDeserializer::new(map))
                }
            }
            d.deserialize_any(V).map(Entry)
        }
    }
    Vec::<Entry>::deserialize(d).map(|v| v.into_iter().map(|e| e.0).collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceModel {
    pub model: String,
    #[serde(deserialize_with = "exit_entries")]
    pub exits: Vec<SourceExit>,
    /// With a `[head]`: the output of each segment the head reads.
    #[serde(default)]
    pub feature: Option<String>,
    /// Without a head: the output of each segment that is its action.
    #[serde(default)]
    pub action_output: Option<String>,
    /// The learned criterion: the output of each segment (but the last)
    /// that is its exit's confidence.
    #[serde(default)]
    pub confidence_output: Option<String>,
    #[serde(default)]
    pub head: Option<SourceHead>,
    #[serde(default)]
    pub action: ActionSpec,
    pub criterion: Criterion,
    #[serde(default)]
    pub preprocess: Option<Preprocess>,
    #[serde(default)]
    pub offload: Option<OffloadSpec>,
}

impl SourceModel {
    /// Exit `i`'s action output (no head).
    pub fn action(&self, i: usize) -> Option<&str> {
        self.exits[i]
            .action
            .as_deref()
            .or(self.action_output.as_deref())
    }

    /// Exit `i`'s feature output (with a head).
    pub fn feature(&self, i: usize) -> Option<&str> {
        self.exits[i].feature.as_deref().or(self.feature.as_deref())
    }

    /// Exit `i`'s confidence output (the learned criterion).
    pub fn confidence(&self, i: usize) -> Option<&str> {
        self.exits[i]
            .confidence
            .as_deref()
            .or(self.confidence_output.as_deref())
    }

    /// Every file it names, with its field: the exits, then the head.
    pub fn files(&self) -> Vec<(String, &str)> {
        self.exits
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("exits[{i}]"), e.file.as_str()))
            .chain(
                self.head
                    .iter()
                    .map(|h| ("head.artifact".to_string(), h.artifact.as_str())),
            )
            .collect()
    }
}

/// The description in `dir` and the problems it has on its own (the
/// graphs are checked against it next, and all problems reported at once).
pub(super) fn read_source(dir: &Path) -> Result<(PathBuf, SourceModel, Vec<Error>)> {
    let path = dir.join("model.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let (src, problems) = parse_source(dir, &path, &text)?;
    Ok((path, src, problems))
}

/// Checks `text` as the `model.toml` in `dir`, as `offramp build` does
/// before it reads any graph.
pub fn check_model_toml(dir: &Path, text: &str) -> Result<()> {
    let (_, problems) = parse_source(dir, &dir.join("model.toml"), text)?;
    Error::all(problems).map_or(Ok(()), Err)
}

/// Parses the description and checks it on its own.
fn parse_source(dir: &Path, path: &Path, text: &str) -> Result<(SourceModel, Vec<Error>)> {
    let src: SourceModel = toml::from_str(text).map_err(|e| Error::SourceSyntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut escapes = Vec::new();
    // Every file it names lies beside it (and is written beside the
    // manifest): checked before anything is read or copied.
    let tokenizer = src
        .preprocess
        .as_ref()
        .and_then(|p| p.tokenizer.as_deref())
        .map(|t| ("preprocess.tokenizer".to_string(), t));
    for (field, name) in src.files().into_iter().chain(tokenizer) {
        if let Err(why) = offramp_engines::join_inside(dir, name) {
            escapes.push(invalid(path, &field, why));
        }
    }
    // A file outside the directory is never read: refused before the rest.
    if let Some(e) = Error::all(escapes) {
        return Err(e);
    }
    let mut problems = Vec::new();
    let head = src.head.is_some();
    let last = src.exits.len().saturating_sub(1);
    let learned = src.criterion.kind == CriterionKind::Learned;
    // A problem of a top-level name (`action_output`, `feature`,
    // `confidence_output`) is named once, not once per exit it serves.
    let mut problem = |field: String, message: &str| {
        let e = invalid(path, &field, message);
        if !problems
            .iter()
            .any(|p: &Error| p.to_string() == e.to_string())
        {
            problems.push(e);
        }
    };
    for (i, e) in src.exits.iter().enumerate() {
        let field = |own: bool, name: &str, top: &str| match own {
            true => format!("exits[{i}].{name}"),
            false => top.to_string(),
        };
        match (head, src.feature(i), src.action(i)) {
            (true, Some(_), None) | (false, None, Some(_)) => {}
            (true, None, _) => problem(
                field(src.exits.iter().any(|e| e.feature.is_some()), "feature", "feature"),
                "missing: a model with a [head] names the output of each segment the head reads (`feature`, or `feature` in the exit's table)",
            ),
            (true, Some(_), Some(_)) => problem(
                field(e.action.is_some(), "action", "action_output"),
                "a model with a [head] takes its actions from the head; drop the action output (or the [head])",
            ),
            (false, _, None) => problem(
                field(src.exits.iter().any(|e| e.action.is_some()), "action", "action_output"),
                "missing: without a [head], name the output of each segment that is its action (`action_output`, or `action` in the exit's table)",
            ),
            (false, Some(_), Some(_)) => problem(
                field(e.feature.is_some(), "feature", "feature"),
                "a feature is what a head reads, and this model has no [head]",
            ),
        }
        match (src.confidence(i), learned) {
            (None, true) if i < last => problem(
                field(src.exits.iter().any(|e| e.confidence.is_some()), "confidence", "confidence_output"),
                "missing: the learned criterion reads each exit's confidence (`confidence_output`, or `confidence` in the exit's table)",
            ),
            (Some(_), false) => problem(
                field(e.confidence.is_some(), "confidence", "confidence_output"),
                "only the learned criterion (criterion.kind = \"learned\") reads a confidence",
            ),
            _ => {}
        }
        if i == 0 && !e.inputs.is_empty() {
            problem(
                field(true, "inputs", ""),
                "segment 0 reads the model inputs; only later segments map inputs to the previous segment's outputs",
            );
        }
    }
    if src.exits.is_empty() {
        problem("exits".into(), "list at least one exit segment");
    }
    Ok((src, problems))
}
