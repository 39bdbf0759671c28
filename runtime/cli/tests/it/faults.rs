//! Faults on the real path: `offramp run --zenoh` (the runtime process) →
//! zenoh → `offramp bridge` (its own process) → a pty → the firmware's
//! control logic. Whatever dies, the motors stop within the firmware's
//! command timeout, every time; when it comes back, the loop resumes.

use crate::common;

use common::{bin, bridge, demo_dir, runtime, Proc};
use offramp_control::Config;
use offramp_host::HostBoard;
use offramp_link::zenoh_link::{
    free_loopback_endpoint, open_session, Keys, RuntimeLink, TelemetryMsg, ZenohOptions,
};
use offramp_protocol::MotorState;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// The firmware's command timeout, plus scheduling slack on a loaded
/// 2-core machine (the firmware ticks every millisecond).
const STOP_WITHIN: Duration = Duration::from_millis(250 + 50);

/// A motor controller behind a serial device path that can be re-pointed
/// (as udev's /dev/serial/by-id links are).
struct Board {
    host: Option<HostBoard>,
    link: PathBuf,
}

impl Board {
    fn new(dir: &Path) -> Self {
        let mut b = Self {
            host: None,
            link: dir.join("ttyMCU"),
        };
        b.plug();
        b
    }

    fn plug(&mut self) {
        let host = HostBoard::start(Config::DEFAULT).unwrap();
        let _ = std::fs::remove_file(&self.link);
        std::os::unix::fs::symlink(&host.device, &self.link).unwrap();
        self.host = Some(host);
    }

    fn unplug(&mut self) {
        self.host = None;
    }

    fn state(&self) -> Option<(MotorState, f32, f32)> {
        let o = self.host.as_ref()?.output()?;
        Some((o.state, o.left, o.right))
    }

    /// Polls every millisecond until `pred` holds for the board's state;
    /// returns the time from `since`, and fails (saying `what`) once
    /// `within` of it has passed.
    fn until(
        &self,
        what: &str,
        since: Instant,
        within: Duration,
        pred: impl Fn(MotorState, f32, f32) -> bool,
    ) -> Duration {
        loop {
            if let Some((s, l, r)) = self.state() {
                if pred(s, l, r) {
                    return since.elapsed();
                }
            }
            assert!(
                since.elapsed() < within,
                "{what} after {within:?}: {:?}",
                self.state()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_running(&self, within: Duration) {
        self.until("motors not running", Instant::now(), within, |s, l, r| {
            s == MotorState::Running && (l != 0.0 || r != 0.0)
        });
    }

    /// Time from `since` until the outputs are zero and the state TimedOut.
    fn stopped_after(&self, since: Instant) -> Duration {
        self.until(
            "motors still not stopped",
            since,
            Duration::from_secs(3),
            |s, l, r| s == MotorState::TimedOut && l == 0.0 && r == 0.0,
        )
    }
}

/// SIGKILL: no goodbye to anyone. Returns when it was sent.
fn kill(mut p: Proc) -> Instant {
    p.0.kill().unwrap();
    let at = Instant::now();
    let _ = p.0.wait();
    at
}

fn robot(name: &str) -> String {
    format!("test-{}-{name}", std::process::id())
}

#[test]
fn killing_the_runtime_stops_the_motors_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("kill-runtime");
    let ep = free_loopback_endpoint().unwrap();
    let _bridge = bridge(&board.link, &r, &ep);
    for round in 0..3 {
        let rt = runtime(&r, &ep);
        board.wait_running(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
        let killed = kill(rt);
        let took = board.stopped_after(killed);
        eprintln!("round {round}: runtime killed, motors off after {took:?}");
        assert!(took <= STOP_WITHIN, "round {round}: {took:?}");
    }
}

#[test]
fn killing_the_bridge_stops_the_motors_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("kill-bridge");
    let ep = free_loopback_endpoint().unwrap();
    let _rt = runtime(&r, &ep);
    for round in 0..3 {
        let b = bridge(&board.link, &r, &ep);
        board.wait_running(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
        let killed = kill(b);
        let took = board.stopped_after(killed);
        eprintln!("round {round}: bridge killed, motors off after {took:?}");
        assert!(took <= STOP_WITHIN, "round {round}: {took:?}");
    }
}

/// A TCP relay between the bridge and the runtime that can cut the link.
struct Cable {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    port: u16,
}

impl Cable {
    fn new(to: String) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in l.incoming() {
                let Ok(a) = inbound else { return };
                if !u.load(Ordering::Relaxed) {
                    drop(a);
                    continue;
                }
                let Ok(b) = TcpStream::connect(to.trim_start_matches("tcp/")) else {
                    continue;
                };
                let _ = a.set_nodelay(true);
                let _ = b.set_nodelay(true);
                c.lock()
                    .unwrap()
                    .extend([a.try_clone().unwrap(), b.try_clone().unwrap()]);
                for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)]
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { up, conns, port }
    }

    fn cut(&self) -> Instant {
        self.up.store(false, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        Instant::now()
    }

    fn mend(&self) {
        self.up.store(true, Ordering::Relaxed);
    }
}

#[test]
fn cutting_the_zenoh_link_stops_the_motors_and_mending_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("cut-link");
    let ep = free_loopback_endpoint().unwrap();
    let _rt = runtime(&r, &ep);
    let cable = Cable::new(ep.clone());
    let _b = bridge(&board.link, &r, &format!("tcp/127.0.0.1:{}", cable.port));
    board.wait_running(Duration::from_secs(30));
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(300));
        let cut = cable.cut();
        let took = board.stopped_after(cut);
        eprintln!("round {round}: link cut, motors off after {took:?}");
        assert!(took <= STOP_WITHIN, "round {round}: {took:?}");
        std::thread::sleep(Duration::from_millis(500));
        cable.mend();
        // zenoh re-establishes the configured connect endpoint by itself.
        board.wait_running(Duration::from_secs(30));
    }
}

