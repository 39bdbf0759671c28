//! The model shapes a user brings (engines/models/testdata/shapes, written by
//! tools/onnx/make_shapes.py): each full export is split by `offramp split`,
//! built, and run as a chain that computes what the full model computes; and
//! a model that does not fit is refused, naming the file, the field and what
//! was expected.

mod common;
use common::*;

use offramp_build::split::{split, SplitOptions, SplitReport};
use offramp_engines::manifest::{ActionKind, DType};
use offramp_engines::EngineSet;
use offramp_engines_cpu::load_chain;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Shape {
    /// The directory under engines/models/testdata/shapes.
    name: &'static str,
    exits: &'static str,
    cuts: &'static str,
    /// The head's ONNX file, if the shape has one.
    head: Option<&'static str>,
    with: &'static str,
    /// The learned criterion's confidence outputs ("" for none).
    confidences: &'static str,
}

const PER_EXIT: Shape = Shape {
    name: "per-exit",
    exits: "a0,a1,a2,a3",
    cuts: "hidden0,pooled0;hidden1;hidden2",
    head: None,
    with: "with.toml",
    confidences: "",
};
const RECURRENT: Shape = Shape {
    name: "recurrent",
    exits: "f0,f1,f2,f3",
    cuts: "hidden0;hidden1;hidden2",
    head: Some("head.onnx"),
    with: "with.toml",
    confidences: "",
};
const STATELESS: Shape = Shape {
    name: "recurrent",
    exits: "f0,f1,f2,f3",
    cuts: "hidden0;hidden1;hidden2",
    head: Some("stateless-head.onnx"),
    with: "with-stateless.toml",
    confidences: "",
};
/// Blocks that read a stem embedding and a model input: no cuts given.
const SKIP: Shape = Shape {
    name: "skip",
    exits: "a0,a1,a2,a3",
    cuts: "",
    head: None,
    with: "with.toml",
    confidences: "",
};
/// Two cameras with their own preprocessing; exit 2 reads the wrist
/// image again.
const CAMERAS: Shape = Shape {
    name: "cameras",
    exits: "a0,a1,a2,a3",
    cuts: "hidden0;hidden1;hidden2",
    head: None,
    with: "with.toml",
    confidences: "",
};
/// Learned exits: per-exit actions and a confidence per exit but the last.
const LEARNED: Shape = Shape {
    name: "learned",
    exits: "a0,a1,a2,a3",
    cuts: "hidden0;hidden1;hidden2",
    head: None,
    with: "with.toml",
    confidences: "c0,c1,c2",
};
const TOKENS: Shape = Shape {
    name: "tokens",
    exits: "t0,t1,t2,t3",
    cuts: "hidden0;hidden1;hidden2",
    head: None,
    with: "with.toml",
    confidences: "",
};

fn shape_dir(name: &str) -> PathBuf {
    repo().join("engines/models/testdata/shapes").join(name)
}

fn options(s: &Shape, out: &Path) -> SplitOptions {
    let dir = shape_dir(s.name);
    SplitOptions {
        onnx: dir.join("full.onnx"),
        exit_outputs: s.exits.split(',').map(str::to_string).collect(),
        confidence_outputs: match s.confidences {
            "" => Vec::new(),
            c => c.split(',').map(str::to_string).collect(),
        },
        cuts: match s.cuts {
            "" => Vec::new(),
            c => c
                .split(';')
                .map(|b| b.split(',').map(str::to_string).collect())
                .collect(),
        },
        head: s.head.map(|h| dir.join(h)),
        with: Some(dir.join(s.with)),
        out: out.to_path_buf(),
        tolerance: 1e-5,
    }
}

/// Splits and builds one shape into a fresh directory (`src/`, `set/`).
fn split_and_build(s: &Shape) -> (tempfile::TempDir, EngineSet, SplitReport) {
    let dir = tempfile::tempdir().unwrap();
    let report = split(&options(s, &dir.path().join("src"))).expect("splits");
    build_dir(&dir.path().join("src"), &dir.path().join("set")).expect("builds");
    let set = EngineSet::open(dir.path().join("set")).expect("opens");
    (dir, set, report)
}

