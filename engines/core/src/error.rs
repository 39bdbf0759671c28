//! Errors of engine sets and backends. Every variant names the file and, where
//! there is one, the manifest field at fault.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The problems found, as one error: `None` for none, the problem
    /// itself for one, [`Error::Problems`] for several.
    pub fn all(mut problems: Vec<Error>) -> Option<Error> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(Error::Problems(problems)),
        }
    }
}

/// Every backend's first check in `Engine::run`: the caller passes as many
/// inputs and outputs as the engine has.
pub fn check_arity(
    artifact: &std::path::Path,
    got: (usize, usize),
    has: (usize, usize),
) -> Result<()> {
    if got == has {
        return Ok(());
    }
    Err(run_error(
        artifact,
        format!(
            "called with {} inputs and {} outputs, the engine has {} and {}",
            got.0, got.1, has.0, has.1
        ),
    ))
}

/// Where the manifest's tensor `name` is among an artifact's `side`
/// ("input" or "output") `names`: every backend binds by name, and says the
/// same when it cannot, listing what the artifact (`kind`: "graph", "plan")
/// has instead.
pub fn position_by_name<S: AsRef<str> + std::fmt::Debug>(
    names: &[S],
    name: &str,
    kind: &str,
    side: &str,
) -> std::result::Result<usize, String> {
    names
        .iter()
        .position(|n| n.as_ref() == name)
        .ok_or_else(|| format!("the {kind} has no {side} named {name:?} (its {side}s: {names:?})"))
}

/// What a backend's engine loaded from `artifact` fails a run with: the
/// error every backend builds the same way, made once.
pub fn run_error(artifact: &std::path::Path, message: String) -> Error {
    Error::Run {
        artifact: artifact.to_path_buf(),
        message,
    }
}

/// The problems of a list, one per line.
fn listed(problems: &[Error]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Several problems found in one pass (of a model description and its
    /// graphs): all of them, so one run names every fix.
    #[error("{} problems:{}", .0.len(), listed(.0))]
    Problems(Vec<Error>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid engine-set manifest: {message}")]
    ManifestSyntax { path: PathBuf, message: String },
    /// The `model.toml` that `offramp build` reads is malformed. It is not a
    /// manifest, so its errors must not send the user looking for one.
    #[error("{path}: not a valid model source description (model.toml): {message}")]
    SourceSyntax { path: PathBuf, message: String },
    /// A build option that cannot give a working engine set (e.g. INT8
    /// without calibration data), refused before anything is written.
    #[error("{option}: {message}")]
    BuildOption { option: String, message: String },
    #[error("{path}: field `format_version` is {found}; this build of offramp reads version {supported}")]
    UnknownVersion {
        path: PathBuf,
        found: i64,
        supported: u32,
    },
    #[error("{path}: field `{field}`: artifact {artifact} does not exist")]
    MissingArtifact {
        path: PathBuf,
        field: String,
        artifact: PathBuf,
    },
    #[error("{artifact}: SHA-256 is {actual} but field `{field}` of {path} says {expected}: the file is corrupt or was replaced")]
    ChecksumMismatch {
        path: PathBuf,
        field: String,
        artifact: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{artifact}: cannot be loaded by the {backend} backend: {message}")]
    Load {
        artifact: PathBuf,
        backend: &'static str,
        message: String,
    },
    #[error("{artifact}: {message}")]
    Run { artifact: PathBuf, message: String },
    #[error("{what}: the {backend} backend is not available in this build: {why}")]
    Unavailable {
        what: String,
        backend: &'static str,
        why: String,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tensor_is_bound_by_name_or_named_with_what_there_is() {
        let names = ["image", "state"];
        assert_eq!(
            super::position_by_name(&names, "state", "graph", "input"),
            Ok(1)
        );
        let e = super::position_by_name(&names, "img", "plan", "input").unwrap_err();
        assert_eq!(
            e,
            r#"the plan has no input named "img" (its inputs: ["image", "state"])"#
        );
    }
}
