//! Models as exporters name them (engines/models/testdata/exports, written
//! by tools/onnx/make_exports.py): `offramp init` drafts each model.toml,
//! `offramp build` builds it with no edit, and the chain computes what
//! onnxruntime computes on the export itself; a description with several
//! mistakes is refused once, naming each.

mod common;
use common::*;
use offramp_build::init::{init, InitOptions};
use offramp_build::split::{split, SplitOptions};
use offramp_engines::manifest::{ActionKind, DType};
use offramp_engines::EngineSet;
use offramp_engines_cpu::load_chain;
use std::path::PathBuf;
use std::process::Command;

fn exports() -> PathBuf {
    repo().join("engines/models/testdata/exports")
}

/// `init` then `build` of one export, into a fresh directory (`src/`,
/// `set/`).
fn init_and_build(export: &str) -> (tempfile::TempDir, EngineSet) {
    let dir = tempfile::tempdir().unwrap();
    let draft = init(&InitOptions {
        onnx: exports().join(export),
        out: Some(dir.path().join("src")),
    })
    .unwrap_or_else(|e| panic!("{export}: {e}"));
    assert!(draft.model_toml.is_file());
    build_dir(&dir.path().join("src"), &dir.path().join("set"))
        .unwrap_or_else(|e| panic!("{export}: {e}"));
    let set = EngineSet::open(dir.path().join("set")).expect("opens");
    (dir, set)
}

#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
/// Each export: init, build, and every exit's action against onnxruntime
/// running the export as written (the per-segment files chained as the
/// draft maps them; the full export itself).
#[test]
fn each_export_inits_builds_and_matches_onnxruntime() {
    // (export, onnxruntime reference: the full export's exit outputs, or
    // None for per-segment files)
    for (export, full) in [
        ("renamed", None),
        ("two-carried", None),
        ("tokens/full.onnx", Some("logits0,logits1,logits2,logits3")),
        ("vit/full.onnx", Some("a0,a1,a2,a3")),
    ] {
        let (dir, set) = init_and_build(export);
        let m = &set.manifest;
        assert_eq!(m.exits.len(), 4, "{export}");
        let mut chain = load_chain(&set).unwrap();
        let mut flat = Vec::new();
        for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
            let v = match m.inputs[k].dtype {
                DType::I64 => (0..buf.len()).map(|i| ((i * 7 + 3) % 10) as f32).collect(),
                DType::F32 => pattern(buf.len(), 9 + k as u32),
            };
            buf.copy_from_slice(&v);
            flat.extend_from_slice(&v);
        }
        let mut ours = Vec::new();
        for i in 0..4 {
            chain.run_exit(i).unwrap();
            ours.extend_from_slice(chain.run_head(i, &[]).unwrap().0);
        }
        let (input, output) = (dir.path().join("in.f32"), dir.path().join("out.f32"));
        f32s_to_file(&input, &flat);
        let mut cmd = Command::new(python());
        match full {
            Some(outputs) => cmd
                .arg(repo().join("tools/onnx/ort_full.py"))
                .arg("--onnx")
                .arg(exports().join(export))
                .args(["--outputs", outputs]),
            // The draft's directory holds the exports byte for byte.
            None => cmd
                .arg(repo().join("tools/onnx/ort_exports.py"))
                .arg("--onnx")
                .arg(dir.path().join("src")),
        };
        let run = cmd
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .output()
            .expect("python runs");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let theirs = f32s_from_file(&output);
        assert_eq!(ours.len(), theirs.len(), "{export}");
        let worst = max_abs_diff(&ours, &theirs);
        eprintln!("{export}: max |chain - onnxruntime on the export| = {worst:e}");
        assert!(worst <= 1e-5, "{export}: {worst}");
    }
}

