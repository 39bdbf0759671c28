//! The wire contract between the offramp runtime (or its serial bridge) and the
//! motor-controller firmware.
//!
//! A message travels as one frame:
//!
//! ```text
//! COBS( version:u8 | postcard(message) | crc32(version|payload):u32 LE ) 0x00
//! ```
//!
//! * COBS makes `0x00` a frame delimiter, so a receiver that joins mid-stream or
//!   sees line noise resynchronises at the next zero byte.
//! * The version byte lets either side refuse a peer built from another contract
//!   instead of misreading it.
//! * CRC-32 (ISO-HDLC) catches every single-bit and burst error up to 32 bits that
//!   a UART without parity lets through.
//!
//! Everything is `no_std`, allocation-free and panic-free: buffers are fixed-size
//! and every decoding path returns [`FrameError`] on bad input.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

mod accumulator;
mod frame;
#[cfg(feature = "std")]
pub mod link;
mod messages;

pub use accumulator::{Accumulator, Feed};
pub use frame::{decode, encode, EncodeError, FrameError};
pub use messages::*;

/// Version of this wire contract. Bump on any change to a message layout.
pub const PROTOCOL_VERSION: u8 = 2;

/// How long a command from the runtime stays valid, from the moment it is
/// made, unless it says otherwise: two frames at 10 Hz. Past it the bridge
/// drops the action and the firmware refuses the drive.
pub const COMMAND_VALIDITY_MS: u32 = 200;

/// Largest postcard payload any message of this contract serialises to.
pub const MAX_PAYLOAD: usize = 160;

/// Version byte + payload + CRC before COBS.
pub const MAX_RAW_FRAME: usize = 1 + MAX_PAYLOAD + 4;

/// Largest encoded frame including COBS overhead and the trailing delimiter.
/// Size receive and transmit buffers with this.
pub const MAX_FRAME: usize = MAX_RAW_FRAME + MAX_RAW_FRAME.div_ceil(254) + 1;
