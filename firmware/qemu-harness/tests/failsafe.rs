//! The firmware stops the motors on its own: command timeout, watchdog reset
//! of a hung main loop, and panic.

mod common;
use common::*;
use offramp_protocol::{Fault, HostMsg, McuMsg, MotorState, ResetCause, Setpoint};
use offramp_qemu_harness::Clock;
use std::time::Duration;

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn command_timeout_stops_motors_in_guest_time() {
    // Guest time jumps while the core sleeps, so the 250 ms timeout is exact in
    // guest ticks whatever the host's load.
    let mut fw = boot(Clock::Instructions);
    let wheels = Setpoint::Wheels {
        left: 0.4,
        right: 0.4,
    };
    fw.arm_and_drive(1, wheels, 450_000).unwrap();
    let t = telemetry_where(&fw, "timeout stop", 10 * SECOND, |t| {
        t.state == MotorState::TimedOut
    });
    assert_eq!(
        (t.applied_left, t.applied_right, t.duty_left, t.duty_right),
        (0.0, 0.0, 0, 0)
    );
    assert_eq!(t.counters.timeouts, 1);
    // Guest time is exact here: the drive was applied at the next 1 kHz tick.
    assert!(t.last_apply_latency_us <= 1_000, "{t:?}");
    // Stopped at the first 1 kHz control tick at or after 250 ms.
    assert!(
        (250_000..=251_000).contains(&t.last_timeout_stop_us),
        "timeout-to-stop {} µs",
        t.last_timeout_stop_us
    );
    fw.wait_log("motor state Running -> TimedOut", 5 * SECOND)
        .unwrap();
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn hung_main_loop_is_reset_by_the_watchdog() {
    let mut fw = boot(Clock::RealTime);
    let clock = fw_clock(&mut fw);
    fw.send(&HostMsg::Arm { seq: 1 }).unwrap();
    fw.send(&drive(2, clock.now_us() + VALIDITY_US, 0.5, 0.5))
        .unwrap();
    let hung_at = fw.send(&HostMsg::InjectFault(Fault::HangMainLoop)).unwrap();
    let (boot, at) = fw
        .wait_for("boot after watchdog reset", 5 * SECOND, |r| match r.msg {
            McuMsg::Boot(b) => Some((b, r.at)),
            _ => None,
        })
        .unwrap();
    assert_eq!(boot.reset_cause, ResetCause::Watchdog);
    assert_eq!(boot.reset_count, 1);
    // Bark after 100 ms, reset after 200 ms (wall clock, so allow slack).
    let took = at.duration_since(hung_at);
    assert!(took.as_millis() >= 150, "reset after {took:?}");
    fw.wait_log("watchdog bark", 2 * SECOND).unwrap();
    fw.wait_log("reset cause Watchdog, resets since power-on 1", 2 * SECOND)
        .unwrap();
    // Back disarmed and reporting the cause.
    let t = telemetry_where(&fw, "telemetry after reset", 2 * SECOND, |_| true);
    assert_eq!(
        (t.state, t.reset_cause),
        (MotorState::Disarmed, ResetCause::Watchdog)
    );
    assert_eq!(t.last_seq, None);
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn a_dead_control_tick_is_reset_by_the_watchdog_even_while_the_uart_is_busy() {
    let mut fw = boot(Clock::RealTime);
    let clock = fw_clock(&mut fw);
    fw.send(&HostMsg::Arm { seq: 1 }).unwrap();
    fw.send(&drive(2, clock.now_us() + VALIDITY_US, 0.5, 0.5))
        .unwrap();
    let stopped_at = fw
        .send(&HostMsg::InjectFault(Fault::StopControlTick))
        .unwrap();
    fw.wait_log("control tick stopped", 2 * SECOND).unwrap();
    // Keep the main loop waking: a ping every 5 ms is UART traffic that a
    // watchdog fed on every wake-up (rather than on every control tick)
    // would mistake for health.
    let mut nonce = 0;
    let boot = loop {
        nonce += 1;
        fw.send(&HostMsg::Ping { nonce }).unwrap();
        if let Ok(r) = fw.recv(Duration::from_millis(5)) {
            if let McuMsg::Boot(b) = r.msg {
                break (b, r.at);
            }
        }
        assert!(
            stopped_at.elapsed() < 5 * SECOND,
            "no watchdog reset 5 s after the control tick died; firmware log:\n{}",
            fw.log().join("\n")
        );
    };
    let (boot, at) = boot;
    assert_eq!(
        (boot.reset_cause, boot.reset_count),
        (ResetCause::Watchdog, 1)
    );
    let took = at.duration_since(stopped_at);
    assert!(took.as_millis() >= 150, "reset after {took:?}");
    fw.wait_log("watchdog bark", 2 * SECOND).unwrap();
    eprintln!("control tick stopped: watchdog reset after {took:?}, {nonce} pings sent meanwhile");
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn an_arm_while_driving_does_not_extend_the_drive() {
    // Guest time: the command deadline is exact in guest ticks.
    let mut fw = boot(Clock::Instructions);
    let mut seq = 1;
    let t = loop {
        // Arm, a drive valid for 100 ms, and at once a second Arm (what a
        // bridge reconnecting mid-drive sends), back to back.
        let clock = fw_clock(&mut fw);
        fw.send(&HostMsg::Arm { seq }).unwrap();
        fw.send(&drive(seq + 1, clock.now_us() + 100_000, 0.4, 0.4))
            .unwrap();
        fw.send(&HostMsg::Arm { seq: seq + 2 }).unwrap();
        let t = telemetry_where(&fw, "second arm accepted", 10 * SECOND, |t| {
            t.last_seq == Some(seq + 2)
        });
        if t.counters.stale == 0 {
            break t;
        }
        // Guest time raced past the deadline before the drive arrived.
        seq += 3;
        assert!(seq < 16, "every drive arrived stale: {t:?}");
    };
    assert_eq!(t.counters.rejected(), 0, "{:?}", t.counters);
    let stopped = telemetry_where(&fw, "timeout stop", 10 * SECOND, |t| {
        t.state == MotorState::TimedOut
    });
    // Stopped at the drive's own deadline (100 ms of estimated firmware time
    // after sending; the one-ping clock estimate can be off by a few ms
    // while guest time races), not a command timeout (250 ms) after the Arm.
    assert!(
        stopped.last_timeout_stop_us <= 150_000,
        "stopped {} µs after the last accepted command",
        stopped.last_timeout_stop_us
    );
    assert_eq!((stopped.applied_left, stopped.applied_right), (0.0, 0.0));
    assert_eq!(stopped.counters.timeouts, 1);
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn panic_stops_motors_and_resets() {
    let mut fw = boot(Clock::Instructions);
    fw.send(&HostMsg::InjectFault(Fault::Panic)).unwrap();
    let boot = fw
        .wait_for("boot after panic", 5 * SECOND, |r| match r.msg {
            McuMsg::Boot(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!((boot.reset_cause, boot.reset_count), (ResetCause::Panic, 1));
    let line = fw.wait_log("panic at", 2 * SECOND).unwrap();
    // The handler reports where the panic happened: the fault simulation.
    assert!(line.contains("control/src/fault.rs"), "{line}");
}
