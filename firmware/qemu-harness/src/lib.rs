//! Boots the real offramp firmware image on QEMU's lm3s6965evb and talks to it
//! the way the runtime's serial bridge does: wire-protocol frames over the
//! emulated UART (a unix socket), with the firmware's defmt log decoded by
//! `defmt-print` on the side.
//!
//! ```no_run
//! use offramp_qemu_harness::{Firmware, Clock};
//! let elf = offramp_qemu_harness::firmware_elf()?;
//! let mut fw = Firmware::boot(&elf, Clock::RealTime)?;
//! let boot = fw.boot_message()?;
//! # Ok::<(), offramp_qemu_harness::Error>(())
//! ```

mod image;
mod qemu;

pub use image::firmware_elf;
pub use qemu::{boot_uart, Clock, Firmware, Qemu, Received, UartLink};

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong driving the firmware.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{program}` not found on PATH ({hint})")]
    ToolMissing {
        program: &'static str,
        hint: &'static str,
    },
    #[error("could not start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("firmware build failed (`{command}` exited with {status}); see its output above")]
    Build { command: String, status: String },
    #[error("firmware image {0} does not exist")]
    NoImage(PathBuf),
    #[error("QEMU did not open its UART socket {path} within {waited:?}")]
    NoSocket { path: PathBuf, waited: Duration },
    #[error("no {what} from the firmware within {waited:?}")]
    Timeout { what: String, waited: Duration },
    #[error("the firmware rejected the command: {0:?}")]
    Rejected(offramp_protocol::Reject),
    #[error("firmware link closed (QEMU exited?)")]
    LinkClosed,
    #[error("UART socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not send to the firmware: {0}")]
    Send(#[from] offramp_protocol::link::SendError),
}
