//! The bridge in front of a firmware end: `offramp bridge` as its own
//! process, as deployed, or the same bridge on a thread.

use anyhow::Context;
use offramp_link::bridge::{serve_until, BridgeArgs};
use offramp_link::zenoh_link::ZenohOptions;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the bridge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BridgeMode {
    /// `offramp bridge` as its own process, as deployed.
    Process,
    /// The same bridge on a thread with its own zenoh session (for a
    /// cross-built binary under qemu-user, which cannot exec itself).
    Thread,
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
    /// Starts the bridge on serial `device`, connected to zenoh endpoint
    /// `connect`, for robot `robot`. [`BridgeMode::Process`] runs the
    /// running executable as `offramp bridge`: it is for the `offramp`
    /// binary.
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
