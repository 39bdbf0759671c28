//! `offramp bridge`: zenoh ↔ the motor controller's serial link.
//!
//! Actions arrive on `<robot>/action` and leave for the firmware from the
//! subscriber callback itself (one frame write, no queue in between): a
//! stale action is dropped, a fresh one becomes a `Drive` whose deadline, in
//! the firmware's clock, is what is left of the action's validity. The main
//! thread owns the serial link: it syncs the firmware clock, arms, publishes
//! every telemetry report on `<robot>/telemetry` with the bridge's counters,
//! and when the device goes away it keeps retrying with backoff until it
//! comes back (a USB adapter re-plugged, a udev symlink re-pointed).
//!
//! An operator's stop (`<robot>/operator`, `offramp operator stop`) latches
//! here and in the firmware: drives are dropped until `offramp operator
//! release`, and the latch is put back wherever it is found missing (a
//! firmware reboot, a lost frame, a restarted bridge learns it from the
//! firmware). The runtime's own stops (a lost camera, NaN) do not latch.
//!
//! The firmware never needs the bridge to be well behaved: if the bridge
//! dies, commands stop and the firmware's own timeout stops the motors.

use crate::firmware::FirmwareLink;
use crate::zenoh_link::{
    self, ActionMsg, BridgeCounters, Keys, OperatorCommand, OperatorMsg, TelemetryMsg,
    ZenohOptions, MESSAGE_VERSION,
};
use anyhow::Context;
use nix::sys::termios::{self, BaudRate, SetArg};
use offramp_protocol::link::{ClockSync, Link, RecvError, Resync};
use offramp_protocol::{encode, Drive, HostMsg, McuMsg, MotorState, Setpoint, MAX_FRAME};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use zenoh::Wait;

/// How far ahead of the bridge's clock a timestamp from the network may be:
/// the runtime's and the bridge's clocks differ by at most this (the same
/// clock on one machine; PTP or NTP between two). A stamp further ahead is
/// a broken clock or a forgery: as newest it would hold every honest drive
/// off as stale until the bridge's clock caught up.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_millis(50);

/// The longest validity an action may claim: the firmware refuses
/// deadlines further ahead anyway.
pub const MAX_VALIDITY: Duration = Duration::from_millis(500);

pub struct BridgeArgs {
    pub serial: PathBuf,
    pub baud: u32,
    pub robot: String,
    pub zenoh: ZenohOptions,
}

/// A forwarded action, kept until the firmware reports applying it.
struct InFlight {
    fw_seq: u32,
    action_seq: u64,
    /// Action publication → written to the serial port, µs.
    hop_us: i64,
}

#[derive(Default)]
struct State {
    writer: Option<File>,
    clock: Option<ClockSync>,
    one_way_us: u64,
    in_flight: VecDeque<InFlight>,
    counters: BridgeCounters,
    /// The firmware was disarmed by a stop action: arm before the next drive.
    disarmed: bool,
    /// Publication time of the newest action forwarded (drive or stop): an
    /// older drive arriving late (reordered or duplicated on the network, or
    /// from a second publisher) must not override it, least of all restart
    /// motors a newer stop stopped.
    newest_sent_ns: u64,
    /// When the last release was sent: a report from before it may still
    /// show the firmware latched, and must not latch the bridge again.
    released_at: Option<Instant>,
    /// Publication time of the newest operator message: a release must be
    /// newer, so a recorded one cannot be replayed to lift a later stop.
    newest_operator_ns: u64,
}

