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
    // Values whose durations would overflow are refused before anything
    // runs, not met by a panic mid-run (`3 / fps` as a Duration, `now +
    // timeout` as an Instant).
    let demo = demo_dir();
    let demo = demo.to_str().unwrap();
    for (cmd, flag, value) in [
        ("run", "--fps", "1e-20"),
        ("run", "--offload-timeout-ms", "1e22"),
        ("profile", "--idle-seconds", "1e30"),
    ] {
        let (ok, _, err) = offramp(&[cmd, "--engines", demo, "--frames", "1", flag, value]);
        assert!(!ok);
        assert!(
            err.contains(flag) && err.contains("is out of range") && !err.contains("panicked"),
            "{flag} {value}: {err}"
        );
    }
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

fn tiny_onnx() -> std::path::PathBuf {
    common::repo().join("engines/models/testdata/tiny")
}

#[test]
fn build_names_a_malformed_model_toml_as_the_source_description() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("onnx");
    std::fs::create_dir(&src).unwrap();
    for entry in std::fs::read_dir(tiny_onnx()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, src.join(path.file_name().unwrap())).unwrap();
    }
    // The head's artifact line goes missing.
    let text = std::fs::read_to_string(src.join("model.toml")).unwrap();
    let broken: String = text
        .lines()
        .filter(|l| !l.starts_with("artifact ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(broken, text);
    std::fs::write(src.join("model.toml"), broken).unwrap();
    let out = tmp.path().join("engines");
    let (ok, _, err) = offramp(&[
        "build",
        "--onnx",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    let want = format!(
        "{}: not a valid model source description (model.toml): ",
        src.join("model.toml").display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("missing field `artifact`"), "{err}");
    assert!(!err.contains("manifest"), "{err}");
}

#[test]
fn build_refuses_int8_without_calibration_data() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("engines");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--onnx",
            tiny_onnx().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "tensorrt",
            "--precision",
            "int8",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        offramp(&args)
    };
    let (ok, stdout, err) = build(&[]);
    assert!(!ok, "{stdout}");
    assert!(
        err.contains(
            "--precision int8: TensorRT needs calibration data or explicit quantization scales"
        ),
        "{err}"
    );
    assert!(err.contains("the plan's outputs are meaningless"), "{err}");
    assert!(err.contains("--int8-calibration-cache FILE"), "{err}");
    assert!(!out.exists(), "a refused build wrote {}", out.display());

    let missing = tmp.path().join("no-such.cache");
    let (ok, _, err) = build(&["--int8-calibration-cache", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "--int8-calibration-cache {}: cannot read the calibration cache",
            missing.display()
        )),
        "{err}"
    );
    assert!(!out.exists(), "a refused build wrote {}", out.display());
}

