//! A host-side link to the firmware over any byte stream: a reader thread turns
//! bytes into messages, the caller writes frames. Used by the serial bridge,
//! the QEMU harness and the host build of the firmware logic alike.

use crate::{decode, encode, Accumulator, EncodeError, Feed, FrameError, MAX_FRAME};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// A message or a frame error, stamped with the host time its last byte
/// arrived.
#[derive(Debug, Clone, Copy)]
pub struct Received<M> {
    pub msg: Result<M, FrameError>,
    pub at: Instant,
}

/// Why receiving stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    /// The stream ended or failed (device unplugged, peer exited).
    Closed,
}

/// Sends `Tx` messages and receives `Rx` messages over one byte stream.
pub struct Link<Tx, Rx, W> {
    writer: W,
    rx: Receiver<Received<Rx>>,
    _tx: std::marker::PhantomData<fn(Tx)>,
}

impl<Tx: Serialize, Rx: DeserializeOwned + Send + 'static, W: Write> Link<Tx, Rx, W> {
    /// Starts the reader thread on `reader`; `writer` is the same stream's
    /// write half (e.g. a `try_clone`). Fails only if the thread cannot be
    /// spawned.
    pub fn new(mut reader: impl Read + Send + 'static, writer: W) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("offramp-link-rx".into())
            .spawn(move || {
                let mut acc: Accumulator<MAX_FRAME> = Accumulator::new();
                let mut buf = [0u8; 256];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    };
                    let at = Instant::now();
                    for &b in &buf[..n] {
                        let msg = match acc.feed(b) {
                            Feed::Pending => continue,
                            Feed::Frame(f) => decode::<Rx>(f),
                            Feed::Error(e) => Err(e),
                        };
                        if tx.send(Received { msg, at }).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            writer,
            rx,
            _tx: std::marker::PhantomData,
        })
    }

    /// Encodes and writes one message; returns when it was handed to the OS.
    pub fn send(&mut self, msg: &Tx) -> Result<Instant, SendError> {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(msg, &mut buf)?;
        self.send_raw(&buf[..n])
    }

    /// Writes raw bytes (tests of corrupt input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<Instant, SendError> {
        self.writer.write_all(bytes)?;
        self.writer.flush()?;
        Ok(Instant::now())
    }

    /// The next message or frame error.
    pub fn recv(&self, timeout: Duration) -> Result<Received<Rx>, RecvError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => RecvError::Timeout,
            RecvTimeoutError::Disconnected => RecvError::Closed,
        })
    }

    /// Receives until `pick` returns `Some` or `timeout` passes; other messages
    /// and frame errors are skipped.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(&Rx, Instant) -> Option<T>,
    ) -> Result<T, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            let r = self.recv(left)?;
            if let Ok(m) = r.msg.as_ref() {
                if let Some(t) = pick(m, r.at) {
                    return Ok(t);
                }
            }
        }
    }

    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }
}

/// Why a message could not be sent.
#[derive(Debug)]
pub enum SendError {
    Encode(EncodeError),
    Io(std::io::Error),
}

impl From<EncodeError> for SendError {
    fn from(e: EncodeError) -> Self {
        SendError::Encode(e)
    }
}

impl From<std::io::Error> for SendError {
    fn from(e: std::io::Error) -> Self {
        SendError::Io(e)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Encode(e) => write!(f, "{e}"),
            SendError::Io(e) => write!(f, "link write failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Timeout => write!(f, "timed out waiting for the firmware"),
            RecvError::Closed => write!(f, "firmware link closed"),
        }
    }
}

impl std::error::Error for RecvError {}

/// The firmware's clock as estimated on the host from one ping: commands carry
/// deadlines in the firmware's time base, which shares no epoch with the host.
#[derive(Debug, Clone, Copy)]
pub struct ClockSync {
    firmware_us: u64,
    host: Instant,
}

impl ClockSync {
    /// From a ping sent at `sent`, answered with the firmware clock `uptime_us`
    /// and received at `received`: the firmware read its clock about half way.
    pub fn from_ping(sent: Instant, uptime_us: u64, received: Instant) -> Self {
        let rtt = received.saturating_duration_since(sent);
        Self {
            firmware_us: uptime_us,
            host: sent + rtt / 2,
        }
    }

    /// Estimated firmware clock at host instant `at` (µs since its boot).
    /// Saturates: a pong whose uptime is near `u64::MAX` (a corrupt one)
    /// gives a clock at the end of time, not one that wrapped to boot, nor
    /// an overflow panic on the bridge's thread.
    pub fn firmware_us_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.host).as_micros();
        self.firmware_us
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// A command's `valid_until_us`: the firmware clock `valid_for` after
    /// host instant `at`. Saturates like [`ClockSync::firmware_us_at`]; the
    /// firmware refuses a deadline that far ahead, so the motors stay stopped.
    pub fn deadline_us(&self, at: Instant, valid_for: Duration) -> u64 {
        self.firmware_us_at(at)
            .saturating_add(u64::try_from(valid_for.as_micros()).unwrap_or(u64::MAX))
    }

    /// Estimated firmware clock now.
    pub fn now_us(&self) -> u64 {
        self.firmware_us_at(Instant::now())
    }
}

