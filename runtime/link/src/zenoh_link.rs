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
//! The embedded default is peer mode with multicast scouting off, listening
//! only on loopback (the given endpoints, else an ephemeral loopback port,
//! so that the sessions of one machine can mesh): the runtime listens on a
//! known loopback port, the bridge connects, no router and no network
//! needed. A zenoh JSON5 file
//! (`--zenoh-config`) replaces the default whole (client mode against a
//! router, TLS with mutual authentication, access control) and is the whole
//! truth: a flag for a field the file sets is refused by name. Whatever the
//! source, a listener that the network can reach in plaintext is refused
//! unless the user says `--insecure` ([`reach`]).

use crate::inbox::{self, Inbox};
use offramp_protocol::Telemetry;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::{CongestionControl, Priority};
/// The zenoh session type, so that users of this crate need not name zenoh.
pub use zenoh::Session;
use zenoh::Wait;

/// Version of the messages on the zenoh keys (independent of the serial
/// protocol's version).
pub const MESSAGE_VERSION: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ZenohError {
    #[error("zenoh config {}: {why}", path.display())]
    ConfigFile { path: PathBuf, why: String },
    #[error("zenoh config key {key} = {value}: {why}")]
    ConfigKey {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("opening the zenoh session: {0}")]
    Open(String),
    #[error("zenoh {what} on {key}: {why}")]
    Declare {
        what: &'static str,
        key: String,
        why: String,
    },
    #[error("robot name {0:?}: use letters, digits, '-', '_' and '/' (no wildcards, no leading or trailing '/')")]
    RobotName(String),
    #[error("{what}: {len} bytes, {why}")]
    Payload {
        what: &'static str,
        len: usize,
        why: String,
    },
    #[error("{what}: message version {got}, this build speaks {MESSAGE_VERSION}")]
    Version { what: &'static str, got: u8 },
    #[error("publishing on {key}: {why}")]
    Put { key: String, why: String },
    #[error("{flag} conflicts with the zenoh config {}, which sets {key}: a config file is the whole truth (change it there, or drop the file)", path.display())]
    Conflict {
        flag: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error("listening on {endpoint} ({origin}) lets any host on the network reach this session in plaintext, publish actions included: listen on loopback (tcp/127.0.0.1:PORT), a unix socket (unixsock-stream/PATH) or TLS (tls/HOST:PORT with a config file, docs/security.md), or pass --insecure to accept it")]
    OpenListener { endpoint: String, origin: String },
}

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
        got => Err(ZenohError::Version { what, got }),
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
        })
    }
}

/// How to reach the other zenoh nodes.
#[derive(Debug, Clone, Default)]
pub struct ZenohOptions {
    /// A zenoh JSON5 config; replaces the embedded default.
    pub config: Option<PathBuf>,
    /// `peer` or `client` (with a file: only where the file sets no mode).
    pub mode: Option<String>,
    /// Endpoints to listen on (with a file: only where it sets none).
    pub listen: Vec<String>,
    /// Endpoints to connect to (with a file: only where it sets none).
    pub connect: Vec<String>,
    /// Accept a listener the network can reach in plaintext.
    pub insecure: bool,
}

/// Where a session listens when nothing says: an ephemeral port on
/// loopback.
pub const DEFAULT_LISTEN: &str = "tcp/127.0.0.1:0";

/// How far a listening endpoint reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only this machine: a loopback address or a unix socket.
    Local,
    /// Beyond this machine, over TLS (`tls/`, `quic/`): encrypted, and
    /// authenticated where the config asks for mutual TLS.
    Tls,
    /// Beyond this machine in plaintext (an address that is not loopback,
    /// `0.0.0.0`, `[::]`, a host name, an unknown transport): any host on
    /// the network.
    Open,
}

/// How far `endpoint` (zenoh's `proto/address[?metadata][#config]`) reaches
/// when listened on.
pub fn reach(endpoint: &str) -> Reach {
    let Some((proto, rest)) = endpoint.split_once('/') else {
        return Reach::Open;
    };
    let address = rest.split(['?', '#']).next().unwrap_or_default();
    match proto.to_ascii_lowercase().as_str() {
        "unixsock-stream" | "unixpipe" => Reach::Local,
        "tls" | "quic" => Reach::Tls,
        "tcp" | "udp" | "ws" => {
            let host = match address.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => address.rsplit_once(':').map_or(address, |(h, _)| h),
            };
            let local = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if local {
                Reach::Local
            } else {
                Reach::Open
            }
        }
        _ => Reach::Open,
    }
}

