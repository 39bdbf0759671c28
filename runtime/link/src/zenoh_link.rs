//! Actions out and telemetry in over zenoh.
//!
//! Key space, for a robot named `R`:
//! * `R/action`: [`ActionMsg`], the runtime's command each frame. Published
//!   with priority RealTime, congestion control Drop (a late action is worth
//!   less than the next one) and express (no batching).
//! * `R/telemetry`: [`TelemetryMsg`], the firmware's report through the bridge.
//! * `R/alive/runtime`, `R/alive/bridge`: liveliness tokens.
//! * `cmd_vel` (optional): the same command as a ROS 2
//!   `geometry_msgs/Twist` in CDR, where zenoh-bridge-ros2dds maps the
//!   `cmd_vel` topic, so a ROS 2 robot can follow the runtime.
//!
//! Sessions are opened by [`crate::session`] (re-exported here): loopback
//! unless configured, plaintext beyond loopback only with `--insecure`.

pub use crate::error::ZenohError;
use crate::inbox::{self, Inbox};
pub use crate::session::{
    free_loopback_endpoint, open_session, reach, session_config, Reach, ZenohOptions,
    DEFAULT_LISTEN,
};
use offramp_protocol::Telemetry;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::{CongestionControl, Priority};
/// The zenoh session type, so that users of this crate need not name zenoh.
pub use zenoh::Session;
use zenoh::Wait;

/// Version of the messages on the zenoh keys (independent of the serial
/// protocol's version).
pub const MESSAGE_VERSION: u8 = 4;

/// One action, as the runtime publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActionMsg {
    pub version: u8,
    /// Per runtime process, from 1; the bridge maps it onto the firmware's
    /// own sequence numbers, so a restarted runtime is not a replay.
    pub seq: u64,
    /// Wall clock (CLOCK_REALTIME) at publication, ns since the Unix epoch:
    /// the bridge drops actions older than `valid_for_us`. Across machines
    /// this needs synchronised clocks (PTP/NTP), as any deadline does.
    pub sent_unix_ns: u64,
    pub valid_for_us: u32,
    /// m/s and rad/s; zero with `stop`.
    pub v: f32,
    pub omega: f32,
    /// 0-based exit that produced the action.
    pub exit: u8,
    /// No trustworthy action (NaN, camera gone): stop the motors.
    pub stop: bool,
}

impl ActionMsg {
    pub const MAX_LEN: usize = 48;

    /// postcard into `buf`; no allocation.
    pub fn encode<'b>(&self, buf: &'b mut [u8; Self::MAX_LEN]) -> &'b [u8] {
        // 48 bytes hold the largest varint encoding of every field.
        match postcard::to_slice(self, buf) {
            Ok(b) => b,
            Err(_) => unreachable!("ActionMsg fits in MAX_LEN by construction"),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ZenohError> {
        let m: Self = decode_versioned("action", bytes, |m: &Self| m.version)?;
        if !(m.v.is_finite() && m.omega.is_finite()) {
            return Err(ZenohError::Payload {
                what: "action",
                len: bytes.len(),
                why: format!("non-finite command v={} omega={}", m.v, m.omega),
            });
        }
        Ok(m)
    }

    /// Age at `now` in µs (negative: sent "in the future", clocks disagree).
    pub fn age_us(&self, now: SystemTime) -> i64 {
        unix_ns(now) as i64 / 1000 - self.sent_unix_ns as i64 / 1000
    }
}

/// The bridge's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeCounters {
    pub link_up: bool,
    /// Successful serial connections (1 + reconnects).
    pub connects: u32,
    /// Corrupt frames from the firmware (COBS, CRC, decode).
    pub frame_errors: u32,
    pub forwarded: u64,
    /// Drives older than their validity when they arrived, or published
    /// before an action the bridge had already forwarded.
    pub stale: u64,
    /// Undecodable or wrong-version actions.
    pub malformed: u64,
    /// Actions that arrived while the serial link was down.
    pub no_link: u64,
    /// Stop actions forwarded to the firmware as `Stop` (which disarms it;
    /// the next drive re-arms first).
    pub stops: u64,
    /// Firmware reboots re-armed after (announced by a Boot, or seen in its
    /// clock running backwards when the Boot was lost).
    pub reboots: u32,
    /// Times the firmware reported itself disarmed with no stop from here,
    /// and was armed again.
    pub rearms: u32,
    /// An operator's stop holds: drives are dropped, and the firmware is
    /// latched again whenever it is found otherwise (a reboot, a lost
    /// frame), until an operator's release. The bridge's own state, not a
    /// count: it decides by this field.
    pub latched: bool,
    /// Operator stops latched (`offramp operator stop`).
    pub operator_stops: u32,
    /// Operator releases that lifted a latch.
    pub releases: u32,
    /// Drives dropped because an operator's stop held.
    pub latched_drops: u64,
    /// Operator messages refused: undecodable, wrong version, or a release
    /// too old, from the future, or older than the last operator command.
    pub operator_refused: u32,
}

