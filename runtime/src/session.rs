//! Drives any firmware (host build over a pty, or the real image in QEMU) over
//! the wire protocol and measures what the firmware reports: a session of
//! drive commands, then silence until the firmware's own timeout stops the
//! motors.

use crate::stats::Summary;
use anyhow::{bail, Context};
use offramp_protocol::link::{ClockSync, Link};
use offramp_protocol::{Boot, Drive, HostMsg, McuMsg, MotorState, Setpoint, Telemetry};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// The firmware link as the runtime sees it.
pub type FirmwareLink<W> = Link<HostMsg, McuMsg, W>;

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
            validity: Duration::from_millis(200),
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

/// How often the firmware clock estimate is refreshed while driving. A
/// microcontroller's crystal drifts against the host's clock (and QEMU's guest
/// clock loses ticks when the host is busy), so one sync at start-up is not
/// enough for deadlines in the firmware's time base.
const RESYNC_EVERY: Duration = Duration::from_millis(200);

/// Bookkeeping of what the firmware sends while a session drives it.
struct Tracker {
    clock: ClockSync,
    rtts: Vec<f64>,
    latencies: Vec<f64>,
    last_seen_seq: Option<u32>,
    rejected: u32,
    /// Outstanding clock-sync ping: nonce and when it was sent.
    ping: Option<(u32, Instant)>,
    next_nonce: u32,
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
                if let Some((nonce, sent)) = self.ping {
                    if p.nonce == nonce {
                        self.rtts.push(at.duration_since(sent).as_secs_f64() * 1e6);
                        self.clock = ClockSync::from_ping(sent, p.uptime_us, at);
                        self.ping = None;
                    }
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

/// A firmware that announced itself and whose clock is synced.
pub struct Connected {
    pub board: String,
    pub boot: Boot,
    pub clock: ClockSync,
    pub rtts: Vec<f64>,
}

/// Syncs the firmware clock on the ping with the shortest round trip out of
/// `pings`; returns it and every round trip (µs).
pub fn sync_clock<W: Write>(
    link: &mut FirmwareLink<W>,
    pings: u32,
    timeout: Duration,
) -> anyhow::Result<(ClockSync, Vec<f64>)> {
    let mut rtts = Vec::new();
    let mut best: Option<(Duration, ClockSync)> = None;
    for nonce in 0..pings.max(1) {
        let sent = link.send(&HostMsg::Ping { nonce })?;
        let (uptime, at) = link
            .wait_for(timeout, |m, at| match m {
                McuMsg::Pong(p) if p.nonce == nonce => Some((p.uptime_us, at)),
                _ => None,
            })
            .map_err(|e| anyhow::anyhow!("no pong from the firmware within {timeout:?}: {e}"))?;
        let rtt = at.duration_since(sent);
        rtts.push(rtt.as_secs_f64() * 1e6);
        if best.is_none_or(|(b, _)| rtt < b) {
            best = Some((rtt, ClockSync::from_ping(sent, uptime, at)));
        }
    }
    let clock = best.map(|(_, c)| c).context("no clock sync")?;
    Ok((clock, rtts))
}

/// Waits for the boot message, checks the protocol version and syncs the
/// clock on the ping with the shortest round trip.
pub fn connect<W: Write>(link: &mut FirmwareLink<W>, pings: u32) -> anyhow::Result<Connected> {
    let boot: Boot = link
        .wait_for(Duration::from_secs(10), |m, _| match m {
            McuMsg::Boot(b) => Some(*b),
            _ => None,
        })
        .context("waiting for the firmware's boot message")?;
    if boot.protocol != offramp_protocol::PROTOCOL_VERSION {
        bail!(
            "firmware speaks protocol {}, this runtime {}",
            boot.protocol,
            offramp_protocol::PROTOCOL_VERSION
        );
    }
    let board = String::from_utf8_lossy(&boot.board)
        .trim_end_matches('\0')
        .to_string();
    let (clock, rtts) = sync_clock(link, pings, Duration::from_secs(2))?;
    Ok(Connected {
        board,
        boot,
        clock,
        rtts,
    })
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
        ping: None,
        next_nonce: cfg.pings.max(1),
    };
    let mut seq = 1u32;
    link.send(&HostMsg::Arm { seq })?;
    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz.max(0.1));
    let start = Instant::now();
    let mut next = start;
    let mut next_sync = start + RESYNC_EVERY;
    let mut sent = 0u32;
    let mut last_sent_at = start;
    while start.elapsed() < cfg.drive_for {
        let now = Instant::now();
        if now >= next {
            seq += 1;
            let msg = HostMsg::Drive(Drive {
                seq,
                valid_until_us: t.clock.firmware_us_at(now) + cfg.validity.as_micros() as u64,
                setpoint: setpoint(start.elapsed().as_secs_f64()),
                exit_index: 0,
            });
            last_sent_at = link.send(&msg)?;
            sent += 1;
            next += period;
        }
        if now >= next_sync && t.ping.is_none() {
            let nonce = t.next_nonce;
            t.next_nonce += 1;
            t.ping = Some((nonce, link.send(&HostMsg::Ping { nonce })?));
            next_sync = now + RESYNC_EVERY;
        }
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
