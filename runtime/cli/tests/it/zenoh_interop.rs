//! zenoh deployments beyond the embedded default: a ROS 2-side client in
//! Python reading `cmd_vel`, client mode through a router, and the secured
//! configuration (TLS, mutual authentication, access control) shipped in
//! config/zenoh/.

use crate::common;

use common::{bin, demo_dir, repo, Proc};
use offramp_control::Config;
use offramp_host::HostBoard;
use offramp_link::zenoh_link::{
    free_loopback_endpoint, open_session, Keys, OperatorCommand, OperatorMsg, RuntimeLink,
    ZenohOptions,
};
use offramp_protocol::MotorState;
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

/// A shipped config from config/zenoh/ with its port (7447) moved to
/// `port`, written into `dir`: the file is the whole truth, so the
/// endpoint is changed in it rather than by a flag.
fn shipped_config_on(file: &str, port: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("config/zenoh").join(file)).unwrap();
    assert!(text.contains(":7447"), "{file}");
    let path = dir.join(file);
    std::fs::write(&path, text.replace(":7447", &format!(":{port}"))).unwrap();
    path
}

/// A session config like the shipped runtime-tls.json5 but with another
/// identity (`cn`) from another certificate directory.
fn tls_session(certs: &Path, cn: &str, port: &str) -> zenoh::Session {
    let text = std::fs::read_to_string(repo().join("config/zenoh/runtime-tls.json5")).unwrap();
    let text = text
        .replace("certs/", &format!("{}/", certs.display()))
        .replace("offramp-runtime.", &format!("{cn}."))
        .replace(":7447", &format!(":{port}"));
    let path = certs.join(format!("{cn}-session.json5"));
    std::fs::write(&path, text).unwrap();
    open_session(&ZenohOptions {
        config: Some(path),
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
    let board = HostBoard::start(Config::DEFAULT).unwrap();
    let cfg = |f: &str| shipped_config_on(f, port, dir.path()).display().to_string();
    let bridge_cfg = cfg("bridge-tls.json5");
    let _bridge = offramp(
        &[
            "bridge",
            "--serial",
            board.device.to_str().unwrap(),
            "--zenoh-config",
            &bridge_cfg,
        ],
        dir.path(),
    );
    // The runtime with the shipped config and its certificate drives: the
    // positive control, in this harness, before and after each refusal.
    let d = demo_dir();
    let runtime_cfg = cfg("runtime-tls.json5");
    let runtime = || {
        offramp(
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
            ],
            dir.path(),
        )
    };
    let rt = runtime();
    wait_moving(&board, Duration::from_secs(30));
    drop(rt);
    let t = Instant::now();
    while board.moving() {
        assert!(t.elapsed() < Duration::from_secs(2), "still moving");
        std::thread::sleep(Duration::from_millis(5));
    }

    // Same CA, wrong name: connects, but access control drops its actions.
    let s = tls_session(&certs, "intruder", port);
    assert!(!drive_as(s, &board, 1.5), "the intruder moved the motors");
    // Wrong CA: the TLS handshake fails, nothing gets through.
    let s = tls_session(&rogue, "offramp-runtime", port);
    assert!(
        !drive_as(s, &board, 1.5),
        "a foreign certificate moved the motors"
    );
    // The bridge still serves its runtime.
    let _rt = runtime();
    wait_moving(&board, Duration::from_secs(30));

    // Operator stops: the runtime's certificate cannot latch the motors
    // (they go on turning: the positive control is the runtime driving in
    // this same harness), the operator's can, through the shipped config;
    // then neither the runtime's nor a stranger's certificate can lift
    // the stop, and the operator's lifts it.
    let publish_operator = |s: zenoh::Session, command: OperatorCommand, secs: f64| {
        let key = Keys::new("offramp").unwrap().operator;
        let p = s.declare_publisher(key).wait().unwrap();
        let t = Instant::now();
        let mut buf = [0u8; OperatorMsg::MAX_LEN];
        while t.elapsed().as_secs_f64() < secs {
            p.put(OperatorMsg::new(command).encode(&mut buf).to_vec())
                .wait()
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    publish_operator(
        tls_session(&certs, "offramp-runtime", port),
        OperatorCommand::Stop,
        1.5,
    );
    assert!(
        board.moving(),
        "the runtime's certificate stopped the robot as an operator: {:?}",
        board.output()
    );
    let operator_cfg = cfg("operator-tls.json5");
    let operator = |cmd: &str| {
        let args = ["--timeout", "15", "--zenoh-config", &operator_cfg];
        common::operator(cmd, &args, dir.path());
    };
    operator("stop");
    assert_eq!(board.output().map(|o| o.state), Some(MotorState::Latched));
    for cn in ["offramp-runtime", "intruder"] {
        publish_operator(tls_session(&certs, cn, port), OperatorCommand::Release, 1.0);
        assert_eq!(
            board.output().map(|o| (o.state, o.left)),
            Some((MotorState::Latched, 0.0)),
            "{cn} released an operator's stop"
        );
    }
    operator("release");
    wait_moving(&board, Duration::from_secs(10));
}

/// The systemd units and env file as shipped, run the way systemd runs
/// them: variables from the env file, `${VAR}` as one argument and `$VAR`
/// split at whitespace, in the working directory (/etc/offramp there, a
/// scratch directory here, holding zenoh/ and certs/ as install.sh and
/// make-certs.sh leave them), on this machine's serial device, camera and
/// engine set. With the default settings and with the documented TLS ones
/// (the env file's commented lines), the bridge and the runtime start and
/// the motors turn. (With the TLS settings the runtime used to pass the
/// plaintext listen flag too, which overrode the file: the bridge dialled
/// itself in plaintext and the runtime died on a used port.)
#[test]
fn the_systemd_units_as_documented_start_and_drive() {
    let env_file = std::fs::read_to_string(repo().join("deploy/jetson/offramp.env")).unwrap();
    let mut env = std::collections::BTreeMap::new();
    let mut secured = Vec::new();
    for line in env_file.lines() {
        let (line, documented) = match line.strip_prefix("#   ") {
            Some(l) => (l, true),
            None => (line, false),
        };
        if line.starts_with('#') || !line.contains('=') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        if documented {
            secured.push((k.to_string(), v.trim().to_string()));
        } else {
            env.insert(k.to_string(), v.trim().to_string());
        }
    }
    assert!(
        secured.iter().any(|(k, _)| k == "OFFRAMP_RUN_ZENOH")
            && secured.iter().any(|(k, _)| k == "OFFRAMP_BRIDGE_ZENOH"),
        "the env file documents the secured settings: {secured:?}"
    );
    for tls in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        let port = free_loopback_endpoint().unwrap();
        let port = port.rsplit(':').next().unwrap().to_string();
        // install.sh's layout, with the port moved off 7447.
        std::fs::create_dir(etc.join("zenoh")).unwrap();
        for f in ["bridge-tls.json5", "runtime-tls.json5"] {
            shipped_config_on(f, &port, &etc.join("zenoh"));
        }
        let mk = repo().join("config/zenoh/make-certs.sh");
        assert!(Command::new("bash")
            .arg(&mk)
            .arg(etc.join("certs"))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success());
        let board = HostBoard::start(Config::DEFAULT).unwrap();
        let mut vars = env.clone();
        if tls {
            vars.extend(secured.iter().cloned());
        }
        let etc_s = etc.display().to_string();
        for v in vars.values_mut() {
            *v = v
                .replace("/etc/offramp", &etc_s)
                .replace(":7447", &format!(":{port}"));
        }
        vars.insert("OFFRAMP_SERIAL".into(), board.device.display().to_string());
        vars.insert("OFFRAMP_CAMERA".into(), "sim".into());
        vars.insert("OFFRAMP_ENGINES".into(), demo_dir().display().to_string());
        vars.insert("OFFRAMP_LOG".into(), "warn".into());
        let start = |unit: &str| {
            let text = std::fs::read_to_string(repo().join("deploy/jetson").join(unit)).unwrap();
            let exec = text
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
            let mut words = exec.split_whitespace();
            assert_eq!(words.next(), Some("/opt/offramp/bin/offramp"), "{unit}");
            let mut args: Vec<String> = Vec::new();
            for w in words {
                if let Some(name) = w.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                    args.push(vars.get(name).cloned().unwrap_or_default());
                } else if let Some(name) = w.strip_prefix('$') {
                    let value = vars.get(name).cloned().unwrap_or_default();
                    args.extend(value.split_whitespace().map(str::to_string));
                } else {
                    args.push(w.to_string());
                }
            }
            Proc(
                Command::new(bin())
                    .args(&args)
                    .envs(&vars)
                    .current_dir(etc)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let _bridge = start("offramp-bridge.service");
        let _runtime = start("offramp.service");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(40) && !board.moving() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            board.moving(),
            "tls {tls}: motors not moving: {:?}",
            board.output()
        );
    }
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

/// A second host on the robot's network: a network namespace joined to
/// this one by a veth pair, made by the test. None where the machine does
/// not allow it (no `ip`, no privilege).
struct OtherHost {
    ns: String,
    link: String,
    /// This machine's (the robot's) address on the shared network.
    robot_ip: String,
}

impl OtherHost {
    fn new() -> Option<Self> {
        let id = std::process::id() % 100_000;
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let ns = format!("offramp-{id}");
        if !ip(&["netns", "add", &ns]) {
            return None;
        }
        let host = Self {
            ns: ns.clone(),
            link: format!("ofr{id}a"),
            robot_ip: format!("10.213.{}.1", id % 250),
        };
        let peer = format!("ofr{id}b");
        let other_ip = format!("10.213.{}.2/30", id % 250);
        let robot_cidr = format!("{}/30", host.robot_ip);
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", &host.link, "type", "veth", "peer", "name", &peer,
            ],
            &["link", "set", &peer, "netns", &ns],
            &["addr", "add", &robot_cidr, "dev", &host.link],
            &["link", "set", &host.link, "up"],
            &["-n", &ns, "addr", "add", &other_ip, "dev", &peer],
            &["-n", &ns, "link", "set", &peer, "up"],
            &["-n", &ns, "link", "set", "lo", "up"],
        ];
        steps.iter().all(|s| ip(s)).then_some(host)
    }

    /// `offramp ARGS` on the other host.
    fn offramp(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin())
            .args(["--log", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Whether a TCP connection from the other host to `addr` opens.
    fn reaches(&self, addr: &str) -> bool {
        let (host, port) = addr.rsplit_once(':').unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        for args in [["link", "del", &self.link], ["netns", "del", &self.ns]] {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        }
    }
}

/// The TCP listening addresses of process `pid` (`ss -ltnp`).
fn listening(pid: u32) -> Vec<String> {
    let out = Command::new("ss").args(["-ltnpH"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// With the default settings a second host on the robot's network can
/// neither stop nor drive the robot: nothing of the runtime's or the
/// bridge's listens beyond loopback, and an `offramp operator stop` from
/// there finds no one, on any port they listen on; the motors keep turning.
/// The same command on the robot itself latches them (the positive
/// control), and the second host does reach a port opened on the robot's
/// network address (the network works).
#[test]
fn a_second_host_cannot_reach_the_robot_by_default() {
    let Some(other) = OtherHost::new() else {
        eprintln!(
            "skipped: this machine cannot make a network namespace (needs root and iproute2)"
        );
        return;
    };
    let open = std::net::TcpListener::bind(format!("{}:0", other.robot_ip)).unwrap();
    assert!(
        other.reaches(&open.local_addr().unwrap().to_string()),
        "the second host cannot reach the robot's address at all"
    );
    let ep = free_loopback_endpoint().unwrap();
    let board = HostBoard::start(Config::DEFAULT).unwrap();
    let robot = format!("second-host-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let rt = common::runtime(&robot, &ep);
    let bridge = common::bridge(&board.device, &robot, &ep);
    wait_moving(&board, Duration::from_secs(60));
    let mut ports = Vec::new();
    for p in [&rt, &bridge] {
        for addr in listening(p.0.id()) {
            assert!(
                addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:"),
                "listening beyond loopback: {addr}"
            );
            ports.push(addr.rsplit_once(':').unwrap().1.to_string());
        }
    }
    assert!(!ports.is_empty(), "no listener found for the runtime");
    for port in &ports {
        let at = format!("{}:{port}", other.robot_ip);
        assert!(!other.reaches(&at), "the second host reaches {at}");
        let out = other.offramp(&[
            "operator",
            "stop",
            "--robot",
            &robot,
            "--connect",
            &format!("tcp/{at}"),
            "--timeout",
            "2",
        ]);
        assert!(
            !out.status.success(),
            "an operator stop from the second host was confirmed"
        );
        assert!(board.moving(), "{:?}", board.output());
    }
    // On the robot itself the same command latches the motors.
    let args = ["--robot", &robot, "--connect", &ep, "--timeout", "10"];
    common::operator("stop", &args, dir.path());
    assert_eq!(board.output().map(|o| o.state), Some(MotorState::Latched));
}

impl OtherHost {
    /// `offramp ARGS` started on the other host in `cwd`.
    fn spawn(&self, args: &[&str], cwd: &Path) -> Proc {
        Proc(
            Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .arg(bin())
                .args(["--log", "warn"])
                .args(args)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

/// A free TCP port on `ip`.
fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap().port()
}

/// Waits until something listens on `addr`.
fn wait_listening(addr: &str, within: Duration) {
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < within, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The documented secure setup on a real network (docs/security.md): the
/// bridge and the runtime listen on the robot's network address over TLS,
/// with certificates made by make-certs.sh (the robot's address in their
/// SAN) and the shipped access control; the offload server and any other
/// device sit on a second host (a network namespace).
///
/// From that host, a runtime with the runtime's certificate drives the
/// motors (the network, the names and the certificates work), one with a
/// stranger's certificate from the same CA does not. The robot's own
/// runtime, offloading deep exits, gets no answer from servers with the
/// stranger's certificate (one of them using the allowlisted server's name)
/// and gets answers from the allowlisted server, run the same way.
#[test]
fn with_the_secured_configuration_a_second_host_can_neither_drive_nor_serve() {
    let Some(other) = OtherHost::new() else {
        eprintln!(
            "skipped: this machine cannot make a network namespace (needs root and iproute2)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    let ip = other.robot_ip.clone();
    assert!(Command::new("bash")
        .arg(repo().join("config/zenoh/make-certs.sh"))
        .arg(etc.join("certs"))
        .args(["offramp-offload-edge-a", "intruder"])
        .env("OFFRAMP_CERT_SAN", format!("IP:{ip}"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let (bridge_at, offload_at) = (
        format!("{ip}:{}", free_port(&ip)),
        format!("{ip}:{}", free_port(&ip)),
    );
    // The shipped configs with the robot's address for localhost and
    // 0.0.0.0 (as a user writes it), and a certificate swapped for
    // `cn`'s where asked.
    std::fs::create_dir(etc.join("zenoh")).unwrap();
    let config = |file: &str, cert: Option<(&str, &str)>| {
        let mut text = std::fs::read_to_string(repo().join("config/zenoh").join(file)).unwrap();
        for (from, to) in [
            ("localhost:7447", &bridge_at),
            ("localhost:7448", &offload_at),
            ("0.0.0.0:7448", &offload_at),
        ] {
            text = text.replace(from, to);
        }
        let mut name = file.to_string();
        if let Some((from, to)) = cert {
            assert!(text.contains(&format!("certs/{from}.pem")), "{file}");
            text = text.replace(&format!("certs/{from}."), &format!("certs/{to}."));
            name = format!("{to}-{file}");
        }
        std::fs::write(etc.join("zenoh").join(&name), text).unwrap();
        format!("zenoh/{name}")
    };
    let board = HostBoard::start(Config::DEFAULT).unwrap();
    let bridge_cfg = config("bridge-tls.json5", None);
    let dev = board.device.display().to_string();
    let _bridge = offramp(
        &["bridge", "--serial", &dev, "--zenoh-config", &bridge_cfg],
        etc,
    );
    wait_listening(&bridge_at, Duration::from_secs(20));
    let d = demo_dir().display().to_string();
    let drive = ["run", "--engines", &d, "--camera", "sim", "--fps", "20"];
    let stopped = |board: &HostBoard| {
        let t = Instant::now();
        while board.moving() {
            assert!(t.elapsed() < Duration::from_secs(2), "still moving");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    // Driving from the second host: the runtime's certificate does, a
    // stranger's does not.
    let runtime_cfg = config("runtime-tls.json5", None);
    let rt = other.spawn(
        &[&drive[..], &["--zenoh", "--zenoh-config", &runtime_cfg]].concat(),
        etc,
    );
    wait_moving(&board, Duration::from_secs(30));
    drop(rt);
    stopped(&board);
    let intruder_cfg = config("runtime-tls.json5", Some(("offramp-runtime", "intruder")));
    let rt = other.spawn(
        &[&drive[..], &["--zenoh", "--zenoh-config", &intruder_cfg]].concat(),
        etc,
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(6) {
        assert!(!board.moving(), "a stranger's certificate drove the motors");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(rt);

    // The robot's runtime offloads exits 2.. to whichever server answers:
    // (answered, requests) over 200 frames, with `servers` (certificate,
    // name) started on the second host once it listens.
    let robot_cfg = config("runtime-offload-tls.json5", None);
    let offload_run = |servers: &[(&str, &str)]| -> (u64, u64) {
        let run = Command::new(bin())
            .args(["--log", "warn"])
            .args(drive)
            .args(["--frames", "200", "--json", "--deadline-ms", "200"])
            .args(["--offload", "1", "--zenoh", "--zenoh-config", &robot_cfg])
            .current_dir(etc)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut run = Proc(run);
        wait_listening(&offload_at, Duration::from_secs(20));
        let _servers: Vec<Proc> = servers
            .iter()
            .map(|(cn, name)| {
                let cfg = if *cn == "offramp-offload-edge-a" {
                    config("offload-server-tls.json5", None)
                } else {
                    config(
                        "offload-server-tls.json5",
                        Some(("offramp-offload-edge-a", cn)),
                    )
                };
                other.spawn(
                    &[
                        "serve",
                        "--engines",
                        &d,
                        "--name",
                        name,
                        "--zenoh-config",
                        &cfg,
                    ],
                    etc,
                )
            })
            .collect();
        wait_moving(&board, Duration::from_secs(30));
        let mut out = String::new();
        std::io::Read::read_to_string(run.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(run.0.wait().unwrap().success(), "{out}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        let o = &r["offload"];
        (
            o["answered"].as_u64().unwrap(),
            o["requests"].as_u64().unwrap(),
        )
    };
    let (answered, requests) = offload_run(&[("intruder", "edge-a"), ("intruder", "intruder")]);
    assert!(requests > 20, "{requests} requests");
    assert_eq!(
        answered, 0,
        "a stranger answered {answered} of {requests} requests"
    );
    stopped(&board);
    let (answered, requests) = offload_run(&[("offramp-offload-edge-a", "edge-a")]);
    assert!(
        answered * 2 > requests,
        "the allowlisted server answered {answered} of {requests}"
    );
}