/// One firmware telemetry report, as the bridge publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TelemetryMsg {
    pub version: u8,
    pub firmware: Telemetry,
    /// The runtime action behind `firmware.last_seq`.
    pub action_seq: Option<u64>,
    /// That action: publication → the firmware applying it, µs. Sum of the
    /// zenoh hop (wall clocks), the bridge's hold time, half the serial round
    /// trip, and the firmware's own receive → apply time.
    pub sent_to_applied_us: Option<u32>,
    pub bridge: BridgeCounters,
}

impl TelemetryMsg {
    pub const MAX_LEN: usize = 256;

    pub fn encode<'b>(&self, buf: &'b mut [u8; Self::MAX_LEN]) -> &'b [u8] {
        match postcard::to_slice(self, buf) {
            Ok(b) => b,
            Err(_) => unreachable!("TelemetryMsg fits in MAX_LEN by construction"),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ZenohError> {
        decode_versioned("telemetry", bytes, |m: &Self| m.version)
    }
}

/// What an operator tells the bridge, on `<robot>/operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorCommand {
    /// Stop the motors and latch: drives are refused, in the bridge and in
    /// the firmware, until a [`OperatorCommand::Release`].
    Stop,
    /// Lift the latch: the runtime's next drive arms and moves the motors.
    Release,
}

/// An operator's stop or release. Who may publish it is the network's
/// access control (docs/security.md); the bridge bounds its timestamp: a
/// stop is honoured whatever its age, a release only when fresh and newer
/// than the last operator message, so a recorded release cannot be
/// replayed to lift a later stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMsg {
    pub version: u8,
    pub command: OperatorCommand,
    /// Wall clock at publication, ns since the Unix epoch.
    pub sent_unix_ns: u64,
}

impl OperatorMsg {
    pub const MAX_LEN: usize = 16;

    pub fn new(command: OperatorCommand) -> Self {
        Self {
            version: MESSAGE_VERSION,
            command,
            sent_unix_ns: unix_ns(SystemTime::now()),
        }
    }

    pub fn encode<'b>(&self, buf: &'b mut [u8; Self::MAX_LEN]) -> &'b [u8] {
        match postcard::to_slice(self, buf) {
            Ok(b) => b,
            Err(_) => unreachable!("OperatorMsg fits in MAX_LEN by construction"),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ZenohError> {
        decode_versioned("operator", bytes, |m: &Self| m.version)
    }
}

/// postcard-decodes a message and checks its version against ours.
fn decode_versioned<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    version: impl Fn(&T) -> u8,
) -> Result<T, ZenohError> {
    let m: T = postcard::from_bytes(bytes).map_err(|e| ZenohError::Payload {
        what,
        len: bytes.len(),
        why: e.to_string(),
    })?;
    match version(&m) {
        MESSAGE_VERSION => Ok(m),
        got => Err(ZenohError::Version {
            what,
            got,
            speaks: MESSAGE_VERSION,
        }),
    }
}

/// ns since the Unix epoch.
pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// geometry_msgs/Twist in CDR (little endian): the 4-byte encapsulation
/// header, then linear x, y, z and angular x, y, z as f64.
pub fn twist_cdr(v: f64, omega: f64) -> [u8; 52] {
    let mut b = [0u8; 52];
    b[..4].copy_from_slice(&[0x00, 0x01, 0x00, 0x00]);
    b[4..12].copy_from_slice(&v.to_le_bytes());
    b[44..52].copy_from_slice(&omega.to_le_bytes());
    b
}

/// Decodes a CDR Twist (either endianness): [linear xyz, angular xyz].
pub fn decode_twist_cdr(b: &[u8]) -> Result<[f64; 6], ZenohError> {
    let bad = |why: &str| ZenohError::Payload {
        what: "cmd_vel Twist",
        len: b.len(),
        why: why.to_string(),
    };
    if b.len() != 52 {
        return Err(bad("expected 52 (4-byte CDR header + 6 f64)"));
    }
    let little = match b[..2] {
        [0x00, 0x01] => true,
        [0x00, 0x00] => false,
        _ => return Err(bad("not a plain CDR encapsulation header")),
    };
    let mut out = [0.0; 6];
    for (k, o) in out.iter_mut().enumerate() {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[4 + 8 * k..12 + 8 * k]);
        *o = if little {
            f64::from_le_bytes(x)
        } else {
            f64::from_be_bytes(x)
        };
    }
    Ok(out)
}

