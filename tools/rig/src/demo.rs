//! The main job, end to end on one machine, every piece a real component
//! really started (`offramp demo`):
//!
//! simulator camera → preprocess → DeeR exit chain (an engine set, CPU)
//! → zenoh (`<robot>/action`, peer session on loopback) → `offramp bridge`
//! (its own process, or a thread) → serial device node → motor-controller
//! firmware (its control logic built for the host behind a pty, or the real
//! image in QEMU) → wheel speeds applied → zenoh telemetry → the simulated
//! robot's wheels.
//!
//! Real time, at the simulator's step. At the end the commands stop and the
//! firmware must stop the motors on its own: the report says how fast it
//! did.

use crate::{Bridge, BridgeMode, FirmwareEnd, FirmwareKind};
use anyhow::Context;
use offramp_engines::{BackendKind, EngineSet};
use offramp_link::actuator::ZenohActuator;
use offramp_link::zenoh_link::{
    free_loopback_endpoint, open_session, BridgeCounters, Keys, RuntimeLink, Session, TelemetryMsg,
    ZenohOptions,
};
use offramp_link::COMMAND_VALIDITY;
use offramp_protocol::MotorState;
use offramp_runtime::camera::FrameMeta;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Idle, RunLoop};
use offramp_runtime::stats::Summary;
use offramp_sim::{Sim, SimConfig, Wheels};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Which firmware closes the loop.
    pub firmware: FirmwareKind,
    /// Where the serial bridge runs.
    pub bridge: BridgeMode,
    /// Firmware image for [`FirmwareKind::Qemu`] (default: build it).
    pub elf: Option<PathBuf>,
    /// The engine set that drives.
    pub engines: PathBuf,
    pub episodes: usize,
    /// Episode i uses seed `first_seed + i`.
    pub first_seed: u64,
    /// Per-frame deadline from camera frame to command sent.
    pub deadline_ms: Option<f64>,
    /// Robot name: the zenoh keys are `<robot>/action`, `<robot>/telemetry`.
    pub robot: String,
    /// Also publish each command as a ROS 2 Twist (CDR) on `cmd_vel`.
    pub cmd_vel: bool,
    /// Keep exits 1..=K in the runtime and serve the deeper ones from a
    /// server process on loopback (a second device's stand-in).
    pub offload: Option<Offload>,
}

/// Deep exits served by a second process.
#[derive(Debug, Clone)]
pub struct Offload {
    /// Exits 1..=K stay in the runtime.
    pub local_exits: usize,
    /// The `offramp` binary, started as `offramp serve`.
    pub exe: PathBuf,
}

/// The server as a child process, killed when dropped.
struct ServerProcess(std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub firmware: String,
    pub link: String,
    pub engines: String,
    pub episodes: usize,
    pub successes: usize,
    pub success_rate: f64,
    pub frames: u64,
    pub mean_exit: f64,
    /// Share of frames per exit.
    pub exit_shares: Vec<f64>,
    /// Mean compute per frame relative to always running the full model.
    pub compute_ratio: f64,
    pub compute_saved: f64,
    /// Camera frame → action published on zenoh (inference + encoding), ms.
    pub frame_to_sent_ms: Option<Summary>,
    /// Camera frame → applied by the firmware: frame_to_sent + zenoh hop +
    /// bridge + half the serial round trip + the firmware's receive → apply.
    pub frame_to_applied_ms: Option<Summary>,
    pub deadline_ms: Option<f64>,
    pub deadline_misses: u64,
    pub commands_sent: u64,
    /// Rejections the firmware counted during the demo, and why.
    pub commands_rejected: u32,
    pub rejections: Vec<(String, u32)>,
    pub bridge: BridgeCounters,
    /// After the last command: firmware clock from it to the outputs zeroed.
    pub timeout_to_stop_ms: Option<f64>,
    pub final_motor_state: String,
    pub wall_seconds: f64,
    /// With --offload: the robot's share of the compute, and what
    /// offloading did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robot_compute_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload: Option<offramp_runtime::exit_chain::offload::OffloadCounters>,
    /// Every frame's camera frame → action published, ms (for a chart).
    #[serde(skip)]
    pub to_sent_ms: Vec<f64>,
    /// Every paired frame's camera frame → applied by the firmware, ms.
    #[serde(skip)]
    pub to_applied_ms: Vec<f64>,
}

