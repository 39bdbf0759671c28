//! The demo's rig: the firmware's end of a serial cable (host build or QEMU)
//! and the bridge in front of it (a process, as deployed, or a thread).

use super::FirmwareKind;
use anyhow::Context;
use offramp_control::Config;
use offramp_host::HostBoard;
use offramp_link::bridge::{serve_until, BridgeArgs};
use offramp_link::zenoh_link::ZenohOptions;
#[cfg(feature = "qemu")]
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the bridge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BridgeMode {
    /// `offramp bridge` as its own process, as deployed.
    Process,
    /// The same bridge on a thread with its own zenoh session (for a
    /// cross-built binary under qemu-user, which cannot exec itself).
    Thread,
}

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
            FirmwareKind::Qemu => Err(super::no_qemu()),
            #[cfg(feature = "qemu")]
            FirmwareKind::Qemu => {
                let pair =
                    offramp_host::pty::open().context("opening a pty pair for the firmware")?;
                let device = pair.slave_path.clone();
                // Nobody holds the device end until the bridge opens it, as
                // with a real cable.
                drop(pair.slave);
                let elf = super::qemu_elf(elf)?;
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

/// The bridge: `offramp bridge` as a child process (killed when dropped),
/// or a thread.
pub enum Bridge {
    Process(Child),
    Thread {
        stop: Arc<AtomicBool>,
        handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    },
}

impl Bridge {
    pub fn spawn(
        mode: BridgeMode,
        device: &Path,
        robot: &str,
        connect: &str,
    ) -> anyhow::Result<Self> {
        match mode {
            BridgeMode::Process => {
                let exe = std::env::current_exe().context("locating the offramp binary")?;
                let child = Command::new(exe)
                    .args(["--log", "warn", "bridge", "--serial"])
                    .arg(device)
                    .args(["--robot", robot, "--connect", connect])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("starting `offramp bridge`")?;
                Ok(Self::Process(child))
            }
            BridgeMode::Thread => {
                let args = BridgeArgs {
                    serial: device.to_path_buf(),
                    baud: 115_200,
                    robot: robot.to_string(),
                    zenoh: ZenohOptions {
                        connect: vec![connect.to_string()],
                        ..Default::default()
                    },
                };
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let handle = std::thread::Builder::new()
                    .name("offramp-bridge".into())
                    .spawn(move || serve_until(&args, &flag))?;
                Ok(Self::Thread {
                    stop,
                    handle: Some(handle),
                })
            }
        }
    }

    /// Why it is no longer running, if it is not.
    pub fn exited(&mut self) -> Option<String> {
        match self {
            Self::Process(c) => match c.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                _ => None,
            },
            Self::Thread { handle, .. } => {
                if !handle.as_ref().is_some_and(|h| h.is_finished()) {
                    return None;
                }
                match handle.take().map(|h| h.join()) {
                    Some(Ok(Err(e))) => Some(format!("failed: {e:#}")),
                    _ => Some("stopped".into()),
                }
            }
        }
    }

    /// Asks it to stop (it commands the motors off) and waits.
    pub fn stop(mut self) {
        match &mut self {
            Self::Process(c) => {
                let pid = nix::unistd::Pid::from_raw(c.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Dropping the thread's handle stops and joins it (below).
            Self::Thread { .. } => {}
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        match self {
            Self::Process(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Self::Thread { stop, handle } => {
                stop.store(true, Ordering::Relaxed);
                if let Some(h) = handle.take() {
                    let _ = h.join();
                }
            }
        }
    }
}
