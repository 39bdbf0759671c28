//! `offramp demo`: the main job, end to end on one machine. The simulator's
//! camera feeds the runtime (preprocess → DeeR exit chain over the demo
//! engine set on the CPU backend); each action goes over the wire protocol to
//! the motor controller (its control logic built for the host behind a real
//! pty pair, or the real firmware image in QEMU); the wheel speeds the
//! controller reports applying drive the simulated robot. Real time, 10 Hz.
//! At the end the commands stop and the controller must stop the motors on
//! its own.

use crate::firmware_session::{with_firmware, OnLink};
use crate::session::{self, FirmwareLink};
use crate::sim_cmd::{preprocessor, progress_bar};
use crate::stats::Summary;
use anyhow::Context;
use offramp_engines::{BackendKind, EngineSet};
use offramp_protocol::{Drive, HostMsg, McuMsg, MotorState, Setpoint};
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use offramp_sim::{Sim, SimConfig, Wheels};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::firmware_session::FirmwareKind;

pub struct DemoArgs {
    pub firmware: FirmwareKind,
    pub elf: Option<PathBuf>,
    pub engines: PathBuf,
    pub episodes: usize,
    pub first_seed: u64,
    pub deadline_ms: Option<f64>,
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub firmware_board: String,
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
    /// Host clock from the camera frame to the command leaving for the
    /// firmware (inference + encoding), ms.
    pub frame_to_sent_ms: Option<Summary>,
    /// Camera frame → applied by the firmware: frame_to_sent + half the link
    /// round trip + the firmware's own receive → apply latency, ms.
    pub frame_to_applied_ms: Option<Summary>,
    pub deadline_ms: Option<f64>,
    pub deadline_misses: u64,
    pub commands_sent: u64,
    pub commands_rejected: u32,
    /// After the last command: firmware clock from it to the outputs zeroed.
    pub timeout_to_stop_ms: Option<f64>,
    pub final_motor_state: String,
    pub wall_seconds: f64,
}

struct Demo<'a>(&'a DemoArgs);

impl OnLink for Demo<'_> {
    type Out = DemoReport;
    fn run<W: Write>(self, link: &mut FirmwareLink<W>) -> anyhow::Result<DemoReport> {
        drive(link, self.0)
    }
}

/// Opens the chosen firmware and runs the demo on its link.
pub fn run(a: &DemoArgs) -> anyhow::Result<DemoReport> {
    with_firmware(a.firmware, a.elf.as_deref(), Demo(a))
}

