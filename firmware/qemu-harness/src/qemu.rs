//! A running QEMU with the firmware, its UART and its decoded log.

use crate::Error;
use offramp_protocol::link::{ClockSync, Link, RecvError, SyncError};
use offramp_protocol::{Boot, Drive, HostMsg, McuMsg, Reject, Setpoint};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How guest time relates to host time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Guest time follows the host's wall clock: needed whenever the host must
    /// keep something alive (e.g. send commands faster than the timeout).
    RealTime,
    /// `-icount shift=3,sleep=off`: guest time advances with executed
    /// instructions and jumps ahead while the core sleeps. Timeouts then fire in
    /// milliseconds of wall time and are exact in guest ticks, but a host can
    /// no longer keep a timeout from firing.
    Instructions,
}

/// A message from the firmware, with the host time of arrival.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub msg: McuMsg,
    pub at: Instant,
}

/// The firmware's UART as seen from the host.
pub type UartLink = Link<HostMsg, McuMsg, UnixStream>;

/// The QEMU process (and its log decoder). Dropping it kills both.
pub struct Qemu {
    qemu: Child,
    decoder: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if let Some(d) = self.decoder.as_mut() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

impl Qemu {
    /// The decoded defmt log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// The firmware running in QEMU. Dropping it kills QEMU.
pub struct Firmware {
    link: UartLink,
    qemu: Qemu,
}

fn find_tool(program: &'static str, hint: &'static str) -> Result<PathBuf, Error> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(Error::ToolMissing { program, hint })
}

impl Firmware {
    /// Boots `elf` and connects to its UART. QEMU holds the CPU until the
    /// socket is connected, so the boot message is never missed.
    pub fn boot(elf: &Path, clock: Clock) -> Result<Self, Error> {
        let (qemu, uart) = boot_uart(elf, clock)?;
        let link = Link::new(uart.try_clone()?, uart)?;
        Ok(Self { link, qemu })
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &HostMsg) -> Result<Instant, Error> {
        Ok(self.link.send(msg)?)
    }

    /// Sends raw bytes (for corrupt-frame tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<Instant, Error> {
        Ok(self.link.send_raw(bytes)?)
    }

    /// The next message, or a timeout error naming the frame error if the
    /// firmware sent something the host could not decode.
    pub fn recv(&self, timeout: Duration) -> Result<Received, Error> {
        let r = self
            .link
            .recv(timeout)
            .map_err(|e| recv_error(e, "message", timeout))?;
        match r.msg {
            Ok(msg) => Ok(Received { msg, at: r.at }),
            Err(e) => Err(Error::Timeout {
                what: format!("valid frame (got a corrupt one: {e})"),
                waited: timeout,
            }),
        }
    }

    /// The link itself, e.g. to hand to code that drives any firmware.
    pub fn link_mut(&mut self) -> &mut UartLink {
        &mut self.link
    }

    /// Receives until `pick` returns `Some`, discarding other messages.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Received) -> Option<T>,
    ) -> Result<T, Error> {
        self.link
            .wait_for(timeout, |msg, at| pick(&Received { msg: *msg, at }))
            .map_err(|e| recv_error(e, what, timeout))
    }

    /// Waits for the boot announcement.
    pub fn boot_message(&self) -> Result<Boot, Error> {
        self.wait_for("boot message", Duration::from_secs(10), |r| match r.msg {
            McuMsg::Boot(b) => Some(b),
            _ => None,
        })
    }

    /// Pings once and returns the firmware clock estimate and the round
    /// trip (the one clock sync, [`Link::sync_clock`], with one ping).
    pub fn sync_clock(&mut self, nonce: u32) -> Result<(ClockSync, Duration), Error> {
        let timeout = Duration::from_secs(5);
        let (clock, rtts) = self
            .link
            .sync_clock(nonce, 1, timeout)
            .map_err(|e| match e {
                SyncError::Send(e) => Error::from(e),
                SyncError::NoPong { why, .. } => recv_error(why, "pong", timeout),
            })?;
        Ok((clock, rtts.first().copied().unwrap_or_default()))
    }

    /// Arms and sends one drive command valid for `validity_us` of firmware
    /// time, using sequence numbers from `seq` on, and waits until the
    /// firmware reports it accepted. Under [`Clock::Instructions`] guest time
    /// races ahead while the host works, so a command that arrived stale is
    /// retried (with a fresh clock sync) up to five times. Returns the drive's
    /// sequence number.
    pub fn arm_and_drive(
        &mut self,
        seq: u32,
        setpoint: Setpoint,
        validity_us: u64,
    ) -> Result<u32, Error> {
        let mut seq = seq;
        for attempt in 0..5 {
            let (clock, _) = self.sync_clock(0xA000 + attempt)?;
            self.send(&HostMsg::Arm { seq })?;
            let drive_seq = seq + 1;
            seq += 2;
            self.send(&HostMsg::Drive(Drive {
                seq: drive_seq,
                valid_until_us: clock
                    .deadline_us(Instant::now(), Duration::from_micros(validity_us)),
                setpoint,
                exit_index: 0,
            }))?;
            let outcome = self.wait_for(
                "drive accepted or rejected",
                Duration::from_secs(5),
                |r| match r.msg {
                    McuMsg::Rejected { reason, .. } => Some(Err(reason)),
                    McuMsg::Telemetry(t) if t.last_seq == Some(drive_seq) => Some(Ok(())),
                    _ => None,
                },
            )?;
            match outcome {
                Ok(()) => return Ok(drive_seq),
                Err(Reject::Stale) => continue,
                Err(reason) => return Err(Error::Rejected(reason)),
            }
        }
        Err(Error::Rejected(Reject::Stale))
    }

    /// Decoded defmt log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.qemu.log()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return Ok(l);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("log line containing {needle:?}"),
                    waited: timeout,
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Firmware {
    fn drop(&mut self) {
        let _ = self.link.writer_mut().shutdown(std::net::Shutdown::Both);
        // `qemu` is dropped next, which kills the process.
    }
}

