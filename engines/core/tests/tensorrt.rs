//! The TensorRT backend as far as a machine without a GPU allows: every
//! refusal is a clear error naming what is missing or mismatched, never a
//! panic. Which errors appear depends on how the crate was built: without the
//! `tensorrt` feature, with it but without TensorRT's headers (no shim), or
//! with the shim (then libnvinfer / libcuda are what is missing here).

mod common;
use common::*;
use offramp_engines::{BackendKind, Chain, EngineSet};

/// The tiny set, relabelled as TensorRT plans built with 10.3.0 on an Orin.
fn trt_set() -> (tempfile::TempDir, EngineSet) {
    let (dir, set) = built_tiny();
    let mut m = set.manifest.clone();
    m.build.backend = BackendKind::Tensorrt;
    m.build.tensorrt_version = Some("10.3.0".into());
    m.build.target_device = "Orin (compute 8.7)".into();
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    (dir, set)
}

fn load_err(set: &EngineSet) -> String {
    match Chain::load(set, BackendKind::Tensorrt) {
        Ok(_) => panic!("a TensorRT chain cannot load on this machine"),
        Err(e) => e.to_string(),
    }
}

#[cfg(not(feature = "tensorrt"))]
#[test]
fn without_the_feature_the_error_says_how_to_get_it() {
    let (_dir, set) = trt_set();
    let e = load_err(&set);
    assert!(e.contains("manifest.toml"), "{e}");
    assert!(e.contains("built without the `tensorrt` feature"), "{e}");
}

#[cfg(feature = "tensorrt")]
mod with_feature {
    use super::*;
    use offramp_engines::tensorrt::{check_device, check_version, open_library, TrtVersion};
    use std::path::Path;

    #[test]
    fn a_version_mismatch_is_refused_naming_both_versions() {
        let (_dir, set) = trt_set();
        let found = TrtVersion::parse("10.0.1").unwrap();
        let e = check_version(&set, found).unwrap_err().to_string();
        assert!(
            e.contains("manifest.toml: field `build.tensorrt_version`"),
            "{e}"
        );
        assert!(e.contains("built with TensorRT 10.3.0"), "{e}");
        assert!(e.contains("this machine has TensorRT 10.0.1"), "{e}");
        assert!(e.contains("offramp build --backend tensorrt"), "{e}");
        check_version(&set, TrtVersion::parse("10.3.0").unwrap()).unwrap();
    }

    #[test]
    fn a_cpu_set_is_not_a_tensorrt_set() {
        let (_dir, set) = built_tiny();
        let e = check_version(&set, TrtVersion::parse("10.3.0").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `build.tensorrt_version`: missing"), "{e}");
    }

    #[test]
    fn a_gpu_mismatch_is_refused_naming_both_gpus() {
        let (_dir, set) = trt_set();
        let e = check_device(&set, "NVIDIA H100 80GB HBM3 (compute 9.0)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `build.target_device`"), "{e}");
        assert!(e.contains("\"Orin (compute 8.7)\""), "{e}");
        assert!(e.contains("\"NVIDIA H100 80GB HBM3 (compute 9.0)\""), "{e}");
        check_device(&set, "Orin (compute 8.7)").unwrap();
    }

    #[test]
    fn loading_without_tensorrt_is_a_clear_error() {
        let (_dir, set) = trt_set();
        let e = load_err(&set);
        assert!(e.contains("the tensorrt backend is not available"), "{e}");
        // Either the shim is missing (no headers at build time), or the
        // library is (this machine has no TensorRT).
        assert!(
            e.contains("TENSORRT_INCLUDE_DIR") || e.contains("cannot open libnvinfer.so.10"),
            "{e}"
        );
    }

    #[test]
    fn opening_something_that_is_not_libnvinfer_is_refused() {
        let e = open_library(Some(Path::new("libm.so.6")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TENSORRT_INCLUDE_DIR") || e.contains("lacks getInferLibVersion"),
            "{e}"
        );
        let e = open_library(Some(Path::new("/nonexistent/libnvinfer.so.10")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/libnvinfer.so.10"), "{e}");
        assert!(
            e.contains("TENSORRT_INCLUDE_DIR") || e.contains("cannot open"),
            "{e}"
        );
    }
}
