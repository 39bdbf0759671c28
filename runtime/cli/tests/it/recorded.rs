//! Calibration on recorded episodes, no simulator in the loop: frames are
//! recorded by `offramp record` from a camera source (replayed frames here),
//! the thresholds solved on them, and checked on other recorded episodes.

use crate::common::*;

/// Held-out compute lands within 5 % of the budget for three budgets.
#[test]
fn thresholds_solved_on_recorded_episodes_meet_the_budget_held_out() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    // Two disjoint seed ranges: the calibration range (200000+) and one
    // past every range training or any choice used (700000+).
    for (seed, out) in [("200000", "sim-cal"), ("700000", "held")] {
        let (ok, _, err) = offramp(&[
            "sim",
            "record",
            "--episodes",
            "200",
            "--first-seed",
            seed,
            "--out",
            &p(out),
        ]);
        assert!(ok, "{err}");
    }
    // The calibration frames go through a camera source and the recorder.
    let (ok, out, err) = offramp(&[
        "record",
        "--camera",
        &format!("replay:{}", p("sim-cal")),
        "--out",
        &p("cal"),
        "--frames",
        "100000",
        "--fps",
        "1000",
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["episodes"], 200, "{r}");
    assert!(r["frames"].as_u64().unwrap() > 15000, "{r}");
    for name in ["frames", "instructions", "episodes", "timestamps_ns"] {
        assert!(dir.path().join("cal").join(format!("{name}.npy")).is_file());
    }
    // A second recording into the same place is refused, naming it.
    let (ok, _, err) = offramp(&[
        "record",
        "--camera",
        &format!("replay:{}", p("sim-cal")),
        "--out",
        &p("cal"),
        "--frames",
        "10",
    ]);
    assert!(!ok);
    assert!(err.contains("already holds a recording"), "{err}");
    for budget in [0.3, 0.5, 0.7] {
        let set = dir.path().join(format!("set-{budget}"));
        std::fs::create_dir(&set).unwrap();
        for e in std::fs::read_dir(demo_dir()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), set.join(e.file_name())).unwrap();
        }
        let (ok, out, err) = offramp(&[
            "calibrate",
            "--engines",
            set.to_str().unwrap(),
            "--episodes",
            &p("cal"),
            "--held-out",
            &p("held"),
            "--budget-ratio",
            &budget.to_string(),
            "--json",
        ]);
        assert!(ok, "{err}");
        let c: serde_json::Value = serde_json::from_str(&out).unwrap();
        let h = &c["held_out"];
        let ratio = h["compute_ratio"].as_f64().unwrap();
        eprintln!(
            "budget {budget}: held-out compute {ratio:.4} on {} frames",
            h["frames"]
        );
        assert_eq!(h["episodes"], 200, "{h}");
        assert!(
            (ratio / budget - 1.0).abs() <= 0.05,
            "budget {budget}: held-out compute {ratio}"
        );
    }
}