/// The keys for one robot.
#[derive(Debug, Clone)]
pub struct Keys {
    pub action: String,
    pub telemetry: String,
    pub alive_runtime: String,
    pub alive_bridge: String,
    pub cmd_vel: String,
    /// Operator stops and releases ([`OperatorMsg`]).
    pub operator: String,
}

impl Keys {
    pub fn new(robot: &str) -> Result<Self, ZenohError> {
        let ok = !robot.is_empty()
            && !robot.starts_with('/')
            && !robot.ends_with('/')
            && !robot.contains("//")
            && robot
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c));
        if !ok {
            return Err(ZenohError::RobotName(robot.to_string()));
        }
        Ok(Self {
            action: format!("{robot}/action"),
            telemetry: format!("{robot}/telemetry"),
            alive_runtime: format!("{robot}/alive/runtime"),
            alive_bridge: format!("{robot}/alive/bridge"),
            cmd_vel: "cmd_vel".to_string(),
            operator: format!("{robot}/operator"),
        })
    }
}

/// Telemetry as received, with the local time it arrived.
pub type Received = (TelemetryMsg, Instant);

/// The runtime's side: publishes actions, receives telemetry, declares its
/// liveliness.
pub struct RuntimeLink {
    keys: Keys,
    action: Publisher<'static>,
    cmd_vel: Option<Publisher<'static>>,
    _token: LivelinessToken,
    _telemetry: Subscriber<()>,
    telemetry: Inbox<Received>,
    seq: u64,
    valid_for: Duration,
    // Declared last: dropped after everything declared on it.
    session: Session,
}

/// Telemetry reports kept for a reader that falls behind: 12.8 s at the
/// firmware's 20 Hz. Older ones are dropped and counted
/// ([`Inbox::dropped`]).
pub const TELEMETRY_QUEUE: usize = 256;

/// Subscribes to the firmware telemetry the bridge publishes on `key`; each
/// report arrives in a bounded queue ([`TELEMETRY_QUEUE`]) with the local
/// time it came.
pub fn telemetry_subscriber(
    session: &Session,
    key: &str,
) -> Result<(Subscriber<()>, Inbox<Received>), ZenohError> {
    let (tx, rx) = inbox::bounded(TELEMETRY_QUEUE);
    let sub = session
        .declare_subscriber(key.to_string())
        .callback(move |s| {
            let at = Instant::now();
            match TelemetryMsg::decode(&s.payload().to_bytes()) {
                Ok(m) => tx.push((m, at)),
                Err(e) => tracing::warn!("{e}"),
            }
        })
        .wait()
        .map_err(|e| ZenohError::Declare {
            what: "subscriber",
            key: key.to_string(),
            why: e.to_string(),
        })?;
    Ok((sub, rx))
}

/// Declares the action publisher with offramp's QoS.
pub fn action_publisher(session: &Session, key: &str) -> Result<Publisher<'static>, ZenohError> {
    session
        .declare_publisher(key.to_string())
        .priority(Priority::RealTime)
        .congestion_control(CongestionControl::Drop)
        .express(true)
        .wait()
        .map_err(|e| ZenohError::Declare {
            what: "publisher",
            key: key.to_string(),
            why: e.to_string(),
        })
}

impl RuntimeLink {
    pub fn open(
        session: Session,
        keys: Keys,
        valid_for: Duration,
        mirror_cmd_vel: bool,
    ) -> Result<Self, ZenohError> {
        fn declare(what: &'static str, key: &str) -> impl FnOnce(zenoh::Error) -> ZenohError {
            let key = key.to_string();
            move |e| ZenohError::Declare {
                what,
                key,
                why: e.to_string(),
            }
        }
        let action = action_publisher(&session, &keys.action)?;
        let cmd_vel = if mirror_cmd_vel {
            Some(action_publisher(&session, &keys.cmd_vel)?)
        } else {
            None
        };
        let token = session
            .liveliness()
            .declare_token(keys.alive_runtime.clone())
            .wait()
            .map_err(declare("liveliness token", &keys.alive_runtime))?;
        let (sub, rx) = telemetry_subscriber(&session, &keys.telemetry)?;
        Ok(Self {
            keys,
            action,
            cmd_vel,
            _token: token,
            _telemetry: sub,
            telemetry: rx,
            seq: 0,
            valid_for,
            session,
        })
    }

