//! The `offramp` binary end to end, as a user runs it.

use crate::common;
use common::{bin, demo_dir, offramp};
use std::io::BufRead;
use std::process::{Command, Stdio};

fn check_report(json: &str, board: &str) {
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON report");
    assert_eq!(v["board"], board);
    assert_eq!(v["all_accepted"], true);
    assert_eq!(v["rejected"], 0);
    assert_eq!(v["final_state"], "TimedOut");
    assert_eq!(v["applied_after_stop"], serde_json::json!([0.0, 0.0]));
    let sent = v["commands_sent"].as_u64().unwrap();
    assert!(sent >= 40, "sent {sent}");
    // The last command's 200 ms validity ends it before the 250 ms timeout.
    let stop = v["timeout_to_stop_us"].as_u64().unwrap();
    assert!((190_000..=251_000).contains(&stop), "stop after {stop} us");
    assert!(v["apply_latency_us"]["n"].as_u64().unwrap() > 0);
    assert!(v["apply_latency_us"]["max"].as_f64().unwrap() <= 20_000.0);
}

#[test]
fn demo_with_host_firmware_over_a_pty() {
    let (ok, out, err) = offramp(&["firmware", "session", "--seconds", "1", "--json"]);
    assert!(ok, "{err}");
    check_report(&out, "host");
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn demo_with_the_firmware_image_in_qemu() {
    let (ok, out, err) = offramp(&[
        "firmware",
        "session",
        "--firmware",
        "qemu",
        "--seconds",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    check_report(&out, "lm3s6965");
}

#[test]
fn human_summary_and_clear_errors() {
    let (ok, out, err) = offramp(&["firmware", "session", "--seconds", "0.5"]);
    assert!(ok, "{err}");
    assert!(out.contains("silence -> motors off"), "{out}");
    let (ok, _, err) = offramp(&["firmware", "session", "--seconds=-1"]);
    assert!(!ok);
    assert!(
        err.contains("--seconds") && err.contains("-1 is not a positive number"),
        "{err}"
    );
    let (ok, _, err) = offramp(&[
        "firmware",
        "session",
        "--firmware",
        "qemu",
        "--elf",
        "/nonexistent/fw.elf",
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/fw.elf does not exist"), "{err}");
}

#[test]
fn build_writes_an_engine_set_and_a_summary() {
    let out = tempfile::tempdir().unwrap();
    let onnx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../engines/models/testdata/tiny"
    );
    let dir = out.path().join("engines");
    let (ok, stdout, err) = offramp(&["build", "--onnx", onnx, "--out", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("engine set tiny-test (cpu backend, Fp32)"),
        "{stdout}"
    );
    // One row per exit and the head, with the cumulative share of the full model.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("exit2") && l.contains("100%")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("head ")), "{stdout}");
    assert!(dir.join("manifest.toml").is_file());

    let (ok, _, err) = offramp(&[
        "build",
        "--onnx",
        "/nonexistent",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/model.toml"), "{err}");
}

#[test]
fn a_user_error_prints_its_message_without_a_backtrace() {
    // Many Rust users keep RUST_BACKTRACE=1 in their environment.
    let out = Command::new(bin())
        .env("RUST_BACKTRACE", "1")
        .args([
            "sim",
            "eval",
            "--engines",
            "/nonexistent/set",
            "--episodes",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: ") && err.contains("/nonexistent/set"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("flight.rec");
    let (ok, _, err) = offramp(&[
        "--log",
        "warn",
        "run",
        "--engines",
        demo_dir().to_str().unwrap(),
        "--camera",
        "sim",
        "--fps",
        "400",
        "--frames",
        "1000",
        "--record",
        rec.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    // `offramp recording FILE | head -n 1`: one line read, then the pipe
    // closes while far more than a pipe's buffer is still to come.
    let mut child = Command::new(bin())
        .env("RUST_BACKTRACE", "1")
        .args(["recording", rec.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with('{'), "{line}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "a closed pipe printed: {err}");
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
fn bench_engines_times_tract_and_onnxruntime_side_by_side() {
    let out = tempfile::tempdir().unwrap();
    let onnx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../engines/models/testdata/tiny"
    );
    let dir = out.path().join("engines");
    let (ok, _, err) = offramp(&["build", "--onnx", onnx, "--out", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, stdout, err) = offramp(&[
        "bench",
        "engines",
        "--engines",
        dir.to_str().unwrap(),
        "--iters",
        "20",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert!(v.get("onnxruntime_missing").is_none(), "{v}");
    let segments = v["segments"].as_array().unwrap();
    assert!(!segments.is_empty());
    for s in segments {
        assert!(s["tract_over_onnxruntime"].as_f64().unwrap() > 0.0, "{s}");
    }
}