/// Boots `elf` in QEMU and connects to its UART, returning the raw stream
/// (for a caller that relays it, e.g. onto a pty for the serial bridge).
/// QEMU holds the CPU until the socket is connected.
pub fn boot_uart(elf: &Path, clock: Clock) -> Result<(Qemu, UnixStream), Error> {
    if !elf.is_file() {
        return Err(Error::NoImage(elf.to_path_buf()));
    }
    let qemu_bin = find_tool("qemu-system-arm", "apt-get install qemu-system-arm")?;
    let defmt_print = find_tool("defmt-print", "cargo install defmt-print --locked")?;
    let dir = tempfile::Builder::new().prefix("offramp-qemu").tempdir()?;
    let sock = dir.path().join("uart0.sock");

    let mut cmd = Command::new(qemu_bin);
    cmd.args(["-machine", "lm3s6965evb", "-cpu", "cortex-m3", "-nographic"])
        .args(["-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-chardev")
        .arg(format!(
            "socket,id=uart0,path={},server=on,wait=on",
            sock.display()
        ))
        .args(["-serial", "chardev:uart0"]);
    if clock == Clock::Instructions {
        cmd.args(["-icount", "shift=3,align=off,sleep=off"]);
    }
    cmd.arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut qemu = cmd.spawn().map_err(|source| Error::Spawn {
        what: "qemu-system-arm",
        source,
    })?;

    // defmt frames arrive on QEMU's stdout (semihosting); decode them.
    let log = Arc::new(Mutex::new(Vec::new()));
    let decoder = match qemu.stdout.take() {
        Some(out) => {
            let mut dec = Command::new(defmt_print)
                .args(["-e"])
                .arg(elf)
                .stdin(Stdio::from(out))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| Error::Spawn {
                    what: "defmt-print",
                    source,
                })?;
            if let Some(lines) = dec.stdout.take() {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    for line in BufReader::new(lines).lines().map_while(Result::ok) {
                        tracing::debug!(target: "firmware", "{line}");
                        if let Ok(mut l) = log.lock() {
                            l.push(line);
                        }
                    }
                });
            }
            Some(dec)
        }
        None => None,
    };

    let waited = Duration::from_secs(10);
    let start = Instant::now();
    let uart = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < waited => {
                if let Ok(Some(status)) = qemu.try_wait() {
                    return Err(Error::Spawn {
                        what: "qemu-system-arm",
                        source: std::io::Error::other(format!("exited with {status}")),
                    });
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return Err(Error::NoSocket { path: sock, waited }),
        }
    };

    Ok((
        Qemu {
            qemu,
            decoder,
            log,
            _dir: dir,
        },
        uart,
    ))
}

fn recv_error(e: RecvError, what: &str, waited: Duration) -> Error {
    match e {
        RecvError::Timeout => Error::Timeout {
            what: what.to_string(),
            waited,
        },
        RecvError::Closed => Error::LinkClosed,
    }
}
