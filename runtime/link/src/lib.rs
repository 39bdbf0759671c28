//! offramp's links between the runtime and the motors.
//!
//! * [`actuator`]: the run loop's actions published on zenoh, held inside
//!   the robot's limits.
//! * [`zenoh_link`]: the action and telemetry messages and the runtime's
//!   zenoh session (publisher, telemetry subscriber, liveliness).
//! * [`executed`]: what the robot executed at a camera frame, from its
//!   telemetry (`offramp record --telemetry`).
//! * [`error`]: the errors of sessions, messages and keys.
//! * [`session`]: opening a zenoh session, secure by default (loopback
//!   unless configured, plaintext beyond loopback only with `--insecure`).
//! * [`bridge`]: zenoh ⇄ the motor controller's serial link (the
//!   `offramp bridge` service).
//! * [`firmware`]: the serial link's start-up: boot message, protocol
//!   version, clock sync.
//! * [`offload`]: deep exits on a second device (`offramp serve`, and the
//!   runtime's zenoh client with failover).
//! * [`operator`]: an operator's stop and release, sent until the robot's
//!   telemetry confirms them (`offramp operator`).
//! * [`inbox`]: the bounded, newest-keeping queue that everything received
//!   from the network waits in.
//! * [`signal`]: SIGINT/SIGTERM as a flag, for commands that finish
//!   cleanly.
//! * [`link_check`]: the model-free check of that link (`offramp firmware
//!   session`).

pub mod actuator;
pub mod bridge;
pub mod error;
pub mod executed;
pub mod firmware;
pub mod inbox;
pub mod link_check;
pub mod offload;
pub mod operator;
pub mod session;
pub mod signal;
pub mod zenoh_link;

pub use firmware::COMMAND_VALIDITY;
