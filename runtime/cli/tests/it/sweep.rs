//! `offramp calibrate` and `offramp calibrate-sweep`: budgets solved on
//! calibration episodes (and refined in closed loop) and evaluated on
//! disjoint held-out ones, with fixed exits as references.

use crate::common;

use common::{demo_dir, offramp};

#[test]
fn sweep_writes_the_curve_and_leaves_the_manifest_alone() {
    let dir = tempfile::tempdir().unwrap();
    let before = std::fs::read(demo_dir().join("manifest.toml")).unwrap();
    let report = dir.path().join("sweep");
    let d = demo_dir();
    let (ok, out, err) = offramp(&[
        "calibrate-sweep",
        "--engines",
        d.to_str().unwrap(),
        "--budgets",
        "0.4,0.7",
        "--calibration-episodes",
        "6",
        "--eval-episodes",
        "4",
        "--iterations",
        "1",
        "--at-fixed-exits",
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fixed = j["fixed_exits"].as_array().unwrap();
    assert_eq!(fixed.len(), 4);
    for f in fixed {
        // Every episode, by seed: the frames are the steps they ran.
        let eps = f["per_episode"].as_array().unwrap();
        let seeds: Vec<u64> = eps.iter().map(|e| e["seed"].as_u64().unwrap()).collect();
        assert_eq!(seeds, [0, 1, 2, 3], "{f}");
        let steps: u64 = eps.iter().map(|e| e["steps"].as_u64().unwrap()).sum();
        assert_eq!(steps, f["frames"].as_u64().unwrap(), "{f}");
        let won = eps.iter().filter(|e| e["success"] == true).count();
        assert_eq!(won as u64, f["successes"].as_u64().unwrap());
        assert!(f["mean_abs_domega"].as_f64().unwrap() >= 0.0, "{f}");
    }
    // Two asked budgets, then one at each fixed exit's compute but the last.
    let b = j["budgets"].as_array().unwrap();
    assert_eq!(b.len(), 5);
    // A larger budget buys more compute.
    let c: Vec<f64> = b
        .iter()
        .map(|p| p["compute_ratio"].as_f64().unwrap())
        .collect();
    assert!(c[0] < c[1], "{c:?}");
    assert_eq!(j["fixed_exits"][3]["compute_ratio"], 1.0);
    for (i, p) in b.iter().enumerate() {
        // Paired with the full model on the same 4 episodes.
        assert_eq!(p["vs_full"]["episodes"], 4, "{p}");
        let (lo, hi) = (
            p["vs_full"]["ci95_low"].as_f64().unwrap(),
            p["vs_full"]["ci95_high"].as_f64().unwrap(),
        );
        assert!(
            lo <= p["vs_full"]["mean"].as_f64().unwrap() && hi >= lo,
            "{p}"
        );
        if i >= 2 {
            // Calibrated at exit i - 1's compute: compared with that exit.
            assert_eq!(p["vs_fixed"]["exit"], i - 1, "{p}");
            assert_eq!(p["budget_ratio"], fixed[i - 2]["compute_ratio"], "{p}");
        } else if let Some(f) = p["vs_fixed"].as_object() {
            // Else the fixed exit compared with costs at least what the
            // point costs.
            let k = f["exit"].as_u64().unwrap() as usize;
            assert!((1..4).contains(&k), "{p}");
            assert!(
                p["compute_ratio"].as_f64().unwrap()
                    <= fixed[k - 1]["compute_ratio"].as_f64().unwrap() * 1.02,
                "{p}"
            );
        }
    }
    let svg = std::fs::read_to_string(report.join("success_vs_compute.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("calibrated thresholds"));
    assert!(report.join("sweep.json").is_file());
    assert_eq!(
        std::fs::read(demo_dir().join("manifest.toml")).unwrap(),
        before
    );
}

#[test]
fn overlapping_or_seen_seeds_are_refused() {
    let d = demo_dir();
    let (ok, _, err) = offramp(&[
        "calibrate-sweep",
        "--engines",
        d.to_str().unwrap(),
        "--calibration-seed",
        "100",
        "--eval-seed",
        "0",
        "--eval-episodes",
        "200",
        "--report",
        "/tmp/never",
    ]);
    assert!(!ok);
    assert!(err.contains("overlap"), "{err}");
    // Nor is a curve evaluated on episodes models learn from.
    let (ok, _, err) = offramp(&[
        "calibrate-sweep",
        "--engines",
        d.to_str().unwrap(),
        "--eval-seed",
        "300000",
        "--report",
        "/tmp/never",
    ]);
    assert!(!ok);
    assert!(err.contains("reach the DAgger range"), "{err}");
}

/// A copy of the demo engine set that a test may rewrite.
fn scratch_set() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(demo_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn manifest_thresholds(dir: &std::path::Path) -> Vec<f64> {
    let m: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
    m["criterion"]["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_float().unwrap())
        .collect()
}

#[test]
fn calibrate_refines_in_closed_loop_and_writes_the_manifest() {
    let set = scratch_set();
    let (ok, out, err) = offramp(&[
        "calibrate",
        "--engines",
        set.path().to_str().unwrap(),
        "--budget-ratio",
        "0.5",
        "--sim-episodes",
        "4",
        "--iterations",
        "1",
        "--refine",
        "4",
        "--json",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &j["refined"];
    // 16 shapes on 1 episode, 8 on 2, 4 on 4 (fewer if shapes coincide).
    let used = r["rollout_episodes"].as_u64().unwrap();
    assert!(used > 4 && used <= 32, "{r}");
    assert_eq!(r["best"]["tally"]["episodes"], 4);
    // What was written is what the search picked.
    let picked: Vec<f64> = r["best"]["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    let written = manifest_thresholds(set.path());
    assert_eq!(written.len(), 3);
    for (a, b) in written.iter().zip(&picked) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{written:?} vs {picked:?}"
        );
    }
}

#[test]
fn calibrate_names_bad_budgets() {
    let set = scratch_set();
    let s = set.path().to_str().unwrap();
    for (args, want) in [
        (
            vec!["--budget-ratio", "0.5", "--budget-mflops", "3"],
            "not both",
        ),
        (vec![], "a compute budget is needed"),
        (vec!["--budget-ratio=-1"], "positive"),
        (
            vec!["--budget-ratio", "0.5", "--refine", "0"],
            "--refine <N>': must be at least 1",
        ),
        (
            vec!["--budget-ratio", "0.5", "--max-memory-mb", "0.001"],
            "--max-memory-mb",
        ),
    ] {
        let mut a = vec!["calibrate", "--engines", s, "--sim-episodes", "1"];
        a.extend(args);
        let (ok, _, err) = offramp(&a);
        assert!(!ok, "{a:?}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
    // Nothing was written.
    assert_eq!(
        std::fs::read(set.path().join("manifest.toml")).unwrap(),
        std::fs::read(demo_dir().join("manifest.toml")).unwrap()
    );
}

#[test]
fn sweep_refines_side_by_side_with_bayesian_optimisation() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("sweep");
    let d = demo_dir();
    let (ok, out, err) = offramp(&[
        "calibrate-sweep",
        "--engines",
        d.to_str().unwrap(),
        "--budgets",
        "0.5",
        "--calibration-episodes",
        "3",
        "--eval-episodes",
        "2",
        "--iterations",
        "1",
        "--refine",
        "2",
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = j["budgets"].as_array().unwrap();
    let methods: Vec<&str> = b.iter().map(|p| p["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["DeeR solve", "refined", "DeeR BO"]);
    let rollouts: Vec<u64> = b
        .iter()
        .map(|p| p["rollout_episodes"].as_u64().unwrap())
        .collect();
    // BO: 20 calls on all 2 episodes; the race spends fewer.
    assert_eq!(rollouts[0], 0);
    assert_eq!(rollouts[2], 40);
    assert!(rollouts[1] > 0 && rollouts[1] < 40, "{rollouts:?}");
    assert_eq!(j["searches"].as_array().unwrap().len(), 2);
    let conv = std::fs::read_to_string(report.join("refine_convergence.svg")).unwrap();
    assert!(conv.starts_with("<svg") && conv.contains("DeeR BO"));
}