#[test]
fn each_shape_splits_into_a_chain_equal_to_the_full_model() {
    for s in [
        PER_EXIT, RECURRENT, STATELESS, SKIP, CAMERAS, LEARNED, TOKENS,
    ] {
        let (_dir, set, r) = split_and_build(&s);
        assert_eq!(r.segments.len(), 4, "{}", s.name);
        for (i, d) in r.max_abs_diff.iter().enumerate() {
            assert!(*d <= 1e-5, "{} exit {i}: {d}", s.name);
        }
        let m = &set.manifest;
        assert_eq!(m.exits.len(), 4);
        assert_eq!(m.head.is_some(), s.head.is_some(), "{}", s.name);
        let mut chain = load_chain(&set).unwrap();
        let state = vec![0.0; m.state_len()];
        for i in 0..4 {
            chain.run_exit(i).unwrap();
            let (a, _) = chain.run_head(i, &state).unwrap();
            assert_eq!(a.len(), m.action_tensor().unwrap().elements());
            assert!(a.iter().all(|x| x.is_finite()), "{} exit {i}", s.name);
        }
    }
    // The stateless head: no state, and its action from the feature alone.
    let (_dir, set, _) = split_and_build(&STATELESS);
    assert_eq!(set.manifest.state_len(), 0);
    assert_eq!(set.manifest.head.as_ref().unwrap().inputs.len(), 1);
    // Two tensors cross the first boundary of the per-exit model.
    let (_dir, set, r) = split_and_build(&PER_EXIT);
    assert_eq!(r.carried[0].len(), 2);
    let names: Vec<&str> = set.manifest.exits[1]
        .inputs
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["hidden0", "pooled0"]);
    // The token model: ids from its tokenizer, padded to the input's 6.
    let (_dir, set, _) = split_and_build(&TOKENS);
    let m = &set.manifest;
    assert_eq!(m.action.kind, ActionKind::Tokens);
    assert_eq!(m.action_dims(), 2);
    assert_eq!(m.inputs[1].dtype, DType::I64);
    let p = m.preprocess.as_ref().unwrap();
    assert_eq!(p.instruction_ids[0], [2, 3, 4, 5, 9, 0]);
    assert_eq!(p.instruction_ids[3], [2, 3, 4, 8, 9, 0]);
    assert_eq!(p.tokenizer, None);
    // Its last block reads the ids again: carried as f32 to segment 3.
    let carried = |i: usize| {
        m.exits[i]
            .inputs
            .iter()
            .find(|t| t.name.starts_with("instruction"))
            .map(|t| (t.name.clone(), t.dtype))
    };
    assert_eq!(carried(1), Some(("instruction__b0".into(), DType::F32)));
    assert_eq!(carried(3), Some(("instruction__b2".into(), DType::F32)));
    // Two cameras: each image input with its own normalisation, and the
    // wrist image passed through to the segment that reads it again.
    let (_dir, set, _) = split_and_build(&CAMERAS);
    let m = &set.manifest;
    let images = m.preprocess.as_ref().unwrap().image_inputs(&m.inputs);
    let names: Vec<&str> = images.iter().map(|i| i.input.as_str()).collect();
    assert_eq!(names, ["front", "wrist"]);
    assert_eq!(images[1].std, [0.229, 0.224, 0.225]);
    assert!(
        m.exits[2]
            .inputs
            .iter()
            .any(|t| t.name.starts_with("wrist")),
        "{:?}",
        m.exits[2].inputs
    );
}

#[test]
#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
fn chained_segments_equal_onnxruntimes_full_model() {
    for s in [
        PER_EXIT, RECURRENT, STATELESS, SKIP, CAMERAS, LEARNED, TOKENS,
    ] {
        let (dir, set, _) = split_and_build(&s);
        let m = &set.manifest;
        let mut chain = load_chain(&set).unwrap();
        let mut flat = Vec::new();
        for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
            let v = match m.inputs[k].dtype {
                // Instruction 2's token ids.
                DType::I64 => m.preprocess.as_ref().unwrap().instruction_ids[2]
                    .iter()
                    .map(|&id| id as f32)
                    .collect(),
                DType::F32 => pattern(buf.len(), 5 + k as u32),
            };
            buf.copy_from_slice(&v);
            flat.extend_from_slice(&v);
        }
        let mut ours = Vec::new();
        for i in 0..4 {
            chain.run_exit(i).unwrap();
            // The exit outputs of the full graph: the action (or logits)
            // without a head, the feature with one.
            if s.head.is_some() {
                ours.extend_from_slice(chain.feature(i));
            } else {
                ours.extend_from_slice(chain.run_head(i, &[]).unwrap().0);
            }
        }
        // Then each exit's confidence, for the learned criterion.
        for (i, seg) in m.exits.iter().enumerate() {
            if let Some(c) = &seg.confidence {
                let k = chain.output_index(i, c).unwrap();
                ours.extend_from_slice(chain.exit_output(i, k));
            }
        }
        let outputs = match s.confidences {
            "" => s.exits.to_string(),
            c => format!("{},{c}", s.exits),
        };
        let input = dir.path().join("in.f32");
        let output = dir.path().join("out.f32");
        f32s_to_file(&input, &flat);
        let run = Command::new(python())
            .arg(repo().join("tools/onnx/ort_full.py"))
            .arg("--onnx")
            .arg(shape_dir(s.name).join("full.onnx"))
            .arg("--input")
            .arg(&input)
            .arg("--outputs")
            .arg(&outputs)
            .arg("--output")
            .arg(&output)
            .output()
            .expect("python runs");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let theirs: Vec<f32> = f32s_from_file(&output);
        assert_eq!(ours.len(), theirs.len(), "{}", s.name);
        let worst = max_abs_diff(&ours, &theirs);
        eprintln!("{}: max |chain - onnxruntime full| = {worst:e}", s.name);
        assert!(worst <= 1e-5, "{}: {worst}", s.name);
    }
}

