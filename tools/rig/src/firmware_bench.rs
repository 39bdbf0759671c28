//! `offramp firmware bench`: the real firmware image in QEMU, measured in its
//! own (guest) clock: command → applied latency per command, and command
//! timeout → motors stopped, plus the host's round trip through the UART.

use anyhow::Context;
use offramp_protocol::link::ClockSync;
use offramp_protocol::{Drive, HostMsg, McuMsg, MotorState, Setpoint};
use offramp_qemu_harness::{Clock, Firmware};
use offramp_runtime::stats::Summary;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The QEMU board's control tick.
const TICK_US: f64 = 1_000.0;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub board: &'static str,
    pub guest_clock: &'static str,
    pub control_tick_us: f64,
    pub command_timeout_us: u64,
    /// Frame complete → first control tick applying it, guest µs.
    pub apply_latency_us: Summary,
    /// The same in control ticks.
    pub apply_latency_ticks: Summary,
    /// Last valid command → outputs zeroed, guest µs, one per trial, with
    /// `-icount` so that guest time is exact.
    pub timeout_to_stop_us: Summary,
    /// Stop time beyond the configured timeout, in control ticks.
    pub timeout_overshoot_ticks: Summary,
    /// Host ping → pong through QEMU's UART socket, host µs.
    pub link_rtt_us: Summary,
}

fn sync(fw: &mut Firmware, nonce: u32) -> anyhow::Result<(ClockSync, f64)> {
    let (clock, rtt) = fw.sync_clock(nonce)?;
    Ok((clock, rtt.as_secs_f64() * 1e6))
}

fn drive(seq: u32, valid_until_us: u64) -> HostMsg {
    HostMsg::Drive(Drive {
        seq,
        valid_until_us,
        setpoint: Setpoint::Wheels {
            left: 0.3,
            right: 0.3,
        },
        exit_index: 0,
    })
}

/// Runs `commands` latency samples and `trials` timeout trials.
pub fn run(elf: &Path, commands: u32, trials: u32) -> anyhow::Result<BenchReport> {
    // Latency: real-time guest clock, one command per telemetry report so that
    // every command's latency is observed.
    let mut fw = Firmware::boot(elf, Clock::RealTime)?;
    let boot = fw.boot_message()?;
    let (mut clock, _) = sync(&mut fw, 0)?;
    fw.send(&HostMsg::Arm { seq: 1 })?;
    let mut lat = Vec::new();
    let mut rtt = Vec::new();
    for i in 0..commands {
        let seq = i + 2;
        fw.send(&drive(
            seq,
            clock.deadline_us(Instant::now(), offramp_link::COMMAND_VALIDITY),
        ))?;
        let t = fw.wait_for(
            "telemetry showing the command",
            Duration::from_secs(2),
            |r| match r.msg {
                McuMsg::Telemetry(t) if t.last_seq == Some(seq) => Some(t),
                McuMsg::Rejected { reason, .. } => {
                    tracing::warn!(?reason, "bench command rejected");
                    None
                }
                _ => None,
            },
        )?;
        lat.push(t.last_apply_latency_us as f64);
        // Re-sync every command: QEMU's guest clock loses ticks while its
        // host is busy, and a stale estimate puts deadlines too far ahead.
        let (c, r) = sync(&mut fw, 1000 + i)?;
        clock = c;
        rtt.push(r);
    }
    drop(fw);

    // Timeout: guest time from executed instructions, so exact in ticks.
    let mut fw = Firmware::boot(elf, Clock::Instructions)?;
    fw.boot_message()?;
    let mut stops = Vec::new();
    let mut seq = 1;
    for trial in 0..trials {
        seq = fw.arm_and_drive(
            seq,
            Setpoint::Wheels {
                left: 0.3,
                right: 0.3,
            },
            450_000,
        )? + 1;
        let t = fw.wait_for("timeout stop", Duration::from_secs(10), |r| match r.msg {
            McuMsg::Telemetry(t)
                if t.state == MotorState::TimedOut && t.counters.timeouts > trial =>
            {
                Some(t)
            }
            _ => None,
        })?;
        stops.push(t.last_timeout_stop_us as f64);
    }
    let timeout_us = u64::from(boot.command_timeout_ms) * 1_000;
    let overshoot: Vec<f64> = stops
        .iter()
        .map(|s| (s - timeout_us as f64) / TICK_US)
        .collect();
    let ticks: Vec<f64> = lat.iter().map(|l| l / TICK_US).collect();
    Ok(BenchReport {
        board: "lm3s6965evb (QEMU), Cortex-M3 50 MHz",
        guest_clock: "latency: real-time; timeout: -icount shift=3",
        control_tick_us: TICK_US,
        command_timeout_us: timeout_us,
        apply_latency_us: Summary::of(&lat).context("no latency samples")?,
        apply_latency_ticks: Summary::of(&ticks).context("no latency samples")?,
        timeout_to_stop_us: Summary::of(&stops).context("no timeout trials")?,
        timeout_overshoot_ticks: Summary::of(&overshoot).context("no timeout trials")?,
        link_rtt_us: Summary::of(&rtt).context("no round trips")?,
    })
}
