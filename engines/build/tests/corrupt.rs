//! Every corrupt engine set is refused with an error naming the file and the
//! field at fault, before anything runs.

mod common;
use common::*;
use offramp_build::builder::{build, BuildOptions};
use offramp_engines::{BackendKind, EngineSet, Precision};
use std::path::Path;

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut toml::Table)) {
    let path = dir.join("manifest.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut t);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
}

fn exit_mut(t: &mut toml::Table, i: usize) -> &mut toml::Table {
    t["exits"].as_array_mut().unwrap()[i]
        .as_table_mut()
        .unwrap()
}

fn open_err(dir: &Path) -> String {
    EngineSet::open(dir)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn missing_artifact() {
    let (dir, _) = built_tiny();
    std::fs::remove_file(dir.path().join("segment1.onnx")).unwrap();
    let e = open_err(dir.path());
    assert!(
        e.contains("manifest.toml: field `exits[1].artifact`"),
        "{e}"
    );
    assert!(e.contains("segment1.onnx does not exist"), "{e}");
}

#[test]
fn checksum_mismatch() {
    let (dir, _) = built_tiny();
    let f = dir.path().join("segment2.onnx");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    let e = open_err(dir.path());
    assert!(e.contains("segment2.onnx: SHA-256 is"), "{e}");
    assert!(e.contains("field `exits[2].sha256`"), "{e}");
    assert!(e.contains("corrupt or was replaced"), "{e}");
}

#[test]
fn shape_mismatch_between_consecutive_segments() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        let input = exit_mut(t, 2)["inputs"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap();
        input["shape"] = toml::Value::Array(vec![1.into(), 17.into(), 16.into()]);
    });
    let e = open_err(dir.path());
    assert!(e.contains("field `exits[2].inputs[0]`"), "{e}");
    assert!(
        e.contains("\"hidden1\" is F32 [1, 17, 16] but exits[1] (exit1) provides F32 [1, 17, 32]"),
        "{e}"
    );
}

#[test]
fn input_without_a_source() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        let input = exit_mut(t, 1)["inputs"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap();
        input["name"] = "hidden7".into();
    });
    let e = open_err(dir.path());
    assert!(
        e.contains(
            "field `exits[1].inputs[0]`: \"hidden7\" is not among the outputs of exits[0] (exit0)"
        ),
        "{e}"
    );
}

#[test]
fn unknown_dtype() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        let o = exit_mut(t, 0)["outputs"].as_array_mut().unwrap()[1]
            .as_table_mut()
            .unwrap();
        o["dtype"] = "f16".into();
    });
    let e = open_err(dir.path());
    assert!(
        e.contains("manifest.toml: not a valid engine-set manifest"),
        "{e}"
    );
    assert!(
        e.contains("unknown variant `f16`, expected `f32` or `i64`"),
        "{e}"
    );
}

#[test]
fn unknown_manifest_version() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        t["format_version"] = 7.into();
    });
    let e = open_err(dir.path());
    assert!(
        e.ends_with(
            "manifest.toml: field `format_version` is 7; this build of offramp reads version 1"
        ),
        "{e}"
    );
}

#[test]
fn unknown_field_is_named() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        exit_mut(t, 0).insert("flops".into(), 5.into());
    });
    let e = open_err(dir.path());
    assert!(e.contains("unknown field `flops`"), "{e}");
}

#[test]
fn threshold_count_and_values() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        t["criterion"].as_table_mut().unwrap()["thresholds"] = toml::Value::Array(vec![0.1.into()]);
    });
    let e = open_err(dir.path());
    assert!(
        e.contains("field `criterion.thresholds`: 1 thresholds for 3 exits"),
        "{e}"
    );
    edit_manifest(dir.path(), |t| {
        t["criterion"].as_table_mut().unwrap()["thresholds"] =
            toml::Value::Array(vec![0.1.into(), (-1.0).into()]);
    });
    let e = open_err(dir.path());
    assert!(
        e.contains("field `criterion.thresholds[1]`: -1 is not a threshold"),
        "{e}"
    );
}

#[test]
fn a_fixed_exit_past_the_deepest_loaded_exit_is_refused() {
    let (dir, _) = built_tiny();
    let set = |fixed: i64, deepest: i64| {
        edit_manifest(dir.path(), |t| {
            let c = t["criterion"].as_table_mut().unwrap();
            c.insert("kind".into(), "fixed".into());
            c.insert("fixed_exit".into(), fixed.into());
            c.insert("deepest_exit".into(), deepest.into());
        });
    };
    set(1, 1);
    EngineSet::open(dir.path()).expect("exit 1 of exits 0..=1");
    // Exits 0..=1 are loaded: exit 2 would have run as exit 1.
    set(2, 1);
    let e = open_err(dir.path());
    assert!(
        e.contains("field `criterion.fixed_exit`: 2 is past criterion.deepest_exit (1)"),
        "{e}"
    );
}