// ---- refusals: each names the file, the field, and what was expected ----

fn edit(dir: &Path, f: impl FnOnce(&mut toml::Table)) {
    let path = dir.join("manifest.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut t);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
}

fn table<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.get_mut(key).unwrap().as_table_mut().unwrap()
}

fn exit(t: &mut toml::Table, i: usize) -> &mut toml::Table {
    t["exits"].as_array_mut().unwrap()[i]
        .as_table_mut()
        .unwrap()
}

/// Edits a built set of `s` and returns the error opening it gives.
fn refused(s: &Shape, f: impl FnOnce(&mut toml::Table)) -> String {
    let (dir, _, _) = split_and_build(s);
    let set = dir.path().join("set");
    edit(&set, f);
    let e = EngineSet::open(&set)
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("manifest.toml: field `"), "{e}");
    e
}

#[test]
fn image_inputs_are_model_images_each_fed_by_one_camera() {
    fn image(t: &mut toml::Table, k: usize) -> &mut toml::Table {
        table(t, "preprocess")["images"].as_array_mut().unwrap()[k]
            .as_table_mut()
            .unwrap()
    }
    type Case = (&'static str, fn(&mut toml::Table), &'static [&'static str]);
    let cases: [Case; 6] = [
        (
            "unknown input",
            |t| image(t, 1)["input"] = "nope".into(),
            &[
                "`preprocess.images[1].input`",
                "\"nope\" is not a model input",
            ],
        ),
        (
            "two cameras, one input",
            |t| image(t, 1)["input"] = "front".into(),
            &["`preprocess.images[1].input`", "fed by two cameras"],
        ),
        (
            "the instruction as an image",
            |t| image(t, 1)["input"] = "instruction".into(),
            &["`preprocess.images[1].input`", "is the instruction input"],
        ),
        (
            "a zero std",
            |t| image(t, 0)["std"].as_array_mut().unwrap()[2] = 0.0.into(),
            &["`preprocess.images[0].std[2]`", "not a positive number"],
        ),
        (
            "mean beside images",
            |t| {
                table(t, "preprocess").insert("mean".into(), vec![0.5; 3].into());
            },
            &["`preprocess.images`", "remove preprocess.mean"],
        ),
        (
            "an input no camera feeds",
            |t| {
                table(t, "preprocess")["images"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            },
            &[
                "\"wrist\" is neither an image input (front) nor the instruction input",
                "field `inputs[",
            ],
        ),
    ];
    for (what, f, want) in cases {
        let e = refused(&CAMERAS, f);
        for w in want {
            assert!(e.contains(w), "{what}: {e}");
        }
    }
    // One camera: mean and std are both needed.
    let e = refused(&PER_EXIT, |t| {
        table(t, "preprocess").remove("std");
    });
    assert!(e.contains("`preprocess.std`: missing"), "{e}");
}

#[test]
fn a_set_without_a_head_needs_every_exits_action() {
    let e = refused(&PER_EXIT, |t| {
        exit(t, 2).remove("action");
    });
    assert!(e.contains("`exits[2].action`"), "{e}");
    assert!(e.contains("names each segment's action output"), "{e}");
    let e = refused(&PER_EXIT, |t| {
        exit(t, 1)["action"] = "nope".into();
    });
    assert!(e.contains("`exits[1].action`"), "{e}");
    assert!(
        e.contains("\"nope\" is not an output of this segment"),
        "{e}"
    );
}

#[test]
fn every_exit_emits_the_same_action() {
    let e = refused(&PER_EXIT, |t| {
        // Exit 3's action pointed at its carried input's shape instead.
        let seg = exit(t, 2);
        seg["action"] = "hidden2".into();
    });
    assert!(e.contains("`exits[2].action`"), "{e}");
    assert!(
        e.contains("\"hidden2\" is [1, 17, 32] but exit 0's action is [1, 2]"),
        "{e}"
    );
}

#[test]
fn a_feature_is_for_a_head() {
    let e = refused(&PER_EXIT, |t| {
        exit(t, 0).insert("feature".into(), "action".into());
    });
    assert!(e.contains("`exits[0].feature`"), "{e}");
    assert!(e.contains("this set has no [head]"), "{e}");
}

#[test]
fn token_bins_must_match_the_action_tensor() {
    let e = refused(&TOKENS, |t| {
        for row in table(t, "action")["bins"].as_array_mut().unwrap() {
            row.as_array_mut().unwrap().pop();
        }
    });
    assert!(e.contains("`action.bins`"), "{e}");
    assert!(
        e.contains(
            "2 dimensions of 6 bins need an action tensor [1, 2, 6], but \"action\" is [1, 2, 7]"
        ),
        "{e}"
    );
    let e = refused(&TOKENS, |t| {
        table(t, "action")["bins"].as_array_mut().unwrap()[1]
            .as_array_mut()
            .unwrap()
            .pop();
    });
    assert!(e.contains("`action.bins[1]`"), "{e}");
    assert!(e.contains("6 bins but dimension 0 has 7"), "{e}");
}

#[test]
fn a_recurrent_state_needs_both_ends_and_a_stateless_head_one_input() {
    let e = refused(&RECURRENT, |t| {
        table(t, "head").remove("state_output");
    });
    assert!(e.contains("`head`"), "{e}");
    assert!(
        e.contains("state_input and state_output go together"),
        "{e}"
    );
    let e = refused(&RECURRENT, |t| {
        let h = table(t, "head");
        h.remove("state_output");
        h.remove("state_input");
    });
    assert!(e.contains("`head.inputs`"), "{e}");
    assert!(
        e.contains("a stateless head takes only the feature; this one has 2 inputs"),
        "{e}"
    );
}

#[test]
fn only_the_instruction_input_holds_token_ids() {
    let e = refused(&TOKENS, |t| {
        t["inputs"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap()["dtype"] = "i64".into();
    });
    assert!(e.contains("`inputs[0]`"), "{e}");
    assert!(
        e.contains("\"image\" is I64; only the instruction input ([preprocess] instruction) may hold token ids"),
        "{e}"
    );
}

#[test]
fn token_id_instructions_need_ids_of_the_inputs_length() {
    let e = refused(&TOKENS, |t| {
        table(t, "preprocess").remove("instruction_ids");
    });
    assert!(e.contains("`preprocess.instruction_ids`"), "{e}");
    assert!(e.contains("\"instruction\" takes token ids"), "{e}");
    let e = refused(&TOKENS, |t| {
        table(t, "preprocess")["instruction_ids"]
            .as_array_mut()
            .unwrap()[2]
            .as_array_mut()
            .unwrap()
            .pop();
    });
    assert!(e.contains("`preprocess.instruction_ids[2]`"), "{e}");
    assert!(e.contains("5 ids; \"instruction\" takes 6"), "{e}");
    let e = refused(&TOKENS, |t| {
        table(t, "preprocess")["instruction_ids"]
            .as_array_mut()
            .unwrap()[0]
            .as_array_mut()
            .unwrap()[0] = (-3).into();
    });
    assert!(e.contains("token id -3 is outside 0..2^24"), "{e}");
}

fn split_err(s: &Shape, f: impl FnOnce(&mut SplitOptions)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(s, &dir.path().join("src"));
    f(&mut o);
    let e = split(&o).expect_err("must be refused").to_string();
    assert!(e.contains("full.onnx: field `"), "{e}");
    assert!(
        !dir.path().join("src/model.toml").exists(),
        "a refused split writes no description"
    );
    e
}

/// `split` copied the `--with` description's tokenizer unchecked: a
/// `../` name was read from beside the description's directory and written
/// beside `--out`. The name must stay inside both.
#[test]
fn split_keeps_the_tokenizer_inside_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let with_dir = dir.path().join("with");
    std::fs::create_dir_all(&with_dir).unwrap();
    std::fs::write(dir.path().join("outside.json"), "{}").unwrap();
    let mut t: toml::Table = toml::from_str(
        &std::fs::read_to_string(shape_dir(PER_EXIT.name).join(PER_EXIT.with)).unwrap(),
    )
    .unwrap();
    let p = t
        .entry("preprocess")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .unwrap();
    p.insert("tokenizer".into(), "../outside.json".into());
    let with = with_dir.join("with.toml");
    std::fs::write(&with, toml::to_string(&t).unwrap()).unwrap();
    let out = dir.path().join("out").join("src");
    let mut o = options(&PER_EXIT, &out);
    o.with = Some(with);
    let e = split(&o).expect_err("must be refused").to_string();
    assert!(
        e.contains("with.toml") && e.contains("`preprocess.tokenizer`") && e.contains("inside"),
        "{e}"
    );
    assert!(!dir.path().join("out/outside.json").exists());
    assert!(!out.join("model.toml").exists());
}

#[test]
fn split_refuses_cuts_that_do_not_fit() {
    let e = split_err(&PER_EXIT, |o| {
        o.cuts.pop();
    });
    assert!(e.contains("`--cuts`"), "{e}");
    assert!(e.contains("2 boundaries given for 4 exits"), "{e}");
    let e = split_err(&PER_EXIT, |o| {
        o.exit_outputs[3] = "a9".into();
    });
    assert!(e.contains("`--exit-outputs[3]`"), "{e}");
    assert!(e.contains("\"a9\" is not a tensor of the graph"), "{e}");
    let e = split_err(&PER_EXIT, |o| {
        o.cuts[1] = vec!["nowhere".into()];
    });
    assert!(e.contains("`--cuts[1]`"), "{e}");
    assert!(e.contains("\"nowhere\" is not computed by any node"), "{e}");
}

/// What later segments read is carried whether or not the cuts name it:
/// across the next boundary under its own name, and passed through the
/// segments between under `<name>__b<k>` (a graph cannot take and give one
/// name), model inputs included.
#[test]
fn tensors_read_segments_later_are_passed_through() {
    let (_dir, set, r) = split_and_build(&SKIP);
    let carried: Vec<Vec<&str>> = r
        .carried
        .iter()
        .map(|b| {
            let mut v: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
            v.sort();
            v
        })
        .collect();
    assert_eq!(
        carried,
        [
            vec!["emb", "h0", "instruction__b0"],
            vec!["emb__b1", "h1", "instruction__b1"],
            vec!["emb__b2", "h2", "instruction__b2"],
        ]
    );
    assert!(r.max_abs_diff.iter().all(|d| *d <= 1e-5), "{r:?}");
    assert_eq!(set.manifest.exits[3].inputs.len(), 3);
    // The per-exit model without its cuts: the same boundaries.
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&PER_EXIT, dir.path());
    o.cuts.clear();
    let r = split(&o).unwrap();
    let mut first: Vec<&str> = r.carried[0].iter().map(|(n, _)| n.as_str()).collect();
    first.sort();
    assert_eq!(first, ["hidden0", "pooled0"]);
    assert_eq!(r.carried[1][0].0, "hidden1");
}

#[test]
fn build_refuses_an_instruction_longer_than_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    split(&options(&TOKENS, &src)).unwrap();
    let path = src.join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "go to the red landmark",
        "go to the red landmark and then to the blue one",
    );
    std::fs::write(&path, text).unwrap();
    let e = build_dir(&src, &dir.path().join("set"))
        .expect_err("must be refused")
        .to_string();
    assert!(
        e.contains("model.toml: field `preprocess.instruction_texts[0]`"),
        "{e}"
    );
    assert!(e.contains("\"instruction\" takes 6"), "{e}");
    assert!(
        !dir.path().join("set").exists(),
        "a refused build writes nothing"
    );
}

