//! A firmware's end of a serial cable: the host build of the control logic
//! behind a pty, or the real image in QEMU with its UART joined to a pty; a
//! bridge opens [`FirmwareEnd::device`] as it would a real cable.

use crate::FirmwareKind;
use anyhow::Context;
use offramp_control::Config;
use offramp_host::HostBoard;
#[cfg(feature = "qemu")]
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
#[cfg(feature = "qemu")]
use std::time::Duration;

/// The firmware's end of a serial cable; the bridge opens `device`.
pub struct FirmwareEnd {
    pub device: PathBuf,
    pub board: String,
    host: Option<HostBoard>,
    #[cfg(feature = "qemu")]
    _qemu: Option<offramp_qemu_harness::Qemu>,
}

impl FirmwareEnd {
    #[cfg_attr(not(feature = "qemu"), allow(unused_variables))]
    pub fn start(kind: FirmwareKind, elf: Option<&Path>) -> anyhow::Result<Self> {
        match kind {
            FirmwareKind::Host => {
                let board = HostBoard::start(Config::DEFAULT)
                    .context("starting the host firmware behind a pty")?;
                Ok(Self {
                    device: board.device.clone(),
                    board: "host build of the control logic".into(),
                    host: Some(board),
                    #[cfg(feature = "qemu")]
                    _qemu: None,
                })
            }
            #[cfg(not(feature = "qemu"))]
            FirmwareKind::Qemu => Err(crate::no_qemu()),
            #[cfg(feature = "qemu")]
            FirmwareKind::Qemu => {
                let pair =
                    offramp_host::pty::open().context("opening a pty pair for the firmware")?;
                let device = pair.slave_path.clone();
                // Nobody holds the device end until the bridge opens it, as
                // with a real cable.
                drop(pair.slave);
                let elf = crate::qemu_elf(elf)?;
                tracing::info!(elf = %elf.display(), "booting firmware in QEMU");
                let (qemu, uart) =
                    offramp_qemu_harness::boot_uart(&elf, offramp_qemu_harness::Clock::RealTime)?;
                // The UART socket and the pty master, joined both ways.
                let (m2, u2) = (pair.master.try_clone()?, uart.try_clone()?);
                relay(uart, pair.master, "qemu uart -> pty")?;
                relay(m2, u2, "pty -> qemu uart")?;
                Ok(Self {
                    device,
                    board: format!("lm3s6965evb in QEMU ({})", elf.display()),
                    host: None,
                    _qemu: Some(qemu),
                })
            }
        }
    }

    /// The host build's motor outputs (what the motors actually got).
    pub fn host_output(&self) -> Option<offramp_control::Output> {
        self.host.as_ref().and_then(|h| h.output())
    }
}

/// Copies bytes from `from` to `to` on a thread until `from` ends. A pty
/// master reads EIO while no one holds the slave: wait and read again.
#[cfg(feature = "qemu")]
fn relay(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    name: &str,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        // Nobody on the other end: the bytes are lost, as on a wire.
                        let _ = to.write_all(&buf[..n]);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        })?;
    Ok(())
}