fn drive<W: Write>(link: &mut FirmwareLink<W>, a: &DemoArgs) -> anyhow::Result<DemoReport> {
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
    let c = session::connect(link, 20)?;
    let mut clock = c.clock;
    let one_way_ms = c.rtts.iter().copied().fold(f64::INFINITY, f64::min) / 2e3;
    let mut seq = 1u32;
    link.send(&HostMsg::Arm { seq })?;
    let period = Duration::from_secs_f64(cfg.dt as f64);
    let validity = Duration::from_millis(200);
    let deadline = a.deadline_ms.map(|d| Duration::from_secs_f64(d / 1e3));
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(a.episodes as u64, "episodes")
    };
    let (mut frames, mut successes, mut exit_sum, mut macs) = (0u64, 0usize, 0u64, 0u64);
    let mut exit_counts = vec![0u64; n];
    let (mut to_sent, mut to_applied) = (Vec::new(), Vec::new());
    let (mut misses, mut sent, mut rejected) = (0u64, 0u64, 0u32);
    // Sent time of each outstanding command, to pair with telemetry.
    let mut pending: Vec<(u32, f64)> = Vec::new();
    let mut applied = Wheels::default();
    let mut last_sync = Instant::now();
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
            // `action()` is already zero when the chain stopped.
            let a = offramp_sim::Twist::from_action(chain.action());
            let setpoint = Setpoint::Twist {
                v: a.v,
                omega: a.omega,
            };
            seq += 1;
            let now = Instant::now();
            let at = link.send(&HostMsg::Drive(Drive {
                seq,
                valid_until_us: clock.firmware_us_at(now) + validity.as_micros() as u64,
                setpoint,
                exit_index: o.exit as u8,
            }))?;
            sent += 1;
            let inference_ms = at.duration_since(t_frame).as_secs_f64() * 1e3;
            if deadline.is_some_and(|d| at.duration_since(t_frame) > d) {
                misses += 1;
            }
            to_sent.push(inference_ms);
            pending.push((seq, inference_ms));
            frames += 1;
            exit_counts[o.exit] += 1;
            exit_sum += o.exit as u64;
            macs += chain.frame_macs(&o);
            // Until the next frame: take telemetry (the wheel speeds the
            // firmware applies) and re-sync the clock now and then.
            next += period;
            if next < Instant::now() {
                next = Instant::now();
            }
            if last_sync.elapsed() > Duration::from_millis(500) {
                let nonce = seq;
                let sent_at = link.send(&HostMsg::Ping { nonce })?;
                if let Ok((up, at)) = link.wait_for(Duration::from_millis(50), |m, at| match m {
                    McuMsg::Pong(p) if p.nonce == nonce => Some((p.uptime_us, at)),
                    _ => None,
                }) {
                    clock = offramp_protocol::link::ClockSync::from_ping(sent_at, up, at);
                }
                last_sync = Instant::now();
            }
            while let Ok(r) = link.recv(next.saturating_duration_since(Instant::now())) {
                match r.msg {
                    Ok(McuMsg::Telemetry(t)) => {
                        applied = Wheels {
                            left: t.applied_left,
                            right: t.applied_right,
                        };
                        if let Some(s) = t.last_seq {
                            if let Some(k) = pending.iter().position(|p| p.0 == s) {
                                to_applied.push(
                                    pending[k].1
                                        + one_way_ms
                                        + t.last_apply_latency_us as f64 / 1e3,
                                );
                                pending.drain(..=k);
                            }
                        }
                    }
                    Ok(McuMsg::Rejected { reason, seq }) => {
                        tracing::warn!(?reason, ?seq, "firmware rejected a command");
                        rejected += 1;
                    }
                    Ok(McuMsg::Boot(b)) => {
                        anyhow::bail!(
                            "the firmware rebooted mid-demo (reset cause {:?})",
                            b.reset_cause
                        )
                    }
                    _ => {}
                }
                if Instant::now() >= next {
                    break;
                }
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
    let last_sent = Instant::now();
    let stop = link
        .wait_for(Duration::from_secs(5), |m, _| match m {
            McuMsg::Telemetry(t) if t.state == MotorState::TimedOut => Some(*t),
            _ => None,
        })
        .context("the firmware never reported the command timeout")?;
    tracing::debug!(after = ?last_sent.elapsed(), "timeout observed");
    link.send(&HostMsg::Stop)?;
    let f = frames.max(1) as f64;
    let compute_ratio = macs as f64 / (chain.full_macs() as f64 * f);
    Ok(DemoReport {
        firmware_board: c.board,
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
        commands_rejected: rejected,
        timeout_to_stop_ms: Some(stop.last_timeout_stop_us as f64 / 1e3),
        final_motor_state: format!("{:?}", stop.state),
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// One screen for a person.
pub fn print_human(r: &DemoReport) {
    println!(
        "offramp demo: simulator camera -> exit chain -> wire protocol -> {} firmware -> wheels",
        r.firmware_board
    );
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
        "  commands               {} sent, {} rejected",
        r.commands_sent, r.commands_rejected
    );
    if let Some(t) = r.timeout_to_stop_ms {
        println!(
            "  silence -> motors off  {t:.1} ms (firmware clock), state {}",
            r.final_motor_state
        );
    }
}
