//! Deep exits on another device (AdaptLink's idea applied to early exits):
//! the robot runs its local exits; when the criterion asks for more depth
//! than is local, the tensors carried out of the last local segment go to a
//! server that runs the deeper exits and answers with the action.
//!
//! This module is the runtime's side of it and knows nothing of the
//! network: an [`Offload`] is whatever carries a request to a server and
//! its reply back (zenoh in `offramp-link`, a fake in the tests). What the
//! exit chain guarantees around it:
//! * the recurrent head's state stays on the robot: it goes out with the
//!   request and the server's next state is committed only when its answer
//!   is the action used, so a lost answer never corrupts it;
//! * the wait is bounded by the frame's deadline (or the offload's own
//!   timeout): with no answer in time the deepest local exit's action is
//!   used (a *fallback*), and the control loop never blocks on the network;
//! * a server answers for the same engine set (the set's digest is part of
//!   the request), and its action is checked like a local one (NaN or Inf
//!   stops the robot).

pub(super) mod client;
mod server;

pub(crate) use client::Remote;

use super::MAX_EXITS;
use std::time::Instant;

/// What the robot asks a server to run.
#[derive(Debug)]
pub struct OffloadRequest<'a> {
    /// Frame number on the robot (answers to older frames are ignored).
    pub frame: u64,
    /// First exit the server runs (the robot ran `0..from`).
    pub from: usize,
    /// Every output of segment `from - 1`, in manifest order: the tensors
    /// carried across the cut.
    pub carried: &'a [Vec<f32>],
    /// The robot's committed recurrent state.
    pub state: &'a [f32],
    /// Exit `from - 1`'s action, for the first remote exit's criterion
    /// score (action consistency compares with the previous exit).
    pub prev_action: &'a [f32],
    /// Whether `prev_action` is finite (else the first remote exit has no
    /// score and cannot stop).
    pub prev_ok: bool,
}

/// A server's answer: the exit it stopped at and what that exit computed.
/// Buffers sized once by [`OffloadReply::new`].
#[derive(Debug, Clone)]
pub struct OffloadReply {
    pub frame: u64,
    /// The exit whose action is `action` (≥ the request's `from`).
    pub exit: usize,
    /// Exits run in total, the robot's included.
    pub ran: usize,
    pub action: Vec<f32>,
    /// The head's next state at `exit`: committed only if this answer is
    /// the action used.
    pub next_state: Vec<f32>,
    /// Per exit, as in [`super::FrameOutcome`]; NaN for the
    /// robot's exits.
    pub deltas: [f32; MAX_EXITS],
    pub scores: [f32; MAX_EXITS],
    /// Seconds each remote exit took on the server.
    pub exit_seconds: [f32; MAX_EXITS],
    /// Head evaluations on the server.
    pub heads: usize,
}

impl OffloadReply {
    pub fn new(action_len: usize, state_len: usize) -> Self {
        Self {
            frame: 0,
            exit: 0,
            ran: 0,
            action: vec![0.0; action_len],
            next_state: vec![0.0; state_len],
            deltas: [f32::NAN; MAX_EXITS],
            scores: [f32::NAN; MAX_EXITS],
            exit_seconds: [f32::NAN; MAX_EXITS],
            heads: 0,
        }
    }
}

/// Carries requests to a server. Implementations must return by
/// `deadline`, with `Ok(false)` when no usable answer came.
pub trait Offload: Send {
    /// Sends `req` and waits for its answer until `deadline`; `Ok(true)`
    /// when `reply` holds it.
    fn run_remote(
        &mut self,
        req: &OffloadRequest<'_>,
        deadline: Instant,
        reply: &mut OffloadReply,
    ) -> Result<bool, OffloadError>;

    /// Counters of the link (failovers, servers seen), for the report.
    fn counters(&self) -> OffloadCounters {
        OffloadCounters::default()
    }
}

/// Why a request could not even be sent (a late or missing answer is not
/// an error: it is a fallback).
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("offload: {0}")]
    Link(String),
}