    /// Publishes one action; returns its sequence number and when it left.
    pub fn publish(
        &mut self,
        v: f32,
        omega: f32,
        exit: u8,
        stop: bool,
    ) -> Result<(u64, Instant), ZenohError> {
        self.seq += 1;
        let (v, omega) = if stop { (0.0, 0.0) } else { (v, omega) };
        let msg = ActionMsg {
            version: MESSAGE_VERSION,
            seq: self.seq,
            sent_unix_ns: unix_ns(SystemTime::now()),
            valid_for_us: self.valid_for.as_micros().min(u32::MAX as u128) as u32,
            v,
            omega,
            exit,
            stop,
        };
        let mut buf = [0u8; ActionMsg::MAX_LEN];
        let bytes = msg.encode(&mut buf);
        self.action
            .put(bytes.to_vec())
            .wait()
            .map_err(|e| ZenohError::Put {
                key: self.keys.action.clone(),
                why: e.to_string(),
            })?;
        let at = Instant::now();
        if let Some(p) = &self.cmd_vel {
            p.put(twist_cdr(v as f64, omega as f64).to_vec())
                .wait()
                .map_err(|e| ZenohError::Put {
                    key: self.keys.cmd_vel.clone(),
                    why: e.to_string(),
                })?;
        }
        Ok((self.seq, at))
    }

