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

use crate::plot::{self, Mark, Series};
use crate::sim_cmd::{preprocessor, progress_bar};
use crate::stats::Summary;
use anyhow::Context;
use offramp_control::Config;
use offramp_engines::{BackendKind, EngineSet};
use offramp_protocol::MotorState;
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use offramp_runtime::host_mcu::HostMcu;
use offramp_runtime::pty;
use offramp_runtime::zenoh_link::{
    free_loopback_endpoint, open_session, BridgeCounters, Keys, RuntimeLink, TelemetryMsg,
    ZenohOptions,
};
use offramp_sim::{Sim, SimConfig, Wheels};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::firmware_session::FirmwareKind;

/// Where the bridge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BridgeMode {
    /// `offramp bridge` as its own process, as deployed.
    Process,
    /// The same bridge on a thread with its own zenoh session (for a
    /// cross-built binary under qemu-user, which cannot exec itself).
    Thread,
}

pub struct DemoArgs {
    pub firmware: FirmwareKind,
    pub bridge: BridgeMode,
    pub elf: Option<PathBuf>,
    pub engines: PathBuf,
    pub episodes: usize,
    pub first_seed: u64,
    pub deadline_ms: Option<f64>,
    pub robot: String,
    pub cmd_vel: bool,
    pub report: Option<PathBuf>,
    pub json: bool,
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
}

/// The firmware's end of a serial cable; the bridge opens `device`.
pub struct FirmwareEnd {
    pub device: PathBuf,
    pub board: String,
    host: Option<HostMcu>,
    _qemu: Option<offramp_qemu_harness::Qemu>,
}

impl FirmwareEnd {
    pub fn start(kind: FirmwareKind, elf: Option<&Path>) -> anyhow::Result<Self> {
        let pair = pty::open().context("opening a pty pair for the firmware")?;
        let device = pair.slave_path.clone();
        // Nobody holds the device end until the bridge opens it, as with a
        // real cable.
        drop(pair.slave);
        match kind {
            FirmwareKind::Host => Ok(Self {
                device,
                board: "host build of the control logic".into(),
                host: Some(HostMcu::spawn(pair.master, Config::DEFAULT)?),
                _qemu: None,
            }),
            FirmwareKind::Qemu => {
                let elf = match elf {
                    Some(e) => e.to_path_buf(),
                    None => offramp_qemu_harness::firmware_elf()?,
                };
                tracing::info!(elf = %elf.display(), "booting firmware in QEMU");
                let (qemu, uart) =
                    offramp_qemu_harness::boot_uart(&elf, offramp_qemu_harness::Clock::RealTime)?;
                // The UART socket and the pty master, joined both ways.
                let (m2, u2) = (pair.master.try_clone()?, uart.try_clone()?);
                relay(uart, pair.master, "qemu uart -> pty")?;
                relay(m2, u2, "pty -> qemu uart")?;
                Ok(Self {
                    device,
                    board: format!("lm3s6965evb in QEMU ({})", elf.display()),
                    host: None,
                    _qemu: Some(qemu),
                })
            }
        }
    }

    /// The host build's motor outputs (what the motors actually got).
    pub fn host_output(&self) -> Option<offramp_control::Output> {
        self.host.as_ref().and_then(|h| h.output())
    }
}

/// Copies bytes from `from` to `to` on a thread until `from` ends. A pty
/// master reads EIO while no one holds the slave: wait and read again.
fn relay(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    name: &str,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        // Nobody on the other end: the bytes are lost, as on a wire.
                        let _ = to.write_all(&buf[..n]);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        })?;
    Ok(())
}

/// The bridge: `offramp bridge` as a child process (killed when dropped),
/// or a thread.
pub enum Bridge {
    Process(Child),
    Thread {
        stop: Arc<AtomicBool>,
        handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    },
}

impl Bridge {
    pub fn spawn(
        mode: BridgeMode,
        device: &Path,
        robot: &str,
        connect: &str,
    ) -> anyhow::Result<Self> {
        match mode {
            BridgeMode::Process => {
                let exe = std::env::current_exe().context("locating the offramp binary")?;
                let child = Command::new(exe)
                    .args(["--log", "warn", "bridge", "--serial"])
                    .arg(device)
                    .args(["--robot", robot, "--connect", connect])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("starting `offramp bridge`")?;
                Ok(Self::Process(child))
            }
            BridgeMode::Thread => {
                let args = crate::bridge::BridgeArgs {
                    serial: device.to_path_buf(),
                    baud: 115_200,
                    robot: robot.to_string(),
                    zenoh: ZenohOptions {
                        connect: vec![connect.to_string()],
                        ..Default::default()
                    },
                };
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let handle = std::thread::Builder::new()
                    .name("offramp-bridge".into())
                    .spawn(move || crate::bridge::serve_until(&args, &flag))?;
                Ok(Self::Thread {
                    stop,
                    handle: Some(handle),
                })
            }
        }
    }