struct Shared {
    state: Mutex<State>,
    next_seq: AtomicU32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave State inconsistent in a way that
        // matters more than stopping: keep going with what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes through the shared serial handle (the link's write half).
struct SharedWriter(Arc<Shared>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock().writer.as_mut() {
            Some(w) => w.write(buf),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock().writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

fn baud(b: u32) -> anyhow::Result<BaudRate> {
    Ok(match b {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115200 => BaudRate::B115200,
        230400 => BaudRate::B230400,
        460800 => BaudRate::B460800,
        921600 => BaudRate::B921600,
        1000000 => BaudRate::B1000000,
        2000000 => BaudRate::B2000000,
        3000000 => BaudRate::B3000000,
        other => anyhow::bail!(
            "--baud {other}: not a standard rate (9600 … 921600, 1000000, 2000000, 3000000)"
        ),
    })
}

/// Opens a UART (or pty) raw at `rate`.
fn open_serial(path: &Path, rate: BaudRate) -> anyhow::Result<File> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening serial device {}", path.display()))?;
    let mut t = termios::tcgetattr(&f)
        .with_context(|| format!("{}: not a serial device", path.display()))?;
    termios::cfmakeraw(&mut t);
    termios::cfsetspeed(&mut t, rate)?;
    termios::tcsetattr(&f, SetArg::TCSANOW, &t)?;
    Ok(f)
}

/// `offramp bridge`: runs until SIGINT/SIGTERM.
pub fn run(a: &BridgeArgs) -> anyhow::Result<()> {
    serve_until(a, crate::signal::stop_flag()?)
}

/// The bridge until `stop` is set (a thread of `offramp demo --bridge thread`,
/// for machines that cannot start a second process of this binary, such as
/// a cross-built binary under qemu-user).
pub fn serve_until(a: &BridgeArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    let rate = baud(a.baud)?;
    let keys = Keys::new(&a.robot)?;
    let session = zenoh_link::open_session(&a.zenoh)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        next_seq: AtomicU32::new(1),
    });
    let telemetry = session
        .declare_publisher(keys.telemetry.clone())
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring {}: {e}", keys.telemetry))?;
    let _token = session
        .liveliness()
        .declare_token(keys.alive_bridge.clone())
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring {}: {e}", keys.alive_bridge))?;
    let cb = shared.clone();
    let _actions = session
        .declare_subscriber(keys.action.clone())
        .callback(move |s| on_action(&cb, &s.payload().to_bytes()))
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring {}: {e}", keys.action))?;
    let cb = shared.clone();
    let _operator = session
        .declare_subscriber(keys.operator.clone())
        .callback(move |s| on_operator(&cb, &s.payload().to_bytes()))
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring {}: {e}", keys.operator))?;
    tracing::info!(serial = %a.serial.display(), robot = a.robot, "bridge up");