    /// Telemetry received so far (a bounded queue: take what is there or
    /// wait; the oldest reports go when it is full).
    pub fn telemetry(&self) -> &Inbox<Received> {
        &self.telemetry
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message at its largest fits its buffer (`encode` would panic
    /// otherwise) and decodes back.
    #[test]
    fn the_largest_messages_fit_their_buffers() {
        let c = offramp_protocol::Counters {
            frames_ok: u32::MAX,
            overflow: u32::MAX,
            cobs: u32::MAX,
            too_short: u32::MAX,
            crc: u32::MAX,
            version: u32::MAX,
            decode: u32::MAX,
            stale: u32::MAX,
            deadline_too_far: u32::MAX,
            replay: u32::MAX,
            out_of_range: u32::MAX,
            not_armed: u32::MAX,
            unsupported: u32::MAX,
            clamped: u32::MAX,
            timeouts: u32::MAX,
            rx_dropped: u32::MAX,
            latched: u32::MAX,
        };
        let t = TelemetryMsg {
            version: MESSAGE_VERSION,
            firmware: Telemetry {
                uptime_us: u64::MAX,
                report_seq: u32::MAX,
                last_seq: Some(u32::MAX),
                last_exit: u8::MAX,
                applied_left: f32::MAX,
                applied_right: f32::MIN,
                duty_left: i16::MIN,
                duty_right: i16::MAX,
                state: offramp_protocol::MotorState::Latched,
                counters: c,
                reset_cause: offramp_protocol::ResetCause::Unknown,
                last_apply_latency_us: u32::MAX,
                last_timeout_stop_us: u32::MAX,
            },
            action_seq: Some(u64::MAX),
            sent_to_applied_us: Some(u32::MAX),
            bridge: BridgeCounters {
                link_up: true,
                connects: u32::MAX,
                frame_errors: u32::MAX,
                forwarded: u64::MAX,
                stale: u64::MAX,
                malformed: u64::MAX,
                no_link: u64::MAX,
                stops: u64::MAX,
                reboots: u32::MAX,
                rearms: u32::MAX,
                latched: true,
                operator_stops: u32::MAX,
                releases: u32::MAX,
                latched_drops: u64::MAX,
                operator_refused: u32::MAX,
            },
        };
        let mut buf = [0u8; TelemetryMsg::MAX_LEN];
        assert_eq!(TelemetryMsg::decode(t.encode(&mut buf)).unwrap(), t);
        let a = ActionMsg {
            version: MESSAGE_VERSION,
            seq: u64::MAX,
            sent_unix_ns: u64::MAX,
            valid_for_us: u32::MAX,
            v: f32::MAX,
            omega: f32::MIN,
            exit: u8::MAX,
            stop: true,
        };
        let mut buf = [0u8; ActionMsg::MAX_LEN];
        assert_eq!(ActionMsg::decode(a.encode(&mut buf)).unwrap(), a);
        let o = OperatorMsg {
            version: MESSAGE_VERSION,
            command: OperatorCommand::Release,
            sent_unix_ns: u64::MAX,
        };
        let mut buf = [0u8; OperatorMsg::MAX_LEN];
        assert_eq!(OperatorMsg::decode(o.encode(&mut buf)).unwrap(), o);
    }

    /// `offramp run` never reads its telemetry: an unbounded channel grew
    /// by every report (~350 MB a day at 20 Hz, without bound under a
    /// flood). A flood now leaves at most the queue's capacity, the rest
    /// dropped and counted.
    #[test]
    fn a_telemetry_flood_leaves_a_bounded_queue() {
        let ep = free_loopback_endpoint().unwrap();
        let robot = open_session(&ZenohOptions {
            listen: vec![ep.clone()],
            ..Default::default()
        })
        .unwrap();
        let keys = Keys::new("flood").unwrap();
        let link =
            RuntimeLink::open(robot, keys.clone(), Duration::from_millis(200), false).unwrap();
        let peer = open_session(&ZenohOptions {
            connect: vec![ep],
            ..Default::default()
        })
        .unwrap();
        let msg = TelemetryMsg {
            version: MESSAGE_VERSION,
            firmware: Telemetry {
                uptime_us: 1,
                report_seq: 0,
                last_seq: None,
                last_exit: 0,
                applied_left: 0.0,
                applied_right: 0.0,
                duty_left: 0,
                duty_right: 0,
                state: offramp_protocol::MotorState::Disarmed,
                counters: Default::default(),
                reset_cause: offramp_protocol::ResetCause::PowerOn,
                last_apply_latency_us: 0,
                last_timeout_stop_us: 0,
            },
            action_seq: None,
            sent_to_applied_us: None,
            bridge: BridgeCounters::default(),
        };
        let mut buf = [0u8; TelemetryMsg::MAX_LEN];
        let bytes = msg.encode(&mut buf).to_vec();
        let publisher = peer
            .declare_publisher(keys.telemetry.clone())
            .congestion_control(CongestionControl::Block)
            .wait()
            .unwrap();
        let t = link.telemetry();
        // One report through first: the subscriber is matched.
        let deadline = Instant::now() + Duration::from_secs(20);
        while t.is_empty() {
            assert!(Instant::now() < deadline, "no report arrived");
            publisher.put(bytes.clone()).wait().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = t.len() as u64 + t.dropped();
        let sent = 4 * TELEMETRY_QUEUE as u64;
        for _ in 0..sent {
            publisher.put(bytes.clone()).wait().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while (t.len() as u64 + t.dropped()) < before + sent {
            assert!(
                Instant::now() < deadline,
                "{} kept, {} dropped",
                t.len(),
                t.dropped()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(t.len(), TELEMETRY_QUEUE);
        assert_eq!(t.dropped(), before + sent - TELEMETRY_QUEUE as u64);
    }

    #[test]
    fn action_roundtrip_and_validation() {
        let m = ActionMsg {
            version: MESSAGE_VERSION,
            seq: u64::MAX,
            sent_unix_ns: u64::MAX,
            valid_for_us: u32::MAX,
            v: -0.5,
            omega: 2.0,
            exit: 3,
            stop: false,
        };
        let mut buf = [0u8; ActionMsg::MAX_LEN];
        let b = m.encode(&mut buf).to_vec();
        assert_eq!(ActionMsg::decode(&b).unwrap(), m);
        assert!(matches!(
            ActionMsg::decode(&b[..b.len() - 1]),
            Err(ZenohError::Payload { .. })
        ));
        let mut bad = m;
        bad.version = 9;
        let e = ActionMsg::decode(bad.encode(&mut buf)).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
        bad = m;
        bad.v = f32::NAN;
        assert!(ActionMsg::decode(bad.encode(&mut buf)).is_err());
    }

    #[test]
    fn twist_cdr_layout() {
        let b = twist_cdr(0.25, -1.5);
        assert_eq!(&b[..4], &[0, 1, 0, 0]);
        assert_eq!(
            decode_twist_cdr(&b).unwrap(),
            [0.25, 0.0, 0.0, 0.0, 0.0, -1.5]
        );
        assert!(decode_twist_cdr(&b[..51]).is_err());
    }

    #[test]
    fn robot_names() {
        assert_eq!(Keys::new("lab/r2").unwrap().action, "lab/r2/action");
        for bad in ["", "/r", "r/", "a//b", "r/*", "r$x", "r b"] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
    }
}