/// Per-reason rejection counts between two telemetry reports.
fn rejection_reasons(
    a: &offramp_protocol::Counters,
    b: &offramp_protocol::Counters,
) -> Vec<(String, u32)> {
    let pairs = [
        ("stale", a.stale, b.stale),
        ("deadline_too_far", a.deadline_too_far, b.deadline_too_far),
        ("replay", a.replay, b.replay),
        ("out_of_range", a.out_of_range, b.out_of_range),
        ("not_armed", a.not_armed, b.not_armed),
        (
            "corrupt_frames",
            a.cobs + a.crc + a.decode + a.too_short + a.overflow,
            b.cobs + b.crc + b.decode + b.too_short + b.overflow,
        ),
        ("version", a.version, b.version),
        ("unsupported", a.unsupported, b.unsupported),
        ("latched", a.latched, b.latched),
    ];
    pairs
        .iter()
        .filter(|(_, x, y)| y > x)
        .map(|(n, x, y)| (n.to_string(), y - x))
        .collect()
}

/// Waits for telemetry that shows the bridge connected to the firmware.
fn wait_for_bridge(
    link: &RuntimeLink,
    bridge: &mut Bridge,
    timeout: Duration,
) -> anyhow::Result<TelemetryMsg> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok((t, _)) = link.telemetry().recv_timeout(Duration::from_millis(100)) {
            if t.bridge.link_up {
                return Ok(t);
            }
        }
        if let Some(why) = bridge.exited() {
            anyhow::bail!("the bridge {why} before the link came up");
        }
    }
    anyhow::bail!("no telemetry through the bridge within {timeout:?}")
}