    /// Why it is no longer running, if it is not.
    fn exited(&mut self) -> Option<String> {
        match self {
            Self::Process(c) => match c.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                _ => None,
            },
            Self::Thread { handle, .. } => {
                if !handle.as_ref().is_some_and(|h| h.is_finished()) {
                    return None;
                }
                match handle.take().map(|h| h.join()) {
                    Some(Ok(Err(e))) => Some(format!("failed: {e:#}")),
                    _ => Some("stopped".into()),
                }
            }
        }
    }

    /// Asks it to stop (it commands the motors off) and waits.
    pub fn stop(mut self) {
        match &mut self {
            Self::Process(c) => {
                let pid = nix::unistd::Pid::from_raw(c.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Dropping the thread's handle stops and joins it (below).
            Self::Thread { .. } => {}
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        match self {
            Self::Process(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Self::Thread { stop, handle } => {
                stop.store(true, Ordering::Relaxed);
                if let Some(h) = handle.take() {
                    let _ = h.join();
                }
            }
        }
    }
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

pub fn run(a: &DemoArgs) -> anyhow::Result<DemoReport> {
    let cfg = SimConfig::default();
    let dir = &a.engines;
    let set = EngineSet::open(dir).with_context(|| {
        format!(
            "opening the demo engine set {} (run from the repository root, or pass --engines)",
            dir.display()
        )
    })?;
    let mut chain = ExitChain::new(&set, BackendKind::Cpu)?;
    let mut pre = preprocessor(&set, &cfg)?;
    let n = chain.exits();

    let fw = FirmwareEnd::start(a.firmware, a.elf.as_deref())?;
    let endpoint = free_loopback_endpoint()?;
    let session = open_session(&ZenohOptions {
        listen: vec![endpoint.clone()],
        ..Default::default()
    })?;
    let keys = Keys::new(&a.robot)?;
    let validity = Duration::from_millis(200);
    let mut link = RuntimeLink::open(session, keys, validity, a.cmd_vel)?;
    let mut bridge = Bridge::spawn(a.bridge, &fw.device, &a.robot, &endpoint)?;
    let first = wait_for_bridge(&link, &mut bridge, Duration::from_secs(20))?;
    let rejected_before = first.firmware.counters.rejected();
    tracing::info!(device = %fw.device.display(), %endpoint, "bridge and firmware up");

    let period = Duration::from_secs_f64(cfg.dt as f64);
    let deadline = a.deadline_ms.map(|d| Duration::from_secs_f64(d / 1e3));
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(a.episodes as u64, "episodes")
    };
    let (mut frames, mut successes, mut exit_sum, mut macs) = (0u64, 0usize, 0u64, 0u64);
    let mut exit_counts = vec![0u64; n];
    let (mut to_sent, mut to_applied) = (Vec::new(), Vec::new());
    let (mut misses, mut sent) = (0u64, 0u64);
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
        chain.reset();
        chain.set_instruction(sim.instruction() as usize);
        loop {
            let t_frame = Instant::now();
            sim.render(&mut frame);
            pre.run(&frame, chain.image_mut())?;
            let o = chain.step_until(ExitPolicy::Criterion, deadline.map(|d| t_frame + d))?;
            // `action()` is zero when the chain stopped.
            let tw = offramp_sim::Twist::from_action(chain.action());
            let (seq, at) = link.publish(tw.v, tw.omega, o.exit as u8, o.stopped)?;
            sent += 1;
            let since = at.duration_since(t_frame);
            misses += deadline.is_some_and(|d| since > d) as u64;
            let inference_ms = since.as_secs_f64() * 1e3;
            to_sent.push(inference_ms);
            pending.push((seq, inference_ms));
            frames += 1;
            exit_counts[o.exit] += 1;
            exit_sum += o.exit as u64;
            macs += chain.frame_macs(&o);
            // Until the next frame: telemetry carries the wheel speeds the
            // firmware applies.
            next += period;
            if next < Instant::now() {
                next = Instant::now();
            }
            while let Ok((t, _)) = link
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
    let stop = loop {
        match link.telemetry().recv_timeout(Duration::from_millis(100)) {
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
    let f = frames.max(1) as f64;
    let compute_ratio = macs as f64 / (chain.full_macs() as f64 * f);
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
        frames,
        mean_exit: exit_sum as f64 / f + 1.0,
        exit_shares: exit_counts.iter().map(|c| *c as f64 / f).collect(),
        compute_ratio,
        compute_saved: 1.0 - compute_ratio,
        frame_to_sent_ms: Summary::of(&to_sent),
        frame_to_applied_ms: Summary::of(&to_applied),
        deadline_ms: a.deadline_ms,
        deadline_misses: misses,
        commands_sent: sent,
        commands_rejected: stop.firmware.counters.rejected() - rejected_before,
        rejections: rejection_reasons(&first.firmware.counters, &stop.firmware.counters),
        bridge: stop.bridge,
        timeout_to_stop_ms: Some(stop.firmware.last_timeout_stop_us as f64 / 1e3),
        final_motor_state: format!("{:?}", stop.firmware.state),
        wall_seconds: start.elapsed().as_secs_f64(),
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