#[test]
fn build_refuses_a_description_with_both_a_head_and_exit_actions() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    split(&options(&RECURRENT, &src)).unwrap();
    let path = src.join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("action_output = \"action\"\n{text}")).unwrap();
    let e = build_dir(&src, &dir.path().join("set"))
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("model.toml: field `action_output`"), "{e}");
    assert!(e.contains("takes its actions from the head"), "{e}");
}

#[test]
fn learned_exits_need_one_confidence_value_per_exit_and_the_learned_criterion() {
    // The set: each exit but the last names a one-value output.
    let e = refused(&LEARNED, |t| {
        exit(t, 1).remove("confidence");
    });
    assert!(e.contains("`exits[1].confidence`: missing"), "{e}");
    let e = refused(&LEARNED, |t| {
        exit(t, 0)["confidence"] = "nope".into();
    });
    assert!(
        e.contains("\"nope\" is not an output of this segment"),
        "{e}"
    );
    let e = refused(&LEARNED, |t| {
        exit(t, 2)["confidence"] = "action".into();
    });
    assert!(e.contains("`exits[2].confidence`"), "{e}");
    assert!(e.contains("a confidence is one f32 value"), "{e}");
    let e = refused(&LEARNED, |t| {
        table(t, "criterion")["kind"] = "max-confidence".into();
    });
    assert!(
        e.contains("only the learned criterion reads a confidence"),
        "{e}"
    );
    let (_dir, set, _) = split_and_build(&LEARNED);
    let named: Vec<Option<&str>> = set
        .manifest
        .exits
        .iter()
        .map(|s| s.confidence.as_deref())
        .collect();
    assert_eq!(
        named,
        [
            Some("confidence"),
            Some("confidence"),
            Some("confidence"),
            None
        ]
    );

    // The description: the learned criterion needs confidence_output.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    split(&options(&LEARNED, &src)).unwrap();
    let path = src.join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("confidence_output = \"confidence\"\n", ""),
    )
    .unwrap();
    let e = build_dir(&src, &dir.path().join("set"))
        .expect_err("must be refused")
        .to_string();
    assert!(
        e.contains("model.toml: field `confidence_output`: missing"),
        "{e}"
    );

    // split: one confidence per exit (the last may have none), computed by
    // the graph.
    let e = split_err(&LEARNED, |o| o.confidence_outputs.truncate(1));
    assert!(e.contains("`--confidence-outputs`"), "{e}");
    let e = split_err(&LEARNED, |o| o.confidence_outputs[2] = "image".into());
    assert!(e.contains("`--confidence-outputs[2]`"), "{e}");
}

