//! Helpers shared by the QEMU tests.
#![allow(dead_code)]

use offramp_protocol::link::ClockSync;
use offramp_protocol::{Drive, HostMsg, McuMsg, Setpoint, Telemetry};
use offramp_qemu_harness::{firmware_elf, Clock, Firmware};
use std::time::Duration;

pub const SECOND: Duration = Duration::from_secs(1);

/// Boots the firmware, checks the boot message and pings once.
pub fn boot(clock: Clock) -> Firmware {
    let elf = firmware_elf().expect("firmware image");
    let fw = Firmware::boot(&elf, clock).expect("QEMU boots the firmware");
    let b = fw.boot_message().expect("boot message");
    assert_eq!(b.protocol, offramp_protocol::PROTOCOL_VERSION);
    assert_eq!(&b.board[..8], b"lm3s6965");
    fw
}

/// The firmware clock, synced by one ping (valid with `Clock::RealTime`):
/// commands get deadlines in the firmware's time base.
pub fn fw_clock(fw: &mut Firmware) -> ClockSync {
    fw.sync_clock(0xC10C).expect("pong").0
}

pub fn drive(seq: u32, valid_until_us: u64, left: f32, right: f32) -> HostMsg {
    HostMsg::Drive(Drive {
        seq,
        valid_until_us,
        setpoint: Setpoint::Wheels { left, right },
        exit_index: 1,
    })
}

/// Next telemetry report satisfying `pred`.
pub fn telemetry_where(
    fw: &Firmware,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Telemetry) -> bool,
) -> Telemetry {
    fw.wait_for(what, timeout, |r| match r.msg {
        McuMsg::Telemetry(t) if pred(&t) => Some(t),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}; firmware log:\n{}", fw.log().join("\n")))
}

/// A command's validity, µs: what the runtime gives its commands.
pub const VALIDITY_US: u64 = offramp_protocol::COMMAND_VALIDITY_MS as u64 * 1000;
