//! `offramp demo`: the main job, end to end on one machine, every piece a
//! real component really started:
//!
//! simulator camera → preprocess → DeeR exit chain (demo engine set, CPU)
//! → zenoh (`<robot>/action`, peer session on loopback) → `offramp bridge`
//! (its own process) → serial device node → motor-controller firmware (its
//! control logic built for the host behind a pty, or the real image in QEMU)
//! → wheel speeds applied → zenoh telemetry → the simulated robot's wheels.
//!
//! Real time, 10 Hz. At the end the commands stop and the firmware must stop
//! the motors on its own.

use crate::args::{at_least_1, positive, print_report};
use crate::progress::progress_bar;
use anyhow::Context;
use offramp_engines::{BackendKind, EngineSet};
use offramp_link::actuator::ZenohActuator;
use offramp_link::zenoh_link::{
    free_loopback_endpoint, open_session, BridgeCounters, Keys, RuntimeLink, TelemetryMsg,
    ZenohOptions,
};
use offramp_link::COMMAND_VALIDITY;
use offramp_protocol::MotorState;
use offramp_report::plot::{self, Mark, Series};
use offramp_rig::{Bridge, BridgeMode, FirmwareEnd, FirmwareKind};
use offramp_runtime::camera::FrameMeta;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Idle, RunLoop};
use offramp_runtime::stats::Summary;
use offramp_sim::{Sim, SimConfig, Wheels};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Which firmware closes the loop.
    #[arg(long, value_enum, default_value = "host")]
    pub firmware: FirmwareKind,
    /// Where the serial bridge runs.
    #[arg(long, value_enum, default_value = "process")]
    pub bridge: BridgeMode,
    /// Firmware image for `--firmware qemu` (default: build it).
    #[arg(long)]
    pub elf: Option<PathBuf>,
    /// Engine set (default: the committed demo set, from the repository root).
    #[arg(long, default_value = "engines/models/demo")]
    pub engines: PathBuf,
    #[arg(long, default_value_t = 10, value_parser = at_least_1)]
    pub episodes: usize,
    /// Held-out evaluation seeds start at 0.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Per-frame deadline from camera frame to command sent.
    #[arg(long, value_parser = positive)]
    pub deadline_ms: Option<f64>,
    /// Robot name: the zenoh keys are <robot>/action, <robot>/telemetry.
    #[arg(long, default_value = "offramp-demo")]
    pub robot: String,
    /// Also publish each command as a ROS 2 Twist (CDR) on `cmd_vel`.
    #[arg(long)]
    pub cmd_vel: bool,
    /// Write a latency plot (SVG) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep exits 1..=K in the runtime and serve the deeper ones from an
    /// `offramp serve` process (a second device's stand-in, on loopback).
    #[arg(long, value_name = "K", value_parser = at_least_1)]
    pub offload: Option<usize>,
}

/// `offramp serve` as a child process, killed when dropped.
struct ServerProcess(std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let report = run(&a)?;
    print_report(a.json, &report, print_human)?;
    if report.commands_rejected > 0 {
        anyhow::bail!(
            "the firmware rejected {} commands ({:?})",
            report.commands_rejected,
            report.rejections
        );
    }
    Ok(())
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

pub fn run(a: &Args) -> anyhow::Result<DemoReport> {
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
    let _server = match a.offload {
        Some(k) => Some(start_offload(&mut p, &set, &session, a, &endpoint, k)?),
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
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(a.episodes as u64, "episodes")
    };
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
        bar.inc(1);
    }
    bar.finish_and_clear();
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
            .map(|_| tally.robot_macs as f64 / (full_macs as f64 * f)),
        offload: rl.pipeline.chain.offload_counters(),
    };
    if let Some(path) = &a.report {
        plot::chart(
            path,
            "offramp demo: latency from camera frame",
            "ms",
            "fraction of frames",
            &[
                Series::new("frame -> action on zenoh", plot::cdf(&to_sent), Mark::Line),
                Series::new(
                    "frame -> applied by the firmware",
                    plot::cdf(&to_applied),
                    Mark::Bold,
                ),
            ],
        )?;
    }
    Ok(report)
}

/// Starts `offramp serve` for the demo's robot on its zenoh endpoint and
/// hands the runtime exits K+1.. once the server is seen.
fn start_offload(
    p: &mut Pipeline,
    set: &EngineSet,
    session: &zenoh::Session,
    a: &Args,
    endpoint: &str,
    k: usize,
) -> anyhow::Result<ServerProcess> {
    use offramp_link::offload::ZenohOffload;
    let exe = std::env::current_exe().context("locating the offramp binary")?;
    let child = std::process::Command::new(exe)
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

/// One screen for a person.
pub fn print_human(r: &DemoReport) {
    println!(
        "offramp demo: simulator camera -> exit chain -> {} -> firmware -> wheels",
        r.link
    );
    println!("  firmware               {}", r.firmware);
    println!("  engine set             {}", r.engines);
    println!(
        "  episodes               {} reached the target of {} ({:.0}%)",
        r.successes,
        r.episodes,
        100.0 * r.success_rate
    );
    println!(
        "  frames                 {} (mean exit {:.2}; per exit {})",
        r.frames,
        r.mean_exit,
        r.exit_shares
            .iter()
            .map(|s| format!("{:.0}%", 100.0 * s))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "  compute saved          {:.0}% vs the full model",
        100.0 * r.compute_saved
    );
    if let (Some(robot), Some(o)) = (r.robot_compute_ratio, &r.offload) {
        println!(
            "  offload                robot computed {:.0}% of the full model; {} requests, {} answered, {} fallbacks",
            100.0 * robot,
            o.requests,
            o.answered,
            o.fallbacks
        );
    }
    if let Some(s) = r.frame_to_applied_ms {
        println!(
            "  frame -> applied       p50 {:.2} ms, p99 {:.2} ms",
            s.p50, s.p99
        );
    }
    if let Some(d) = r.deadline_ms {
        println!("  deadline {d} ms        {} misses", r.deadline_misses);
    }
    println!(
        "  commands               {} sent, {} forwarded by the bridge, {} rejected",
        r.commands_sent, r.bridge.forwarded, r.commands_rejected
    );
    if let Some(t) = r.timeout_to_stop_ms {
        println!(
            "  silence -> motors off  {t:.1} ms (firmware clock), state {}",
            r.final_motor_state
        );
    }
}
