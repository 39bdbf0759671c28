//! The `model.toml` a split writes for `offramp build`.

use super::{invalid, io, SplitOptions, CONFIDENCE};
use offramp_engines::{Error, Result};
use std::path::{Path, PathBuf};

/// `model.toml` for `offramp build`: the `--with` description plus the
/// segments, the exit output name, and the head and tokenizer files copied.
pub(super) fn write_description(
    opts: &SplitOptions,
    segments: &[String],
    rename: &str,
) -> Result<PathBuf> {
    let mut table = match &opts.with {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(io(p))?;
            toml::from_str::<toml::Table>(&text).map_err(|e| Error::SourceSyntax {
                path: p.clone(),
                message: e.to_string().trim_end().to_string(),
            })?
        }
        None => toml::Table::new(),
    };
    let with_dir = opts
        .with
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if table.contains_key("exits") {
        return Err(invalid(
            opts.with.as_deref().unwrap_or(&opts.onnx),
            "exits",
            "split writes the exits; leave them out of --with",
        ));
    }
    table.entry("model").or_insert_with(|| {
        toml::Value::String(
            opts.onnx
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
        )
    });
    table.insert(
        "exits".into(),
        toml::Value::Array(
            segments
                .iter()
                .map(|s| toml::Value::String(s.clone()))
                .collect(),
        ),
    );
    let key = if opts.head.is_some() {
        "feature"
    } else {
        "action_output"
    };
    table.insert(key.into(), toml::Value::String(rename.into()));
    if !opts.confidence_outputs.is_empty() {
        table.insert(
            "confidence_output".into(),
            toml::Value::String(CONFIDENCE.into()),
        );
    }
    if let Some(head) = &opts.head {
        let name = head
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "head.onnx".into());
        let dst = opts.out.join(&name);
        if head.canonicalize().ok() != dst.canonicalize().ok() {
            std::fs::copy(head, &dst).map_err(io(head))?;
        }
        match table.get_mut("head").and_then(toml::Value::as_table_mut) {
            Some(h) => {
                h.insert("artifact".into(), toml::Value::String(name));
            }
            None => {
                return Err(invalid(
                    opts.with.as_deref().unwrap_or(&opts.onnx),
                    "head",
                    "--head needs a [head] table in --with naming its feature, state and action tensors",
                ))
            }
        }
    }
    let tokenizer = table
        .get("preprocess")
        .and_then(|p| p.get("tokenizer"))
        .and_then(toml::Value::as_str)
        .map(str::to_string);
    if let Some(t) = tokenizer {
        let checked = |dir: &Path| {
            offramp_engines::join_inside(dir, &t).map_err(|why| {
                invalid(
                    opts.with.as_deref().unwrap_or(&opts.onnx),
                    "preprocess.tokenizer",
                    why,
                )
            })
        };
        let (src, dst) = (checked(&with_dir)?, checked(&opts.out)?);
        if src.canonicalize().ok() != dst.canonicalize().ok() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    let path = opts.out.join("model.toml");
    let text = format!(
        "# Source description read by `offramp build --onnx`; written by `offramp split`\n# from {}.\n{}",
        opts.onnx.display(),
        toml::to_string(&table).map_err(|e| Error::SourceSyntax {
            path: path.clone(),
            message: e.to_string(),
        })?
    );
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(path)
}
