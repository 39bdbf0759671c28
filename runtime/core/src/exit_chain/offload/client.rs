//! The robot's side of offloading: exits `local..` run on a server; a frame
//! whose criterion has not stopped by exit `local - 1` asks it, waits until
//! its deadline, and falls back to the deepest local exit without an
//! answer. With `--offload-auto` the cut moves by measurement.

use super::super::walk::Walk;
use super::super::{ExitChain, ExitChainError, FrameOutcome, MAX_EXITS};
use super::{Offload, OffloadCounters, OffloadReply, OffloadRequest, Partitioner};
use std::time::{Duration, Instant};

/// The offload link of a robot's chain.
pub(crate) struct Remote {
    /// Exits run on the robot (`0..local`); deeper ones on a server.
    pub(in crate::exit_chain) local: usize,
    pub(in crate::exit_chain) link: Box<dyn Offload>,
    pub(in crate::exit_chain) reply: OffloadReply,
    /// Longest wait for an answer when the frame has no deadline.
    pub(in crate::exit_chain) timeout: Duration,
    /// Frames seen by the partition.
    pub(in crate::exit_chain) frames: u64,
    pub(in crate::exit_chain) counters: OffloadCounters,
    /// Moves `local` by measurement (`None`: a fixed cut).
    pub(in crate::exit_chain) auto: Option<Partitioner>,
    /// Bounds on an answer's elements (the manifest's `[offload]`).
    pub(in crate::exit_chain) max_abs_state: f32,
    pub(in crate::exit_chain) max_abs_action: f32,
}

/// Whether every element is finite and at most `bound` in magnitude: what
/// an answer from the network must be before the robot commits it.
fn within(v: &[f32], bound: f32) -> bool {
    v.iter().all(|x| x.abs() <= bound)
}

/// Frames between two choices of the cut by measurement.
pub(in crate::exit_chain) const REPARTITION_EVERY: u64 = 50;

impl ExitChain {
    /// Runs exits `local..` on a server through `link` (see
    /// [`super`]): a frame whose criterion has not stopped by exit
    /// `local - 1` asks the server and waits until its deadline (or
    /// `timeout` without one); with no answer it uses exit `local - 1`.
    /// Set it before the first frame: from then on, on a GPU backend, the
    /// tensors it would carry stay on the device.
    pub fn set_offload(
        &mut self,
        local: usize,
        link: Box<dyn Offload>,
        timeout: Duration,
    ) -> Result<(), ExitChainError> {
        self.refuse_host_carry("offloading")?;
        if !(1..self.n).contains(&local) {
            return Err(ExitChainError::Request(format!(
                "{local} local exits: the robot must run between 1 and {} of the {} exits",
                self.n - 1,
                self.n
            )));
        }
        let (max_abs_state, max_abs_action) = self.offload_bounds;
        self.remote = Some(Remote {
            local,
            link,
            reply: self.offload_reply(),
            timeout,
            frames: 0,
            counters: OffloadCounters::default(),
            auto: None,
            max_abs_state,
            max_abs_action,
        });
        Ok(())
    }

    /// Lets measurements move the cut set by [`Self::set_offload`] (see
    /// [`Partitioner`]), for a link of `bytes_per_s`; the cut may move to
    /// the end (no offload) when the link makes the server slower.
    pub fn set_offload_auto(&mut self, bytes_per_s: f64) {
        let carried: Vec<usize> = (0..self.n)
            .map(|k| match k {
                0 => 0,
                k => {
                    let tensors: usize = self.chain.exit_outputs(k - 1).iter().map(Vec::len).sum();
                    4 * (tensors + self.state.len() + self.stop.len())
                }
            })
            .collect();
        if let Some(r) = &mut self.remote {
            r.auto = Some(Partitioner::new(self.n, &carried, bytes_per_s));
        }
    }