/// What offloading did over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffloadCounters {
    /// Frames whose criterion asked for a remote exit.
    pub requests: u64,
    /// Frames whose action came from a server.
    pub answered: u64,
    /// Frames that asked and used the deepest local exit instead: no server,
    /// no answer before the deadline, or an unusable answer.
    pub fallbacks: u64,
    /// Switches from one server to another (its liveliness dropped, or it
    /// stopped answering).
    pub failovers: u64,
    /// Answers rejected (wrong frame, wrong sizes, not finite).
    pub rejected: u64,
    /// Times the measured partition moved the cut (`--offload auto`).
    pub cut_changes: u64,
}

/// Chooses where the chain is cut (how many exits the robot runs) from
/// measurements, and again whenever they change: AdaptLink's partition by
/// each device's compute and the link, applied to an early-exit chain.
///
/// For a cut `k` (exits `0..k` on the robot, `k..` on the server) the
/// expected frame latency is the mean, over the exits frames recently
/// stopped at, of
/// * a frame that stops at `j < k`: the robot's time for exits `0..=j`;
/// * a frame that stops at `j ≥ k`: the robot's time for `0..k`, the link's
///   round trip, the carried tensors' bytes over the link's bandwidth, and
///   the server's time for `k..=j`.
///
/// `k = n` (everything on the robot) is a candidate too: a slow link moves
/// the cut to the end. Times are exponentially weighted; the robot's come
/// from the exit chain's latency model (every exit predicted from exit 0,
/// so exits that now run remotely keep an estimate), the server's from its
/// answers (an exit it never ran is estimated at the server's measured
/// speed relative to the robot), the link's from answer time minus server
/// compute.
#[derive(Debug, Clone)]
pub struct Partitioner {
    n: usize,
    server_s: [f64; MAX_EXITS],
    server_seen: [bool; MAX_EXITS],
    /// Round trip without the server's compute, seconds.
    link_s: Option<f64>,
    /// Bytes of the tensors carried into exit k (the outputs of k − 1).
    carried_bytes: [f64; MAX_EXITS],
    bytes_per_s: f64,
    /// Recent frames per stopping exit (decayed).
    depth: [f64; MAX_EXITS],
}

impl Partitioner {
    /// Weight of a new measurement.
    const ALPHA: f64 = 0.1;
    /// Per-frame decay of the depth histogram.
    const DECAY: f64 = 0.99;

    /// `carried_bytes[k]`: bytes sent when exits `k..` are remote.
    pub fn new(n: usize, carried_bytes: &[usize], bytes_per_s: f64) -> Self {
        let mut c = [0.0; MAX_EXITS];
        for (d, s) in c.iter_mut().zip(carried_bytes) {
            *d = *s as f64;
        }
        Self {
            n: n.min(MAX_EXITS),
            server_s: [0.0; MAX_EXITS],
            server_seen: [false; MAX_EXITS],
            link_s: None,
            carried_bytes: c,
            bytes_per_s: bytes_per_s.max(1.0),
            depth: [0.0; MAX_EXITS],
        }
    }

    fn ewma(old: f64, new: f64, seen: bool) -> f64 {
        if seen {
            old + Self::ALPHA * (new - old)
        } else {
            new
        }
    }

    /// A frame stopped at `exit` (or wanted at least that deep).
    pub fn record_depth(&mut self, exit: usize) {
        for d in &mut self.depth[..self.n] {
            *d *= Self::DECAY;
        }
        if let Some(d) = self.depth.get_mut(exit.min(self.n - 1)) {
            *d += 1.0;
        }
    }

    /// An answer: the server's seconds per exit it ran, and the request's
    /// wall time.
    pub fn record_answer(&mut self, server_seconds: &[f32], from: usize, wall_s: f64) {
        let mut compute = 0.0;
        for i in from..self.n {
            let s = server_seconds.get(i).copied().unwrap_or(f32::NAN);
            if s.is_finite() && s >= 0.0 {
                self.server_s[i] = Self::ewma(self.server_s[i], s as f64, self.server_seen[i]);
                self.server_seen[i] = true;
                compute += s as f64;
            }
        }
        let link = (wall_s - compute).max(0.0);
        self.link_s = Some(self.link_s.map_or(link, |l| Self::ewma(l, link, true)));
    }

