//! Motor-control logic of the offramp firmware, free of any hardware so that it
//! is tested on the host and shared by every board crate.
//!
//! * [`Controller`]: the safety state machine. Boots disarmed; accepts only
//!   valid, fresh, in-order commands; holds speeds to limits (keeping the
//!   turn, [`limit_wheels`]); slew-limits the
//!   outputs; stops the motors when commands stop coming; counts every
//!   rejection.
//! * [`Node`]: the controller plus the serial link: feed it received bytes and
//!   control ticks, drain encoded frames to transmit.
//!
//! Boards supply only a clock (µs since boot), a UART and PWM outputs.
#![no_std]
// Unsafe code is confined to `reset::ram` (volatile access to `.uninit` RAM).
#![deny(unsafe_code)]

mod config;
mod controller;
pub mod fault;
mod node;
pub mod reset;

pub use config::Config;
pub use controller::{limit_wheels, Action, Controller, Output};
pub use node::Node;
