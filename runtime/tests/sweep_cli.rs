//! `offramp calibrate-sweep`: budgets solved on calibration episodes and
//! evaluated on disjoint held-out ones, with fixed exits as references.

mod common;

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
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["fixed_exits"].as_array().unwrap().len(), 4);
    let b = j["budgets"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    // A larger budget buys more compute.
    let c: Vec<f64> = b
        .iter()
        .map(|p| p["compute_ratio"].as_f64().unwrap())
        .collect();
    assert!(c[0] < c[1], "{c:?}");
    assert_eq!(j["fixed_exits"][3]["compute_ratio"], 1.0);
    let svg = std::fs::read_to_string(report.join("success_vs_compute.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("calibrated thresholds"));
    assert!(report.join("sweep.json").is_file());
    assert_eq!(
        std::fs::read(demo_dir().join("manifest.toml")).unwrap(),
        before
    );
}

#[test]
fn overlapping_seeds_are_refused() {
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
}