#[test]
fn the_bridge_reconnects_when_the_serial_device_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut board = Board::new(dir.path());
    let r = robot("replug");
    let ep = free_loopback_endpoint().unwrap();
    let _rt = runtime(&r, &ep);
    let _b = bridge(&board.link, &r, &ep);
    board.wait_running(Duration::from_secs(30));
    // Unplugged: the device node and everything behind it vanish.
    board.unplug();
    std::thread::sleep(Duration::from_millis(700));
    // A new board (fresh boot) on a new node behind the same path.
    board.plug();
    board.wait_running(Duration::from_secs(10));
    let t = telemetry_after(&ep, &r, |t| t.bridge.connects >= 2);
    assert!(t.bridge.link_up);
}

/// Subscribes to the robot's telemetry (a zenoh peer of the runtime) and
/// returns the first report that satisfies `pick`.
fn telemetry_after(ep: &str, robot: &str, pick: impl Fn(&TelemetryMsg) -> bool) -> TelemetryMsg {
    let s = open_session(&ZenohOptions {
        connect: vec![ep.to_string()],
        ..Default::default()
    })
    .unwrap();
    let sub = s
        .declare_subscriber(Keys::new(robot).unwrap().telemetry)
        .wait()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(sample)) = sub.recv_timeout(Duration::from_millis(200)) {
            let t = TelemetryMsg::decode(&sample.payload().to_bytes()).unwrap();
            if pick(&t) {
                return t;
            }
        }
    }
    panic!("no matching telemetry on {robot}/telemetry");
}

#[test]
fn corrupt_serial_bytes_are_dropped_counted_and_the_loop_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("corrupt");
    let ep = free_loopback_endpoint().unwrap();
    let rt = runtime(&r, &ep);
    let _b = bridge(&board.link, &r, &ep);
    board.wait_running(Duration::from_secs(30));
    // Garbage both ways: into the bridge (from the board's side) and into
    // the firmware (a second writer on the device node).
    let mut to_bridge = board.host.as_ref().unwrap().cable().unwrap();
    let mut to_fw = std::fs::OpenOptions::new()
        .write(true)
        .open(&board.link)
        .unwrap();
    let t0 = Instant::now();
    let mut k = 0u8;
    while t0.elapsed() < Duration::from_secs(2) {
        k = k.wrapping_add(37);
        let junk = [k, 0x55, k ^ 0xa5, 0x01, 0xff, k, 0x00];
        to_bridge.write_all(&junk).unwrap();
        to_fw.write_all(&junk).unwrap();
        // The motors never stop for it: a lost command is replaced by the
        // next one, 50 ms later, well inside the timeout.
        let (state, _, _) = board.state().unwrap();
        assert_eq!(state, MotorState::Running, "after {:?}", t0.elapsed());
        std::thread::sleep(Duration::from_millis(40));
    }
    let t = telemetry_after(&ep, &r, |t| t.bridge.frame_errors > 0);
    let c = t.firmware.counters;
    let fw_errors = c.cobs + c.crc + c.decode + c.too_short + c.version + c.overflow;
    assert!(fw_errors > 0, "{c:?}");
    eprintln!(
        "bridge frame errors {}, firmware frame errors {fw_errors}",
        t.bridge.frame_errors
    );
    board.wait_running(Duration::from_secs(1));
    // The link survived the noise with the firmware's safety intact: when
    // commands stop, the motors still stop in time.
    let killed = kill(rt);
    let took = board.stopped_after(killed);
    eprintln!("after the noise: runtime killed, motors off after {took:?}");
    assert!(took <= STOP_WITHIN, "{took:?}");
}

