//! Messages of the contract. Field order is the wire layout (postcard), so only
//! append, and bump [`crate::PROTOCOL_VERSION`] when anything changes.

use serde::{Deserialize, Serialize};

/// A motion setpoint. Wheel speeds are surface speeds in m/s (the same unit the
/// simulator's physics and the firmware's limits use); a twist is body linear
/// speed in m/s and yaw rate in rad/s, which the firmware turns into wheel speeds
/// with its own track width.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Setpoint {
    /// Per-wheel surface speeds, m/s.
    Wheels { left: f32, right: f32 },
    /// Linear speed (m/s) and yaw rate (rad/s).
    Twist { v: f32, omega: f32 },
}

/// One drive command from the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Drive {
    /// Strictly increasing per command; the firmware drops anything not newer
    /// than the last command it accepted (replays, reordering).
    pub seq: u32,
    /// The command is invalid after this instant of the firmware's clock
    /// (microseconds since its boot, learned from [`Pong`] or [`Telemetry`]).
    pub valid_until_us: u64,
    /// What to drive.
    pub setpoint: Setpoint,
    /// Which model exit produced the action; echoed in telemetry only.
    pub exit_index: u8,
}

/// Faults the QEMU board can be told to simulate, so that tests exercise the
/// watchdog and panic paths of the real firmware image. Real boards reject
/// these unless built with their `fault-injection` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fault {
    /// Spin forever in the main loop with interrupts on: the watchdog must reset.
    HangMainLoop,
    /// Panic: the handler stops the motors and resets.
    Panic,
    /// The control tick dies (its timer interrupt is switched off) while the
    /// main loop goes on serving the UART: the watchdog must notice that
    /// control ticks stopped, not merely that the loop still wakes.
    StopControlTick,
}

/// Runtime → microcontroller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HostMsg {
    /// Leave the disarmed state; `seq` follows the same ordering rule as drives.
    Arm { seq: u32 },
    /// Drive the motors.
    Drive(Drive),
    /// Stop the motors and disarm. Always honoured, whatever its age: stopping is
    /// always safe.
    Stop,
    /// Ask for a [`McuMsg::Pong`] (clock sync and link health).
    Ping { nonce: u32 },
    /// Test hook, see [`Fault`].
    InjectFault(Fault),
    /// An operator's stop: stop the motors at once and latch
    /// ([`MotorState::Latched`]): `Arm` and `Drive` are refused until a
    /// [`HostMsg::Release`]. Always honoured, whatever its age. The runtime's
    /// own stops ([`HostMsg::Stop`]) do not latch: a lost camera stops the
    /// motors until the next good frame, an operator's stop until someone
    /// lifts it.
    Latch,
    /// Lift an operator's stop: the firmware goes from `Latched` to
    /// `Disarmed` (an `Arm` must follow). `seq` follows the drives' ordering
    /// rule, so a replayed release does nothing.
    Release { seq: u32 },
}

/// Why the microcontroller last reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResetCause {
    PowerOn,
    Watchdog,
    /// Deliberate software reset request.
    Software,
    /// The panic handler stopped the motors and reset.
    Panic,
    Pin,
    BrownOut,
    Unknown,
}

/// What the motor outputs are doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MotorState {
    /// After boot, [`HostMsg::Stop`] or [`HostMsg::Release`]: outputs forced
    /// to zero, drives refused until an `Arm`.
    Disarmed,
    /// Armed and following commands.
    Running,
    /// Armed, but no valid command arrived within the timeout: outputs zero until
    /// the next valid drive.
    TimedOut,
    /// After [`HostMsg::Latch`] (an operator's stop): outputs forced to zero,
    /// `Arm`, `Drive` and `Stop` change nothing until [`HostMsg::Release`].
    Latched,
}

/// Why a frame or message was refused. Each has its own counter in
/// [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reject {
    /// Frame longer than the receive buffer.
    Overflow,
    /// Invalid COBS encoding.
    Cobs,
    /// Shorter than version + CRC.
    TooShort,
    /// CRC mismatch.
    Crc,
    /// Frame from another protocol version.
    Version,
    /// CRC fine but postcard could not decode a message.
    Decode,
    /// Deadline already passed.
    Stale,
    /// Deadline further ahead than the firmware's maximum validity window.
    DeadlineTooFar,
    /// Sequence number not newer than the last accepted one.
    Replay,
    /// Non-finite or beyond the hard limit.
    OutOfRange,
    /// Drive while disarmed.
    NotArmed,
    /// Message this build does not act on (fault injection on a real board).
    Unsupported,
    /// `Arm` or `Drive` while an operator's stop holds.
    Latched,
}