#[test]
fn init_reads_what_each_export_names() {
    let (dir, set) = init_and_build("renamed");
    let m = &set.manifest;
    // Per-exit action names kept; the [1] token id given a batch axis.
    let actions: Vec<_> = m.exits.iter().map(|e| e.action.clone().unwrap()).collect();
    assert_eq!(actions, ["action0", "action1", "action2", "action3"]);
    assert_eq!(m.inputs[1].shape, [1, 1]);
    assert_eq!(m.inputs[1].dtype, DType::I64);
    // x_in renamed to the previous segment's x_out (its own x_out moved
    // aside), so the chain binds by name.
    assert_eq!(m.exits[1].inputs[0].name, "x_out");
    let text = std::fs::read_to_string(dir.path().join("src/model.toml")).unwrap();
    assert!(text.contains("inputs = { x_in = \"x_out\" }"), "{text}");
    // The export itself is untouched: the draft's copy is byte for byte.
    let theirs = std::fs::read(exports().join("renamed/segment1.onnx")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("src/segment1.onnx")).unwrap(),
        theirs
    );

    // Two tensors per boundary, in another order, under unrelated names,
    // every batch axis dynamic.
    let (dir, set) = init_and_build("two-carried");
    let text = std::fs::read_to_string(dir.path().join("src/model.toml")).unwrap();
    assert!(
        text.contains("inputs = { ctx = \"summary_0\", h = \"tokens_0\" }"),
        "{text}"
    );
    assert_eq!(set.manifest.inputs[0].shape, [1, 3, 16, 16]);

    // Token logits per exit, ids without a batch axis, from one full export.
    let (_dir, set) = init_and_build("tokens/full.onnx");
    let m = &set.manifest;
    assert_eq!(m.action.kind, ActionKind::Tokens);
    assert_eq!(m.action.bins.len(), 2);
    assert_eq!(m.inputs[1].shape, [1, 6]);
}

/// The TorchScript exporter shares a scalar `Constant` between blocks:
/// each segment computes the constants it reads, none crosses a boundary.
#[test]
fn split_gives_each_segment_the_constants_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let r = split(&SplitOptions {
        onnx: exports().join("vit/full.onnx"),
        exit_outputs: ["a0", "a1", "a2", "a3"].map(String::from).to_vec(),
        confidence_outputs: Vec::new(),
        cuts: Vec::new(),
        head: None,
        with: None,
        out: dir.path().to_path_buf(),
        tolerance: 1e-5,
    })
    .expect("splits");
    for (b, carried) in r.carried.iter().enumerate() {
        // Only the tokens: 17 x 32 values.
        let sizes: Vec<usize> = carried.iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes, [17 * 32], "boundary {b}: {carried:?}");
    }
    assert!(r.max_abs_diff.iter().all(|d| *d <= 1e-5), "{r:?}");
}

#[test]
fn a_description_with_five_mistakes_is_refused_once_naming_all_five() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..4 {
        let f = format!("segment{k}.onnx");
        std::fs::copy(exports().join("renamed").join(&f), dir.path().join(&f)).unwrap();
    }
    std::fs::write(
        dir.path().join("model.toml"),
        r#"model = "five-mistakes"

[[exits]]
file = "segment0.onnx"
action = "action0"

[[exits]]
file = "segment1.onnx"
action = "action1"
confidence = "c1"

[[exits]]
file = "segment2.onnx"
action = "act2"
inputs = { x_in = "x_out" }

[[exits]]
file = "segment9.onnx"
action = "action3"

[preprocess]
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
instruction = "instruction"
instruction_ids = [[0], [1]]

[criterion]
kind = "action-consistency"
continuous_dims = [0, 1]
exit0_reference = "ref"
"#,
    )
    .unwrap();
    let out = dir.path().join("set");
    let e = build_dir(dir.path(), &out).unwrap_err().to_string();
    assert!(e.starts_with("5 problems:"), "{e}");
    for expected in [
        // A confidence where the criterion reads none.
        "field `exits[1].confidence`: only the learned criterion",
        // The carried input not mapped, with the mapping that fits.
        "field `exits[1].inputs`: segment1.onnx reads \"x_in\" f32 [1, 17, 32], which is not an output of segment0.onnx",
        "exits[1] = { file = \"segment1.onnx\", inputs = { x_in = \"x_out\" } }",
        // An action the segment does not emit, with those it does.
        "field `exits[2].action`: \"act2\" is not an output of segment2.onnx (its outputs: \"x_out\" f32 [1, 17, 32], \"action2\" f32 [1, 2])",
        // A missing file.
        "field `exits[3]`: artifact",
        "segment9.onnx does not exist",
        // A reference segment 0 does not emit.
        "field `criterion.exit0_reference`: \"ref\" is not an output of segment0.onnx",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    assert!(!out.exists(), "a refused build leaves no --out");
}

