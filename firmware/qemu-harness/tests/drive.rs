//! The real firmware image in QEMU applies valid drive commands.

mod common;
use common::*;
use offramp_protocol::{HostMsg, McuMsg, MotorState, Reject, ResetCause};
use offramp_qemu_harness::Clock;
use std::time::Duration;

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn boots_disarmed_then_applies_drive_commands() {
    let mut fw = boot(Clock::RealTime);
    let clock = fw_clock(&mut fw);

    // Disarmed at boot: a drive is refused and counted.
    fw.send(&drive(1, clock.now_us() + 100_000, 0.5, 0.5))
        .unwrap();
    let reason = fw
        .wait_for("rejection", 2 * SECOND, |r| match r.msg {
            McuMsg::Rejected { reason, seq } => Some((reason, seq)),
            _ => None,
        })
        .unwrap();
    assert_eq!(reason, (Reject::NotArmed, Some(1)));

    fw.send(&HostMsg::Arm { seq: 1 }).unwrap();
    let mut seq = 2;
    // 0.5 m/s at 4 m/s² takes 125 ms of slew; drive at 50 Hz for 400 ms.
    for _ in 0..20 {
        fw.send(&drive(seq, clock.now_us() + 150_000, 0.5, -0.25))
            .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = seq - 1;
    let t = telemetry_where(&fw, "telemetry after the last command", 2 * SECOND, |t| {
        t.last_seq == Some(last)
    });
    assert_eq!(t.state, MotorState::Running);
    assert_eq!(t.applied_left, 0.5);
    assert_eq!(t.applied_right, -0.25);
    assert_eq!((t.duty_left, t.duty_right), (5000, -2500));
    assert_eq!(t.reset_cause, ResetCause::PowerOn);
    assert_eq!(t.counters.not_armed, 1);
    assert_eq!(t.counters.rejected(), 1, "{:?}", t.counters);
    // Applied at the next 1 kHz control tick. In real-time mode QEMU may
    // deliver a late SysTick as one (coalesced) tick, so allow two here; the
    // exact one-tick bound is checked under -icount in failsafe.rs.
    assert!(t.last_apply_latency_us <= 2_000, "{t:?}");

    let log = fw.log().join("\n");
    assert!(
        log.contains("offramp-fw-qemu booted: reset cause PowerOn"),
        "{log}"
    );
    assert!(log.contains("motor state Disarmed -> Running"), "{log}");
}

/// The real image latches an operator's stop: the outputs drop to zero at
/// once, `Arm`, `Drive` and the runtime's `Stop` leave it latched, and only
/// a `Release` (then an `Arm`) lets a drive through again.
#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn an_operators_stop_latches_until_released() {
    let mut fw = boot(Clock::RealTime);
    let clock = fw_clock(&mut fw);
    fw.send(&HostMsg::Arm { seq: 1 }).unwrap();
    let mut seq = 2;
    for _ in 0..10 {
        fw.send(&drive(seq, clock.now_us() + 150_000, 0.5, 0.5))
            .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    fw.send(&HostMsg::Latch).unwrap();
    let t = telemetry_where(&fw, "latched", 2 * SECOND, |t| {
        t.state == MotorState::Latched
    });
    assert_eq!((t.applied_left, t.applied_right), (0.0, 0.0));
    fw.send(&HostMsg::Arm { seq }).unwrap();
    fw.send(&drive(seq + 1, clock.now_us() + 150_000, 0.5, 0.5))
        .unwrap();
    fw.send(&HostMsg::Stop).unwrap();
    let t = telemetry_where(&fw, "two refusals", 2 * SECOND, |t| t.counters.latched == 2);
    assert_eq!(t.state, MotorState::Latched, "{t:?}");
    assert_eq!((t.applied_left, t.applied_right), (0.0, 0.0));
    fw.send(&HostMsg::Release { seq: seq + 2 }).unwrap();
    fw.send(&HostMsg::Arm { seq: seq + 3 }).unwrap();
    fw.send(&drive(seq + 4, clock.now_us() + 150_000, 0.5, 0.5))
        .unwrap();
    let t = telemetry_where(&fw, "driving after the release", 2 * SECOND, |t| {
        t.last_seq == Some(seq + 4) && t.applied_left > 0.0
    });
    assert_eq!(t.state, MotorState::Running);
}
