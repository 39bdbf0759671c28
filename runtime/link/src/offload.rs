//! Deep exits on a second device over zenoh: `offramp serve` on the server,
//! [`ZenohOffload`] in the robot's runtime (the runtime's side of the
//! contract is `offramp_runtime::exit_chain::offload`).
//!
//! Key space, for robot `R`, an engine set whose `model` is `M` and whose
//! manifest digest is `D` (the first 16 hex digits of its SHA-256, so a
//! server holding another build of the model is never asked):
//!
//! * `R/offload/M/D/<rank>/<server>`: the server's queryable, and a
//!   liveliness token on the same key announcing that the server holds the
//!   set and is up. `rank` orders servers: the robot asks the live server of
//!   lowest rank (then name); the others are standbys with the same
//!   segments loaded, so taking over costs no loading.
//!
//! A request carries every output of the last local segment, the robot's
//! recurrent state and the last local exit's action; the answer is the exit
//! the server's criterion stopped at with its action and next state
//! ([`RequestMsg`], [`ReplyMsg`], postcard, fp32 bit for bit).
//!
//! Failure model: a server that dies or loses the link drops its liveliness
//! token; the robot moves to the next live server for the next frame (a
//! *failover*). A server that stays announced but stops answering is skipped
//! after [`MISSES_BEFORE_SKIP`] unanswered frames in a row, for
//! [`SKIP_FOR`]. Every unanswered frame uses the robot's deepest local exit
//! (the runtime's fallback), so no frame goes without an action and the
//! wait never passes the frame's deadline.

use crate::zenoh_link::ZenohError;
use offramp_engines::manifest::CarriedDtype;
use offramp_runtime::exit_chain::offload::{
    Offload, OffloadCounters, OffloadError, OffloadReply, OffloadRequest,
};
use offramp_runtime::exit_chain::{ExitChain, MAX_EXITS};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zenoh::liveliness::LivelinessToken;
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

/// Version of the offload messages.
pub const OFFLOAD_VERSION: u8 = 1;

/// Unanswered frames in a row after which a live server is skipped.
pub const MISSES_BEFORE_SKIP: u32 = 3;
/// How long a server that stopped answering is skipped.
pub const SKIP_FOR: Duration = Duration::from_secs(2);

/// The tensors carried across the cut, as the manifest's `[offload]`
/// `carried` says: fp32 bit for bit, or fp16 (IEEE half, two bytes each,
/// little endian: postcard would spend up to three on a u16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Carried {
    F32(Vec<Vec<f32>>),
    F16(Vec<Vec<u8>>),
}

impl Carried {
    pub fn encode(tensors: &[Vec<f32>], dtype: CarriedDtype) -> Self {
        match dtype {
            CarriedDtype::Fp32 => Self::F32(tensors.to_vec()),
            CarriedDtype::Fp16 => Self::F16(
                tensors
                    .iter()
                    .map(|t| {
                        t.iter()
                            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                            .collect()
                    })
                    .collect(),
            ),
        }
    }

    /// Writes the tensors as f32 into `out` (resized to match).
    pub fn decode_into(&self, out: &mut Vec<Vec<f32>>) {
        match self {
            Self::F32(t) => out.clone_from(t),
            Self::F16(t) => {
                out.resize_with(t.len(), Vec::new);
                for (o, t) in out.iter_mut().zip(t) {
                    o.clear();
                    o.extend(
                        t.chunks_exact(2)
                            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
                    );
                }
            }
        }
    }
}

/// The robot's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMsg {
    pub version: u8,
    pub frame: u64,
    pub from: u16,
    pub carried: Carried,
    pub state: Vec<f32>,
    pub prev_action: Vec<f32>,
    pub prev_ok: bool,
}

/// The server's answer, or why it could not run the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyMsg {
    pub version: u8,
    pub frame: u64,
    pub result: Result<Answer, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub exit: u16,
    pub ran: u16,
    pub heads: u16,
    pub action: Vec<f32>,
    pub next_state: Vec<f32>,
    /// Per exit, NaN where the server did not run it.
    pub deltas: Vec<f32>,
    pub scores: Vec<f32>,
    pub exit_seconds: Vec<f32>,
}

fn payload_err(what: &'static str, len: usize, e: impl ToString) -> ZenohError {
    ZenohError::Payload {
        what,
        len,
        why: e.to_string(),
    }
}

