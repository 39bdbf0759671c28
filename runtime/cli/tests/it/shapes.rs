//! A user's own model, each shape the contract accepts, through the commands
//! a user runs: `offramp split` on the full export, `offramp build`, `offramp
//! run` on replayed camera frames, and `offramp calibrate` on recorded
//! episodes (no simulator in the loop), then run again with the thresholds.

use crate::common::*;

#[test]
fn each_model_shape_splits_builds_runs_on_replayed_frames_and_calibrates() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (ok, _, err) = offramp(&[
        "sim",
        "record",
        "--episodes",
        "8",
        "--first-seed",
        "200000",
        "--out",
        &p("rec"),
    ]);
    assert!(ok, "{err}");
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
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = offramp(&args);
        assert!(ok, "{shape}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        for d in r["max_abs_diff"].as_array().unwrap() {
            assert!(d.as_f64().unwrap() <= 1e-5, "{shape}: {r}");
        }
        let (ok, _, err) = offramp(&["build", "--onnx", &out_dir, "--out", &set]);
        assert!(ok, "{shape}: {err}");

        let run = |what: &str| -> serde_json::Value {
            let (ok, out, err) = offramp(&[
                "run",
                "--engines",
                &set,
                "--camera",
                &format!("replay:{}", p("rec")),
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
            &set,
            "--episodes",
            &p("rec"),
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
}