    let mut backoff = Duration::from_millis(50);
    let mut reported_down = false;
    while !stop.load(Ordering::Relaxed) {
        let file = match open_serial(&a.serial, rate) {
            Ok(f) => f,
            Err(e) => {
                if !reported_down {
                    tracing::warn!("{e:#}; retrying");
                    reported_down = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        match serve(&shared, file, &telemetry, stop) {
            Ok(()) => tracing::info!("serial link closed"),
            Err(e) => tracing::warn!("serial link: {e:#}"),
        }
        {
            let mut s = shared.lock();
            s.writer = None;
            s.clock = None;
            s.counters.link_up = false;
        }
        reported_down = false;
        backoff = Duration::from_millis(50);
        std::thread::sleep(backoff);
    }
    tracing::info!("bridge stopped");
    Ok(())
}

/// One serial connection, until it closes or goes silent.
fn serve(
    shared: &Arc<Shared>,
    file: File,
    telemetry: &zenoh::pubsub::Publisher<'_>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let reader = file.try_clone()?;
    shared.lock().writer = Some(file);
    let mut link: FirmwareLink<SharedWriter> = Link::new(reader, SharedWriter(shared.clone()))?;
    // The firmware may have run all along (a restarted bridge): its
    // telemetry says which sequence number comes next, and whether it holds
    // an operator's stop (this bridge restarted since). A Boot says it is new.
    let (next, latched) = link
        .wait_for(Duration::from_secs(2), |m, _| match m {
            McuMsg::Telemetry(t) => Some((
                t.last_seq.map_or(1, |s| s.saturating_add(1)),
                t.state == MotorState::Latched,
            )),
            McuMsg::Boot(_) => Some((1, false)),
            _ => None,
        })
        .map_err(|e| anyhow::anyhow!("no telemetry or boot message from the firmware: {e:?}"))?;
    shared.next_seq.fetch_max(next, Ordering::Relaxed);
    if latched {
        tracing::warn!(
            "the firmware holds an operator's stop: drives wait for `offramp operator release`"
        );
        shared.lock().counters.latched = true;
    }
    let (clock, rtt) = sync_clock(&mut link, 8)?;
    // Arm before actions may flow (a set clock is what lets the callback
    // forward): a Drive ahead of the Arm would be refused as not armed, and
    // an Arm behind a Drive as a replay.
    arm(shared, &mut link)?;
    {
        let mut s = shared.lock();
        s.clock = Some(clock);
        s.one_way_us = rtt / 2;
        s.disarmed = false;
        s.counters.link_up = true;
        s.counters.connects = s.counters.connects.saturating_add(1);
    }
    tracing::info!(rtt_us = rtt, next_seq = next, "firmware link up, armed");
    let mut resync = Resync::new(1000);
    let mut last_heard = Instant::now();
    let mut reported: Option<u32> = None;
    let mut buf = [0u8; TelemetryMsg::MAX_LEN];
    // The firmware's clock in its last report, and when it was last armed
    // from here because a report showed it disarmed.
    let mut last_uptime: Option<u64> = None;
    let mut last_rearm = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        resync.poll(&mut link)?;
        let r = match link.recv(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(RecvError::Timeout) => {
                // Telemetry comes every 50 ms: a second of silence is a dead
                // link even if the device node is still there.
                anyhow::ensure!(
                    last_heard.elapsed() < Duration::from_secs(1),
                    "firmware silent for 1 s"
                );
                continue;
            }
            Err(RecvError::Closed) => return Ok(()),
        };
        last_heard = r.at;
        match r.msg {
            Ok(McuMsg::Telemetry(t)) => {
                // A Boot lost on the wire (line noise, a reset while the
                // cable was out) must not stall the robot: the firmware's
                // clock running backwards says it rebooted, and a firmware
                // disarmed by no stop of ours says it needs arming.
                if last_uptime.is_some_and(|u| t.uptime_us < u) {
                    tracing::warn!(
                        uptime_us = t.uptime_us,
                        "the firmware's clock went back (a reboot whose Boot was lost): re-syncing and re-arming"
                    );
                    let next = t.last_seq.map_or(1, |q| q.saturating_add(1));
                    rearm_after_reboot(shared, &mut link, next)?;
                    last_uptime = None;
                    continue;
                }
                last_uptime = Some(t.uptime_us);
                let (latched, released_at, disarmed) = {
                    let s = shared.lock();
                    (s.counters.latched, s.released_at, s.disarmed)
                };
                let fw_latched = t.state == MotorState::Latched;
                if latched && !fw_latched && last_rearm.elapsed() >= REARM_EVERY {
                    // The Latch frame was lost, or the firmware rebooted
                    // with its Boot lost: the operator's stop still holds.
                    tracing::warn!(
                        "an operator's stop holds but the firmware is not latched: latching it"
                    );
                    arm(shared, &mut link)?;
                    last_rearm = Instant::now();
                } else if !latched
                    && fw_latched
                    && released_at.is_none_or(|r| r.elapsed() >= REARM_EVERY)
                {
                    // Latched by someone else, or the release was lost on the
                    // wire: fail safe, and say so (`offramp operator release`
                    // again lifts it).
                    tracing::warn!("the firmware holds an operator's stop: drives wait for `offramp operator release`");
                    shared.lock().counters.latched = true;
                }
                let unexpectedly_disarmed =
                    t.state == MotorState::Disarmed && !disarmed && !latched;
                if unexpectedly_disarmed && last_rearm.elapsed() >= REARM_EVERY {
                    tracing::warn!("the firmware is disarmed without a stop from here: re-arming");
                    arm(shared, &mut link)?;
                    last_rearm = Instant::now();
                    let mut s = shared.lock();
                    s.counters.rearms = s.counters.rearms.saturating_add(1);
                }
                let mut s = shared.lock();
                let mut msg = TelemetryMsg {
                    version: MESSAGE_VERSION,
                    firmware: t,
                    action_seq: None,
                    sent_to_applied_us: None,
                    bridge: s.counters,
                };
                if let Some(fw) = t.last_seq.filter(|&q| Some(q) != reported) {
                    reported = Some(fw);
                    if let Some(k) = s.in_flight.iter().position(|f| f.fw_seq == fw) {
                        let f = &s.in_flight[k];
                        msg.action_seq = Some(f.action_seq);
                        let us =
                            f.hop_us.max(0) as u64 + s.one_way_us + t.last_apply_latency_us as u64;
                        msg.sent_to_applied_us = Some(us.min(u32::MAX as u64) as u32);
                        s.in_flight.drain(..=k);
                    }
                }
                drop(s);
                if let Err(e) = telemetry.put(msg.encode(&mut buf).to_vec()).wait() {
                    tracing::warn!("publishing telemetry: {e}");
                }
            }
            Ok(McuMsg::Pong(p)) => {
                if let Some((clock, _)) = resync.on_pong(&p, r.at) {
                    shared.lock().clock = Some(clock);
                }
            }
            Ok(McuMsg::Boot(b)) => {
                tracing::warn!(cause = ?b.reset_cause, "firmware rebooted: re-syncing and re-arming");
                rearm_after_reboot(shared, &mut link, 1)?;
                last_uptime = None;
            }
            Ok(McuMsg::Rejected { reason, seq }) => {
                tracing::warn!(?reason, ?seq, "firmware rejected a command");
            }
            Err(e) => {
                tracing::debug!(?e, "corrupt frame from the firmware");
                let mut s = shared.lock();
                s.counters.frame_errors = s.counters.frame_errors.saturating_add(1);
            }
        }
    }
    // Asked to stop: command the motors off now rather than leaving it to
    // the firmware's timeout.
    link.send(&HostMsg::Stop)?;
    Ok(())
}

/// A firmware seen disarmed with no stop of ours is armed again at most
/// this often (its report may predate an Arm in flight).
const REARM_EVERY: Duration = Duration::from_millis(200);

/// After a reboot: actions held until the new boot's clock is synced and it
/// is armed, its sequence numbers from `next_seq`.
fn rearm_after_reboot(
    shared: &Shared,
    link: &mut FirmwareLink<SharedWriter>,
    next_seq: u32,
) -> anyhow::Result<()> {
    shared.lock().clock = None;
    shared.next_seq.store(next_seq, Ordering::Relaxed);
    let (clock, rtt) = sync_clock(link, 4)?;
    arm(shared, link)?;
    let mut s = shared.lock();
    s.clock = Some(clock);
    s.one_way_us = rtt / 2;
    s.disarmed = false;
    s.in_flight.clear();
    s.counters.reboots = s.counters.reboots.saturating_add(1);
    Ok(())
}

/// Arms the firmware, or latches it while an operator's stop holds.
fn arm(shared: &Shared, link: &mut FirmwareLink<SharedWriter>) -> anyhow::Result<()> {
    if shared.lock().counters.latched {
        link.send(&HostMsg::Latch)?;
        return Ok(());
    }
    let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
    link.send(&HostMsg::Arm { seq })?;
    Ok(())
}

/// The operator subscriber's callback: a stop latches at once, whatever its
/// age; a release is taken only fresh, newer than the last operator message,
/// and with the firmware reachable to hear it.
fn on_operator(shared: &Shared, bytes: &[u8]) {
    let now_ns = zenoh_link::unix_ns(SystemTime::now());
    let mut s = shared.lock();
    let refuse = |s: &mut State, why: &str| {
        tracing::warn!("operator message refused: {why}");
        s.counters.operator_refused = s.counters.operator_refused.saturating_add(1);
    };
    let m = match OperatorMsg::decode(bytes) {
        Ok(m) => m,
        Err(e) => return refuse(&mut s, &e.to_string()),
    };
    let horizon = now_ns.saturating_add(MAX_CLOCK_SKEW.as_nanos() as u64);
    s.newest_operator_ns = s.newest_operator_ns.min(horizon);
    match m.command {
        OperatorCommand::Stop => {
            s.counters.latched = true;
            s.newest_operator_ns = s.newest_operator_ns.max(m.sent_unix_ns.min(horizon));
            s.counters.operator_stops = s.counters.operator_stops.saturating_add(1);
            // With the link down the latch waits in `latched`: link-up
            // latches the firmware instead of arming it.
            write_frame(&mut s, &HostMsg::Latch);
            tracing::warn!("operator stop: the motors stay off until `offramp operator release`");
        }
        OperatorCommand::Release => {
            let age_ns = now_ns as i128 - m.sent_unix_ns as i128;
            if age_ns > MAX_VALIDITY.as_nanos() as i128 || m.sent_unix_ns > horizon {
                return refuse(
                    &mut s,
                    "a release that is not fresh (replayed, or clocks apart)",
                );
            }
            if m.sent_unix_ns <= s.newest_operator_ns {
                return refuse(&mut s, "a release older than the last operator message");
            }
            s.newest_operator_ns = m.sent_unix_ns;
            if !s.counters.latched {
                return;
            }
            if s.writer.is_none() || s.clock.is_none() {
                return refuse(
                    &mut s,
                    "no link to the firmware (it keeps its stop); release again when it is back",
                );
            }
            let release = HostMsg::Release {
                seq: shared.next_seq.fetch_add(1, Ordering::Relaxed),
            };
            if write_frame(&mut s, &release) {
                s.counters.latched = false;
                s.released_at = Some(Instant::now());
                // Out of the latch the firmware is disarmed: the next
                // drive arms it first.
                s.disarmed = true;
                s.counters.releases = s.counters.releases.saturating_add(1);
                tracing::info!("operator release: the runtime's drives move the motors again");
            }
        }
    }
}

/// Best of `n` pings: (clock, shortest round trip µs).
fn sync_clock(link: &mut FirmwareLink<SharedWriter>, n: u32) -> anyhow::Result<(ClockSync, u64)> {
    let (clock, rtts) = link.sync_clock(0, n, Duration::from_millis(500))?;
    let best = rtts.iter().min().copied().unwrap_or_default();
    Ok((clock, best.as_micros() as u64))
}

/// The subscriber callback: one action in, at most one frame out.
fn on_action(shared: &Shared, bytes: &[u8]) {
    let now = SystemTime::now();
    let mut s = shared.lock();
    let m = match ActionMsg::decode(bytes) {
        Ok(m) => m,
        Err(e) => {
            if s.counters.malformed == 0 {
                tracing::warn!("{e} (dropping malformed actions)");
            }
            s.counters.malformed = s.counters.malformed.saturating_add(1);
            return;
        }
    };
    let now_ns = zenoh_link::unix_ns(now);
    let horizon = now_ns.saturating_add(MAX_CLOCK_SKEW.as_nanos() as u64);
    // What was newest cannot be later than now plus the skew: after this
    // machine's clock steps back, drives are held off for at most the
    // skew, not for the length of the step.
    s.newest_sent_ns = s.newest_sent_ns.min(horizon);
    if m.stop {
        // A stop is forwarded at once, whatever its age or the clock sync:
        // stopping is always safe, and a zero-speed drive would only slew
        // the motors down. Its stamp counts no further than the horizon.
        forward_stop(&mut s);
        s.newest_sent_ns = s.newest_sent_ns.max(m.sent_unix_ns.min(horizon));
        return;
    }
    if s.counters.latched {
        s.counters.latched_drops = s.counters.latched_drops.saturating_add(1);
        return;
    }
    // Age in µs, negative for a stamp ahead of this clock.
    let age = (now_ns as i128 - m.sent_unix_ns as i128) / 1000;
    let validity = (m.valid_for_us as i128).min(MAX_VALIDITY.as_micros() as i128);
    if age > validity || m.sent_unix_ns > horizon || m.sent_unix_ns < s.newest_sent_ns {
        s.counters.stale = s.counters.stale.saturating_add(1);
        return;
    }
    let (age, validity) = (age as i64, validity as i64);
    let Some(clock) = s.clock else {
        s.counters.no_link = s.counters.no_link.saturating_add(1);
        return;
    };
    if s.disarmed {
        // Out of a stop: the firmware refuses drives until armed again.
        let arm = HostMsg::Arm {
            seq: shared.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        if !write_frame(&mut s, &arm) {
            return;
        }
        s.disarmed = false;
    }
    let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
    let drive = HostMsg::Drive(Drive {
        seq,
        valid_until_us: clock.deadline_us(
            Instant::now(),
            Duration::from_micros((validity - age.max(0)) as u64),
        ),
        setpoint: Setpoint::Twist {
            v: m.v,
            omega: m.omega,
        },
        exit_index: m.exit,
    });
    if !write_frame(&mut s, &drive) {
        return;
    }
    let hop_us =
        (zenoh_link::unix_ns(SystemTime::now()) / 1000) as i64 - (m.sent_unix_ns / 1000) as i64;
    s.in_flight.push_back(InFlight {
        fw_seq: seq,
        action_seq: m.seq,
        hop_us,
    });
    if s.in_flight.len() > 64 {
        s.in_flight.pop_front();
    }
    s.newest_sent_ns = m.sent_unix_ns;
    s.counters.forwarded = s.counters.forwarded.saturating_add(1);
}

/// Sends `Stop` to the firmware now and remembers that it is disarmed.
fn forward_stop(s: &mut State) {
    if write_frame(s, &HostMsg::Stop) {
        s.disarmed = true;
        s.counters.stops = s.counters.stops.saturating_add(1);
    }
}

/// Encodes and writes one frame to the firmware; a failure is counted.
fn write_frame(s: &mut State, msg: &HostMsg) -> bool {
    let mut buf = [0u8; MAX_FRAME];
    let Ok(n) = encode(msg, &mut buf) else {
        s.counters.malformed = s.counters.malformed.saturating_add(1);
        return false;
    };
    let Some(w) = s.writer.as_mut() else {
        s.counters.no_link = s.counters.no_link.saturating_add(1);
        return false;
    };
    if w.write_all(&buf[..n]).is_err() {
        s.counters.no_link = s.counters.no_link.saturating_add(1);
        return false;
    }
    true
}

/// The bridge's handling of what arrives over the network, without a
/// serial port or a session: for the fuzzer (`runtime/fuzz`, target
/// `bridge`), behind the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    /// Feeds `inputs` to a bridge whose firmware link is up (frames go to
    /// `scratch`, truncated first), each as it would arrive: a kind byte
    /// (bit 0: an operator message, else an action; bit 1: re-stamped
    /// within a second of now, so the timing checks see plausible times)
    /// then the message. Panics on a broken invariant: every action is
    /// counted exactly once; every frame written decodes; a drive's
    /// command is finite; no arm or drive is written between an operator's
    /// latch and a release; drives written equal drives counted.
    pub fn feed(scratch: &mut File, inputs: &[&[u8]]) {
        scratch.set_len(0).expect("scratch file");
        scratch.seek(SeekFrom::Start(0)).expect("scratch file");
        let now = Instant::now();
        let shared = Shared {
            state: Mutex::new(State {
                writer: Some(scratch.try_clone().expect("scratch file")),
                clock: Some(ClockSync::from_ping(now, 1_000, now)),
                ..State::default()
            }),
            next_seq: AtomicU32::new(1),
        };
        let counted = |s: &State| {
            let c = &s.counters;
            [
                c.malformed,
                c.stops,
                c.latched_drops,
                c.stale,
                c.no_link,
                c.forwarded,
            ]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
        };
        for input in inputs {
            let Some((&kind, msg)) = input.split_first() else {
                continue;
            };
            let now = zenoh_link::unix_ns(SystemTime::now());
            let near = |t: u64| {
                now.saturating_sub(1_000_000_000)
                    .saturating_add(t % 2_000_000_000)
            };
            let (mut abuf, mut obuf) = ([0u8; ActionMsg::MAX_LEN], [0u8; OperatorMsg::MAX_LEN]);
            let msg = match (kind & 2 == 2, kind & 1 == 1) {
                (true, true) => match OperatorMsg::decode(msg) {
                    Ok(mut m) => {
                        m.sent_unix_ns = near(m.sent_unix_ns);
                        m.encode(&mut obuf)
                    }
                    Err(_) => msg,
                },
                (true, false) => match ActionMsg::decode(msg) {
                    Ok(mut m) => {
                        m.sent_unix_ns = near(m.sent_unix_ns);
                        m.encode(&mut abuf)
                    }
                    Err(_) => msg,
                },
                _ => msg,
            };
            if kind & 1 == 1 {
                on_operator(&shared, msg);
            } else {
                let before = counted(&shared.lock());
                on_action(&shared, msg);
                let after = counted(&shared.lock());
                assert_eq!(
                    after,
                    before + 1,
                    "an action counted {} times",
                    after - before
                );
            }
        }
        let mut s = shared.lock();
        let mut bytes = Vec::new();
        let f = s.writer.as_mut().expect("the writer stays");
        f.seek(SeekFrom::Start(0)).expect("scratch file");
        f.read_to_end(&mut bytes).expect("scratch file");
        let mut acc = offramp_protocol::Accumulator::<MAX_FRAME>::new();
        let (mut latched, mut drives) = (false, 0u64);
        for b in bytes {
            if let offramp_protocol::Feed::Frame(frame) = acc.feed(b) {
                match offramp_protocol::decode::<HostMsg>(frame).expect("a frame written decodes") {
                    HostMsg::Latch => latched = true,
                    HostMsg::Release { .. } => latched = false,
                    HostMsg::Arm { .. } => assert!(!latched, "armed while latched"),
                    HostMsg::Drive(d) => {
                        assert!(!latched, "a drive written while latched");
                        let Setpoint::Twist { v, omega } = d.setpoint else {
                            panic!("the bridge writes twists: {d:?}");
                        };
                        assert!(v.is_finite() && omega.is_finite(), "{d:?}");
                        drives += 1;
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(drives, s.counters.forwarded, "drives written vs counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(sent_unix_ns: u64, stop: bool) -> Vec<u8> {
        action_valid_for(sent_unix_ns, stop, 200_000)
    }

    fn action_valid_for(sent_unix_ns: u64, stop: bool, valid_for_us: u32) -> Vec<u8> {
        let m = ActionMsg {
            version: zenoh_link::MESSAGE_VERSION,
            seq: 1,
            sent_unix_ns,
            valid_for_us,
            v: if stop { 0.0 } else { 0.3 },
            omega: 0.0,
            exit: 0,
            stop,
        };
        let mut buf = [0u8; ActionMsg::MAX_LEN];
        m.encode(&mut buf).to_vec()
    }

    fn linked() -> Shared {
        let now = Instant::now();
        Shared {
            state: Mutex::new(State {
                writer: Some(tempfile::tempfile().unwrap()),
                clock: Some(ClockSync::from_ping(now, 1_000, now)),
                ..State::default()
            }),
            next_seq: AtomicU32::new(1),
        }
    }

    fn now_ns() -> u64 {
        zenoh_link::unix_ns(SystemTime::now())
    }

    /// A stop stamped at the end of time used to become the newest action
    /// for good, and every later drive was dropped as stale until the
    /// bridge restarted: one message froze the robot. A stamp counts no
    /// further than now plus the clock skew.
    #[test]
    fn a_stamp_from_the_future_does_not_lock_the_runtime_out() {
        let shared = linked();
        on_action(&shared, &action(u64::MAX, true));
        assert_eq!(
            shared.lock().counters.stops,
            1,
            "a stop is always forwarded"
        );
        std::thread::sleep(MAX_CLOCK_SKEW + Duration::from_millis(10));
        on_action(&shared, &action(now_ns(), false));
        assert_eq!(
            shared.lock().counters.forwarded,
            1,
            "the runtime drives again"
        );
        // A drive from 0.4 s ahead claiming 0.5 s of validity (within what
        // the old check allowed) is refused, and holds nothing off.
        on_action(
            &shared,
            &action_valid_for(now_ns() + 400_000_000, false, 500_000),
        );
        assert_eq!(shared.lock().counters.forwarded, 1);
        assert_eq!(shared.lock().counters.stale, 1);
        on_action(&shared, &action(now_ns(), false));
        assert_eq!(shared.lock().counters.forwarded, 2);
    }

    /// After this machine's clock steps back, what was newest lies ahead:
    /// drives are held off for at most the skew, not the step.
    #[test]
    fn a_clock_stepped_back_holds_drives_off_for_at_most_the_skew() {
        let shared = linked();
        shared.lock().newest_sent_ns = now_ns() + 10_000_000_000;
        std::thread::sleep(MAX_CLOCK_SKEW + Duration::from_millis(10));
        on_action(&shared, &action(now_ns(), false));
        std::thread::sleep(MAX_CLOCK_SKEW + Duration::from_millis(10));
        on_action(&shared, &action(now_ns(), false));
        let c = shared.lock().counters;
        assert_eq!((c.stale, c.forwarded), (1, 1), "{c:?}");
    }

    /// A drive published before the newest forwarded action, arriving after
    /// it, is dropped as stale: in particular it does not re-arm the motors
    /// a newer stop stopped (it used to be forwarded, re-arming first).
    #[test]
    fn an_older_drive_arriving_late_does_not_override_a_newer_action() {
        let file = tempfile::tempfile().unwrap();
        let now = Instant::now();
        let shared = Shared {
            state: Mutex::new(State {
                writer: Some(file),
                clock: Some(ClockSync::from_ping(now, 1_000, now)),
                ..State::default()
            }),
            next_seq: AtomicU32::new(1),
        };
        let t = zenoh_link::unix_ns(SystemTime::now());
        on_action(&shared, &action(t, false));
        assert_eq!(shared.lock().counters.forwarded, 1);
        // Published 10 ms before the drive just forwarded.
        on_action(&shared, &action(t - 10_000_000, false));
        assert_eq!(shared.lock().counters.forwarded, 1);
        assert_eq!(shared.lock().counters.stale, 1);
        // A stop, then a drive published between the two: dropped, the
        // firmware stays stopped.
        on_action(&shared, &action(t + 2_000_000, true));
        on_action(&shared, &action(t + 1_000_000, false));
        let s = shared.lock();
        assert_eq!((s.counters.stops, s.counters.forwarded), (1, 1));
        assert_eq!(s.counters.stale, 2);
        assert!(s.disarmed, "the stop must stand");
        drop(s);
        // A newer drive is forwarded (re-arming first).
        on_action(&shared, &action(t + 3_000_000, false));
        assert_eq!(shared.lock().counters.forwarded, 2);
        assert!(!shared.lock().disarmed);
    }

    fn operator(command: OperatorCommand, sent_unix_ns: u64) -> Vec<u8> {
        let m = OperatorMsg {
            version: zenoh_link::MESSAGE_VERSION,
            command,
            sent_unix_ns,
        };
        let mut buf = [0u8; OperatorMsg::MAX_LEN];
        m.encode(&mut buf).to_vec()
    }

    /// The frames the bridge wrote to the firmware, decoded.
    fn written(shared: &Shared) -> Vec<HostMsg> {
        use std::io::{Read, Seek};
        let mut s = shared.lock();
        let f = s.writer.as_mut().unwrap();
        let mut bytes = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        let mut acc = offramp_protocol::Accumulator::<MAX_FRAME>::new();
        let mut out = Vec::new();
        for b in bytes {
            if let offramp_protocol::Feed::Frame(frame) = acc.feed(b) {
                out.push(offramp_protocol::decode::<HostMsg>(frame).unwrap());
            }
        }
        out
    }

    /// An operator's stop holds against the runtime's drives, however new,
    /// until a release; a stale or replayed release lifts nothing; after a
    /// release the next drive arms the firmware first. (Before, a stop
    /// lasted until the runtime's next frame: the bridge re-armed at once.)
    #[test]
    fn an_operators_stop_holds_until_a_fresh_release() {
        let shared = linked();
        on_action(&shared, &action(now_ns(), false));
        let stop_at = now_ns();
        on_operator(&shared, &operator(OperatorCommand::Stop, stop_at));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(2));
            on_action(&shared, &action(now_ns(), false));
        }
        let c = shared.lock().counters;
        assert_eq!((c.forwarded, c.latched_drops, c.latched), (1, 3, true));
        // A release recorded before the stop, and one from long ago, are
        // refused; so is one from the future.
        on_operator(&shared, &operator(OperatorCommand::Release, stop_at - 1));
        on_operator(
            &shared,
            &operator(OperatorCommand::Release, stop_at - 10_000_000_000),
        );
        on_operator(
            &shared,
            &operator(OperatorCommand::Release, now_ns() + 1_000_000_000),
        );
        on_action(&shared, &action(now_ns(), false));
        let c = shared.lock().counters;
        assert_eq!((c.operator_refused, c.releases, c.forwarded), (3, 0, 1));
        // The runtime's own stop does not lift it either.
        on_action(&shared, &action(now_ns(), true));
        on_action(&shared, &action(now_ns(), false));
        assert_eq!(shared.lock().counters.forwarded, 1);
        on_operator(&shared, &operator(OperatorCommand::Release, now_ns()));
        on_action(&shared, &action(now_ns(), false));
        let c = shared.lock().counters;
        assert_eq!((c.releases, c.forwarded, c.latched), (1, 2, false));
        let frames = written(&shared);
        let kinds: Vec<&str> = frames
            .iter()
            .map(|m| match m {
                HostMsg::Drive(_) => "drive",
                HostMsg::Latch => "latch",
                HostMsg::Release { .. } => "release",
                HostMsg::Arm { .. } => "arm",
                HostMsg::Stop => "stop",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["drive", "latch", "stop", "release", "arm", "drive"],
            "{frames:?}"
        );
    }

    /// A stop from an operator latches even with the serial link down; the
    /// bridge then refuses a release it cannot pass on (the firmware would
    /// keep its stop while the bridge thought it lifted).
    #[test]
    fn a_release_needs_the_firmware_to_hear_it() {
        let shared = linked();
        on_operator(&shared, &operator(OperatorCommand::Stop, now_ns()));
        shared.lock().writer = None;
        std::thread::sleep(Duration::from_millis(2));
        on_operator(&shared, &operator(OperatorCommand::Release, now_ns()));
        let c = shared.lock().counters;
        assert_eq!((c.latched, c.releases, c.operator_refused), (true, 0, 1));
    }
}