/// postcard-decodes an offload message and checks its version.
fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    b: &[u8],
    version: impl Fn(&T) -> u8,
) -> Result<T, ZenohError> {
    let m: T = postcard::from_bytes(b).map_err(|e| payload_err(what, b.len(), e))?;
    match version(&m) {
        OFFLOAD_VERSION => Ok(m),
        v => Err(payload_err(
            what,
            b.len(),
            format!("version {v}, this build speaks {OFFLOAD_VERSION}"),
        )),
    }
}

impl RequestMsg {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Self, ZenohError> {
        decode("offload request", b, |m: &Self| m.version)
    }
}

impl ReplyMsg {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Self, ZenohError> {
        decode("offload reply", b, |m: &Self| m.version)
    }
}

/// `R/offload/M/D`: where the servers of one robot and engine set live.
pub fn offload_prefix(robot: &str, model: &str, digest: &str) -> Result<String, ZenohError> {
    crate::zenoh_link::Keys::new(robot)?;
    let chunk = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    Ok(format!(
        "{robot}/offload/{}/{}",
        chunk(model),
        chunk(digest)
    ))
}

/// [`offload_prefix`] for `robot` and engine set `set`.
pub fn set_prefix(robot: &str, set: &offramp_engines::EngineSet) -> Result<String, ZenohError> {
    offload_prefix(robot, &set.manifest.model, &set_digest(set)?)
}

/// The first 16 hex digits of the manifest's SHA-256.
pub fn set_digest(set: &offramp_engines::EngineSet) -> Result<String, ZenohError> {
    offramp_engines::sha256_file(&set.manifest_path)
        .map(|h| h.chars().take(16).collect())
        .map_err(|e| ZenohError::Open(format!("{}: {e}", set.manifest_path.display())))
}

/// A server's key: `prefix/<rank>/<name>`; names as robot names.
pub fn server_key(prefix: &str, rank: u32, name: &str) -> Result<String, ZenohError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err(ZenohError::RobotName(name.to_string()));
    }
    Ok(format!("{prefix}/{rank}/{name}"))
}

/// Parses `prefix/<rank>/<name>` back into (rank, name).
fn parse_server(prefix: &str, key: &str) -> Option<(u32, String)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let (rank, name) = rest.split_once('/')?;
    Some((rank.parse().ok()?, name.to_string()))
}

/// What a server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeCounters {
    pub served: u64,
    /// Requests refused (undecodable, wrong sizes, engine errors).
    pub refused: u64,
}

/// `offramp serve`: answers offload requests for one robot and engine set
/// until `stop` is set.
pub struct OffloadServer {
    chain: ExitChain,
    reply: OffloadReply,
    /// The carried tensors of the request being served, as f32.
    carried: Vec<Vec<f32>>,
    key: String,
    counters: ServeCounters,
    queries: zenoh::query::Queryable<zenoh::handlers::FifoChannelHandler<zenoh::query::Query>>,
    _token: LivelinessToken,
    // Declared last: dropped after everything declared on it.
    _session: Session,
}

impl OffloadServer {
    /// Declares the queryable and the liveliness token for `chain` (every
    /// exit of its set loaded) under `prefix` with `rank` and `name`.
    pub fn open(
        session: Session,
        chain: ExitChain,
        prefix: &str,
        rank: u32,
        name: &str,
    ) -> Result<Self, ZenohError> {
        let key = server_key(prefix, rank, name)?;
        let declare = |what: &'static str| {
            let key = key.clone();
            move |e: zenoh::Error| ZenohError::Declare {
                what,
                key,
                why: e.to_string(),
            }
        };
        let queryable = session
            .declare_queryable(key.clone())
            .complete(true)
            .wait()
            .map_err(declare("queryable"))?;
        let token = session
            .liveliness()
            .declare_token(key.clone())
            .wait()
            .map_err(declare("liveliness token"))?;
        Ok(Self {
            reply: chain.offload_reply(),
            chain,
            carried: Vec::new(),
            key,
            counters: ServeCounters::default(),
            queries: queryable,
            _token: token,
            _session: session,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn counters(&self) -> ServeCounters {
        self.counters
    }

    /// Answers requests until `stop` is set (checked every 50 ms).
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some(q)) = self.queries.recv_timeout(Duration::from_millis(50)) {
                self.answer(&q);
            }
        }
    }

    /// Answers one query.
    pub fn answer(&mut self, q: &zenoh::query::Query) {
        let bytes = q
            .payload()
            .map(|p| p.to_bytes().into_owned())
            .unwrap_or_default();
        let (frame, result) = match RequestMsg::decode(&bytes) {
            Err(e) => (0, Err(e.to_string())),
            Ok(m) => {
                m.carried.decode_into(&mut self.carried);
                let req = OffloadRequest {
                    frame: m.frame,
                    from: m.from as usize,
                    carried: &self.carried,
                    state: &m.state,
                    prev_action: &m.prev_action,
                    prev_ok: m.prev_ok,
                };
                let r = &mut self.reply;
                let result = self.chain.serve(&req, r).map(|()| Answer {
                    exit: r.exit as u16,
                    ran: r.ran as u16,
                    heads: r.heads as u16,
                    action: r.action.clone(),
                    next_state: r.next_state.clone(),
                    deltas: r.deltas.to_vec(),
                    scores: r.scores.to_vec(),
                    exit_seconds: r.exit_seconds.to_vec(),
                });
                (m.frame, result.map_err(|e| e.to_string()))
            }
        };
        match &result {
            Ok(_) => self.counters.served += 1,
            Err(e) => {
                self.counters.refused += 1;
                tracing::warn!(key = %self.key, "offload request refused: {e}");
            }
        }
        let msg = ReplyMsg {
            version: OFFLOAD_VERSION,
            frame,
            result,
        };
        if let Err(e) = q.reply(q.key_expr().clone(), msg.encode()).wait() {
            tracing::warn!(key = %self.key, "offload reply not sent: {e}");
        }
    }
}

