//! `offramp serve` and `offramp run --offload` as separate processes over
//! zenoh on loopback: the active server is SIGKILLed mid-run.

use crate::common::*;
use offramp_link::zenoh_link::free_loopback_endpoint;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `offramp serve` and waits for its "serving" line.
fn serve(robot: &str, connect: &str, rank: u32, name: &str) -> Proc {
    let mut child = Command::new(bin())
        .args(["serve", "--engines"])
        .arg(demo_dir())
        .args(["--robot", robot, "--connect", connect, "--name", name])
        .args(["--rank", &rank.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("serving "), "{line:?}");
    assert!(
        line.trim_end().ends_with(&format!("/{rank}/{name}")),
        "{line:?}"
    );
    Proc(child)
}

#[test]
fn a_killed_server_leaves_no_frame_without_an_action() {
    let ep = free_loopback_endpoint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("offload.rec");
    // The runtime listens; the servers connect, as a second device would.
    let run = Command::new(bin())
        .args(["run", "--engines"])
        .arg(demo_dir())
        .args(["--camera", "sim", "--fps", "10", "--frames", "50", "--json"])
        .args(["--deadline-ms", "100", "--offload", "1"])
        .args(["--robot", "offload-cli", "--listen", &ep])
        .arg("--record")
        .arg(&rec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = Proc(run);
    // The servers connect once the runtime listens (after loading).
    let addr = ep.trim_start_matches("tcp/");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the runtime never listened on {ep}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut active = serve("offload-cli", &ep, 0, "active");
    let _standby = serve("offload-cli", &ep, 1, "standby");
    std::thread::sleep(Duration::from_secs(2));
    active.0.kill().unwrap();
    let killed = Instant::now();
    let mut out = String::new();
    std::io::Read::read_to_string(run.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let status = run.0.wait().unwrap();
    assert!(status.success(), "{out}");
    assert!(
        killed.elapsed() > Duration::from_secs(1),
        "the run ended before the kill"
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let o = &r["offload"];
    assert_eq!(r["frames"], 50, "{r}");
    let (requests, answered, fallbacks) = (
        o["requests"].as_u64().unwrap(),
        o["answered"].as_u64().unwrap(),
        o["fallbacks"].as_u64().unwrap(),
    );
    // Every request got an action: the server's or the local fallback.
    assert_eq!(requests, answered + fallbacks, "{o}");
    assert!(answered > 0, "{o}");
    assert_eq!(o["failovers"], 1, "{o}");
    // A frame the deadline missed would be the network's fault here.
    assert_eq!(r["deadline_misses"], 0, "{r}");
    // The flight record marks each frame's source; MCAP carries it.
    let frames = crate::closed_loop::mcap_frames(&rec);
    assert_eq!(frames.len(), 50);
    let count = |k: &str| frames.iter().filter(|(_, f)| f[k] == true).count() as u64;
    assert_eq!((count("remote"), count("fallback")), (answered, fallbacks));
}

#[test]
fn bench_offload_compares_both_sides_on_the_same_episodes() {
    let (ok, out, err) = offramp(&[
        "bench",
        "offload",
        "--engines",
        demo_dir().to_str().unwrap(),
        "--episodes",
        "3",
        "--robot-slowdown",
        "3",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (lo, off) = (&r["local_only"], &r["offload"]);
    assert_eq!(r["robot_slowdown"], 3.0);
    // Remote exits give the local actions bit for bit: the same episodes
    // unfold the same way, frame for frame.
    assert_eq!(lo["frames"], off["frames"], "{r}");
    assert_eq!(lo["successes"], off["successes"], "{r}");
    assert_eq!(lo["mean_exit"], off["mean_exit"], "{r}");
    assert_eq!(lo["total_compute_ratio"], off["total_compute_ratio"], "{r}");
    // The robot computes less; the server answered every deep frame.
    let robot = |s: &serde_json::Value| s["robot_compute_ratio"].as_f64().unwrap();
    assert!(robot(off) < robot(lo), "{r}");
    assert_eq!(off["fallback_frames"], 0, "{r}");
    assert!(off["remote_frames"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["served"], off["remote_frames"], "{r}");
    // A slowdown below 1 is refused, naming it.
    let (ok, _, err) = offramp(&["bench", "offload", "--robot-slowdown", "0.5"]);
    assert!(!ok);
    assert!(err.contains("0.5 is below 1"), "{err}");
}