/// Runs the demo; `tick` is called after each episode.
pub fn run(a: &DemoConfig, tick: &dyn Fn()) -> anyhow::Result<DemoReport> {
    let cfg = SimConfig::default();
    let dir = &a.engines;
    let set = EngineSet::open(dir).with_context(|| {
        format!(
            "opening the demo engine set {} (run from the repository root, or pass --engines)",
            dir.display()
        )
    })?;
    let mut p = Pipeline::open(&set, BackendKind::Cpu, (cfg.image_width, cfg.image_height))?;
    let exits = p.chain.exits();

    let fw = FirmwareEnd::start(a.firmware, a.elf.as_deref())?;
    let endpoint = free_loopback_endpoint()?;
    let session = open_session(&ZenohOptions {
        listen: vec![endpoint.clone()],
        ..Default::default()
    })?;
    let keys = Keys::new(&a.robot)?;
    let _server = match &a.offload {
        Some(o) => Some(start_offload(&mut p, &set, &session, a, &endpoint, o)?),
        None => None,
    };
    let link = RuntimeLink::open(session, keys, COMMAND_VALIDITY, a.cmd_vel)?;
    let mut bridge = Bridge::spawn(a.bridge, &fw.device, &a.robot, &endpoint)?;
    let first = wait_for_bridge(&link, &mut bridge, Duration::from_secs(20))?;
    let full_macs = p.chain.full_macs();
    let rejected_before = first.firmware.counters.rejected();
    tracing::info!(device = %fw.device.display(), %endpoint, "bridge and firmware up");

    let period = Duration::from_secs_f64(cfg.dt as f64);
    let deadline = a.deadline_ms.map(|d| Duration::from_secs_f64(d / 1e3));
    // The robot's loop and actuator: each command published on zenoh,
    // held inside the simulated robot's limits.
    let mut rl = RunLoop::new(p, ExitPolicy::Criterion, deadline, None);
    let mut actuator = ZenohActuator::new(link, Idle, offramp_sim::LIMITS);
    let mut successes = 0usize;
    let (mut to_sent, mut to_applied) = (Vec::new(), Vec::new());
    // Outstanding actions (seq, frame → sent ms), to pair with telemetry.
    let mut pending: Vec<(u64, f64)> = Vec::new();
    let mut applied = Wheels::default();
    let mut last = first;
    let mut frame = Vec::new();
    let start = Instant::now();
    let mut next = Instant::now();
    for e in 0..a.episodes {
        let mut sim = Sim::new(&cfg, a.first_seed + e as u64);
        frame.resize(sim.frame_len(), 0);
        loop {
            let captured = Instant::now();
            sim.render(&mut frame);
            let meta = FrameMeta {
                captured: Some(captured),
                ..sim.frame_meta()
            };
            rl.frame(&frame, meta, &mut actuator)?;
            let Some((seq, at)) = actuator.last else {
                anyhow::bail!("publishing a command on zenoh failed (see the log)");
            };
            let inference_ms = at.duration_since(captured).as_secs_f64() * 1e3;
            to_sent.push(inference_ms);
            pending.push((seq, inference_ms));
            // Until the next frame: telemetry carries the wheel speeds the
            // firmware applies.
            next += period;
            if next < Instant::now() {
                next = Instant::now();
            }
            while let Ok((t, _)) = actuator
                .link
                .telemetry()
                .recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                applied = Wheels {
                    left: t.firmware.applied_left,
                    right: t.firmware.applied_right,
                };
                if let (Some(s), Some(us)) = (t.action_seq, t.sent_to_applied_us) {
                    if let Some(k) = pending.iter().position(|p| p.0 == s) {
                        to_applied.push(pending[k].1 + us as f64 / 1e3);
                        pending.drain(..=k);
                    }
                }
                if t.firmware.reset_cause != last.firmware.reset_cause
                    || t.firmware.uptime_us < last.firmware.uptime_us
                {
                    anyhow::bail!(
                        "the firmware rebooted mid-demo (reset cause {:?})",
                        t.firmware.reset_cause
                    );
                }
                last = t;
                if Instant::now() >= next {
                    break;
                }
            }
            if pending.len() > 64 {
                pending.drain(..pending.len() - 64);
            }
            // The robot moves with what the firmware applied.
            let out = sim.step(applied);
            if out.done {
                successes += out.success as usize;
                break;
            }
        }
        tick();
    }
    // Silence: the controller must stop the motors on its own.
    let silence = Instant::now();
    let tally = rl.tally();
    let stop = loop {
        match actuator
            .link
            .telemetry()
            .recv_timeout(Duration::from_millis(100))
        {
            Ok((t, _)) if t.firmware.state == MotorState::TimedOut => break t,
            Ok(_) => {}
            Err(_) if silence.elapsed() > Duration::from_secs(5) => {
                anyhow::bail!("the firmware never reported the command timeout")
            }
            Err(_) => {}
        }
    };
    bridge.stop();
    if a.firmware == FirmwareKind::Host {
        // Cross-check telemetry against the outputs the motors actually got.
        match fw.host_output() {
            Some(o) if o.left == 0.0 && o.right == 0.0 => {}
            o => anyhow::bail!("motor outputs after the timeout are {o:?}, expected zero"),
        }
    }
    let f = tally.frames.max(1) as f64;
    let compute_ratio = tally.macs as f64 / (full_macs as f64 * f);
    let report = DemoReport {
        firmware: fw.board.clone(),
        link: format!(
            "zenoh peer {endpoint} -> offramp bridge -> {}",
            fw.device.display()
        ),
        engines: dir.display().to_string(),
        episodes: a.episodes,
        successes,
        success_rate: successes as f64 / a.episodes.max(1) as f64,
        frames: tally.frames,
        mean_exit: tally.mean_exit(),
        exit_shares: tally.exit_shares(exits),
        compute_ratio,
        compute_saved: 1.0 - compute_ratio,
        frame_to_sent_ms: Summary::of(&to_sent),
        frame_to_applied_ms: Summary::of(&to_applied),
        deadline_ms: a.deadline_ms,
        deadline_misses: tally.deadline_misses,
        commands_sent: tally.frames,
        commands_rejected: stop.firmware.counters.rejected() - rejected_before,
        rejections: rejection_reasons(&first.firmware.counters, &stop.firmware.counters),
        bridge: stop.bridge,
        timeout_to_stop_ms: Some(stop.firmware.last_timeout_stop_us as f64 / 1e3),
        final_motor_state: format!("{:?}", stop.firmware.state),
        wall_seconds: start.elapsed().as_secs_f64(),
        robot_compute_ratio: a
            .offload
            .as_ref()
            .map(|_| tally.robot_macs as f64 / (full_macs as f64 * f)),
        offload: rl.pipeline.chain.offload_counters(),
        // Last: the summaries above read them.
        to_sent_ms: to_sent,
        to_applied_ms: to_applied,
    };
    Ok(report)
}

/// Starts the server (`offramp serve`) for the demo's robot on its zenoh endpoint and
/// hands the runtime exits K+1.. once the server is seen.
fn start_offload(
    p: &mut Pipeline,
    set: &EngineSet,
    session: &Session,
    a: &DemoConfig,
    endpoint: &str,
    o: &Offload,
) -> anyhow::Result<ServerProcess> {
    use offramp_link::offload::ZenohOffload;
    let k = o.local_exits;
    let child = std::process::Command::new(&o.exe)
        .args(["--log", "warn", "serve", "--engines"])
        .arg(&set.dir)
        .args(["--robot", &a.robot, "--connect", endpoint, "--name", "demo"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting `offramp serve`")?;
    let server = ServerProcess(child);
    let link = ZenohOffload::for_set(session.clone(), &a.robot, set)?;
    if !link.wait_for_servers(1, Duration::from_secs(30)) {
        anyhow::bail!(
            "`offramp serve` for robot {:?} was not seen within 30 s",
            a.robot
        );
    }
    p.chain
        .set_offload(k, Box::new(link), Duration::from_millis(100))
        .map_err(|e| anyhow::anyhow!("--offload {k}: {e}"))?;
    Ok(server)
}