#[test]
fn a_lost_camera_stops_the_motors_through_the_bridge_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let rec = dir.path().join("rec");
    let (ok, out, err) = common::offramp(&[
        "sim",
        "record",
        "--episodes",
        "1",
        "--out",
        rec.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let r = robot("camera-loss");
    let ep = free_loopback_endpoint().unwrap();
    let _b = bridge(&board.link, &r, &ep);
    // The recording is the camera: it ends after one episode, as a camera
    // that vanishes does. The runtime then commands stop.
    let mut rt = Proc(
        Command::new(bin())
            .args(["--log", "warn", "run", "--engines"])
            .arg(demo_dir())
            .arg(format!("--camera=replay:{}", rec.display()))
            .args(["--fps", "20", "--zenoh", "--robot", &r, "--listen", &ep])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    board.wait_running(Duration::from_secs(30));
    // Driving until the camera is gone; then a Stop (Disarmed), never the
    // firmware's timeout (TimedOut) first.
    let took = board.until(
        "no stop",
        Instant::now(),
        Duration::from_secs(60),
        |s, l, r| {
            assert_ne!(
                s,
                MotorState::TimedOut,
                "the firmware timed out: the runtime's stop never came"
            );
            s == MotorState::Disarmed && l == 0.0 && r == 0.0
        },
    );
    let status = rt.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    eprintln!("camera gone after {took:?} of driving: motors off by a Stop");
}

#[test]
fn a_stop_action_stops_the_motors_at_once_and_driving_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("stop-flag");
    let ep = free_loopback_endpoint().unwrap();
    // The test is the runtime: it publishes actions on <robot>/action as
    // `offramp run --zenoh` does (a zenoh session listening on `ep`).
    let session = open_session(&ZenohOptions {
        listen: vec![ep.clone()],
        ..Default::default()
    })
    .unwrap();
    let mut rt = RuntimeLink::open(
        session,
        Keys::new(&r).unwrap(),
        Duration::from_millis(200),
        false,
    )
    .unwrap();
    let _b = bridge(&board.link, &r, &ep);
    let rounds = 3;
    for round in 0..rounds {
        // Drive at 20 Hz until the wheels turn and have run for a while.
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            rt.publish(0.3, 0.0, 2, false).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            if let Some((MotorState::Running, l, _)) = board.state() {
                if l > 0.1 {
                    break;
                }
            }
        }
        let (state, left, _) = board.state().unwrap();
        assert_eq!(state, MotorState::Running, "round {round}");
        assert!(left > 0.1, "round {round}: not driving ({left})");
        // One stop: the firmware disarms and zeroes the outputs at once,
        // without slewing down (0.3 m/s would take 75 ms at 4 m/s²) and
        // without waiting for the 250 ms command timeout.
        rt.publish(0.0, 0.0, 2, true).unwrap();
        let took = board.until(
            "not disarmed",
            Instant::now(),
            Duration::from_secs(2),
            |s, l, r| s == MotorState::Disarmed && l == 0.0 && r == 0.0,
        );
        eprintln!("round {round}: stop action → motors off and disarmed in {took:?}");
        assert!(took < Duration::from_millis(150), "round {round}: {took:?}");
    }
    // Driving after a stop re-arms and turns the wheels (an Arm alone
    // gives Running; only a drive that went through gives speed).
    let t = Instant::now();
    loop {
        rt.publish(0.3, 0.0, 2, false).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        match board.state() {
            Some((MotorState::Running, l, _)) if l > 0.1 => break,
            other => assert!(
                t.elapsed() < Duration::from_secs(5),
                "not driving after the stops: {other:?}"
            ),
        }
    }
    let t = telemetry_after(&ep, &r, |t| t.bridge.stops >= rounds);
    assert_eq!(
        t.firmware.counters.not_armed, 0,
        "{:?}",
        t.firmware.counters
    );
}

