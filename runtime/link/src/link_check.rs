//! The model-free link check (`offramp firmware session`): drives any
//! firmware (host build over a pty, or the real image in QEMU) over the wire
//! protocol with an S-curve of commands and measures what the firmware
//! reports, then falls silent until the firmware's own timeout stops the
//! motors.

use crate::firmware::{connect, Connected, FirmwareLink, COMMAND_VALIDITY};
use anyhow::Context;
use offramp_protocol::link::{ClockSync, Resync};
use offramp_protocol::{Drive, HostMsg, McuMsg, MotorState, Setpoint, Telemetry};
use offramp_runtime::stats::Summary;
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// How long to send commands.
    pub drive_for: Duration,
    /// Command rate.
    pub rate_hz: f64,
    /// Each command's validity, from the moment it is sent.
    pub validity: Duration,
    /// Clock-sync pings before driving (also the round-trip sample).
    pub pings: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            drive_for: Duration::from_secs(2),
            rate_hz: 50.0,
            validity: COMMAND_VALIDITY,
            pings: 20,
        }
    }
}

/// What one session measured.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub board: String,
    pub command_timeout_ms: u32,
    pub commands_sent: u32,
    /// The firmware's last accepted sequence number is the last one sent.
    pub all_accepted: bool,
    pub rejected: u32,
    /// Firmware clock, frame received → first control tick applying it.
    pub apply_latency_us: Option<Summary>,
    /// Host ping → pong through the link.
    pub link_rtt_us: Option<Summary>,
    /// Firmware clock, last valid command → outputs zeroed by the timeout.
    pub timeout_to_stop_us: Option<u32>,
    /// Host clock, last command sent → timeout telemetry received.
    pub timeout_observed_after_ms: Option<f64>,
    pub final_state: String,
    /// Wheel speeds the firmware reports after the timeout, m/s.
    pub applied_after_stop: [f32; 2],
}

/// Bookkeeping of what the firmware sends while a session drives it.
struct Tracker {
    clock: ClockSync,
    rtts: Vec<f64>,
    latencies: Vec<f64>,
    last_seen_seq: Option<u32>,
    rejected: u32,
    resync: Resync,
}

impl Tracker {
    fn on_msg(&mut self, m: &McuMsg, at: Instant) {
        match m {
            McuMsg::Telemetry(t) => {
                // One latency sample per report that shows a newer command.
                if t.last_seq != self.last_seen_seq && t.last_seq.is_some() {
                    self.last_seen_seq = t.last_seq;
                    self.latencies.push(t.last_apply_latency_us as f64);
                }
            }
            McuMsg::Rejected { reason, seq } => {
                tracing::warn!(?reason, ?seq, "firmware rejected a command");
                self.rejected += 1;
            }
            McuMsg::Pong(p) => {
                if let Some((clock, rtt)) = self.resync.on_pong(p, at) {
                    self.rtts.push(rtt.as_secs_f64() * 1e6);
                    self.clock = clock;
                }
            }
            McuMsg::Boot(b) => {
                tracing::error!(cause = ?b.reset_cause, "firmware rebooted mid-session")
            }
        }
    }
}

/// The test profile: a gentle S-curve, well inside the default limits.
fn setpoint(t: f64) -> Setpoint {
    let s = (t * std::f64::consts::TAU / 2.0).sin() as f32;
    Setpoint::Twist {
        v: 0.3 + 0.1 * s,
        omega: 0.8 * s,
    }
}

/// Runs a session on a freshly booted firmware.
pub fn run<W: Write>(
    link: &mut FirmwareLink<W>,
    cfg: &SessionConfig,
) -> anyhow::Result<SessionReport> {
    let Connected {
        board,
        boot,
        clock,
        rtts,
    } = connect(link, cfg.pings)?;

    let mut t = Tracker {
        clock,
        rtts,
        latencies: Vec::new(),
        last_seen_seq: None,
        rejected: 0,
        resync: Resync::new(cfg.pings.max(1)),
    };
    let mut seq = 1u32;
    link.send(&HostMsg::Arm { seq })?;
    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz.max(0.1));
    let start = Instant::now();
    let mut next = start;
    let mut sent = 0u32;
    let mut last_sent_at = start;
    while start.elapsed() < cfg.drive_for {
        let now = Instant::now();
        if now >= next {
            seq += 1;
            let msg = HostMsg::Drive(Drive {
                seq,
                valid_until_us: t.clock.deadline_us(now, cfg.validity),
                setpoint: setpoint(start.elapsed().as_secs_f64()),
                exit_index: 0,
            });
            last_sent_at = link.send(&msg)?;
            sent += 1;
            next += period;
        }
        t.resync.poll(link)?;
        let wait = next.saturating_duration_since(Instant::now());
        if let Ok(r) = link.recv(wait) {
            if let Ok(m) = r.msg {
                t.on_msg(&m, r.at);
            }
        }
    }

    // Silence: the firmware must stop the motors on its own.
    let stop: Telemetry = link
        .wait_for(Duration::from_secs(5), |m, at| {
            t.on_msg(m, at);
            match m {
                McuMsg::Telemetry(t) if t.state == MotorState::TimedOut => Some(*t),
                _ => None,
            }
        })
        .context("the firmware never reported the command timeout")?;
    let observed = last_sent_at.elapsed().as_secs_f64() * 1e3;
    link.send(&HostMsg::Stop)?;

    Ok(SessionReport {
        board,
        command_timeout_ms: boot.command_timeout_ms,
        commands_sent: sent,
        all_accepted: stop.last_seq == Some(seq),
        rejected: t.rejected,
        apply_latency_us: Summary::of(&t.latencies),
        link_rtt_us: Summary::of(&t.rtts),
        timeout_to_stop_us: Some(stop.last_timeout_stop_us),
        timeout_observed_after_ms: Some(observed),
        final_state: format!("{:?}", stop.state),
        applied_after_stop: [stop.applied_left, stop.applied_right],
    })
}