/// Monotonic counters since boot; they saturate instead of wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    pub frames_ok: u32,
    pub overflow: u32,
    pub cobs: u32,
    pub too_short: u32,
    pub crc: u32,
    pub version: u32,
    pub decode: u32,
    pub stale: u32,
    pub deadline_too_far: u32,
    pub replay: u32,
    pub out_of_range: u32,
    pub not_armed: u32,
    pub unsupported: u32,
    /// Commands accepted but clamped to the soft limit.
    pub clamped: u32,
    /// Command timeouts that stopped the motors.
    pub timeouts: u32,
    /// Bytes lost because the receive queue was full.
    pub rx_dropped: u32,
    /// `Arm` or `Drive` refused because an operator's stop holds.
    pub latched: u32,
}

impl Counters {
    /// Count one rejection.
    pub fn count(&mut self, reason: Reject) {
        let c = match reason {
            Reject::Overflow => &mut self.overflow,
            Reject::Cobs => &mut self.cobs,
            Reject::TooShort => &mut self.too_short,
            Reject::Crc => &mut self.crc,
            Reject::Version => &mut self.version,
            Reject::Decode => &mut self.decode,
            Reject::Stale => &mut self.stale,
            Reject::DeadlineTooFar => &mut self.deadline_too_far,
            Reject::Replay => &mut self.replay,
            Reject::OutOfRange => &mut self.out_of_range,
            Reject::NotArmed => &mut self.not_armed,
            Reject::Unsupported => &mut self.unsupported,
            Reject::Latched => &mut self.latched,
        };
        *c = c.saturating_add(1);
    }

    /// Total of all rejections of any reason.
    pub fn rejected(&self) -> u32 {
        [
            self.overflow,
            self.cobs,
            self.too_short,
            self.crc,
            self.version,
            self.decode,
            self.stale,
            self.deadline_too_far,
            self.replay,
            self.out_of_range,
            self.not_armed,
            self.unsupported,
            self.latched,
        ]
        .iter()
        .fold(0u32, |a, b| a.saturating_add(*b))
    }
}

/// Periodic state report from the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Telemetry {
    /// Firmware clock, µs since boot.
    pub uptime_us: u64,
    /// Increments with every telemetry report.
    pub report_seq: u32,
    /// Sequence number of the last accepted command, if any since boot.
    pub last_seq: Option<u32>,
    /// Exit index carried by the last accepted drive.
    pub last_exit: u8,
    /// Wheel speeds actually applied this tick (after clamping and slew), m/s.
    pub applied_left: f32,
    pub applied_right: f32,
    /// PWM duty of each wheel in 1/10000 of full scale, signed for direction.
    pub duty_left: i16,
    pub duty_right: i16,
    pub state: MotorState,
    pub counters: Counters,
    pub reset_cause: ResetCause,
    /// Latency of the last accepted drive, from its frame completing to the first
    /// control tick that applied it, µs of firmware clock.
    pub last_apply_latency_us: u32,
    /// For the last command timeout: time from the last valid command to the tick
    /// that zeroed the outputs, µs of firmware clock.
    pub last_timeout_stop_us: u32,
}

/// Sent once after every boot, before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Boot {
    pub protocol: u8,
    pub reset_cause: ResetCause,
    /// Resets since power-on (kept in RAM that survives warm resets).
    pub reset_count: u32,
    /// Board identifier, e.g. `*b"lm3s6965"`, zero padded.
    pub board: [u8; 12],
    /// Configured command timeout, ms.
    pub command_timeout_ms: u32,
}

/// Answer to [`HostMsg::Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pong {
    pub nonce: u32,
    /// Firmware clock when the ping was handled, µs since boot.
    pub uptime_us: u64,
}

/// Microcontroller → runtime.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum McuMsg {
    Boot(Boot),
    Pong(Pong),
    Telemetry(Telemetry),
    /// Sent for each refused frame or message, so the host learns at once.
    Rejected {
        reason: Reject,
        seq: Option<u32>,
    },
}

/// Pads a board name into [`Boot::board`].
pub const fn board_name(name: &str) -> [u8; 12] {
    let bytes = name.as_bytes();
    let mut out = [0u8; 12];
    let mut i = 0;
    while i < bytes.len() && i < out.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