/// The CPU backend binds a segment's tensors by name, not position: a
/// manifest that lists segment 0's two camera inputs and its outputs in
/// another order than the graph computes the same actions (bound by position,
/// the wrist image went to the front input: refused here for its size, taken
/// silently had the cameras been the same size); and a tensor the graph does
/// not have is refused, naming it and the graph's own.
#[test]
fn segment_tensors_bind_by_name_whatever_order_the_manifest_lists() {
    let (dir, set, _) = split_and_build(&CAMERAS);
    let actions = |set: &EngineSet| -> Vec<f32> {
        let mut chain = load_chain(set).unwrap();
        for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
            let v = pattern(buf.len(), 11 + k as u32);
            buf.copy_from_slice(&v);
        }
        let mut out = Vec::new();
        for i in 0..4 {
            chain.run_exit(i).unwrap();
            out.extend_from_slice(chain.run_head(i, &[]).unwrap().0);
        }
        out
    };
    let before = actions(&set);

    let path = dir.path().join("set/manifest.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let seg0 = t["exits"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap();
    let inputs = seg0["inputs"].as_array_mut().unwrap();
    let name = |v: &toml::Value| v["name"].as_str().unwrap().to_string();
    let front = inputs.iter().position(|v| name(v) == "front").unwrap();
    let wrist = inputs.iter().position(|v| name(v) == "wrist").unwrap();
    inputs.swap(front, wrist);
    let outputs = seg0["outputs"].as_array_mut().unwrap();
    assert!(outputs.len() >= 2, "{outputs:?}");
    outputs.reverse();
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    let reordered = EngineSet::open(dir.path().join("set")).expect("opens");
    assert_eq!(actions(&reordered), before);

    let m = &reordered.manifest;
    let mut wrong = m.exits[0].inputs.clone();
    wrong[front].name = "rear".into();
    let e = match offramp_engines_cpu::CpuEngine::load(
        &reordered.artifact_path(&m.exits[0].artifact),
        &wrong,
        &m.exits[0].outputs,
    ) {
        Ok(_) => panic!("an input the graph lacks must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("no input named \"rear\""), "{e}");
    assert!(e.contains("\"front\""), "{e}");
}