/// A live server, as its liveliness token announces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Server {
    rank: u32,
    name: String,
}

#[derive(Debug, Default)]
struct Servers {
    alive: Vec<Server>,
}

/// The robot's side: asks the live server of lowest rank, fails over when
/// it goes, and never waits past the deadline it is given.
pub struct ZenohOffload {
    session: Session,
    prefix: String,
    servers: Arc<Mutex<Servers>>,
    _liveliness: zenoh::pubsub::Subscriber<()>,
    active: Option<Server>,
    carried: CarriedDtype,
    misses: u32,
    skipped: Option<(Server, Instant)>,
    failovers: u64,
    /// Requests without an answer, by cause.
    pub no_server: u64,
    pub timeouts: u64,
    pub refused: u64,
}

impl ZenohOffload {
    /// Watches the servers under `prefix` (see [`offload_prefix`]); sends
    /// the carried tensors as `carried` (the manifest's `[offload]`).
    pub fn open(session: Session, prefix: &str, carried: CarriedDtype) -> Result<Self, ZenohError> {
        let servers = Arc::new(Mutex::new(Servers::default()));
        let pattern = format!("{prefix}/*/*");
        let declare = |what: &'static str| {
            let key = pattern.clone();
            move |e: zenoh::Error| ZenohError::Declare {
                what,
                key,
                why: e.to_string(),
            }
        };
        let watch = {
            let servers = servers.clone();
            let prefix = prefix.to_string();
            move |key: &str, alive: bool| {
                let Some((rank, name)) = parse_server(&prefix, key) else {
                    return;
                };
                let s = Server { rank, name };
                let mut all = servers.lock().unwrap_or_else(|p| p.into_inner());
                all.alive.retain(|x| *x != s);
                if alive {
                    tracing::info!(server = %key, "offload server up");
                    all.alive.push(s);
                    all.alive.sort();
                } else {
                    tracing::warn!(server = %key, "offload server gone");
                }
            }
        };
        let sub = session
            .liveliness()
            .declare_subscriber(pattern.clone())
            .history(true)
            .callback(move |s| {
                watch(s.key_expr().as_str(), s.kind() == SampleKind::Put);
            })
            .wait()
            .map_err(declare("liveliness subscriber"))?;
        Ok(Self {
            session,
            prefix: prefix.to_string(),
            servers,
            _liveliness: sub,
            active: None,
            carried,
            misses: 0,
            skipped: None,
            failovers: 0,
            no_server: 0,
            timeouts: 0,
            refused: 0,
        })
    }

    /// Watches the servers of `robot` for engine set `set`, sending the
    /// carried tensors as its manifest's `[offload]` says.
    pub fn for_set(
        session: Session,
        robot: &str,
        set: &offramp_engines::EngineSet,
    ) -> Result<Self, ZenohError> {
        let carried = set.manifest.offload.unwrap_or_default().carried;
        Self::open(session, &set_prefix(robot, set)?, carried)
    }

    /// Waits until `n` servers are announced; false after `timeout`.
    pub fn wait_for_servers(&self, n: usize, timeout: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            let seen = self
                .servers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .alive
                .len();
            if seen >= n {
                return true;
            }
            if t0.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Live servers' keys, preferred first.
    pub fn live_servers(&self) -> Vec<String> {
        let all = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        all.alive
            .iter()
            .map(|s| format!("{}/{}/{}", self.prefix, s.rank, s.name))
            .collect()
    }

    /// The server asked last (`<rank>/<name>`), if any.
    pub fn active(&self) -> Option<String> {
        self.active
            .as_ref()
            .map(|s| format!("{}/{}", s.rank, s.name))
    }

    /// The server to ask now: the preferred live one not being skipped.
    fn pick(&mut self, now: Instant) -> Option<Server> {
        if self
            .skipped
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            self.skipped = None;
        }
        let all = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        let skipped = self.skipped.as_ref().map(|(s, _)| s);
        let best = all
            .alive
            .iter()
            .find(|s| Some(*s) != skipped)
            .or_else(|| all.alive.first())
            .cloned();
        // A failover: the server asked last is gone or skipped (a better
        // ranked one coming up is not one).
        let lost = self
            .active
            .as_ref()
            .is_some_and(|a| !all.alive.contains(a) || Some(a) == skipped);
        drop(all);
        if best != self.active {
            if lost && best.is_some() {
                self.failovers += 1;
                tracing::warn!(to = ?best, from = ?self.active, "offload failover");
            }
            self.active = best.clone();
            self.misses = 0;
        }
        best
    }

    fn missed(&mut self, server: Server, now: Instant) {
        self.misses += 1;
        if self.misses >= MISSES_BEFORE_SKIP {
            tracing::warn!(server = ?server, "offload server not answering: skipped for {SKIP_FOR:?}");
            self.skipped = Some((server, now + SKIP_FOR));
            self.misses = 0;
        }
    }
}

