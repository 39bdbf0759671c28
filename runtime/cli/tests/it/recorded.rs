//! Calibration on recorded episodes, no simulator in the loop: frames are
//! recorded by `offramp record` from a camera source (replayed frames here),
//! the thresholds solved on them, and checked on other recorded episodes.

use crate::common::*;

/// The recordings the budget tests share, made once per test run: 200
/// calibration episodes (seeds 200000+, through a camera source and the
/// recorder) and 200 held-out ones (700000+, past every range training or
/// any choice used). In the target's scratch folder, one per process; the
/// last of the three tests to pass removes it.
fn recordings() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("recorded-budgets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
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
            assert!(dir.join("cal").join(format!("{name}.npy")).is_file());
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
        dir
    })
}

/// Held-out compute lands within 5 % of the budget (one test a budget, so
/// that the three calibrations run side by side).
fn the_budget_is_met_held_out(budget: f64) {
    let rec = recordings();
    let dir = tempfile::tempdir().unwrap();
    let set = demo_copy(dir.path(), "set");
    let (ok, out, err) = offramp(&[
        "calibrate",
        "--engines",
        set.to_str().unwrap(),
        "--episodes",
        rec.join("cal").to_str().unwrap(),
        "--held-out",
        rec.join("held").to_str().unwrap(),
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
    static PASSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if PASSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
        let _ = std::fs::remove_dir_all(rec);
    }
}

#[test]
fn thresholds_solved_for_0_3_of_the_compute_meet_it_held_out() {
    the_budget_is_met_held_out(0.3);
}

#[test]
fn thresholds_solved_for_0_5_of_the_compute_meet_it_held_out() {
    the_budget_is_met_held_out(0.5);
}

#[test]
fn thresholds_solved_for_0_7_of_the_compute_meet_it_held_out() {
    the_budget_is_met_held_out(0.7);
}

/// `offramp record` held every frame in memory and wrote at the end:
/// Ctrl-C, a crash or a late camera fault lost the whole recording. It
/// streams now: killed without warning (SIGKILL), the recording loads with
/// every whole frame; interrupted (SIGINT), it also ends cleanly and says
/// so in meta.json.
#[test]
fn a_recording_survives_a_kill_and_an_interrupt() {
    use offramp_runtime::{camera::load_replay, npy};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    for signal in ["KILL", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rec");
        let mut p = Proc(
            Command::new(bin())
                .args(["--log", "warn", "record", "--camera", "sim", "--out"])
                .arg(&out)
                .args(["--frames", "1000000", "--fps", "50", "--json"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while npy::read::<u8>(&out.join("frames.npy")).map_or(true, |(s, _)| s[0] < 10) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{signal}: no frames on disk"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = Command::new("kill")
            .args(["-s", signal, &p.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = p.0.wait().unwrap();
        let r = load_replay(&out).unwrap_or_else(|e| panic!("{signal}: {e}"));
        let n = r.instructions.len();
        assert!(n >= 10 && r.episodes.len() == n, "{signal}: {n} frames");
        assert_eq!(r.frames.len(), n * r.frame_len());
        if signal == "INT" {
            assert!(status.success(), "{status}");
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
            assert_eq!(meta["stopped"], "interrupted");
            assert_eq!(meta["frames"], n);
        }
    }
}

/// A copy of the demo set in `dir/name` (calibration writes its manifest).
fn demo_copy(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let set = dir.join(name);
    std::fs::create_dir(&set).unwrap();
    for e in std::fs::read_dir(demo_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), set.join(e.file_name())).unwrap();
    }
    set
}

/// `--held-out` frames of another size are refused before the
/// calibration pass, not after it: here the pass would take hours (100,000
/// simulator episodes), so the refusal has to come first for the command
/// to end at all.
#[test]
fn calibrate_checks_held_out_frames_before_the_first_pass() {
    use offramp_runtime::npy;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("held");
    std::fs::create_dir(&held).unwrap();
    npy::write::<u8>(
        &held.join("frames.npy"),
        &[2, 16, 16, 3],
        &[0; 2 * 16 * 16 * 3],
    )
    .unwrap();
    npy::write::<i64>(&held.join("instructions.npy"), &[2], &[0, 0]).unwrap();
    npy::write::<i32>(&held.join("episodes.npy"), &[2], &[0, 0]).unwrap();
    let set = demo_copy(dir.path(), "set");
    let mut p = Proc(
        Command::new(bin())
            .args(["--log", "warn", "calibrate", "--engines"])
            .arg(&set)
            .args([
                "--sim-episodes",
                "100000",
                "--budget-ratio",
                "0.5",
                "--held-out",
            ])
            .arg(&held)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "still calibrating after 60 s: the held-out frames were not checked first"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(p.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("--held-out") && err.contains("16x16"), "{err}");
}

/// A budget the criterion cannot meet is reported with the least it can
/// spend and why; a budget it meets is not.
#[test]
fn calibrate_reports_a_budget_it_cannot_meet() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    sim_record(&rec, 3, 200_000);
    let set = demo_copy(dir.path(), "set");
    let calibrate = |budget: &str| {
        let (ok, out, err) = offramp(&[
            "calibrate",
            "--engines",
            set.to_str().unwrap(),
            "--episodes",
            rec.to_str().unwrap(),
            "--budget-ratio",
            budget,
            "--json",
        ]);
        assert!(ok, "{err}");
        let c: serde_json::Value = serde_json::from_str(&out).unwrap();
        c
    };
    let c = calibrate("0.5");
    assert!(c["over_budget"].is_null(), "{}", c["over_budget"]);
    let c = calibrate("0.01");
    let o = &c["over_budget"];
    let exit1 = c["exit_costs"][0].as_f64().unwrap();
    assert_eq!(o["cheapest_macs"].as_f64().unwrap(), exit1, "{o}");
    assert!(o["predicted_macs"].as_f64().unwrap() >= exit1, "{o}");
    assert!(
        o["why"]
            .as_str()
            .unwrap()
            .contains("below exit 1's own cost"),
        "{o}"
    );
}