/// A stand-in for TensorRT's trtexec: reports a version, logs each build's
/// arguments and writes the plan it is asked for.
fn fake_trtexec(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("trtexec");
    std::fs::write(
        &script,
        r#"#!/bin/sh
if [ "$1" = "--help" ]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help"
  exit 0
fi
echo "$*" >> "$(dirname "$0")/calls.log"
for a in "$@"; do
  case "$a" in --saveEngine=*) printf plan > "${a#--saveEngine=}" ;; esac
done
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn int8_build_gives_trtexec_the_calibration_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let tools = tmp.path().join("bin");
    std::fs::create_dir(&tools).unwrap();
    fake_trtexec(&tools);
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let build = |cache: &std::path::Path, out: &std::path::Path| {
        Command::new(bin())
            .env("PATH", &path)
            .args(["build", "--onnx"])
            .arg(tiny_onnx())
            .arg("--out")
            .arg(out)
            .args(["--backend", "tensorrt", "--precision", "int8"])
            .arg("--int8-calibration-cache")
            .arg(cache)
            .output()
            .unwrap()
    };

    // A cache from another TensorRT version would be ignored by TensorRT.
    let old = tmp.path().join("old.cache");
    std::fs::write(&old, "TRT-8601-EntropyCalibration2\nfeature: 3c008912\n").unwrap();
    let out = tmp.path().join("refused");
    let r = build(&old, &out);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("written by TensorRT 8.6.1 but") && err.contains("is TensorRT 10.3.0"),
        "{err}"
    );
    assert!(!out.exists(), "a refused build wrote {}", out.display());
    assert!(!tools.join("calls.log").exists(), "trtexec built something");

    let cache = tmp.path().join("calib.cache");
    std::fs::write(
        &cache,
        "TRT-100300-EntropyCalibration2\nfeature: 3c008912\n",
    )
    .unwrap();
    let out = tmp.path().join("engines");
    let r = build(&cache, &out);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    let calls = std::fs::read_to_string(tools.join("calls.log")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    // Three segments and the head, each with the cache.
    assert_eq!(calls.len(), 4, "{calls:?}");
    let calib = format!("--calib={}", cache.display());
    for c in &calls {
        let args: Vec<&str> = c.split(' ').collect();
        assert!(args.contains(&"--int8"), "{c}");
        assert!(args.contains(&calib.as_str()), "{c}");
    }
    let manifest = std::fs::read_to_string(out.join("manifest.toml")).unwrap();
    assert!(manifest.contains("precision = \"int8\""), "{manifest}");
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

/// `offramp bench engines --iters 20 EXTRA...` on the tiny test model,
/// built into a temporary directory: its JSON report.
fn bench_tiny_engines(extra: &[&str]) -> serde_json::Value {
    let out = tempfile::tempdir().unwrap();
    let onnx = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../engines/models/testdata/tiny"
    );
    let dir = out.path().join("engines");
    let (ok, _, err) = offramp(&["build", "--onnx", onnx, "--out", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut args = vec![
        "bench",
        "engines",
        "--engines",
        dir.to_str().unwrap(),
        "--iters",
        "20",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, err) = offramp(&args);
    assert!(ok, "{err}");
    serde_json::from_str(&stdout).expect("JSON report")
}

#[test]
#[ignore = "needs the Python test environment and the onnxruntime library (scripts/test.sh sets OFFRAMP_PYTHON, OFFRAMP_ONNXRUNTIME_LIB)"]
fn bench_engines_times_tract_and_onnxruntime_side_by_side() {
    let v = bench_tiny_engines(&["--threads", "2"]);
    assert!(v.get("onnxruntime_missing").is_none(), "{v}");
    assert!(v["offramp_onnxruntime"].get("Ok").is_some(), "{v}");
    assert_eq!(v["threads"], 2, "{v}");
    let segments = v["segments"].as_array().unwrap();
    assert!(!segments.is_empty());
    for s in segments {
        assert!(s["tract_over_onnxruntime"].as_f64().unwrap() > 0.0, "{s}");
        // In chain order with cold caches too, every segment and the head.
        assert!(s["chain_cold_us"]["p50"].as_f64().unwrap() > 0.0, "{s}");
        // offramp's onnxruntime backend beside them (the library is set).
        assert!(
            s["offramp_onnxruntime_us"]["p50"].as_f64().unwrap() > 0.0,
            "{s}"
        );
        assert!(
            s["offramp_onnxruntime_over_onnxruntime"].as_f64().unwrap() > 0.0,
            "{s}"
        );
        // Per-operator times only when asked for.
        assert!(s.get("tract_ops").is_none(), "{s}");
    }
}

#[test]
fn bench_engines_hands_python_its_script_without_a_source_tree() {
    // A stand-in Python that records its arguments and answers "no files
    // timed": the onnxruntime script comes inside the binary, not as a path
    // into the source tree, which an installed offramp does not have.
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let python = dir.path().join("python");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\necho '{{}}'\n",
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = bench_tiny_engines(&["--python", python.to_str().unwrap()]);
    assert!(v.get("onnxruntime_missing").is_none(), "{v}");
    let args = std::fs::read_to_string(&args_file).unwrap();
    let mut lines = args.lines();
    assert_eq!(lines.next(), Some("-c"), "{args}");
    assert!(args.contains("import onnxruntime"), "{args}");
    assert!(!args.lines().any(|l| l.ends_with(".py")), "{args}");
}

#[test]
fn bench_engines_ops_says_where_each_segments_time_goes() {
    // Without onnxruntime the tract column stands alone, with the reason.
    let v = bench_tiny_engines(&["--ops", "--python", "/nonexistent/python"]);
    assert!(
        v["onnxruntime_missing"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/python"),
        "{v}"
    );
    let segments = v["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 4, "3 segments and the head: {v}");
    for s in segments {
        let ops = s["tract_ops"].as_array().expect("tract_ops with --ops");
        assert!(!ops.is_empty(), "{s}");
        let us: Vec<f64> = ops.iter().map(|o| o["us"].as_f64().unwrap()).collect();
        assert!(us.windows(2).all(|w| w[0] >= w[1]), "{s}");
        assert!(ops.iter().all(|o| o["nodes"].as_u64().unwrap() >= 1), "{s}");
    }
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_preprocessing_says_why_it_cannot_start() {
    // The demo set is CPU engines: without a GPU the CUDA preprocessing
    // cannot start; with one, the set has no device buffers to write into.
    let (ok, _, err) = offramp(&[
        "run",
        "--engines",
        demo_dir().to_str().unwrap(),
        "--camera",
        "sim",
        "--frames",
        "3",
        "--gpu-preprocess",
    ]);
    assert!(!ok);
    assert!(
        err.contains("error: --gpu-preprocess: CUDA preprocessing unavailable: "),
        "{err}"
    );
}

#[cfg(feature = "tensorrt")]
#[test]
fn build_shim_names_what_is_missing() {
    let (ok, _, err) = offramp(&["build-shim", "--tensorrt-include", "/nonexistent/include"]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/include: no NvInferRuntime.h there"),
        "{err}"
    );
    let (ok, _, err) = offramp(&[
        "build-shim",
        "--check",
        "/nonexistent/libofframp_trt_shim.so",
    ]);
    assert!(!ok);
    assert!(
        err.contains("cannot open the TensorRT shim /nonexistent/libofframp_trt_shim.so"),
        "{err}"
    );
    // bench engines refuses a CPU set in place of TensorRT plans before
    // timing anything.
    let (ok, _, err) = offramp(&[
        "bench",
        "engines",
        "--engines",
        demo_dir().to_str().unwrap(),
        "--tensorrt",
        demo_dir().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("--tensorrt takes a TensorRT engine set"),
        "{err}"
    );
}

/// `bench runtime` on a recording (the robot's kind of camera), sized from
/// the set: latency by exit adds up to every frame, and the deadline and
/// period come from the full model's measured p99 when not given.
#[test]
fn bench_runtime_takes_a_camera_and_sizes_itself_from_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    common::sim_record(&rec, 2, 200_000);
    let camera = format!("replay:{}", rec.display());
    let demo = demo_dir();
    let (ok, stdout, err) = offramp(&[
        "bench",
        "runtime",
        "--engines",
        demo.to_str().unwrap(),
        "--camera",
        &camera,
        "--frames",
        "100",
        "--hogs",
        "0",
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["camera"], camera.as_str());
    assert_eq!(
        (v["frames"].as_u64(), v["threads"].as_u64()),
        (Some(100), Some(1))
    );
    for by_exit in [&v["early_exit"]["by_exit"], &v["contention"]["by_exit"]] {
        let groups = by_exit.as_array().unwrap();
        let frames: u64 = groups.iter().map(|g| g["frames"].as_u64().unwrap()).sum();
        assert_eq!(frames, 100, "{by_exit}");
        for g in groups {
            let l = &g["latency_ms"];
            assert!(
                l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap(),
                "{g}"
            );
        }
    }
    let c = &v["contention"];
    let p99 = v["full_model"]["latency_ms"]["p99"].as_f64().unwrap();
    let deadline = c["deadline_ms"].as_f64().unwrap();
    assert!(deadline >= (1.5 * p99).max(1.0) - 1e-9, "{c}");
    assert!(deadline <= (1.5 * p99).max(1.0) + 0.1 + 1e-9, "{c}");
    assert_eq!(c["frame_period_ms"].as_f64(), Some(deadline), "{c}");
    assert!(c["sized"].as_str().unwrap().contains("1.5×"), "{c}");
}

/// `offramp build --backend onnxruntime` of the demo set, in `dir`.
fn onnxruntime_demo(dir: &std::path::Path) -> std::path::PathBuf {
    let set = dir.join("ort");
    let (ok, _, err) = offramp(&[
        "build",
        "--onnx",
        demo_dir().to_str().unwrap(),
        "--out",
        set.to_str().unwrap(),
        "--backend",
        "onnxruntime",
    ]);
    assert!(ok, "{err}");
    let manifest = std::fs::read_to_string(set.join("manifest.toml")).unwrap();
    assert!(manifest.contains("backend = \"onnxruntime\""), "{manifest}");
    set
}

/// A set built for onnxruntime runs the robot's loop on it, and its
/// figures come out as tract's do.
#[test]
#[ignore = "needs the onnxruntime library (scripts/test.sh sets OFFRAMP_ONNXRUNTIME_LIB)"]
fn an_onnxruntime_set_runs_the_robots_loop() {
    let dir = tempfile::tempdir().unwrap();
    let set = onnxruntime_demo(dir.path());
    let (ok, stdout, err) = offramp(&[
        "--log",
        "warn",
        "run",
        "--engines",
        set.to_str().unwrap(),
        "--camera",
        "sim",
        "--fps",
        "400",
        "--frames",
        "60",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["frames"], 60, "{v}");
    assert_eq!(v["nonfinite_frames"], 0, "{v}");
    let counts: u64 = v["exit_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 60, "{v}");
}

/// Without the library, an onnxruntime set is refused naming the library
/// and how to point offramp at one.
#[test]
fn an_onnxruntime_set_without_the_library_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let set = onnxruntime_demo(dir.path());
    let out = Command::new(bin())
        .env(
            "OFFRAMP_ONNXRUNTIME_LIB",
            "/nonexistent/libonnxruntime.so.1",
        )
        .args(["run", "--engines", set.to_str().unwrap(), "--frames", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open /nonexistent/libonnxruntime.so.1"),
        "{err}"
    );
}
