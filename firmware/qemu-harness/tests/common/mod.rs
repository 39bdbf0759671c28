//! Helpers shared by the QEMU tests.
#![allow(dead_code)]

use offramp_protocol::{Drive, HostMsg, McuMsg, Setpoint, Telemetry};
use offramp_qemu_harness::{firmware_elf, Clock, Firmware};
use std::time::{Duration, Instant};

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

/// Tracks the firmware clock from a ping, so that commands get deadlines in
/// the firmware's time base.
pub struct FwClock {
    base_us: u64,
    at: Instant,
}

impl FwClock {
    pub fn sync(fw: &mut Firmware) -> Self {
        let (uptime, sent, rtt) = fw.sync_clock(0xC10C).expect("pong");
        Self {
            base_us: uptime,
            at: sent + rtt / 2,
        }
    }
    /// Estimated firmware clock now (valid with `Clock::RealTime`).
    pub fn now_us(&self) -> u64 {
        self.base_us + self.at.elapsed().as_micros() as u64
    }
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