/// A manifest the runtime would refuse is not written: the set on disk keeps
/// the manifest it had (calibrate once wrote it first and found out at the
/// reload, leaving a set that no longer loaded).
#[test]
fn a_manifest_that_would_not_load_is_not_written() {
    let (dir, set) = built_tiny();
    let before = std::fs::read(dir.path().join("manifest.toml")).unwrap();
    let mut m = set.manifest.clone();
    m.criterion.kind = offramp_engines::manifest::CriterionKind::Fixed;
    m.criterion.fixed_exit = Some(2);
    m.criterion.deepest_exit = Some(1);
    let e = EngineSet::write_manifest(dir.path(), &m)
        .expect_err("must be refused")
        .to_string();
    assert!(
        e.contains("field `criterion.fixed_exit`: 2 is past criterion.deepest_exit (1)"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("manifest.toml")).unwrap(),
        before
    );
    EngineSet::open(dir.path()).expect("the set still loads");
}

#[test]
fn head_state_must_carry_over() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        let head = t["head"].as_table_mut().unwrap();
        let out = head["outputs"].as_array_mut().unwrap()[1]
            .as_table_mut()
            .unwrap();
        out["shape"] = toml::Value::Array(vec![1.into(), 16.into()]);
    });
    let e = open_err(dir.path());
    assert!(e.contains("field `head.state_output`"), "{e}");
    assert!(e.contains("the recurrent state cannot carry over"), "{e}");
}

#[test]
fn artifact_outside_the_set() {
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        exit_mut(t, 0)["artifact"] = "../segment0.onnx".into();
    });
    let e = open_err(dir.path());
    assert!(
        e.contains("field `exits[0].artifact`: \"../segment0.onnx\" must name a file inside"),
        "{e}"
    );
}

/// `offramp build` joined model.toml's names unchecked: a segment named
/// `../escape.onnx` was copied outside `--out` before the build refused
/// it. Every name is checked before anything is read or written.
#[test]
fn a_source_that_names_files_outside_its_directory_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for f in [
        "segment0.onnx",
        "segment1.onnx",
        "segment2.onnx",
        "head.onnx",
    ] {
        std::fs::copy(tiny_onnx().join(f), src.join(f)).unwrap();
    }
    std::fs::copy(
        tiny_onnx().join("segment0.onnx"),
        tmp.path().join("escape.onnx"),
    )
    .unwrap();
    let toml = std::fs::read_to_string(tiny_onnx().join("model.toml")).unwrap();
    for (field, edited) in [
        (
            "exits[0]",
            toml.replace("\"segment0.onnx\"", "\"../escape.onnx\""),
        ),
        (
            "exits[1]",
            toml.replace("\"segment1.onnx\"", "\"/etc/passwd\""),
        ),
        (
            "head.artifact",
            toml.replace("artifact = \"head.onnx\"", "artifact = \"../escape.onnx\""),
        ),
    ] {
        assert_ne!(edited, toml, "{field}");
        std::fs::write(src.join("model.toml"), edited).unwrap();
        let e = build(
            &BuildOptions {
                onnx_dir: src.clone(),
                out_dir: out.join("set"),
                backend: BackendKind::Cpu,
                precision: Precision::Fp32,
                int8_calibration_cache: None,
                offramp_version: "test".into(),
            },
            &mut |_| {},
        )
        .expect_err("must be refused")
        .to_string();
        assert!(
            e.contains("model.toml") && e.contains(&format!("`{field}`")) && e.contains("inside"),
            "{field}: {e}"
        );
        // Nothing was written outside --out, nor into it.
        assert!(!out.join("escape.onnx").exists(), "{field}");
        assert!(!out.join("set").exists(), "{field}");
    }
}

#[test]
fn corrupt_engine_with_matching_checksum() {
    // A file that passes its checksum but is not a model: the backend says so.
    let (dir, _) = built_tiny();
    let f = dir.path().join("segment1.onnx");
    std::fs::write(&f, b"not an onnx model at all").unwrap();
    let sha = offramp_engines::sha256_file(&f).unwrap();
    edit_manifest(dir.path(), |t| {
        exit_mut(t, 1)["sha256"] = sha.into();
    });
    let set = EngineSet::open(dir.path()).unwrap();
    let e = offramp_engines_cpu::load_chain(&set)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("segment1.onnx: cannot be loaded by the cpu backend"),
        "{e}"
    );
}