/// The session's configuration: the config file or the embedded default
/// (peer, no multicast scouting, [`DEFAULT_LISTEN`]), then the flags, then the
/// check that no listener reaches the network in plaintext unless
/// `insecure`.
pub fn session_config(o: &ZenohOptions) -> Result<zenoh::Config, ZenohError> {
    let mut c = match &o.config {
        Some(path) => {
            let c = zenoh::Config::from_file(path).map_err(|e| ZenohError::ConfigFile {
                path: path.clone(),
                why: e.to_string(),
            })?;
            // The file is the whole truth: a flag may fill what it leaves
            // at zenoh's default, never change what it sets.
            let default = zenoh::Config::default();
            for (flag, key, given) in [
                ("--zenoh-mode", "mode", o.mode.is_some()),
                ("--listen", "listen/endpoints", !o.listen.is_empty()),
                ("--connect", "connect/endpoints", !o.connect.is_empty()),
            ] {
                if given && c.get_json(key).ok() != default.get_json(key).ok() {
                    return Err(ZenohError::Conflict {
                        flag,
                        key,
                        path: path.clone(),
                    });
                }
            }
            c
        }
        None => {
            let mut c = zenoh::Config::default();
            set(&mut c, "mode", "\"peer\"")?;
            set(&mut c, "scouting/multicast/enabled", "false")?;
            // zenoh's own default for a peer is every interface; here an
            // ephemeral loopback port, which the sessions of this machine
            // learn from each other (gossip) to mesh directly, and nothing
            // off the machine can reach.
            if o.mode.as_deref() != Some("client") {
                set(&mut c, "listen/endpoints", &format!("[{DEFAULT_LISTEN:?}]"))?;
            }
            c
        }
    };
    if let Some(m) = &o.mode {
        set(&mut c, "mode", &format!("{m:?}"))?;
    }
    let list = |v: &[String]| format!("{v:?}");
    if !o.listen.is_empty() {
        set(&mut c, "listen/endpoints", &list(&o.listen))?;
    }
    if !o.connect.is_empty() {
        set(&mut c, "connect/endpoints", &list(&o.connect))?;
    }
    if !o.insecure {
        for endpoint in listen_endpoints(&c) {
            if reach(&endpoint) == Reach::Open {
                let origin = match (&o.config, o.listen.contains(&endpoint)) {
                    (_, true) => "--listen".to_string(),
                    (Some(path), false) => format!(
                        "the zenoh config {} (zenoh's default where it sets no listen/endpoints)",
                        path.display()
                    ),
                    (None, false) => "the embedded default".to_string(),
                };
                return Err(ZenohError::OpenListener { endpoint, origin });
            }
        }
    }
    Ok(c)
}

