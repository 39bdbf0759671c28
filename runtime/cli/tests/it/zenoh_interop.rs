//! zenoh deployments beyond the embedded default: a ROS 2-side client in
//! Python reading `cmd_vel`, client mode through a router, and the secured
//! configuration (TLS, mutual authentication, access control) shipped in
//! config/zenoh/.

use crate::common;

use common::{bin, demo_dir, repo, Proc};
use offramp_control::Config;
use offramp_host::HostBoard;
use offramp_link::zenoh_link::{
    free_loopback_endpoint, open_session, Keys, RuntimeLink, ZenohOptions,
};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zenoh::Wait;

fn offramp(args: &[&str], cwd: &Path) -> Proc {
    Proc(
        Command::new(bin())
            .args(["--log", "warn"])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits until the board's motors run.
fn wait_moving(board: &HostBoard, within: Duration) {
    let t = Instant::now();
    while t.elapsed() < within {
        if board.moving() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("motors not moving after {within:?}: {:?}", board.output());
}

fn python() -> String {
    std::env::var("OFFRAMP_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
fn ros2_cmd_vel_reaches_a_python_zenoh_client() {
    let ep = free_loopback_endpoint().unwrap();
    let d = demo_dir();
    let _rt = offramp(
        &[
            "run",
            "--engines",
            d.to_str().unwrap(),
            "--camera",
            "sim",
            "--fps",
            "20",
            "--zenoh",
            "--cmd-vel",
            "--listen",
            &ep,
        ],
        &repo(),
    );
    let script = repo().join("tools/zenoh/cmd_vel_listener.py");
    let out = Command::new(python())
        .arg(&script)
        .args(["--connect", &ep, "--count", "30", "--timeout", "60"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the Python listener (OFFRAMP_PYTHON with eclipse-zenoh)");
    assert!(out.status.success(), "python listener failed");
    let lines: Vec<serde_json::Value> = BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines[0]["ready"], true);
    let twists = &lines[1..];
    assert_eq!(twists.len(), 30);
    let mut moving = 0;
    for t in twists {
        assert_eq!(t["key"], "cmd_vel", "{t}");
        assert_eq!(t["header"], "00010000", "{t}");
        let lin: Vec<f64> = serde_json::from_value(t["linear"].clone()).unwrap();
        let ang: Vec<f64> = serde_json::from_value(t["angular"].clone()).unwrap();
        // A planar base: only linear.x and angular.z, inside the limits.
        assert_eq!(
            (lin[1], lin[2], ang[0], ang[1]),
            (0.0, 0.0, 0.0, 0.0),
            "{t}"
        );
        assert!(lin[0].abs() <= 0.5 && ang[2].abs() <= 2.0, "{t}");
        moving += (lin[0] != 0.0) as usize;
    }
    assert!(moving > 0, "every Twist was zero");
}

#[test]
fn client_mode_through_a_router() {
    let ep = free_loopback_endpoint().unwrap();
    // A router (what zenohd runs, without plugins), here in the test.
    let router = open_session(&ZenohOptions {
        mode: Some("router".into()),
        listen: vec![ep.clone()],
        ..Default::default()
    })
    .unwrap();
    let board = HostBoard::start(Config::DEFAULT).unwrap();
    let d = demo_dir();
    let client = ["--zenoh-mode", "client", "--connect", &ep];
    let mut args = vec!["bridge", "--serial", board.device.to_str().unwrap()];
    args.extend(client);
    let _bridge = offramp(&args, &repo());
    let mut args = vec![
        "run",
        "--engines",
        d.to_str().unwrap(),
        "--camera",
        "sim",
        "--fps",
        "20",
        "--zenoh",
    ];
    args.extend(client);
    let _rt = offramp(&args, &repo());
    wait_moving(&board, Duration::from_secs(30));
    // Both declared themselves: a liveliness query through the router sees
    // the runtime and the bridge.
    let replies = router
        .liveliness()
        .get("offramp/alive/**")
        .timeout(Duration::from_secs(2))
        .wait()
        .unwrap();
    let mut alive: Vec<String> = Vec::new();
    while let Ok(r) = replies.recv() {
        if let Ok(s) = r.result() {
            alive.push(s.key_expr().to_string());
        }
    }
    alive.sort();
    assert_eq!(alive, ["offramp/alive/bridge", "offramp/alive/runtime"]);
}

/// A session config like the shipped runtime-tls.json5 but with another
/// identity (`cn`) from another certificate directory.
fn tls_session(certs: &Path, cn: &str, connect: &str) -> zenoh::Session {
    let text = std::fs::read_to_string(repo().join("config/zenoh/runtime-tls.json5")).unwrap();
    let text = text
        .replace("certs/", &format!("{}/", certs.display()))
        .replace("offramp-runtime.", &format!("{cn}."));
    let path = certs.join(format!("{cn}-session.json5"));
    std::fs::write(&path, text).unwrap();
    open_session(&ZenohOptions {
        config: Some(path),
        connect: vec![connect.to_string()],
        ..Default::default()
    })
    .unwrap()
}

/// Publishes actions for `secs` and reports whether the motors ever moved.
fn drive_as(session: zenoh::Session, board: &HostBoard, secs: f64) -> bool {
    let mut link = RuntimeLink::open(
        session,
        Keys::new("offramp").unwrap(),
        Duration::from_millis(200),
        false,
    )
    .unwrap();
    let t = Instant::now();
    let mut moved = false;
    while t.elapsed().as_secs_f64() < secs {
        link.publish(0.3, 0.5, 0, false).unwrap();
        for _ in 0..10 {
            moved |= board.moving();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    moved
}

#[test]
fn tls_with_mutual_auth_and_access_control_admits_only_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mk = repo().join("config/zenoh/make-certs.sh");
    let ok = Command::new("bash")
        .arg(&mk)
        .arg(&certs)
        .arg("intruder")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    // A second CA: its "offramp-runtime" has the right name, wrong issuer.
    let rogue = dir.path().join("rogue");
    assert!(Command::new("bash")
        .arg(&mk)
        .arg(&rogue)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let port = free_loopback_endpoint().unwrap();
    let port = port.rsplit(':').next().unwrap();
    let ep = format!("tls/localhost:{port}");
    let board = HostBoard::start(Config::DEFAULT).unwrap();
    let cfg = |f: &str| repo().join("config/zenoh").join(f).display().to_string();
    let bridge_cfg = cfg("bridge-tls.json5");
    let _bridge = offramp(
        &[
            "bridge",
            "--serial",
            board.device.to_str().unwrap(),
            "--zenoh-config",
            &bridge_cfg,
            "--listen",
            &ep,
        ],
        dir.path(),
    );
    std::thread::sleep(Duration::from_secs(1));

    // Same CA, wrong name: connects, but access control drops its actions.
    let s = tls_session(&certs, "intruder", &ep);
    assert!(!drive_as(s, &board, 1.5), "the intruder moved the motors");
    // Wrong CA: the TLS handshake fails, nothing gets through.
    let s = tls_session(&rogue, "offramp-runtime", &ep);
    assert!(
        !drive_as(s, &board, 1.5),
        "a foreign certificate moved the motors"
    );
    // The runtime with the shipped config and its certificate drives.
    let d = demo_dir();
    let runtime_cfg = cfg("runtime-tls.json5");
    let _rt = offramp(
        &[
            "run",
            "--engines",
            d.to_str().unwrap(),
            "--camera",
            "sim",
            "--fps",
            "20",
            "--zenoh",
            "--zenoh-config",
            &runtime_cfg,
            "--connect",
            &ep,
        ],
        dir.path(),
    );
    wait_moving(&board, Duration::from_secs(30));
}

#[test]
fn zenoh_bench_prints_both_paths() {
    let (ok, out, err) =
        common::offramp(&["bench", "zenoh", "--iters", "200", "--demo-episodes", "0"]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["lost"], 0);
    assert_eq!(j["offramp_us"]["n"], 200);
    assert_eq!(j["bare_zenoh_us"]["n"], 200);
    // Each path's summary is a real distribution of positive latencies, and
    // the ratios are offramp's path over bare zenoh's, on medians and means.
    let stat = |path: &str, k: &str| j[path][k].as_f64().unwrap();
    for path in ["offramp_us", "bare_zenoh_us"] {
        let (min, p50, p99, max) = (
            stat(path, "min"),
            stat(path, "p50"),
            stat(path, "p99"),
            stat(path, "max"),
        );
        assert!(
            0.0 < min && min <= p50 && p50 <= p99 && p99 <= max,
            "{path}: {j}"
        );
        assert!((min..=max).contains(&stat(path, "mean")), "{path}: {j}");
    }
    for (ratio, k) in [("ratio_p50", "p50"), ("ratio_mean", "mean")] {
        let want = stat("offramp_us", k) / stat("bare_zenoh_us", k);
        let got = j[ratio].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "{ratio} {got}, want {want}"
        );
    }
    assert_eq!(j["payload_bytes"], 26);
}