impl Offload for ZenohOffload {
    fn run_remote(
        &mut self,
        req: &OffloadRequest<'_>,
        deadline: Instant,
        reply: &mut OffloadReply,
    ) -> Result<bool, OffloadError> {
        let msg = RequestMsg {
            version: OFFLOAD_VERSION,
            frame: req.frame,
            from: req.from as u16,
            carried: Carried::encode(req.carried, self.carried),
            state: req.state.to_vec(),
            prev_action: req.prev_action.to_vec(),
            prev_ok: req.prev_ok,
        }
        .encode();
        // A server that is gone but not yet known to be (its queryable
        // vanished a moment before its liveliness token) ends the query at
        // once without an answer: the next live server is asked, within
        // the same deadline.
        for _attempt in 0..2 {
            let now = Instant::now();
            let Some(server) = self.pick(now) else {
                self.no_server += 1;
                return Ok(false);
            };
            let Some(wait) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                self.timeouts += 1;
                return Ok(false);
            };
            match self.ask(&server, &msg, req.frame, wait, deadline, reply)? {
                Asked::Answered => {
                    self.misses = 0;
                    return Ok(true);
                }
                Asked::Refused => {
                    self.refused += 1;
                    return Ok(false);
                }
                Asked::TimedOut => {
                    self.timeouts += 1;
                    self.missed(server, Instant::now());
                    return Ok(false);
                }
                Asked::Nobody => {
                    // Skip it now rather than after MISSES_BEFORE_SKIP.
                    self.skipped = Some((server, Instant::now() + SKIP_FOR));
                }
            }
        }
        self.timeouts += 1;
        Ok(false)
    }

    fn counters(&self) -> OffloadCounters {
        OffloadCounters {
            failovers: self.failovers,
            ..OffloadCounters::default()
        }
    }
}

/// How one query ended.
enum Asked {
    Answered,
    /// The server answered that it could not run the request, or sent
    /// something unusable.
    Refused,
    TimedOut,
    /// The query ended without any answer before the deadline.
    Nobody,
}