/// The endpoints `c` listens on in its mode (zenoh's per-mode values
/// resolved).
fn listen_endpoints(c: &zenoh::Config) -> Vec<String> {
    let json = |key: &str| {
        c.get_json(key)
            .ok()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
    };
    let mode = json("mode")
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_else(|| "peer".into());
    let list = match json("listen/endpoints") {
        Some(serde_json::Value::Object(per_mode)) => per_mode.get(&mode).cloned(),
        other => other,
    };
    match list {
        Some(serde_json::Value::Array(v)) => v
            .into_iter()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Opens a session configured by [`session_config`].
pub fn open_session(o: &ZenohOptions) -> Result<Session, ZenohError> {
    zenoh::open(session_config(o)?)
        .wait()
        .map_err(|e| ZenohError::Open(e.to_string()))
}

fn set(c: &mut zenoh::Config, key: &'static str, value: &str) -> Result<(), ZenohError> {
    c.insert_json5(key, value)
        .map_err(|e| ZenohError::ConfigKey {
            key,
            value: value.to_string(),
            why: e.to_string(),
        })
}

/// A free TCP port on loopback for a listener (the demo's embedded default).
/// The port is free when this returns; the kernel may hand a just-released
/// port out again, so one process never gets the same port twice.
pub fn free_loopback_endpoint() -> std::io::Result<String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(format!("tcp/127.0.0.1:{port}"));
        }
    }
    Err(std::io::Error::other("no fresh loopback port"))
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
    fn endpoints_reach_as_far_as_their_address_and_transport() {
        for (ep, want) in [
            ("tcp/127.0.0.1:7447", Reach::Local),
            ("tcp/127.3.2.1:7447", Reach::Local),
            ("tcp/[::1]:7447", Reach::Local),
            ("tcp/localhost:7447", Reach::Local),
            ("udp/127.0.0.1:7447#iface=lo", Reach::Local),
            ("unixsock-stream//run/offramp.sock", Reach::Local),
            ("tls/localhost:7447", Reach::Tls),
            ("tls/0.0.0.0:7447", Reach::Tls),
            ("quic/[::]:7447", Reach::Tls),
            ("tcp/[::]:0", Reach::Open),
            ("tcp/0.0.0.0:7447", Reach::Open),
            ("tcp/192.168.1.20:7447", Reach::Open),
            ("tcp/robot.lan:7447", Reach::Open),
            ("ws/127.0.0.1.evil.example:80", Reach::Open),
            ("serial//dev/ttyUSB0", Reach::Open),
            ("nonsense", Reach::Open),
        ] {
            assert_eq!(reach(ep), want, "{ep}");
        }
    }

    /// zenoh's own default for a peer listens on every interface
    /// (`tcp/[::]:0`); the embedded default listens on loopback only.
    #[test]
    fn the_embedded_default_listens_on_loopback_and_refuses_the_network_in_plaintext() {
        let c = session_config(&ZenohOptions::default()).unwrap();
        assert_eq!(listen_endpoints(&c), [DEFAULT_LISTEN]);
        assert_eq!(reach(DEFAULT_LISTEN), Reach::Local);
        let client = ZenohOptions {
            mode: Some("client".into()),
            ..Default::default()
        };
        assert_eq!(
            listen_endpoints(&session_config(&client).unwrap()),
            Vec::<String>::new()
        );
        assert!(!listen_endpoints(&zenoh::Config::default()).is_empty());
        let opts = |listen: &str, insecure| ZenohOptions {
            listen: vec![listen.into()],
            insecure,
            ..Default::default()
        };
        let c = session_config(&opts("tcp/127.0.0.1:7447", false)).unwrap();
        assert_eq!(listen_endpoints(&c), ["tcp/127.0.0.1:7447"]);
        let e = session_config(&opts("tcp/0.0.0.0:7447", false)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("tcp/0.0.0.0:7447")
                && msg.contains("--listen")
                && msg.contains("--insecure"),
            "{msg}"
        );
        // Said in so many words, it is the user's choice.
        let c = session_config(&opts("tcp/0.0.0.0:7447", true)).unwrap();
        assert_eq!(listen_endpoints(&c), ["tcp/0.0.0.0:7447"]);
    }

    /// A config file is the whole truth: a flag for a field it sets is
    /// refused by name (the documented TLS setup used to listen in
    /// plaintext because a flag silently replaced the file's endpoints); a
    /// field it leaves at zenoh's default may come from a flag; a file that
    /// leaves zenoh listening on every interface is refused.
    #[test]
    fn a_config_file_is_the_whole_truth() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let sets_listen = file(
            "listen.json5",
            r#"{ mode: "peer", listen: { endpoints: ["tcp/127.0.0.1:7447"] } }"#,
        );
        let with = |config: &std::path::Path, f: &dyn Fn(&mut ZenohOptions)| {
            let mut o = ZenohOptions {
                config: Some(config.to_path_buf()),
                ..Default::default()
            };
            f(&mut o);
            session_config(&o)
        };
        let e = with(&sets_listen, &|o| {
            o.listen = vec!["tcp/127.0.0.1:9000".into()]
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--listen") && e.contains("listen.json5"), "{e}");
        let e = with(&sets_listen, &|o| o.mode = Some("client".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--zenoh-mode"), "{e}");
        // The file sets no connect endpoints: a flag gives them.
        let c = with(&sets_listen, &|o| {
            o.connect = vec!["tcp/127.0.0.1:9000".into()]
        })
        .unwrap();
        assert!(c.get_json("connect/endpoints").unwrap().contains("9000"));
        // No listen/endpoints in the file: zenoh's default, every interface.
        let silent = file("silent.json5", r#"{ mode: "peer" }"#);
        let e = with(&silent, &|_| {}).unwrap_err().to_string();
        assert!(e.contains("tcp/[::]") && e.contains("silent.json5"), "{e}");
        assert!(with(&silent, &|o| o.insecure = true).is_ok());
        // The shipped TLS configs pass as they are.
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/zenoh");
        for f in ["bridge-tls.json5", "runtime-tls.json5"] {
            let c = with(&shipped.join(f), &|_| {}).unwrap_or_else(|e| panic!("{f}: {e}"));
            for ep in listen_endpoints(&c) {
                assert_ne!(reach(&ep), Reach::Open, "{f}: {ep}");
            }
        }
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
