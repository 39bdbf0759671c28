//! The main job and the runtime commands end to end on the committed demo
//! engine set, as a user runs them.

use crate::common;
use common::{bin, demo_dir, offramp, repo};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn check_demo(json: &str, board: &str, episodes: u64) {
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON report");
    let fw = v["firmware"].as_str().unwrap();
    assert!(fw.contains(board), "{fw}");
    // The whole path: zenoh, then the bridge process, then the serial device.
    let link = v["link"].as_str().unwrap();
    assert!(link.starts_with("zenoh peer tcp/127.0.0.1:"), "{link}");
    assert!(link.contains("offramp bridge -> /dev/pts/"), "{link}");
    assert_eq!(v["episodes"], episodes);
    assert_eq!(v["commands_rejected"], 0);
    assert_eq!(v["final_motor_state"], "TimedOut");
    let frames = v["frames"].as_u64().unwrap();
    assert!(frames >= 10 * episodes, "{frames} frames");
    assert_eq!(v["commands_sent"].as_u64().unwrap(), frames);
    // Every action reached the firmware through the bridge.
    let b = &v["bridge"];
    assert_eq!(b["forwarded"].as_u64().unwrap(), frames, "{b}");
    assert_eq!(
        (b["stale"].as_u64(), b["malformed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(b["connects"], 1);
    check_exits(&v, frames);
    assert!(v["frame_to_applied_ms"]["p99"].as_f64().unwrap() < 100.0);
    let stop = v["timeout_to_stop_ms"].as_f64().unwrap();
    assert!((190.0..=251.0).contains(&stop), "stop after {stop} ms");
}

/// The report's exits against the demo set's manifest: the shares count
/// whole frames, the mean exit and the compute ratio follow from them and the
/// manifest's costs, and the calibrated criterion stops early.
fn check_exits(v: &serde_json::Value, frames: u64) {
    let m = common::demo_set().manifest;
    let shares: Vec<f64> = serde_json::from_value(v["exit_shares"].clone()).unwrap();
    assert_eq!(shares.len(), m.exits.len(), "{v}");
    let counts: Vec<f64> = shares.iter().map(|s| s * frames as f64).collect();
    for c in &counts {
        assert!(
            (c - c.round()).abs() < 1e-6,
            "shares are not whole frames: {counts:?}"
        );
    }
    assert_eq!(
        counts.iter().sum::<f64>().round() as u64,
        frames,
        "{counts:?}"
    );
    // Exits are reported 1-based.
    let mean_exit: f64 = shares
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1) as f64 * s)
        .sum();
    let reported = v["mean_exit"].as_f64().unwrap();
    assert!(
        (reported - mean_exit).abs() < 1e-9,
        "{reported} vs {mean_exit}"
    );
    // Stopping at exit i costs segments 0..=i and a head evaluation per exit
    // plus one on the exit-0 reference feature; the full model is every
    // segment and the head once. (No deadline in the demo: nothing is cut.)
    let head = m.head_macs() as f64;
    let reference = m.criterion.exit0_reference.is_some() as usize as f64;
    let full: f64 = m.exits.iter().map(|s| s.cost.macs as f64).sum::<f64>() + head;
    let mut segments = 0.0;
    let mut expected = 0.0;
    for (i, (s, share)) in m.exits.iter().zip(&shares).enumerate() {
        segments += s.cost.macs as f64;
        expected += share * (segments + head * (i as f64 + 1.0 + reference));
    }
    expected /= full;
    let ratio = v["compute_ratio"].as_f64().unwrap();
    assert!(
        (ratio - expected).abs() < 1e-9 * expected,
        "compute ratio {ratio}, the exits taken cost {expected}"
    );
    // The thresholds are calibrated to a budget well under the full model:
    // most frames stop before the deepest exit (about 4 in 5 on the demo).
    let early = 1.0 - shares[shares.len() - 1];
    assert!(
        early >= 0.1,
        "only {early} of frames stopped early: {shares:?}"
    );
}

#[test]
fn demo_closes_the_loop_through_the_host_firmware() {
    let d = demo_dir();
    let (ok, out, err) = offramp(&[
        "demo",
        "--engines",
        d.to_str().unwrap(),
        "--episodes",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    check_demo(&out, "host build", 2);
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn demo_closes_the_loop_through_the_firmware_image_in_qemu() {
    let d = demo_dir();
    let (ok, out, err) = offramp(&[
        "demo",
        "--firmware",
        "qemu",
        "--engines",
        d.to_str().unwrap(),
        "--episodes",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    check_demo(&out, "lm3s6965evb in QEMU", 1);
}

#[test]
fn demo_names_a_missing_engine_set() {
    let (ok, _, err) = offramp(&["demo", "--engines", "/nonexistent/set", "--episodes", "1"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/set"), "{err}");
}

#[test]
fn run_on_the_simulator_records_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("run.rec");
    let d = demo_dir();
    let (ok, out, err) = offramp(&[
        "run",
        "--engines",
        d.to_str().unwrap(),
        "--camera",
        "sim",
        "--fps",
        "50",
        "--frames",
        "100",
        "--deadline-ms",
        "50",
        "--record",
        rec.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["frames"], 100);
    assert_eq!(v["deadline_misses"], 0);
    // The report says what the model's weights and the whole process take.
    let m = common::demo_set().manifest;
    let weights = v["weights_mb"].as_f64().unwrap();
    assert!(
        (weights - m.loaded_params() as f64 * 4e-6).abs() < 1e-9,
        "{v}"
    );
    let params: u64 = m.exits.iter().map(|s| s.cost.params).sum::<u64>();
    assert!(m.loaded_params() > params, "the head's weights count too");
    let peak = v["peak_rss_mb"].as_f64().unwrap();
    assert!((weights..200.0).contains(&peak), "peak RSS {peak} MB");
    let (ok, csv, err) = offramp(&["recording", rec.to_str().unwrap(), "--csv"]);
    assert!(ok, "{err}");
    assert_eq!(csv.lines().count(), 101, "header + one row per frame");
    let (ok, jsonl, _) = offramp(&["recording", rec.to_str().unwrap()]);
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert!(first["exit"].as_u64().unwrap() < 4);
    // The same record as MCAP: one JSON message per frame, in order, with
    // its schema, as Foxglove reads it.
    let frames = mcap_frames(&rec);
    assert_eq!(frames.len(), 100);
    for (k, (t, f)) in frames.iter().enumerate() {
        assert_eq!(f["frame"], k as u64);
        assert_eq!(*t, f["time_ns"].as_u64().unwrap());
        let exit = f["exit"].as_u64().unwrap();
        assert!((1..=4).contains(&exit), "{f}");
        assert_eq!(
            f["deltas"].as_array().unwrap().len() as u64,
            f["exits_run"].as_u64().unwrap()
        );
        assert_eq!(f["action"].as_array().unwrap().len(), 4);
    }
    assert!(
        frames.windows(2).all(|w| w[0].0 <= w[1].0),
        "log times go forward"
    );
}

/// A flight record through `offramp recording --mcap`, read back: the
/// `/offramp/frame` messages as (log time, JSON).
pub fn mcap_frames(rec: &std::path::Path) -> Vec<(u64, serde_json::Value)> {
    let path = rec.with_extension("mcap");
    let (ok, _, err) = offramp(&[
        "recording",
        rec.to_str().unwrap(),
        "--mcap",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&path).unwrap();
    mcap::MessageStream::new(&bytes)
        .unwrap()
        .map(|m| {
            let m = m.unwrap();
            assert_eq!(m.channel.topic, "/offramp/frame");
            assert_eq!(m.channel.message_encoding, "json");
            let schema = m.channel.schema.as_ref().unwrap();
            assert_eq!(
                (schema.name.as_str(), schema.encoding.as_str()),
                ("offramp.Frame", "jsonschema")
            );
            (m.log_time, serde_json::from_slice(&m.data).unwrap())
        })
        .collect()
}

#[test]
fn run_replays_recorded_episodes_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("episodes");
    let (ok, _, err) = offramp(&[
        "sim",
        "record",
        "--episodes",
        "2",
        "--first-seed",
        "7",
        "--out",
        rec.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let d = demo_dir();
    let camera = format!("replay:{}", rec.display());
    let (ok, out, err) = offramp(&[
        "run",
        "--engines",
        d.to_str().unwrap(),
        "--camera",
        &camera,
        "--fps",
        "200",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["frames"].as_u64().unwrap() > 20);
    let (ok, _, err) = offramp(&[
        "run",
        "--engines",
        d.to_str().unwrap(),
        "--camera",
        "replay:/nonexistent",
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/frames.npy"), "{err}");
    let (ok, _, err) = offramp(&["run", "--engines", d.to_str().unwrap(), "--camera", "usb0"]);
    assert!(!ok);
    assert!(
        err.contains("expected sim, replay:DIR or v4l:/dev/videoN"),
        "{err}"
    );
}

/// A killed runtime loses at most the batch in progress: the file holds
/// whole batches of consecutive frames.
#[test]
fn a_killed_run_keeps_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("killed.rec");
    let d = demo_dir();
    let mut child = Command::new(bin())
        .args([
            "run",
            "--engines",
            d.to_str().unwrap(),
            "--camera",
            "sim",
            "--fps",
            "400",
            "--record",
            rec.to_str().unwrap(),
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let batch = 64 * offramp_runtime::recorder::RECORD_BYTES as u64;
    let t0 = Instant::now();
    while std::fs::metadata(&rec).map_or(0, |m| m.len()) < 16 + 2 * batch {
        assert!(t0.elapsed() < Duration::from_secs(60), "no records written");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let records = offramp_runtime::recorder::read(&rec).unwrap();
    assert!(records.len() >= 128);
    assert_eq!(records.len() % 64, 0, "{} records", records.len());
    // Frame numbers only rise (the newest-frame policy may skip some).
    assert!(records.windows(2).all(|w| w[1].frame > w[0].frame));
}

#[test]
fn sim_eval_explains_every_failed_episode() {
    // 15 steps (1.5 s) cannot cover the 1.5 m or more every episode starts
    // from, so every episode fails and must be accounted for.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("short.toml");
    std::fs::write(&cfg, "max_steps = 15\n").unwrap();
    let d = demo_dir();
    let (ok, out, err) = offramp(&[
        "sim",
        "eval",
        "--engines",
        d.to_str().unwrap(),
        "--episodes",
        "8",
        "--exit",
        "1",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v[0];
    assert_eq!(
        (r["episodes"].as_u64(), r["successes"].as_u64()),
        (Some(8), Some(0))
    );
    assert_eq!(r["frames"], 8 * 15);
    let f = &r["failures"];
    assert_eq!(f["episodes"], 8, "{f}");
    for k in ["never_in_view", "ended_near", "stuck", "in_view_at_end"] {
        assert!(f[k].as_u64().unwrap() <= 8, "{k}: {f}");
    }
    // Starts are at least 1.5 m out; 15 steps at 0.5 m/s cover 0.75 m.
    let d = f["mean_final_distance_m"].as_f64().unwrap();
    assert!(d > 0.7, "mean final distance {d} m");
}

#[test]
fn the_bumper_set_runs_its_learned_exits_on_its_task() {
    // engines/models/demo-bumper: learned exit heads, calibrated for a 0.154
    // budget on config/sim/bumper.toml, where a crash ends the episode.
    let set = repo().join("engines/models/demo-bumper");
    let cfg = repo().join("config/sim/bumper.toml");
    let (ok, out, err) = offramp(&[
        "sim",
        "eval",
        "--engines",
        set.to_str().unwrap(),
        "--episodes",
        "12",
        "--first-seed",
        "700000",
        "--criterion",
        "--config",
        cfg.to_str().unwrap(),
        "--jobs",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v[0];
    let f = &r["failures"];
    assert_eq!(
        r["successes"].as_u64().unwrap() + f["episodes"].as_u64().unwrap(),
        12
    );
    // A crash ends the episode: no failure is spent pressed against
    // something, and every crash is a failure.
    assert_eq!(f["stuck"], 0, "{f}");
    assert!(f["crashed"].as_u64().unwrap() <= f["episodes"].as_u64().unwrap());
    // Most frames stop at exit 1, some go deeper.
    let shares: Vec<f64> = r["exit_shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert!(shares[0] > 0.8 && shares[0] < 1.0, "{shares:?}");
    let c = r["compute_ratio"].as_f64().unwrap();
    assert!(c > 0.127 && c < 0.25, "compute {c}");
}

/// DAgger recording: the engine set drives (here always through its
/// calibrated criterion, the expert never), so the frames differ from the
/// expert's own episode on the same seed; bad shares and an uncalibrated
/// set are refused by name.
#[test]
fn dagger_record_lets_the_learner_drive() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo_dir();
    let record = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "sim",
            "record",
            "--episodes",
            "1",
            "--first-seed",
            "11",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        offramp(&args)
    };
    let expert = dir.path().join("expert");
    let (ok, _, err) = record(&expert, &[]);
    assert!(ok, "{err}");
    let learner = dir.path().join("learner");
    let (ok, _, err) = record(
        &learner,
        &[
            "--learner",
            d.to_str().unwrap(),
            "--expert-share",
            "0",
            "--learner-criterion-share",
            "1",
        ],
    );
    assert!(ok, "{err}");
    let frames = |p: &std::path::Path| std::fs::read(p.join("frames.npy")).unwrap();
    assert!(frames(&learner).len() > 1000);
    assert_ne!(frames(&expert), frames(&learner));

    let (ok, _, err) = record(
        &dir.path().join("bad"),
        &["--learner", d.to_str().unwrap(), "--expert-share", "1.5"],
    );
    assert!(!ok);
    assert!(
        err.contains("--expert-share") && err.contains("1.5: must be a share between 0 and 1"),
        "{err}"
    );

    // A copy of the set with no thresholds cannot drive by its criterion.
    let raw = uncalibrated_copy(dir.path());
    let (ok, _, err) = record(
        &dir.path().join("uncalibrated"),
        &[
            "--learner",
            raw.to_str().unwrap(),
            "--learner-criterion-share",
            "0.5",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("manifest has none") && err.contains(raw.to_str().unwrap()),
        "{err}"
    );
}

/// A copy of the demo engine set under `dir` with its thresholds removed.
fn uncalibrated_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let d = demo_dir();
    let raw = dir.join("raw");
    std::fs::create_dir(&raw).unwrap();
    for e in std::fs::read_dir(&d).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, raw.join(p.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(raw.join("manifest.toml")).unwrap();
    let stripped: String = manifest
        .lines()
        .map(|l| {
            if l.starts_with("thresholds = ") {
                "thresholds = []"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(manifest.trim_end(), stripped.trim_end());
    std::fs::write(raw.join("manifest.toml"), stripped).unwrap();
    raw
}

/// `sim eval --criterion` runs the calibrated criterion alone, and refuses
/// a set without thresholds by naming its manifest.
#[test]
fn sim_eval_runs_the_criterion_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo_dir();
    let eval = |engines: &std::path::Path| {
        offramp(&[
            "sim",
            "eval",
            "--engines",
            engines.to_str().unwrap(),
            "--episodes",
            "2",
            "--criterion",
            "--json",
        ])
    };
    let (ok, out, err) = eval(&d);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reports = v.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{out}");
    assert_eq!(reports[0]["policy"], "criterion");
    assert_eq!(reports[0]["episodes"], 2);
    let raw = uncalibrated_copy(dir.path());
    let (ok, _, err) = eval(&raw);
    assert!(!ok);
    assert!(
        err.contains("--criterion") && err.contains(raw.join("manifest.toml").to_str().unwrap()),
        "{err}"
    );
}
