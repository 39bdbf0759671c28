//! Limits and timings of one robot base.

/// Static configuration of the controller. Board crates build it as a `const`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Armed with no valid command for this long: outputs go to zero.
    pub command_timeout_us: u64,
    /// A command's deadline may lie at most this far ahead of the firmware clock;
    /// bounds how long a captured command stays replayable.
    pub max_validity_us: u64,
    /// Soft limit per wheel, m/s: larger finite setpoints are clamped to it.
    pub max_wheel_speed: f32,
    /// Hard limit per wheel, m/s: setpoints beyond it are rejected as out of
    /// range (a sender that far off is broken, not just ambitious).
    pub reject_wheel_speed: f32,
    /// Slew limit, m/s², applied to each wheel's output every tick.
    pub max_accel: f32,
    /// Distance between the wheels, m, to turn (v, omega) into wheel speeds.
    pub track_width: f32,
    /// Telemetry period, µs.
    pub telemetry_period_us: u64,
}

impl Config {
    /// A small indoor differential-drive base (the simulator's robot).
    pub const DEFAULT: Config = Config {
        command_timeout_us: 250_000,
        max_validity_us: 500_000,
        max_wheel_speed: 1.0,
        reject_wheel_speed: 2.0,
        max_accel: 4.0,
        track_width: 0.3,
        telemetry_period_us: 50_000,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
