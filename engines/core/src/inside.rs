//! Names read from files (a manifest's artifacts, `model.toml`'s segments,
//! head and tokenizer, a dataset's path templates) become paths one checked
//! way: a name from a file never reaches outside its directory.

use std::path::{Component, Path, PathBuf};

/// `dir` joined with `name`, where `name` is a relative path of ordinary
/// components (no `..`, no root, no drive). The error says what is wrong
/// with the name, for the caller to put beside its file and field.
pub fn join_inside(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    let escapes = path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    let names_a_file = path.components().any(|c| matches!(c, Component::Normal(_)));
    if escapes || !names_a_file {
        return Err(format!(
            "{name:?} must name a file inside {} (a relative path, no `..`)",
            dir.display()
        ));
    }
    Ok(dir.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_their_directory() {
        let dir = Path::new("/sets/demo");
        for ok in ["segment0.onnx", "sub/segment0.onnx", "./head.onnx"] {
            assert!(join_inside(dir, ok).unwrap().starts_with(dir), "{ok}");
        }
        for bad in [
            "",
            ".",
            "../escape.onnx",
            "sub/../../escape.onnx",
            "/etc/passwd",
            "a/../b.onnx",
        ] {
            let e = join_inside(dir, bad).unwrap_err();
            assert!(e.contains("inside /sets/demo"), "{bad}: {e}");
        }
    }
}
