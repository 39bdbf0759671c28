//! Chain loading by backend kind: the one place that knows every backend
//! crate. `offramp-engines` holds the format and the [`Chain`]; each backend
//! is a crate of its own (`offramp-engines-cpu`, always linked;
//! `offramp-engines-tensorrt`, with the `tensorrt` feature), so the choice
//! the manifest's [`BackendKind`] names is made here, above them all, for the
//! exit chain and the `offramp` command alike.

use offramp_engines::{BackendKind, Chain, EngineSet, Result};

/// Builds every engine of `set` with `backend`: on the CPU (tract, or
/// onnxruntime from `OFFRAMP_ONNXRUNTIME_LIB` or the system's), or as
/// TensorRT plans through the shim and library of
/// `offramp_engines_tensorrt::Options::from_env` (`OFFRAMP_TRT_SHIM`,
/// `OFFRAMP_TENSORRT_LIB`, `OFFRAMP_TRT_EAGER`). Without the `tensorrt`
/// feature a TensorRT set is refused with an error that says how to get it.
pub fn load_chain(set: &EngineSet, backend: BackendKind) -> Result<Chain> {
    match backend {
        BackendKind::Cpu => offramp_engines_cpu::load_chain(set),
        // On as many threads as tract would be (`--threads`).
        BackendKind::Onnxruntime => offramp_engines_onnxruntime::load_chain(
            set,
            &offramp_engines_onnxruntime::Options::from_env(offramp_engines_cpu::threads()),
        ),
        #[cfg(feature = "tensorrt")]
        BackendKind::Tensorrt => offramp_engines_tensorrt::load_chain(
            set,
            &offramp_engines_tensorrt::Options::from_env(),
        ),
        #[cfg(not(feature = "tensorrt"))]
        BackendKind::Tensorrt => Err(offramp_engines::Error::Unavailable {
            what: set.manifest_path.display().to_string(),
            backend: "tensorrt",
            why: "this offramp was built without the `tensorrt` feature; rebuild with \
                  `--features tensorrt`"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> EngineSet {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../engines/models/demo");
        EngineSet::open(&dir).unwrap()
    }

    #[cfg(not(feature = "tensorrt"))]
    #[test]
    fn without_the_feature_the_error_says_how_to_get_it() {
        let e = load_chain(&demo(), BackendKind::Tensorrt)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("manifest.toml"), "{e}");
        assert!(e.contains("built without the `tensorrt` feature"), "{e}");
    }

    #[test]
    fn a_cpu_set_loads_on_the_cpu() {
        let set = demo();
        let chain = load_chain(&set, BackendKind::Cpu).unwrap();
        assert_eq!(chain.exits(), set.manifest.loaded_exits());
    }
}