impl ZenohOffload {
    fn ask(
        &mut self,
        server: &Server,
        msg: &[u8],
        frame: u64,
        wait: Duration,
        deadline: Instant,
        reply: &mut OffloadReply,
    ) -> Result<Asked, OffloadError> {
        let key = format!("{}/{}/{}", self.prefix, server.rank, server.name);
        let replies = self
            .session
            .get(key.clone())
            .payload(msg.to_vec())
            .timeout(wait)
            .wait()
            .map_err(|e| OffloadError::Link(format!("get {key}: {e}")))?;
        loop {
            let got = match replies.recv_deadline(deadline) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(Asked::TimedOut),
                Err(_) if Instant::now() < deadline => return Ok(Asked::Nobody),
                Err(_) => return Ok(Asked::TimedOut),
            };
            let Ok(sample) = got.result() else {
                continue;
            };
            // Only the server asked answers: a reply on another key (a
            // wildcard queryable's, or one naming another server) is not
            // its. With the secured configuration, access control admits a
            // reply on a server's key only from that server's certificate
            // (docs/offload.md), so the key is the server's identity.
            if sample.key_expr().as_str() != key {
                tracing::warn!(server = %key, from = %sample.key_expr(), "offload reply from another key ignored");
                continue;
            }
            let bytes = sample.payload().to_bytes();
            let m = match ReplyMsg::decode(&bytes) {
                Ok(m) if m.frame == frame => m,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(server = %key, "{e}");
                    return Ok(Asked::Refused);
                }
            };
            let a = match m.result {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(server = %key, "offload refused: {why}");
                    return Ok(Asked::Refused);
                }
            };
            if a.action.len() != reply.action.len()
                || a.next_state.len() != reply.next_state.len()
                || a.deltas.len() > MAX_EXITS
                || a.scores.len() > MAX_EXITS
                || a.exit_seconds.len() > MAX_EXITS
            {
                return Ok(Asked::Refused);
            }
            reply.frame = m.frame;
            reply.exit = a.exit as usize;
            reply.ran = a.ran as usize;
            reply.heads = a.heads as usize;
            reply.action.copy_from_slice(&a.action);
            reply.next_state.copy_from_slice(&a.next_state);
            for (dst, src) in [
                (&mut reply.deltas, &a.deltas),
                (&mut reply.scores, &a.scores),
                (&mut reply.exit_seconds, &a.exit_seconds),
            ] {
                dst.fill(f32::NAN);
                dst[..src.len()].copy_from_slice(src);
            }
            return Ok(Asked::Answered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_and_parsed_back() {
        let p = offload_prefix("robot-1", "demo vla/v2", "0123456789abcdef").unwrap();
        assert_eq!(p, "robot-1/offload/demo_vla_v2/0123456789abcdef");
        let k = server_key(&p, 1, "edge-a").unwrap();
        assert_eq!(parse_server(&p, &k), Some((1, "edge-a".to_string())));
        assert_eq!(parse_server(&p, "robot-1/offload/x/y/1/a"), None);
        assert!(server_key(&p, 0, "a/b").is_err());
        assert!(server_key(&p, 0, "").is_err());
        assert!(offload_prefix("bad*robot", "m", "d").is_err());
    }

    #[test]
    fn messages_round_trip_bit_for_bit_and_check_their_version() {
        let m = RequestMsg {
            version: OFFLOAD_VERSION,
            frame: 7,
            from: 2,
            carried: Carried::F32(vec![vec![1.5, -0.0, f32::MIN_POSITIVE], vec![3.25]]),
            state: vec![0.1; 4],
            prev_action: vec![f32::from_bits(0x3f80_0001), 2.0],
            prev_ok: true,
        };
        let back = RequestMsg::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.prev_action[0].to_bits(), 0x3f80_0001);
        let mut t = Vec::new();
        back.carried.decode_into(&mut t);
        assert!(t[0][1].is_sign_negative());
        // fp16: half the bytes of the tensors, values to half precision.
        let x = vec![vec![0.1f32; 256]];
        let (full, half) = (
            Carried::encode(&x, CarriedDtype::Fp32),
            Carried::encode(&x, CarriedDtype::Fp16),
        );
        let bytes = |c: &Carried| postcard::to_allocvec(c).unwrap().len();
        assert!(
            bytes(&half) * 10 < bytes(&full) * 6,
            "{} vs {}",
            bytes(&half),
            bytes(&full)
        );
        half.decode_into(&mut t);
        assert!(
            (t[0][0] - 0.1).abs() < 1e-4 && t[0][0] != 0.1,
            "{}",
            t[0][0]
        );
        let mut old = m.clone();
        old.version = OFFLOAD_VERSION + 1;
        let e = RequestMsg::decode(&old.encode()).unwrap_err().to_string();
        assert!(e.contains("this build speaks"), "{e}");
        let e = ReplyMsg::decode(&[0xff; 3]).unwrap_err().to_string();
        assert!(e.contains("offload reply: 3 bytes"), "{e}");
    }
}