/// A graph that needs renaming is never written over the export: building
/// in place is refused for it.
#[test]
fn an_export_that_needs_renaming_is_not_built_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    init(&InitOptions {
        onnx: exports().join("renamed"),
        out: Some(src.clone()),
    })
    .unwrap();
    let before = std::fs::read(src.join("segment1.onnx")).unwrap();
    let e = build_dir(&src, &src).unwrap_err().to_string();
    assert!(
        e.contains("building in place would replace the export"),
        "{e}"
    );
    assert_eq!(std::fs::read(src.join("segment1.onnx")).unwrap(), before);
    // And init does not draft over a model.toml that is there.
    let e = init(&InitOptions {
        onnx: src.clone(),
        out: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model.toml: field `model.toml`: already exists"),
        "{e}"
    );
}

/// DeeR's layout exported as a full model and its head beside it: init
/// finds the head (a graph taking the exits' feature), splits with it and
/// drafts the recurrent [head]; with two candidates it asks to confirm.
#[test]
fn init_finds_the_shared_head_beside_a_full_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = init(&InitOptions {
        onnx: repo().join("engines/models/testdata/shapes/recurrent/full.onnx"),
        out: Some(dir.path().join("src")),
    })
    .unwrap();
    assert!(
        d.confirm
            .iter()
            .any(|c| c.contains("head.onnx, stateless-head.onnx")),
        "{:?}",
        d.confirm
    );
    build_dir(&dir.path().join("src"), &dir.path().join("set")).unwrap();
    let set = EngineSet::open(dir.path().join("set")).unwrap();
    let h = set.manifest.head.as_ref().expect("a head");
    assert_eq!(
        (h.state_input.as_deref(), h.state_output.as_deref()),
        (Some("h_in"), Some("h_out"))
    );
    assert!(set.manifest.state_len() > 0);
    assert_eq!(set.manifest.exits[0].feature.as_deref(), Some("feature"));
}

/// A temporal attention head exported in the Hugging Face convention
/// (`past_key_values.{l}.key` in, `present.{l}.key` out, a mask, positions,
/// the attention weights): init drafts its `[head.cache]`, asks to confirm
/// the split of the slots, and the draft builds.
#[test]
fn init_drafts_the_cache_of_a_temporal_attention_head() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("export");
    std::fs::create_dir(&src).unwrap();
    let kv = repo().join("engines/models/testdata/kv-cache");
    for f in [
        "segment0.onnx",
        "segment1.onnx",
        "segment2.onnx",
        "head.onnx",
    ] {
        std::fs::copy(kv.join(f), src.join(f)).unwrap();
    }
    let d = init(&InitOptions {
        onnx: src.clone(),
        out: Some(dir.path().join("src")),
    })
    .unwrap();
    assert!(
        d.confirm.iter().any(|c| c.contains("head.cache: 9 slots")),
        "{:?}",
        d.confirm
    );
    assert!(
        d.guessed.iter().any(|g| g.contains("key/value cache")),
        "{:?}",
        d.guessed
    );
    build_dir(&dir.path().join("src"), &dir.path().join("set")).unwrap();
    let set = EngineSet::open(dir.path().join("set")).unwrap();
    let h = set.manifest.head.as_ref().expect("a head");
    assert_eq!(h.action_output, "action");
    let c = h.cache.as_ref().expect("a cache");
    let text = std::fs::read_to_string(kv.join("model.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let committed: offramp_engines::cache::CacheSpec =
        v["head"]["cache"].clone().try_into().unwrap();
    assert_eq!(
        (
            &c.past_keys,
            &c.present_values,
            &c.mask,
            &c.positions,
            &c.attention
        ),
        (
            &committed.past_keys,
            &committed.present_values,
            &committed.mask,
            &committed.positions,
            &committed.attention
        )
    );
    assert_eq!(c.sinks + c.saddles + c.recent, 9);
}
