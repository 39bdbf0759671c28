//! A user's own model, each shape the contract accepts, through the commands
//! a user runs: `offramp split` on the full export, `offramp build`, `offramp
//! run` on replayed camera frames, and `offramp calibrate` on recorded
//! episodes (no simulator in the loop), then run again with the thresholds.
//! The two-camera model runs on two-view frames: recorded from two cameras
//! at once by `offramp record`, and live from both.

use crate::common::*;
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::camera::Views;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::preprocess::Preprocessor;

/// Records 8 simulator episodes from the calibration range (`rec`), the
/// same episodes as a second, 16×16 camera sees them (`rec-wrist`), and both
/// cameras together, to the end of the replays, with `offramp record`
/// (`rec2`, a recording of two views: `frames.npy` and `frames.1.npy`).
fn record(p: &dyn Fn(&str) -> String) {
    std::fs::write(p("wrist.toml"), "image_width = 16\nimage_height = 16\n").unwrap();
    for (out, config) in [("rec", None), ("rec-wrist", Some(p("wrist.toml")))] {
        let mut args = vec!["sim", "record", "--episodes", "8", "--first-seed", "200000"];
        let out = p(out);
        args.extend(["--out", &out]);
        if let Some(c) = &config {
            args.extend(["--config", c]);
        }
        let (ok, _, err) = offramp(&args);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = offramp(&[
        "record",
        "--camera",
        &format!("replay:{},replay:{}", p("rec"), p("rec-wrist")),
        "--frames",
        "100000",
        "--fps",
        "250",
        "--out",
        &p("rec2"),
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["views"], serde_json::json!([[32, 32], [16, 16]]), "{r}");
    // Every episode, the replays' frames but the few a busy machine drops.
    assert_eq!(r["episodes"], 8, "{r}");
    assert!(std::path::Path::new(&p("rec2"))
        .join("frames.1.npy")
        .exists());
}

#[test]
fn each_model_shape_splits_builds_runs_on_replayed_frames_and_calibrates() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    record(&p);
    let shapes = repo().join("engines/models/testdata/shapes");
    // (name, directory, exit outputs, cuts, head file, --with file)
    let recurrent = ("f0,f1,f2,f3", "hidden0;hidden1;hidden2");
    for (shape, dir, exits, cuts, head, with) in [
        (
            "per-exit",
            "per-exit",
            "a0,a1,a2,a3",
            "hidden0,pooled0;hidden1;hidden2",
            None,
            "with.toml",
        ),
        (
            "recurrent",
            "recurrent",
            recurrent.0,
            recurrent.1,
            Some("head.onnx"),
            "with.toml",
        ),
        (
            "stateless",
            "recurrent",
            recurrent.0,
            recurrent.1,
            Some("stateless-head.onnx"),
            "with-stateless.toml",
        ),
        // No cuts: split carries what later segments read. (Its stem holds
        // most of its compute, so the budget below is raised for it.)
        ("skip", "skip", "a0,a1,a2,a3", "", None, "with.toml"),
        (
            "cameras",
            "cameras",
            "a0,a1,a2,a3",
            "hidden0;hidden1;hidden2",
            None,
            "with.toml",
        ),
        (
            "learned",
            "learned",
            "a0,a1,a2,a3",
            "hidden0;hidden1;hidden2",
            None,
            "with.toml",
        ),
        (
            "tokens",
            "tokens",
            "t0,t1,t2,t3",
            "hidden0;hidden1;hidden2",
            None,
            "with.toml",
        ),
    ] {
        // Exit 1 of the skip model already costs 0.92 of the full model (and
        // exit 0 cannot stop without a reference), so 0.7 is out of reach.
        let budget = if shape == "skip" { "0.95" } else { "0.7" };
        // The two-camera model runs on the recording of two cameras.
        let rec = p(if shape == "cameras" { "rec2" } else { "rec" });
        let src = shapes.join(dir);
        let s = |f: &str| src.join(f).to_str().unwrap().to_string();
        let (out_dir, set) = (p(&format!("{shape}-src")), p(shape));
        let mut args = vec![
            "split".to_string(),
            "--onnx".into(),
            s("full.onnx"),
            "--exit-outputs".into(),
            exits.into(),
            "--with".into(),
            s(with),
            "--out".into(),
            out_dir.clone(),
            "--json".into(),
        ];
        if let Some(h) = head {
            args.extend(["--head".into(), s(h)]);
        }
        if !cuts.is_empty() {
            args.extend(["--cuts".into(), cuts.into()]);
        }
        if shape == "learned" {
            // Each exit's confidence, for the learned criterion.
            args.extend(["--confidence-outputs".into(), "c0,c1,c2".into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = offramp(&args);
        assert!(ok, "{shape}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        for d in r["max_abs_diff"].as_array().unwrap() {
            assert!(d.as_f64().unwrap() <= 1e-5, "{shape}: {r}");
        }
        let (ok, _, err) = offramp(&["build", "--onnx", &out_dir, "--out", &set]);
        assert!(ok, "{shape}: {err}");

        runs_and_calibrates(shape, &set, &rec, budget);
        if shape == "cameras" {
            // Live from both cameras at once.
            let (ok, out, err) = offramp(&[
                "run",
                "--engines",
                &set,
                "--camera",
                &format!("replay:{},replay:{}", p("rec"), p("rec-wrist")),
                "--frames",
                "100",
                "--fps",
                "200",
                "--json",
            ]);
            assert!(ok, "two cameras: {err}");
            let live: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(live["frames"], 100, "{live}");
            assert_eq!(live["nonfinite_frames"], 0, "{live}");
        }
    }
    // Models as exporters name them: `offramp init` drafts the model.toml
    // (splitting a full export first), `offramp build` takes it unedited.
    let exports = repo().join("engines/models/testdata/exports");
    for (name, export) in [
        ("renamed", "renamed"),
        ("two-carried", "two-carried"),
        ("tokens-export", "tokens/full.onnx"),
        ("vit", "vit/full.onnx"),
    ] {
        let (src, set) = (p(&format!("{name}-src")), p(name));
        let onnx = exports.join(export);
        let (ok, out, err) = offramp(&["init", "--onnx", onnx.to_str().unwrap(), "--out", &src]);
        assert!(ok, "{name}: {err}");
        assert!(
            out.contains("confirm: preprocess mean/std"),
            "{name}: {out}"
        );
        let (ok, _, err) = offramp(&["build", "--onnx", &src, "--out", &set]);
        assert!(ok, "{name}: {err}");
        runs_and_calibrates(name, &set, &p("rec"), "0.7");
    }
}

/// `offramp run` of `set` on the replay `rec` (every frame to the last
/// exit), `offramp calibrate` on it for `budget`, and run again: frames stop
/// early and compute falls.
fn runs_and_calibrates(shape: &str, set: &str, rec: &str, budget: &str) {
    let run = |what: &str| -> serde_json::Value {
        let (ok, out, err) = offramp(&[
            "run",
            "--engines",
            set,
            "--camera",
            &format!("replay:{rec}"),
            "--frames",
            "200",
            "--fps",
            "1000",
            "--json",
        ]);
        assert!(ok, "{shape} {what}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    // Before calibration every frame runs to the last exit.
    let before = run("uncalibrated");
    assert_eq!(before["frames"], 200, "{before}");
    assert_eq!(before["nonfinite_frames"], 0, "{before}");
    assert_eq!(before["exit_counts"][3], 200, "{before}");

    let (ok, out, err) = offramp(&[
        "calibrate",
        "--engines",
        set,
        "--episodes",
        rec,
        "--budget-ratio",
        budget,
        "--json",
    ]);
    assert!(ok, "{shape}: {err}");
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["thresholds"].as_array().unwrap().len(), 3, "{c}");
    let budget_macs = c["budget_macs"].as_f64().unwrap();
    let predicted = c["predicted"]["mean_cost"].as_f64().unwrap();
    assert!(
        predicted <= budget_macs * 1.01,
        "{shape}: {predicted} > {budget_macs}"
    );

    // With the thresholds, frames stop early and compute falls.
    let after = run("calibrated");
    let shallow: u64 = (0..3)
        .map(|i| after["exit_counts"][i].as_u64().unwrap())
        .sum();
    eprintln!(
        "{shape}: exits {} compute {:.3} after calibration for {budget}",
        after["exit_counts"], after["compute_ratio"]
    );
    assert!(shallow > 0, "{shape}: {after}");
    assert!(
        after["compute_ratio"].as_f64().unwrap() < before["compute_ratio"].as_f64().unwrap(),
        "{shape}: {after}"
    );
}

/// Split and build the two-camera test model into `dir`; returns the set.
fn cameras_set(dir: &std::path::Path) -> EngineSet {
    let src = repo().join("engines/models/testdata/shapes/cameras");
    let s = |f: &str| src.join(f).to_str().unwrap().to_string();
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (ok, _, err) = offramp(&[
        "split",
        "--onnx",
        &s("full.onnx"),
        "--exit-outputs",
        "a0,a1,a2,a3",
        "--cuts",
        "hidden0;hidden1;hidden2",
        "--with",
        &s("with.toml"),
        "--out",
        &d("src"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = offramp(&["build", "--onnx", &d("src"), "--out", &d("set")]);
    assert!(ok, "{err}");
    EngineSet::open(dir.join("set")).unwrap()
}

/// View k of a frame goes through its own preprocessing (size, mean, std)
/// into image input k; a camera that gives another number of views, or a
/// frame of another size, is refused by name.
#[test]
fn each_camera_view_feeds_its_own_image_input() {
    let dir = tempfile::tempdir().unwrap();
    let set = cameras_set(dir.path());
    let views = Views::new(vec![(24, 20), (8, 8)]);
    let mut p = Pipeline::open(&set, BackendKind::Cpu, views.clone()).unwrap();
    let frame: Vec<u8> = (0..views.frame_len())
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    p.infer(&frame, ExitPolicy::All, None).unwrap();
    let (front, wrist) = (24 * 20 * 3, 8 * 8 * 3);
    let mut want_front = vec![0.0; 3 * 16 * 16];
    Preprocessor::new((24, 20), (16, 16), [0.5; 3], [0.25; 3])
        .unwrap()
        .run(&frame[..front], &mut want_front)
        .unwrap();
    let mut want_wrist = vec![0.0; 3 * 8 * 8];
    Preprocessor::new((8, 8), (8, 8), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        .unwrap()
        .run(&frame[front..front + wrist], &mut want_wrist)
        .unwrap();
    let m = &set.manifest;
    let at = |n: &str| m.inputs.iter().position(|t| t.name == n).unwrap();
    let (f, w) = (at("front"), at("wrist"));
    let inputs = p.chain.inputs_mut();
    assert_eq!(inputs[f], want_front);
    assert_eq!(inputs[w], want_wrist);
    assert!(p.action().iter().all(|a| a.is_finite()));

    // One camera for two image inputs.
    let e = Pipeline::open(&set, BackendKind::Cpu, (32, 32))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("reads 2 image input(s) (front, wrist), but the camera gives 1 view(s) (32x32)"),
        "{e}"
    );
    // A frame that is not both views.
    let e = p
        .infer(&frame[..front], ExitPolicy::All, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a frame of 24x20 + 8x8"), "{e}");
    // `offramp run` with one camera says the same, naming the set.
    let (ok, _, err) = offramp(&[
        "run",
        "--engines",
        dir.path().join("set").to_str().unwrap(),
        "--camera",
        "sim",
        "--frames",
        "5",
    ]);
    assert!(!ok);
    assert!(
        err.contains("manifest.toml") && err.contains("1 view(s)"),
        "{err}"
    );
}

/// The walkthroughs of docs/model-format.md ("From PyTorch to the robot"):
/// every `offramp` line of their `sh` blocks runs, in order, from the
/// repository root, with `/tmp/` standing for a fresh directory.
#[test]
fn the_walkthroughs_run_as_written() {
    let doc = std::fs::read_to_string(repo().join("docs/model-format.md")).unwrap();
    let start = doc.find("### Walkthroughs").expect("the walkthroughs");
    let end = doc[start..].find("\n## ").map_or(doc.len(), |e| start + e);
    let dir = tempfile::tempdir().unwrap();
    let tmp = format!("{}/", dir.path().display());
    let mut in_sh = false;
    let mut commands = Vec::new();
    for line in doc[start..end].lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && l.starts_with("offramp ") => commands.push(l.replace("/tmp/", &tmp)),
            _ => {}
        }
    }
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.starts_with("offramp init"))
            .count(),
        4
    );
    for c in &commands {
        let out = std::process::Command::new(bin())
            .args(c.split_whitespace().skip(1))
            .current_dir(repo())
            .output()
            .expect("run offramp");
        assert!(
            out.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