    /// Feeds one frame to the partition and, every [`REPARTITION_EVERY`]
    /// frames, moves the cut where the measurements say.
    pub(in crate::exit_chain) fn repartition(&mut self, o: &FrameOutcome, wall_s: Option<f64>) {
        let Some(r) = &mut self.remote else {
            return;
        };
        let Some(p) = &mut r.auto else {
            return;
        };
        p.record_depth(if o.fallback { r.local } else { o.exit });
        if let (true, Some(w)) = (o.remote, wall_s) {
            p.record_answer(&r.reply.exit_seconds, r.local, w);
        }
        r.frames += 1;
        if r.frames % REPARTITION_EVERY != 0 {
            return;
        }
        let mut robot_s = [0.0f64; MAX_EXITS];
        for (i, t) in robot_s.iter_mut().enumerate().take(self.n) {
            match self.latency.predict(i) {
                Some(s) => *t = s as f64 / self.latency.margin as f64,
                None => return,
            }
        }
        let k = p.best(r.local, &robot_s[..self.n]);
        if k != r.local {
            tracing::info!(
                from = r.local,
                to = k,
                "offload: the measured partition moved the cut"
            );
            r.local = k;
            r.counters.cut_changes += 1;
        }
    }

    /// Reply buffers sized for this chain's action and state: what a
    /// server's answer is written into.
    pub fn offload_reply(&self) -> OffloadReply {
        OffloadReply::new(self.stop.len(), self.state.len())
    }

    /// What offloading did so far; `None` without offload.
    pub fn offload_counters(&self) -> Option<OffloadCounters> {
        self.remote.as_ref().map(|r| {
            let link = r.link.counters();
            OffloadCounters {
                failovers: link.failovers,
                ..r.counters
            }
        })
    }

    /// Exits run on the robot when offloading.
    pub fn local_exits(&self) -> Option<usize> {
        self.remote.as_ref().map(|r| r.local)
    }

    /// Asks the server for exits `local..`; on a usable answer, commits it
    /// and fills `out` (true). False: fall back to the local exits, state
    /// untouched.
    pub(in crate::exit_chain) fn ask_server(
        &mut self,
        out: &mut FrameOutcome,
        w: &Walk,
        deadline: Option<Instant>,
    ) -> Result<bool, ExitChainError> {
        let Some(r) = self.remote.as_mut() else {
            return Ok(false);
        };
        // The request number is the frame id an answer must carry.
        r.counters.requests += 1;
        let local = r.local;
        let now = Instant::now();
        let until = deadline.map_or(now + r.timeout, |d| d.min(now + r.timeout));
        let req = OffloadRequest {
            frame: r.counters.requests,
            from: local,
            carried: self.chain.exit_outputs(local - 1),
            state: &self.state,
            prev_action: &self.actions[local - 1],
            prev_ok: w.prev_ok,
        };
        let answered = match r.link.run_remote(&req, until, &mut r.reply) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "offload request not sent");
                false
            }
        };
        let reply = &r.reply;
        let usable = answered
            && reply.frame == r.counters.requests
            && (local..self.n).contains(&reply.exit)
            && reply.ran > reply.exit
            && reply.ran <= self.n
            && within(&reply.action, r.max_abs_action)
            && within(&reply.next_state, r.max_abs_state);
        if !usable {
            r.counters.rejected += answered as u64;
            r.counters.fallbacks += 1;
            return Ok(false);
        }
        r.counters.answered += 1;
        let pick = reply.exit;
        self.actions[pick].copy_from_slice(&reply.action);
        self.next_states[pick].copy_from_slice(&reply.next_state);
        self.state.copy_from_slice(&reply.next_state);
        self.chosen = pick;
        self.stopped = false;
        for i in local..reply.ran {
            out.deltas[i] = reply.deltas[i];
            out.scores[i] = reply.scores[i];
            out.exit_seconds[i] = reply.exit_seconds[i];
        }
        out.remote_ran = reply.ran - out.ran;
        out.remote_heads = reply.heads;
        out.ran = reply.ran;
        out.heads += reply.heads;
        out.exit = pick;
        out.remote = true;
        out.stopped = false;
        Ok(true)
    }
}
