//! The firmware stops the motors on its own: command timeout, watchdog reset
//! of a hung main loop, and panic.

mod common;
use common::*;
use offramp_protocol::{Fault, HostMsg, McuMsg, MotorState, ResetCause, Setpoint};
use offramp_qemu_harness::Clock;

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