/// How often a host re-syncs the firmware clock while it drives. A
/// microcontroller's crystal drifts against the host's clock, and an emulated
/// one loses ticks when its host is busy (QEMU on a loaded machine lost
/// 300 ms in a second): deadlines in the firmware's time base stay right only
/// if the estimate is fresh. The firmware refuses a deadline more than
/// 500 ms ahead and commands are valid for [`crate::COMMAND_VALIDITY_MS`],
/// so an estimate at most this old can never be refused.
pub const RESYNC_EVERY: Duration = Duration::from_millis(200);

/// Why a clock sync failed.
#[derive(Debug)]
pub enum SyncError {
    Send(SendError),
    /// No pong for this nonce within the timeout.
    NoPong {
        nonce: u32,
        why: RecvError,
    },
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Send(e) => write!(f, "clock sync: {e}"),
            SyncError::NoPong { nonce, why } => {
                write!(
                    f,
                    "clock sync: no pong to ping {nonce} from the firmware: {why}"
                )
            }
        }
    }
}

impl std::error::Error for SyncError {}

impl<W: Write> Link<crate::HostMsg, crate::McuMsg, W> {
    /// Syncs the firmware clock on the ping with the shortest round trip out
    /// of `pings` (nonces from `first_nonce`): the shortest round trip has
    /// the least queueing in it, so its midpoint is the best estimate.
    /// Returns the estimate and every round trip.
    pub fn sync_clock(
        &mut self,
        first_nonce: u32,
        pings: u32,
        timeout: Duration,
    ) -> Result<(ClockSync, Vec<Duration>), SyncError> {
        let mut rtts = Vec::with_capacity(pings.max(1) as usize);
        let mut best: Option<(Duration, ClockSync)> = None;
        for k in 0..pings.max(1) {
            let nonce = first_nonce.wrapping_add(k);
            let sent = self
                .send(&crate::HostMsg::Ping { nonce })
                .map_err(SyncError::Send)?;
            let (uptime, at) = self
                .wait_for(timeout, |m, at| match m {
                    crate::McuMsg::Pong(p) if p.nonce == nonce => Some((p.uptime_us, at)),
                    _ => None,
                })
                .map_err(|why| SyncError::NoPong { nonce, why })?;
            let rtt = at.saturating_duration_since(sent);
            rtts.push(rtt);
            if best.is_none_or(|(b, _)| rtt < b) {
                best = Some((rtt, ClockSync::from_ping(sent, uptime, at)));
            }
        }
        best.map(|(_, c)| (c, rtts)).ok_or(SyncError::NoPong {
            nonce: first_nonce,
            why: RecvError::Timeout,
        })
    }
}

/// Periodic re-sync while a host drives the firmware, without blocking: at
/// most one ping in flight, a new one every [`RESYNC_EVERY`], and a ping
/// whose pong was lost (line noise) is given up after a second.
#[derive(Debug)]
pub struct Resync {
    ping: Option<(u32, Instant)>,
    next_nonce: u32,
    last: Instant,
}

impl Resync {
    /// Nonces from `first_nonce` on (keep them apart from other pings).
    pub fn new(first_nonce: u32) -> Self {
        Self {
            ping: None,
            next_nonce: first_nonce,
            last: Instant::now(),
        }
    }

    /// Sends a ping if one is due; call it from the host's loop.
    pub fn poll<W: Write>(
        &mut self,
        link: &mut Link<crate::HostMsg, crate::McuMsg, W>,
    ) -> Result<(), SendError> {
        let free = self
            .ping
            .is_none_or(|(_, at)| at.elapsed() > Duration::from_secs(1));
        if free && self.last.elapsed() >= RESYNC_EVERY {
            let nonce = self.next_nonce;
            self.next_nonce = self.next_nonce.wrapping_add(1);
            self.ping = Some((nonce, link.send(&crate::HostMsg::Ping { nonce })?));
            self.last = Instant::now();
        }
        Ok(())
    }

    /// A pong received at `at`: the new estimate and the round trip, if it
    /// answers the ping in flight.
    pub fn on_pong(&mut self, p: &crate::Pong, at: Instant) -> Option<(ClockSync, Duration)> {
        let (nonce, sent) = self.ping?;
        if p.nonce != nonce {
            return None;
        }
        self.ping = None;
        Some((
            ClockSync::from_ping(sent, p.uptime_us, at),
            at.saturating_duration_since(sent),
        ))
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    #[test]
    fn the_firmware_clock_estimate_follows_the_host_clock() {
        let sent = Instant::now();
        let c = ClockSync::from_ping(sent, 1_000, sent + Duration::from_micros(400));
        assert_eq!(c.firmware_us_at(sent + Duration::from_micros(200)), 1_000);
        assert_eq!(c.firmware_us_at(sent + Duration::from_micros(1_200)), 2_000);
        assert_eq!(
            c.deadline_us(
                sent + Duration::from_micros(1_200),
                Duration::from_millis(200)
            ),
            202_000
        );
    }

    /// A pong whose uptime is near u64::MAX must not wrap the estimate to a
    /// firmware clock near boot (or panic in a debug build).
    #[test]
    fn a_clock_near_its_end_saturates_instead_of_wrapping() {
        let sent = Instant::now();
        let c = ClockSync::from_ping(sent, u64::MAX - 10, sent);
        let later = sent + Duration::from_secs(1);
        assert_eq!(c.firmware_us_at(later), u64::MAX);
        assert_eq!(c.deadline_us(later, Duration::from_millis(200)), u64::MAX);
        assert_eq!(c.deadline_us(sent, Duration::MAX), u64::MAX);
    }
}
