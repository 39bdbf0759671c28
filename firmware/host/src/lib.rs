//! The motor controller's control logic on the host, behind a real serial
//! device node: what `offramp demo`, `offramp firmware session` and the
//! tests drive when no microcontroller is attached.
//!
//! * [`pty`]: a raw pseudo-terminal pair (the cable).
//! * [`host_mcu`]: the `offramp-control` node on a thread, on one end.
//! * [`HostBoard`]: both together; the other end is a device path that a
//!   bridge opens like `/dev/ttyACM0`.

pub mod host_mcu;
pub mod pty;

pub use host_mcu::HostMcu;
use offramp_control::{Config, Output};
use offramp_protocol::MotorState;
use std::fs::File;
use std::path::PathBuf;

/// The control logic behind a pty. Nobody holds [`HostBoard::device`] until
/// a bridge (or a test) opens it, as with a real cable; dropping the board
/// stops the control thread and hangs up the device.
pub struct HostBoard {
    /// The serial device node to open, e.g. `/dev/pts/7`.
    pub device: PathBuf,
    mcu: HostMcu,
    cable: File,
}

impl HostBoard {
    /// Opens a pty pair and starts the control node on its master end.
    pub fn start(cfg: Config) -> std::io::Result<Self> {
        Self::start_connected(cfg).map(|(board, _)| board)
    }

    /// Like [`HostBoard::start`], and returns the device end already open,
    /// so that nothing the board sends at boot is lost before a host opens
    /// it (a host that needs the boot message, e.g. a link check).
    pub fn start_connected(cfg: Config) -> std::io::Result<(Self, File)> {
        let pair = pty::open()?;
        let cable = pair.master.try_clone()?;
        let board = Self {
            device: pair.slave_path.clone(),
            mcu: HostMcu::spawn(pair.master, cfg)?,
            cable,
        };
        Ok((board, pair.slave))
    }

    /// The outputs of the latest control tick (what the motors would get).
    pub fn output(&self) -> Option<Output> {
        self.mcu.output()
    }

    /// Running with a non-zero output on some wheel.
    pub fn moving(&self) -> bool {
        self.output()
            .is_some_and(|o| o.state == MotorState::Running && (o.left != 0.0 || o.right != 0.0))
    }

    /// The firmware's end of the cable: bytes written here reach whoever
    /// opened [`HostBoard::device`] as if the firmware sent them (line noise
    /// in fault tests).
    pub fn cable(&self) -> std::io::Result<File> {
        self.cable.try_clone()
    }
}