/// An operator's stop holds: the runtime (`offramp run`) keeps publishing
/// drives at 20 Hz and the bridge is killed and restarted, yet the motors
/// stay off (latched in the firmware, and learned back from it by the new
/// bridge) until `offramp operator release`; then they turn again. Before,
/// a stop lasted until the runtime's next frame.
#[test]
fn an_operators_stop_holds_until_released_across_a_bridge_restart() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("operator");
    let ep = free_loopback_endpoint().unwrap();
    let _rt = runtime(&r, &ep);
    let b = bridge(&board.link, &r, &ep);
    board.wait_running(Duration::from_secs(60));
    let operator = |cmd: &str| {
        let args = ["--robot", &r, "--connect", &ep, "--timeout", "10"];
        common::operator(cmd, &args, dir.path());
    };
    operator("stop");
    board.until(
        "not latched",
        Instant::now(),
        Duration::from_secs(2),
        |s, l, r| s == MotorState::Latched && l == 0.0 && r == 0.0,
    );
    let stays_latched = |for_: Duration| {
        let t = Instant::now();
        while t.elapsed() < for_ {
            assert_eq!(
                board.state(),
                Some((MotorState::Latched, 0.0, 0.0)),
                "after {:?}",
                t.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    stays_latched(Duration::from_secs(1));
    kill(b);
    let _b = bridge(&board.link, &r, &ep);
    let t = telemetry_after(&ep, &r, |t| t.bridge.link_up && t.bridge.latched);
    assert_eq!(t.bridge.releases, 0);
    stays_latched(Duration::from_secs(1));
    let t = telemetry_after(&ep, &r, |t| t.bridge.latched_drops > 5);
    assert_eq!(t.firmware.state, MotorState::Latched);
    operator("release");
    board.wait_running(Duration::from_secs(5));
    let t = telemetry_after(&ep, &r, |t| t.bridge.releases == 1);
    assert!(!t.bridge.latched, "{:?}", t.bridge);
}

/// `offramp record --telemetry` keeps, per frame, the wheel speeds the motor
/// controller reported applying: the runtime drives the firmware through the
/// bridge while the recorder listens to the bridge's telemetry.
#[test]
fn a_recording_keeps_the_action_the_motor_controller_executed() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::new(dir.path());
    let r = robot("record-executed");
    let (ep_runtime, ep_bridge) = (
        free_loopback_endpoint().unwrap(),
        free_loopback_endpoint().unwrap(),
    );
    let _rt = runtime(&r, &ep_runtime);
    // The recorder connects to the bridge, which listens besides.
    let _b = Proc(
        Command::new(bin())
            .args(["--log", "warn", "bridge", "--serial"])
            .arg(&board.link)
            .args([
                "--robot",
                &r,
                "--connect",
                &ep_runtime,
                "--listen",
                &ep_bridge,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    board.wait_running(Duration::from_secs(30));
    let out = dir.path().join("rec");
    let run = Command::new(bin())
        .args(["--log", "warn", "record", "--camera", "sim", "--fps", "20"])
        .args(["--frames", "40", "--telemetry", "--json", "--out"])
        .arg(&out)
        .args(["--robot", &r, "--connect", &ep_bridge])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("{report}");
    // The bridge reports at its telemetry rate; the first frames may come
    // before the link is up.
    let with = report["executed_frames"].as_u64().unwrap();
    assert!(with >= 30, "{report}");
    // The bridge reports at about the camera's rate here (20 Hz).
    assert!(
        report["telemetry_reports"].as_u64().unwrap() >= 20,
        "{report}"
    );
    let (shape, executed) = offramp_runtime::npy::read::<f32>(&out.join("executed.npy")).unwrap();
    assert_eq!(shape, [40, 2]);
    let driven = executed
        .chunks_exact(2)
        .filter(|w| w[0].is_finite() && (w[0] != 0.0 || w[1] != 0.0))
        .count();
    assert!(driven >= 20, "{executed:?}");
    // Wheel speeds within the firmware's limits.
    let max = Config::DEFAULT.max_wheel_speed;
    assert!(
        executed
            .iter()
            .filter(|x| x.is_finite())
            .all(|x| x.abs() <= max + 1e-6),
        "{executed:?}"
    );
    // Without --telemetry there is no executed.npy.
    let plain = dir.path().join("plain");
    let (ok, _, err) = common::offramp(&[
        "record",
        "--camera",
        "sim",
        "--frames",
        "3",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(!plain.join("executed.npy").exists());
}

/// A firmware behind a cable that can lose its Boot frames: the bridge's
/// pty and the firmware's joined by a relay that copies every frame but,
/// when told, the firmware's Boot.
struct LossyCable {
    /// What the bridge opens.
    device: PathBuf,
    /// The firmware's end, to start a new firmware on (a reboot).
    firmware_end: std::fs::File,
    mcu: Option<offramp_host::HostMcu>,
    lose_boot: Arc<AtomicBool>,
}

impl LossyCable {
    fn new() -> Self {
        use offramp_host::pty;
        use offramp_protocol::{decode, Accumulator, Feed, McuMsg};
        let bridge_side = pty::open().unwrap();
        let firmware_side = pty::open().unwrap();
        let lose_boot = Arc::new(AtomicBool::new(false));
        // The bridge's bytes to the firmware, as they are.
        let (mut from_bridge, mut to_firmware) = (
            bridge_side.master.try_clone().unwrap(),
            firmware_side.slave.try_clone().unwrap(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                match from_bridge.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = to_firmware.write_all(&buf[..n]);
                    }
                    // The bridge has not opened its end yet, or reconnects.
                    _ => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        // The firmware's frames to the bridge, a Boot dropped when told.
        let (mut from_firmware, mut to_bridge) = (
            firmware_side.slave.try_clone().unwrap(),
            bridge_side.master.try_clone().unwrap(),
        );
        let lose = lose_boot.clone();
        std::thread::spawn(move || {
            let mut acc: Accumulator = Accumulator::new();
            let mut buf = [0u8; 256];
            loop {
                let n = match from_firmware.read(&mut buf) {
                    Ok(n) if n > 0 => n,
                    _ => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                for &b in &buf[..n] {
                    if let Feed::Frame(frame) = acc.feed(b) {
                        let mut wire = frame.to_vec();
                        wire.push(0);
                        let boot = matches!(decode::<McuMsg>(frame), Ok(McuMsg::Boot(_)));
                        if !(boot && lose.load(Ordering::Relaxed)) {
                            let _ = to_bridge.write_all(&wire);
                        }
                    }
                }
            }
        });
        let firmware_end = firmware_side.master.try_clone().unwrap();
        let mcu = offramp_host::HostMcu::spawn(firmware_side.master, Config::DEFAULT).unwrap();
        Self {
            device: bridge_side.slave_path,
            firmware_end,
            mcu: Some(mcu),
            lose_boot,
        }
    }

    fn moving(&self) -> bool {
        self.mcu
            .as_ref()
            .and_then(|m| m.output())
            .is_some_and(|o| o.state == MotorState::Running && (o.left != 0.0 || o.right != 0.0))
    }

    fn wait_moving(&self, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.moving() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The firmware resets (a new one on the same cable: its clock from
    /// zero, disarmed) and its Boot frame is lost on the way.
    fn reboot_losing_the_boot(&mut self) {
        self.lose_boot.store(true, Ordering::Relaxed);
        self.mcu = None;
        let end = self.firmware_end.try_clone().unwrap();
        self.mcu = Some(offramp_host::HostMcu::spawn(end, Config::DEFAULT).unwrap());
    }
}

/// The bridge re-armed only on a Boot frame: with that frame lost, the
/// rebooted firmware stayed disarmed (and its clock out of sync) for good,
/// the robot stalled. Its telemetry tells: the clock went backwards.
#[test]
fn a_reboot_whose_boot_frame_is_lost_is_rearmed_from_telemetry() {
    let mut cable = LossyCable::new();
    let r = robot("lost-boot");
    let ep = free_loopback_endpoint().unwrap();
    let _bridge = bridge(&cable.device, &r, &ep);
    let _rt = runtime(&r, &ep);
    assert!(cable.wait_moving(Duration::from_secs(30)), "never drove");
    cable.reboot_losing_the_boot();
    assert!(
        cable.wait_moving(Duration::from_secs(10)),
        "the rebooted firmware was never armed again: {:?}",
        cable.mcu.as_ref().and_then(|m| m.output())
    );
    let t = telemetry_after(&ep, &r, |t| t.bridge.reboots >= 1);
    assert_eq!(t.bridge.reboots, 1, "{:?}", t.bridge);
}