#[test]
fn manifest_shapes_that_the_graph_does_not_produce() {
    // A manifest consistent with itself (every exit hands the head a
    // [1, 33] feature, and the head takes [1, 33]) but not with the
    // graphs, whose feature is [1, 32]: only the backend's check of a
    // loaded graph against the manifest can catch it, and names the
    // artifact.
    let (dir, _) = built_tiny();
    edit_manifest(dir.path(), |t| {
        for exit in t["exits"].as_array_mut().unwrap() {
            for o in exit["outputs"].as_array_mut().unwrap() {
                let o = o.as_table_mut().unwrap();
                if o["name"].as_str() == Some("feature") {
                    o["shape"] = toml::Value::Array(vec![1.into(), 33.into()]);
                }
            }
        }
        let head_in = t["head"].as_table_mut().unwrap()["inputs"]
            .as_array_mut()
            .unwrap()[0]
            .as_table_mut()
            .unwrap();
        head_in["shape"] = toml::Value::Array(vec![1.into(), 33.into()]);
    });
    let set = EngineSet::open(dir.path()).expect("consistent with itself");
    let e = offramp_engines_cpu::load_chain(&set)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("segment0.onnx")
            && e.contains("(\"feature\")")
            && e.contains("the manifest says f32 [1, 33]"),
        "{e}"
    );
}

#[test]
fn build_errors_name_the_source() {
    let out = tempfile::tempdir().unwrap();
    let opts = |onnx: &Path, precision| BuildOptions {
        onnx_dir: onnx.to_path_buf(),
        out_dir: out.path().to_path_buf(),
        backend: BackendKind::Cpu,
        precision,
        int8_calibration_cache: None,
        offramp_version: "test".into(),
    };
    let empty = tempfile::tempdir().unwrap();
    let e = build(&opts(empty.path(), Precision::Fp32), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.toml: No such file"), "{e}");

    let e = build(&opts(&tiny_onnx(), Precision::Fp16), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `precision`: the cpu backend runs fp32 only"),
        "{e}"
    );

    let src = tempfile::tempdir().unwrap();
    for f in ["model.toml", "segment0.onnx", "segment2.onnx", "head.onnx"] {
        std::fs::copy(tiny_onnx().join(f), src.path().join(f)).unwrap();
    }
    let e = build(&opts(src.path(), Precision::Fp32), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field `exits[1]`: artifact") && e.contains("segment1.onnx does not exist"),
        "{e}"
    );

    // Segments that do not chain: 0 then 2 (which wants hidden1).
    std::fs::copy(
        tiny_onnx().join("segment2.onnx"),
        src.path().join("segment1.onnx"),
    )
    .unwrap();
    let e = build(&opts(src.path(), Precision::Fp32), &mut |_| {})
        .unwrap_err()
        .to_string();
    // Both boundaries at once, each with the mapping that would fit.
    assert!(
        e.starts_with("2 problems:")
            && e.contains("field `exits[1].inputs`: segment1.onnx reads \"hidden1\" f32 [1, 17, 32], which is not an output of segment0.onnx")
            && e.contains("exits[1] = { file = \"segment1.onnx\", inputs = { hidden1 = \"hidden0\" } }")
            && e.contains("field `exits[2].inputs`: segment2.onnx reads \"hidden1\""),
        "{e}"
    );

    let e = build(
        &BuildOptions {
            backend: BackendKind::Tensorrt,
            ..opts(&tiny_onnx(), Precision::Fp16)
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("trtexec not found"), "{e}");
}

/// A build refused part way (here: the second segment's file is missing,
/// after the first was read) leaves `--out` as it was: absent when it was,
/// or holding the set it held, byte for byte; no staging directory stays.
#[test]
fn a_refused_build_leaves_out_as_it_was() {
    let (set_dir, _) = built_tiny();
    let src = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tiny_onnx()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), src.path().join(e.file_name())).unwrap();
    }
    std::fs::remove_file(src.path().join("segment1.onnx")).unwrap();
    let snapshot = |dir: &Path| -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("set");
    let existing = set_dir.path().to_path_buf();
    std::fs::write(existing.join("keep.txt"), "mine").unwrap();
    let before = snapshot(&existing);
    for out in [&fresh, &existing] {
        let e = build(
            &BuildOptions {
                onnx_dir: src.path().to_path_buf(),
                out_dir: out.clone(),
                backend: BackendKind::Cpu,
                precision: Precision::Fp32,
                int8_calibration_cache: None,
                offramp_version: "test".into(),
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("segment1.onnx"), "{e}");
    }
    assert!(!fresh.exists(), "a refused build created --out");
    assert_eq!(snapshot(&existing), before, "a refused build changed --out");
    assert!(
        std::fs::read_dir(parent.path()).unwrap().next().is_none(),
        "a staging directory stayed"
    );
    let name = existing.file_name().unwrap().to_string_lossy().into_owned();
    let staged = std::fs::read_dir(existing.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!(".{name}.building-"))
        })
        .count();
    assert_eq!(staged, 0, "a staging directory stayed");
}