    /// The server's seconds for exit `i`, measured or estimated from
    /// `robot_s` at the server's measured relative speed.
    fn server(&self, i: usize, robot_s: &[f64]) -> Option<f64> {
        if self.server_seen[i] {
            return Some(self.server_s[i]);
        }
        let mut ratios: Vec<f64> = (0..self.n)
            .filter(|&j| self.server_seen[j] && robot_s[j] > 0.0)
            .map(|j| self.server_s[j] / robot_s[j])
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios.get(ratios.len() / 2).map(|r| r * robot_s[i])
    }

    /// Expected latency of cut `k` with the robot's per-exit seconds
    /// `robot_s`; `None` while the server or link is unmeasured.
    pub fn expected(&self, k: usize, robot_s: &[f64]) -> Option<f64> {
        let total: f64 = self.depth[..self.n].iter().sum();
        if total <= 0.0 {
            return None;
        }
        let mut sum = 0.0;
        for j in 0..self.n {
            let w = self.depth[j] / total;
            if w == 0.0 {
                continue;
            }
            let t = if j < k {
                robot_s[..=j].iter().sum::<f64>()
            } else {
                let mut t = robot_s[..k].iter().sum::<f64>()
                    + self.link_s?
                    + self.carried_bytes[k] / self.bytes_per_s;
                for i in k..=j {
                    t += self.server(i, robot_s)?;
                }
                t
            };
            sum += w * t;
        }
        Some(sum)
    }

    /// The cut with the lowest expected latency among `1..=n` (`n`: no
    /// offload); `current` while there is not enough to judge.
    pub fn best(&self, current: usize, robot_s: &[f64]) -> usize {
        let mut best = (current, self.expected(current, robot_s));
        if best.1.is_none() {
            return current;
        }
        for k in 1..=self.n {
            if let Some(t) = self.expected(k, robot_s) {
                if best.1.is_some_and(|b| t < b * 0.95) {
                    best = (k, Some(t));
                }
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Robot 10 ms per exit, server 2 ms, 4 exits, every frame deep.
    fn deep(link_s: f64) -> (Partitioner, [f64; 4]) {
        let mut p = Partitioner::new(4, &[0, 4000, 4000, 4000], 1e6);
        for _ in 0..50 {
            p.record_depth(3);
        }
        p.record_answer(&[f32::NAN, 0.002, 0.002, 0.002], 1, link_s + 0.006);
        (p, [0.010; 4])
    }

    #[test]
    fn a_fast_server_on_a_fast_link_takes_every_exit_it_can() {
        let (p, robot) = deep(0.001);
        assert_eq!(p.best(1, &robot), 1);
        // From a later cut too.
        assert_eq!(p.best(3, &robot), 1);
        // 10 + 1 + 4 + 6 ms.
        let t = p.expected(1, &robot).unwrap();
        assert!((t - 0.021).abs() < 1e-9, "{t}");
    }

    #[test]
    fn a_slow_link_moves_the_cut_to_the_robot() {
        let (p, robot) = deep(0.050);
        assert_eq!(p.best(1, &robot), 4);
    }

    #[test]
    fn shallow_frames_keep_the_work_local_and_the_cut_follows_the_mix() {
        let (mut p, robot) = deep(0.012);
        // Every frame deep: offloading 3 exits (3 × 8 ms saved) beats a
        // 12 ms link plus 4 ms of transfer.
        assert_eq!(p.best(1, &robot), 1);
        // Most frames now stop at the second exit: it pays to keep the
        // first two local (those frames never pay the link).
        for _ in 0..400 {
            p.record_depth(1);
        }
        for _ in 0..20 {
            p.record_depth(3);
        }
        assert_eq!(p.best(1, &robot), 2);
    }

    #[test]
    fn unmeasured_server_exits_are_estimated_at_its_measured_speed() {
        let mut p = Partitioner::new(4, &[0; 4], 1e9);
        p.record_depth(3);
        // Only exits 2 and 3 measured on the server: 5× the robot's speed.
        p.record_answer(&[f32::NAN, f32::NAN, 0.002, 0.002], 2, 0.004);
        let robot = [0.010; 4];
        let s1 = p.server(1, &robot).unwrap();
        assert!((s1 - 0.002).abs() < 1e-9, "{s1}");
        assert!(p.expected(1, &robot).is_some());
        // Nothing to judge yet: stay.
        let fresh = Partitioner::new(4, &[0; 4], 1e9);
        assert_eq!(fresh.best(2, &robot), 2);
    }
}
