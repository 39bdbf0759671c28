//! The DeeR exit chain over an engine set: segment i → the shared recurrent
//! head evaluated *without* committing its state → criterion → next segment
//! or stop; the chosen exit's head state is committed.
//!
//! Criterion: stop at the first exit i whose score is below its threshold
//! η_i; the last exit always stops. The score depends on the criterion kind:
//! * action consistency (DeeR Eq. 3): RMS(a_i − a_{i−1}) over the continuous
//!   action dims; exit 0 compares with the head on segment 0's reference
//!   feature when the model has one, else it has no score;
//! * max confidence, entropy, top-2 margin (discrete heads, whose action is
//!   class probabilities, or token actions): e.g. 1 − max_k a_i[k], defined
//!   at every exit including exit 0;
//! * learned: 1 − exit i's own confidence output (an exit head's estimate
//!   that stopping there is safe), defined at every exit but the last.
//!
//! A NaN/Inf action or state is "not confident" and is reported; if the
//! deepest exit run is bad, the action is stop (zeros) and the head state is
//! reset.
//!
//! Every buffer is sized from the manifest in [`ExitChain::new`]; `step`
//! allocates nothing in this code.

use crate::offload::{Offload, OffloadCounters, OffloadReply, OffloadRequest, Partitioner};
use offramp_engines::manifest::{ActionKind, CriterionKind, TokenScores};
use offramp_engines::{BackendKind, Chain, EngineSet};
use std::ops::Range;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Most exits a set may have (fixed-size per-frame records).
pub const MAX_EXITS: usize = 16;

#[derive(Debug, Error)]
pub enum ExitChainError {
    #[error(transparent)]
    Engine(#[from] offramp_engines::Error),
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error(transparent)]
    Offload(#[from] crate::offload::OffloadError),
    #[error("offload request: {0}")]
    Request(String),
    #[error("instruction {k}: the model knows instructions 0..{known} (preprocess.instruction_ids, or the one-hot input's width)")]
    Instruction { k: usize, known: usize },
}

/// Which exit a frame stops at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitPolicy {
    /// The manifest's calibrated criterion.
    Criterion,
    /// Always exit `k` (baselines, calibration sweeps).
    Fixed(usize),
    /// Run every exit and record every action and delta, then commit the
    /// exit the criterion would have chosen (offline calibration).
    All,
}

/// What happened to one frame. Fixed size: nothing to allocate.
#[derive(Debug, Clone, Copy)]
pub struct FrameOutcome {
    /// The exit whose action is used.
    pub exit: usize,
    /// Exits run (segments executed).
    pub ran: usize,
    /// RMS delta against the previous exit (NaN: not computed or bad).
    pub deltas: [f32; MAX_EXITS],
    /// The criterion's score at each exit (lower is more confident; the
    /// exit stops when it is under the threshold). NaN: not computed or bad.
    pub scores: [f32; MAX_EXITS],
    /// Seconds spent in segment i plus its head evaluation (host clock).
    pub exit_seconds: [f32; MAX_EXITS],
    /// The same on the device, from CUDA events (GPU backends; NaN on the
    /// CPU backend).
    pub device_seconds: [f32; MAX_EXITS],
    /// Some exit produced a NaN/Inf.
    pub nonfinite: bool,
    /// The action is stop because the deepest exit run was bad.
    pub stopped: bool,
    /// Head evaluations (the reference included).
    pub heads: usize,
    /// The deadline stopped the chain before the criterion did.
    pub deadline_cut: bool,
    /// The action came from a server's deeper exit (offload).
    pub remote: bool,
    /// Of `ran` and `heads`, the segments and head evaluations the server
    /// ran (0 unless `remote`).
    pub remote_ran: usize,
    pub remote_heads: usize,
    /// The criterion asked for a remote exit but no usable answer came in
    /// time: the deepest local exit's action is used.
    pub fallback: bool,
}

impl FrameOutcome {
    fn empty() -> Self {
        Self {
            exit: 0,
            ran: 0,
            deltas: [f32::NAN; MAX_EXITS],
            scores: [f32::NAN; MAX_EXITS],
            exit_seconds: [0.0; MAX_EXITS],
            device_seconds: [f32::NAN; MAX_EXITS],
            nonfinite: false,
            stopped: false,
            heads: 0,
            deadline_cut: false,
            remote: false,
            remote_ran: 0,
            remote_heads: 0,
            fallback: false,
        }
    }
}

/// Where a walk over the exits stands.
struct Walk {
    prev_ok: bool,
    last_good: Option<usize>,
    chosen: Option<usize>,
}

/// The offload link of a robot's chain.
struct Remote {
    /// Exits run on the robot (`0..local`); deeper ones on a server.
    local: usize,
    link: Box<dyn Offload>,
    reply: OffloadReply,
    /// Longest wait for an answer when the frame has no deadline.
    timeout: Duration,
    /// Frames seen by the partition.
    frames: u64,
    counters: OffloadCounters,
    /// Moves `local` by measurement (`None`: a fixed cut).
    auto: Option<Partitioner>,
}

/// Frames between two choices of the cut by measurement.
const REPARTITION_EVERY: u64 = 50;

/// Predicts each exit's latency (segment + head) for the deadline, so that an
/// exit starts only if it can still finish in time (AdaLLaVA's guarantee, by
/// construction: the deadline caps the depth, content picks the exit).
///
/// Exit 0 runs on every frame, so its recent latencies say how fast the
/// machine is right now; a deeper exit is predicted as exit 0's latency times
/// that exit's latency ratio to exit 0. The ratio is what the exit costs
/// relative to exit 0 — a property of the model, not of the moment — taken
/// from the manifest's MACs until the exit has run, then as the median of the
/// ratios measured in the same frames (with the prior counted as samples
/// until [`Self::PRIOR_WEIGHT`] measurements exist). Prediction = the largest of exit 0's
/// last [`Self::WINDOW`] latencies × ratio × margin.
///
/// Why not each exit's own recent maximum: an exit runs only when predicted to
/// fit, so a single spike (a warm-up run, a burst of contention) once pushed
/// its prediction past the deadline for good — it was never run, so never
/// re-measured. Here every prediction follows exit 0, which is measured every
/// frame: once the machine is fast again, the deep exits come back within
/// `WINDOW` frames, and a spike in a rarely used exit moves only one of the
/// ratios its median is taken over.
#[derive(Debug, Clone)]
pub struct LatencyModel {
    base: [f32; Self::WINDOW],
    base_next: usize,
    base_filled: usize,
    ratios: [[f32; Self::RATIOS]; MAX_EXITS],
    ratio_next: [usize; MAX_EXITS],
    ratio_filled: [usize; MAX_EXITS],
    prior: [f32; MAX_EXITS],
    pub margin: f32,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self {
            base: [0.0; Self::WINDOW],
            base_next: 0,
            base_filled: 0,
            ratios: [[0.0; Self::RATIOS]; MAX_EXITS],
            ratio_next: [0; MAX_EXITS],
            ratio_filled: [0; MAX_EXITS],
            prior: [1.0; MAX_EXITS],
            margin: 1.3,
        }
    }
}

impl LatencyModel {
    /// Frames of exit-0 latency the speed estimate looks back over.
    pub const WINDOW: usize = 64;
    /// Measured ratios per exit the median is taken over.
    pub const RATIOS: usize = 15;
    /// Measurements it takes to overrule the cost prior entirely.
    pub const PRIOR_WEIGHT: usize = 3;

    /// A model whose unmeasured exits are predicted from `costs` (any unit
    /// proportional to run time, e.g. MACs of each exit's segment + head).
    pub fn with_costs(costs: &[u64]) -> Self {
        let mut m = Self::default();
        if let Some(&c0) = costs.first().filter(|c| **c > 0) {
            for (p, c) in m.prior.iter_mut().zip(costs) {
                *p = *c as f32 / c0 as f32;
            }
        }
        m
    }

    /// Records one frame's per-exit latencies (`seconds[i]` for the exits
    /// that ran, in order; every exit's head evaluated).
    pub fn record_frame(&mut self, seconds: &[f32]) {
        let Some(&t0) = seconds.first().filter(|t| t.is_finite() && **t > 0.0) else {
            return;
        };
        self.base[self.base_next] = t0;
        self.base_next = (self.base_next + 1) % Self::WINDOW;
        self.base_filled = (self.base_filled + 1).min(Self::WINDOW);
        for (i, t) in seconds.iter().enumerate().skip(1).take(MAX_EXITS - 1) {
            if !t.is_finite() {
                continue;
            }
            let k = self.ratio_next[i];
            self.ratios[i][k] = t / t0;
            self.ratio_next[i] = (k + 1) % Self::RATIOS;
            self.ratio_filled[i] = (self.ratio_filled[i] + 1).min(Self::RATIOS);
        }
    }

    /// Exit `exit`'s latency relative to exit 0.
    pub fn ratio(&self, exit: usize) -> f32 {
        if exit == 0 || exit >= MAX_EXITS {
            return self.prior.get(exit).copied().unwrap_or(1.0);
        }
        // The prior counts as samples until PRIOR_WEIGHT measurements agree:
        // one spiky first run (a warm-up) does not outvote it.
        let n = self.ratio_filled[exit];
        let mut r = [self.prior[exit]; Self::RATIOS + Self::PRIOR_WEIGHT];
        r[..n].copy_from_slice(&self.ratios[exit][..n]);
        let m = n.max(Self::PRIOR_WEIGHT);
        r[..m].sort_unstable_by(f32::total_cmp);
        r[m / 2]
    }

    /// Predicted seconds for `exit`; None until exit 0 has been measured.
    pub fn predict(&self, exit: usize) -> Option<f32> {
        let n = self.base_filled;
        (n > 0).then(|| {
            let speed = self.base[..n].iter().copied().fold(0.0f32, f32::max);
            speed * self.ratio(exit) * self.margin
        })
    }
}

pub struct ExitChain {
    chain: Chain,
    n: usize,
    /// The exit `CriterionKind::Fixed` stops at.
    fixed_exit: usize,
    kind: CriterionKind,
    thresholds: Vec<f32>,
    dims: Vec<usize>,
    reference: Option<usize>,
    /// The learned criterion: each exit's confidence output (by index).
    confidence: Vec<Option<usize>>,
    state: Vec<f32>,
    next_states: Vec<Vec<f32>>,
    actions: Vec<Vec<f32>>,
    ref_action: Vec<f32>,
    stop: Vec<f32>,
    /// Token actions: how the head's distributions become actions.
    tokens: Option<Tokens>,
    /// Token-id instructions, instruction k first (empty: one-hot).
    instruction_ids: Vec<Vec<i64>>,
    chosen: usize,
    stopped: bool,
    instruction: Option<usize>,
    segment_macs: Vec<u64>,
    head_macs: u64,
    full_macs: u64,
    latency: LatencyModel,
    remote: Option<Remote>,
    links: Links,
}

/// Whether the tensors between segments stay on the GPU
/// ([`Chain::keep_between_segments_on_device`]), decided at the first frame:
/// yes unless the chain offloads or serves, which carry them on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Links {
    Undecided,
    /// This many tensors stay on the device (0 on the CPU).
    Kept(usize),
    Never,
}

/// Discrete action tokens: per dimension, a distribution over bins whose
/// top bin's centre is the action.
struct Tokens {
    /// Bin centres, dimension-major (`per_dim` per dimension).
    bins: Vec<f32>,
    per_dim: usize,
    /// The head emits logits (softmax here) rather than probabilities.
    logits: bool,
    /// Each exit's probabilities, for the probability criteria.
    probs: Vec<Vec<f32>>,
    /// The exit-0 reference's probabilities.
    ref_probs: Vec<f32>,
}

impl Tokens {
    /// Turns `raw` ([D × B] logits or probabilities) into probabilities and
    /// the action (each dimension's top bin centre). A dimension with a
    /// non-finite score gets a NaN action, which the chain never uses.
    fn decode(
        bins: &[f32],
        b: usize,
        logits: bool,
        raw: &[f32],
        probs: &mut [f32],
        action: &mut [f32],
    ) {
        for (d, ((row, p), a)) in raw
            .chunks_exact(b)
            .zip(probs.chunks_exact_mut(b))
            .zip(action.iter_mut())
            .enumerate()
        {
            if !finite(row) {
                p.fill(f32::NAN);
                *a = f32::NAN;
                continue;
            }
            if logits {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (q, x) in p.iter_mut().zip(row) {
                    *q = (x - m).exp();
                    sum += *q;
                }
                p.iter_mut().for_each(|q| *q /= sum);
            } else {
                p.copy_from_slice(row);
            }
            let mut top = 0;
            for (k, q) in p.iter().enumerate() {
                if *q > p[top] {
                    top = k;
                }
            }
            *a = bins[d * b + top];
        }
    }

    /// The least confident dimension's score.
    fn score(kind: CriterionKind, b: usize, probs: &[f32]) -> f32 {
        probs
            .chunks_exact(b)
            .map(|row| {
                if finite(row) {
                    kind.probability_score(row)
                } else {
                    f32::NAN
                }
            })
            .fold(f32::NEG_INFINITY, |acc, x| {
                if x.is_nan() || acc.is_nan() {
                    f32::NAN
                } else {
                    acc.max(x)
                }
            })
    }
}

fn finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

fn rms(a: &[f32], b: &[f32], dims: &[usize]) -> f32 {
    if dims.is_empty() {
        let s: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        return (s / a.len().max(1) as f32).sqrt();
    }
    let s: f32 = dims.iter().map(|&d| (a[d] - b[d]) * (a[d] - b[d])).sum();
    (s / dims.len() as f32).sqrt()
}

impl ExitChain {
    pub fn new(set: &EngineSet, backend: BackendKind) -> Result<Self, ExitChainError> {
        Self::check_exits(set)?;
        Self::with_chain(set, Chain::load(set, backend)?)
    }

    fn check_exits(set: &EngineSet) -> Result<(), ExitChainError> {
        let n = set.manifest.exits.len();
        if n > MAX_EXITS {
            return Err(ExitChainError::Manifest {
                path: set.manifest_path.display().to_string(),
                message: format!("{n} exits; at most {MAX_EXITS} are supported"),
            });
        }
        Ok(())
    }

    /// The exit chain over an already built [`Chain`] of `set` (engines of
    /// your own, or test doubles: [`Chain::with_engines`]).
    pub fn with_chain(set: &EngineSet, chain: Chain) -> Result<Self, ExitChainError> {
        Self::check_exits(set)?;
        let m = &set.manifest;
        let n = chain.exits();
        let bad = |message: String| ExitChainError::Manifest {
            path: set.manifest_path.display().to_string(),
            message,
        };
        if n == 0 {
            return Err(bad("no exits".into()));
        }
        let state_len = m.state_len();
        let raw_len = m
            .action_tensor()
            .ok_or_else(|| {
                bad("no action tensor: name the head's action_output or each exit's action".into())
            })?
            .elements();
        let action_len = m.action_dims();
        let tokens = match m.action.kind {
            ActionKind::Continuous => None,
            ActionKind::Tokens => Some(Tokens {
                bins: m.action.bins.concat(),
                per_dim: m.action.bins_per_dim(),
                logits: m.action.scores == TokenScores::Logits,
                probs: vec![vec![0.0; raw_len]; n],
                ref_probs: vec![0.0; raw_len],
            }),
        };
        if tokens.is_none() && raw_len != action_len {
            return Err(bad(format!(
                "the action tensor has {raw_len} values but the action {action_len}"
            )));
        }
        let reference = match &m.criterion.exit0_reference {
            Some(r) => Some(chain.output_index(0, r).ok_or_else(|| {
                bad(format!(
                    "criterion.exit0_reference {r:?} is not an output of exits[0]"
                ))
            })?),
            None => None,
        };
        let confidence = m
            .exits
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, s)| match &s.confidence {
                Some(c) => chain.output_index(i, c).map(Some).ok_or_else(|| {
                    bad(format!(
                        "exits[{i}].confidence {c:?} is not an output of that segment"
                    ))
                }),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let instruction = m
            .preprocess
            .as_ref()
            .and_then(|p| p.instruction.as_ref())
            .and_then(|name| m.inputs.iter().position(|t| &t.name == name));
        let instruction_ids = m
            .preprocess
            .as_ref()
            .map(|p| p.instruction_ids.clone())
            .unwrap_or_default();
        let segment_macs: Vec<u64> = m.exits.iter().take(n).map(|s| s.cost.macs).collect();
        let head_macs = m.head_macs();
        let exit_cost: Vec<u64> = segment_macs
            .iter()
            .enumerate()
            .map(|(i, s)| s + head_macs * (1 + (i == 0 && reference.is_some()) as u64))
            .collect();
        let fixed_exit = m.criterion.fixed_exit.unwrap_or(n - 1).min(n - 1);
        Ok(Self {
            chain,
            n,
            fixed_exit,
            kind: m.criterion.kind,
            thresholds: m.criterion.thresholds.clone(),
            dims: m.criterion.continuous_dims.clone(),
            reference,
            confidence,
            state: vec![0.0; state_len],
            next_states: vec![vec![0.0; state_len]; n],
            actions: vec![vec![0.0; action_len]; n],
            ref_action: vec![0.0; action_len],
            stop: vec![0.0; action_len],
            tokens,
            instruction_ids,
            chosen: n - 1,
            stopped: false,
            instruction,
            segment_macs,
            head_macs,
            full_macs: m.exits.iter().map(|s| s.cost.macs).sum::<u64>() + head_macs,
            latency: LatencyModel::with_costs(&exit_cost),
            remote: None,
            links: Links::Undecided,
        })
    }

    /// Decides, once, whether the tensors between segments stay on the GPU:
    /// not for a chain that serves (`serving`) or offloads, whose carried
    /// tensors travel through the host. Outputs the criterion reads (a
    /// confidence, the exit-0 reference) stay copied.
    fn decide_links(&mut self, serving: bool) {
        if self.links != Links::Undecided {
            return;
        }
        if serving || self.remote.is_some() {
            self.links = Links::Never;
            return;
        }
        let (reference, confidence) = (self.reference, &self.confidence);
        let kept = self.chain.keep_between_segments_on_device(|i, k| {
            (i == 0 && reference == Some(k)) || confidence.get(i) == Some(&Some(k))
        });
        if kept > 0 {
            tracing::info!(
                tensors = kept,
                "the tensors between segments stay on the GPU"
            );
        }
        self.links = Links::Kept(kept);
    }

    /// The error for carrying tensors through the host once they stay on
    /// the GPU.
    fn links_kept(&self, what: &str) -> Result<(), ExitChainError> {
        match self.links {
            Links::Kept(n) if n > 0 => Err(ExitChainError::Request(format!(
                "{what}: this chain already keeps {n} tensor(s) between segments on the GPU, \
                 where the host cannot carry them; set it up before the first frame"
            ))),
            _ => Ok(()),
        }
    }

    /// Runs exits `local..` on a server through `link` (see
    /// [`crate::offload`]): a frame whose criterion has not stopped by exit
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
        self.links_kept("offloading")?;
        if !(1..self.n).contains(&local) {
            return Err(ExitChainError::Request(format!(
                "{local} local exits: the robot must run between 1 and {} of the {} exits",
                self.n - 1,
                self.n
            )));
        }
        self.remote = Some(Remote {
            local,
            link,
            reply: self.offload_reply(),
            timeout,
            frames: 0,
            counters: OffloadCounters::default(),
            auto: None,
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
    fn repartition(&mut self, o: &FrameOutcome, wall_s: Option<f64>) {
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

    /// Server side of offloading: runs exits `req.from..` under the
    /// criterion on the carried tensors and the robot's state, and writes
    /// the exit it stops at into `reply`. Keeps nothing of the request: the
    /// state stays the robot's.
    pub fn serve(
        &mut self,
        req: &OffloadRequest<'_>,
        reply: &mut OffloadReply,
    ) -> Result<(), ExitChainError> {
        self.links_kept("serving exits")?;
        self.decide_links(true);
        let from = req.from;
        if !(1..self.n).contains(&from) {
            return Err(ExitChainError::Request(format!(
                "asks for exits from {from}; this set has exits 1..{} to serve",
                self.n
            )));
        }
        let ours = self.chain.exit_outputs(from - 1);
        let sizes_ok = req.carried.len() == ours.len()
            && req
                .carried
                .iter()
                .zip(ours)
                .all(|(c, o)| c.len() == o.len())
            && req.state.len() == self.state.len()
            && req.prev_action.len() == self.stop.len();
        if !sizes_ok {
            return Err(ExitChainError::Request(format!(
                "carried tensors {:?}, state {}, action {} do not match this set's {:?}, {}, {}",
                req.carried.iter().map(Vec::len).collect::<Vec<_>>(),
                req.state.len(),
                req.prev_action.len(),
                ours.iter().map(Vec::len).collect::<Vec<_>>(),
                self.state.len(),
                self.stop.len()
            )));
        }
        for (dst, src) in self
            .chain
            .exit_outputs_mut(from - 1)
            .iter_mut()
            .zip(req.carried)
        {
            dst.copy_from_slice(src);
        }
        self.state.copy_from_slice(req.state);
        self.actions[from - 1].copy_from_slice(req.prev_action);
        self.chain.take_device_seconds();
        let mut out = FrameOutcome::empty();
        let mut w = Walk {
            prev_ok: req.prev_ok,
            last_good: None,
            chosen: None,
        };
        self.walk(
            &mut out,
            &mut w,
            ExitPolicy::Criterion,
            None,
            None,
            from..self.n,
        )?;
        let pick = w.chosen.unwrap_or(out.ran - 1);
        reply.frame = req.frame;
        reply.exit = pick;
        reply.ran = out.ran;
        reply.action.copy_from_slice(&self.actions[pick]);
        reply.next_state.copy_from_slice(&self.next_states[pick]);
        reply.deltas = out.deltas;
        reply.scores = out.scores;
        reply.exit_seconds = out.exit_seconds;
        reply.heads = out.heads;
        Ok(())
    }

    /// Multiply-accumulates a frame cost: the segments it ran and every head
    /// evaluation.
    pub fn frame_macs(&self, o: &FrameOutcome) -> u64 {
        self.segment_macs.iter().take(o.ran).sum::<u64>() + self.head_macs * o.heads as u64
    }

    /// The part of [`Self::frame_macs`] this machine computed: without the
    /// segments and head evaluations a server ran (offload).
    pub fn robot_macs(&self, o: &FrameOutcome) -> u64 {
        let local = o.ran - o.remote_ran;
        self.segment_macs.iter().take(local).sum::<u64>()
            + self.head_macs * (o.heads - o.remote_heads) as u64
    }

    /// Cumulative MACs of stopping at each exit under the criterion: the
    /// segments up to it, a head evaluation per exit, and the reference.
    pub fn criterion_costs(&self) -> Vec<u64> {
        let reference = self.reference.is_some() as u64;
        (0..self.n)
            .map(|i| {
                self.segment_macs[..=i].iter().sum::<u64>()
                    + self.head_macs * (i as u64 + 1 + reference)
            })
            .collect()
    }

    /// MACs of the full model: every segment and the head once (exits past
    /// a stored `deepest_exit` included: ratios stay against the model).
    pub fn full_macs(&self) -> u64 {
        self.full_macs
    }

    pub fn exits(&self) -> usize {
        self.n
    }

    /// Replaces the thresholds (calibration).
    pub fn set_thresholds(&mut self, thresholds: &[f32]) {
        self.thresholds.clear();
        self.thresholds.extend_from_slice(thresholds);
    }

    /// The first model input (the image of a one-camera model).
    pub fn image_mut(&mut self) -> &mut [f32] {
        &mut self.chain.inputs_mut()[0]
    }

    /// The model inputs, for preprocessing to fill its image inputs.
    pub fn inputs_mut(&mut self) -> &mut [Vec<f32>] {
        self.chain.inputs_mut()
    }

    /// Model input `k` as the first engine's device buffer, on a GPU
    /// backend (see [`Chain::device_input`]); from then on the image must
    /// be written there, not through [`Self::inputs_mut`].
    pub fn input_on_device(&mut self, k: usize) -> Option<offramp_engines::DeviceTensor> {
        self.chain.device_input(k)
    }

    /// Sets instruction `k`, if the model has an instruction input: one-hot
    /// element k, or the token ids of instruction k. An instruction the
    /// model does not know is refused (the input keeps no stale one).
    pub fn set_instruction(&mut self, k: usize) -> Result<(), ExitChainError> {
        let Some(i) = self.instruction else {
            return Ok(());
        };
        let buf = &mut self.chain.inputs_mut()[i];
        buf.iter_mut().for_each(|x| *x = 0.0);
        let known = if self.instruction_ids.is_empty() {
            buf.len()
        } else {
            self.instruction_ids.len()
        };
        if k >= known {
            return Err(ExitChainError::Instruction { k, known });
        }
        if self.instruction_ids.is_empty() {
            buf[k] = 1.0;
        } else {
            // Exact: ids are checked < 2^24 when the set is opened.
            for (x, id) in buf.iter_mut().zip(&self.instruction_ids[k]) {
                *x = *id as f32;
            }
        }
        Ok(())
    }

    /// Forgets the recurrent state (new episode).
    pub fn reset(&mut self) {
        self.state.iter_mut().for_each(|x| *x = 0.0);
    }

    /// The action of the last frame (stop if it was stopped).
    pub fn action(&self) -> &[f32] {
        if self.stopped {
            &self.stop
        } else {
            &self.actions[self.chosen]
        }
    }

    /// Exit `i`'s action from the last frame (valid for exits that ran).
    pub fn exit_action(&self, i: usize) -> &[f32] {
        &self.actions[i]
    }

    fn head(&mut self, i: usize) -> Result<bool, ExitChainError> {
        let (a, h) = self.chain.run_head(i, &self.state)?;
        match &mut self.tokens {
            None => self.actions[i].copy_from_slice(a),
            Some(t) => Tokens::decode(
                &t.bins,
                t.per_dim,
                t.logits,
                a,
                &mut t.probs[i],
                &mut self.actions[i],
            ),
        }
        self.next_states[i].copy_from_slice(h);
        Ok(finite(&self.actions[i]) && finite(&self.next_states[i]))
    }

    /// The criterion's score at exit `i` (lower is more confident), from
    /// this frame's actions; NaN where it is not defined.
    fn score(&self, i: usize, delta: f32) -> f32 {
        match self.kind {
            CriterionKind::ActionConsistency => delta,
            // Discrete heads: token actions score their distributions; a
            // continuous action vector is read as class probabilities.
            k @ (CriterionKind::MaxConfidence | CriterionKind::Entropy | CriterionKind::Margin) => {
                match &self.tokens {
                    Some(t) => Tokens::score(k, t.per_dim, &t.probs[i]),
                    None => k.probability_score(&self.actions[i]),
                }
            }
            // 1 − the exit head's confidence; NaN (never stops) for an
            // exit without one or a confidence outside [0, 1].
            CriterionKind::Learned => match self.confidence.get(i).copied().flatten() {
                Some(k) => match self.chain.exit_output(i, k).first() {
                    Some(&p) if (0.0..=1.0).contains(&p) => 1.0 - p,
                    _ => f32::NAN,
                },
                None => f32::NAN,
            },
            CriterionKind::Fixed => f32::NAN,
        }
    }

    /// Whether exit `i` stops on `score` (a NaN score never does).
    fn passes(&self, i: usize, score: f32) -> bool {
        self.thresholds.get(i).is_some_and(|t| score < *t)
    }

    /// Time spent inside the engines since the last call.
    pub fn take_engine_time(&mut self) -> std::time::Duration {
        self.chain.take_engine_time()
    }

    /// The per-exit latency estimates the deadline uses.
    pub fn latency_model(&self) -> &LatencyModel {
        &self.latency
    }

    /// Runs one frame whose inputs are filled.
    pub fn step(&mut self, policy: ExitPolicy) -> Result<FrameOutcome, ExitChainError> {
        self.step_until(policy, None)
    }

    /// Runs one frame; with a deadline, an exit starts only if its predicted
    /// latency still fits, else the deepest action already computed is used.
    /// Exit 0 always runs (there is no action without it).
    pub fn step_until(
        &mut self,
        policy: ExitPolicy,
        deadline: Option<Instant>,
    ) -> Result<FrameOutcome, ExitChainError> {
        self.decide_links(false);
        let mut out = FrameOutcome::empty();
        // Device time is read per exit below; drop what came before.
        self.chain.take_device_seconds();
        let fixed = match (policy, self.kind) {
            (ExitPolicy::Fixed(k), _) => Some(k.min(self.n - 1)),
            (ExitPolicy::Criterion, CriterionKind::Fixed) => Some(self.fixed_exit),
            _ => None,
        };
        // Offloading serves the calibrated criterion only: fixed exits and
        // calibration's run-everything stay on the robot.
        let offloading = policy == ExitPolicy::Criterion && fixed.is_none();
        let local = match &self.remote {
            Some(r) if offloading => r.local,
            _ => self.n,
        };
        let mut w = Walk {
            prev_ok: false,
            last_good: None,
            chosen: None,
        };
        self.walk(&mut out, &mut w, policy, fixed, deadline, 0..local)?;
        if fixed.is_none() {
            self.latency.record_frame(&out.exit_seconds[..out.ran]);
        }
        if w.chosen.is_none() && !out.deadline_cut && out.ran == local && local < self.n {
            let t0 = Instant::now();
            if self.ask_server(&mut out, &w, deadline)? {
                self.repartition(&out, Some(t0.elapsed().as_secs_f64()));
                return Ok(out);
            }
            out.fallback = true;
        }
        let last_run = out.ran - 1;
        let pick = match (w.chosen, out.deadline_cut || out.fallback) {
            (Some(c), _) => c,
            (None, true) => w.last_good.unwrap_or(last_run),
            (None, false) => last_run,
        };
        // The deepest exit run decides; if it is bad, stop.
        let pick_ok = finite(&self.actions[pick]) && finite(&self.next_states[pick]);
        if pick_ok {
            self.chosen = pick;
            self.stopped = false;
            self.state.copy_from_slice(&self.next_states[pick]);
        } else {
            self.chosen = w.last_good.unwrap_or(pick);
            self.stopped = true;
            self.reset();
        }
        out.exit = pick;
        out.stopped = self.stopped;
        if offloading {
            self.repartition(&out, None);
        }
        Ok(out)
    }

    /// Asks the server for exits `local..`; on a usable answer, commits it
    /// and fills `out` (true). False: fall back to the local exits, state
    /// untouched.
    fn ask_server(
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
            && finite(&reply.action)
            && finite(&reply.next_state);
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

    /// Runs exits `range` (in order) until the criterion, the fixed exit or
    /// the deadline stops; `w` carries what the previous exits left.
    fn walk(
        &mut self,
        out: &mut FrameOutcome,
        w: &mut Walk,
        policy: ExitPolicy,
        fixed: Option<usize>,
        deadline: Option<Instant>,
        range: Range<usize>,
    ) -> Result<(), ExitChainError> {
        for i in range {
            let t0 = Instant::now();
            if let (Some(d), Some(_)) = (deadline, w.last_good) {
                // Exit 0 has run (last_good is set), so there is a prediction.
                let predicted = self.latency.predict(i).unwrap_or(0.0);
                if t0 + Duration::from_secs_f32(predicted) > d {
                    out.deadline_cut = true;
                    break;
                }
            }
            self.chain.run_exit(i)?;
            if let (0, Some(r), None) = (i, self.reference, fixed) {
                let (a, _) = self.chain.run_head_on(0, r, &self.state)?;
                match &mut self.tokens {
                    None => self.ref_action.copy_from_slice(a),
                    Some(t) => Tokens::decode(
                        &t.bins,
                        t.per_dim,
                        t.logits,
                        a,
                        &mut t.ref_probs,
                        &mut self.ref_action,
                    ),
                }
                w.prev_ok = finite(&self.ref_action);
                out.heads += 1;
            }
            let want_head = fixed.is_none_or(|k| k == i);
            let ok = if want_head {
                out.heads += 1;
                self.head(i)?
            } else {
                true
            };
            out.exit_seconds[i] = t0.elapsed().as_secs_f32();
            out.device_seconds[i] = self.chain.take_device_seconds().unwrap_or(f32::NAN);
            out.ran = i + 1;
            if !want_head {
                continue;
            }
            if !ok {
                out.nonfinite = true;
                w.prev_ok = false;
            } else {
                w.last_good = Some(i);
                if w.prev_ok {
                    let prev = if i == 0 {
                        &self.ref_action
                    } else {
                        &self.actions[i - 1]
                    };
                    out.deltas[i] = rms(&self.actions[i], prev, &self.dims);
                }
                w.prev_ok = true;
                out.scores[i] = self.score(i, out.deltas[i]);
            }
            let stop_here = match fixed {
                Some(k) => i == k,
                None => w.chosen.is_none() && ok && self.passes(i, out.scores[i]),
            };
            if stop_here && w.chosen.is_none() {
                w.chosen = Some(i);
                if policy != ExitPolicy::All {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offramp_engines::manifest::{BuildInfo, Cost, Criterion, Head, Segment};
    use offramp_engines::{Engine, Manifest, Precision, Role, TensorSpec};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn rms_over_selected_dims() {
        assert_eq!(
            rms(&[1.0, 5.0, 9.0], &[0.0, 5.0, 0.0], &[0, 1]),
            (0.5f32).sqrt()
        );
        assert_eq!(rms(&[3.0, 4.0], &[0.0, 0.0], &[]), (12.5f32).sqrt());
    }

    /// What the fake engines produce this frame.
    #[derive(Clone)]
    struct Script {
        /// The head's action at each exit (2 dims).
        actions: Vec<[f32; 2]>,
        /// The head's action on exit 0's reference feature.
        reference: [f32; 2],
        /// Each exit's learned confidence (a third, one-value output).
        confidence: Vec<f32>,
        /// How long each segment takes.
        sleep: Vec<Duration>,
    }

    const EXITS: usize = 4;
    /// Feature tag of the reference output.
    const REF: f32 = -1.0;

    /// Segment i: `hidden` carried on, `feature` = [i, 0], and on segment 0
    /// a reference feature [-1, 0]; sleeps as scripted.
    struct FakeSegment {
        index: usize,
        script: Arc<Mutex<Script>>,
        /// As on a GPU backend: device buffers, and a log of what the
        /// chain asked of them.
        device: Option<Log>,
    }

    type Log = Arc<Mutex<Vec<String>>>;

    impl Engine for FakeSegment {
        fn run(
            &mut self,
            _inputs: &[&[f32]],
            outputs: &mut [&mut [f32]],
        ) -> offramp_engines::Result<()> {
            let sleep = self.script.lock().unwrap().sleep[self.index];
            if !sleep.is_zero() {
                std::thread::sleep(sleep);
            }
            outputs[0].fill(0.0);
            outputs[1].copy_from_slice(&[self.index as f32, 0.0]);
            match outputs.get_mut(2) {
                Some(c) if c.len() == 1 => {
                    c[0] = self.script.lock().unwrap().confidence[self.index]
                }
                Some(r) => r.copy_from_slice(&[REF, 0.0]),
                None => {}
            }
            if let Some(log) = &self.device {
                log.lock().unwrap().push(format!("run s{}", self.index));
            }
            Ok(())
        }

        fn device_output(&self, k: usize) -> Option<offramp_engines::DeviceTensor> {
            self.device.as_ref()?;
            Some(offramp_engines::DeviceTensor {
                address: (100 * self.index + k) as u64,
                bytes: 4,
            })
        }

        unsafe fn read_input_from(&mut self, k: usize, src: offramp_engines::DeviceTensor) -> bool {
            let Some(log) = &self.device else {
                return false;
            };
            log.lock()
                .unwrap()
                .push(format!("s{} input {k} <- {}", self.index, src.address));
            true
        }

        fn keep_output_on_device(&mut self, k: usize) -> bool {
            let Some(log) = &self.device else {
                return false;
            };
            log.lock()
                .unwrap()
                .push(format!("s{} output {k} kept", self.index));
            true
        }
    }

    /// The head: the scripted action for the exit its feature is tagged
    /// with; next state = state + tag + 1, so the committed state tells
    /// which exit's head state was kept.
    struct FakeHead {
        script: Arc<Mutex<Script>>,
    }

    impl Engine for FakeHead {
        fn run(
            &mut self,
            inputs: &[&[f32]],
            outputs: &mut [&mut [f32]],
        ) -> offramp_engines::Result<()> {
            let (feature, state) = (inputs[0], inputs[1]);
            let s = self.script.lock().unwrap();
            let tag = feature[0];
            let a = if tag == REF {
                s.reference
            } else {
                s.actions[tag as usize]
            };
            outputs[0].copy_from_slice(&a);
            outputs[1][0] = state[0] + tag + 1.0;
            Ok(())
        }
    }

    fn spec(name: &str, n: usize) -> TensorSpec {
        TensorSpec::f32(name, &[1, n])
    }

    fn manifest(kind: CriterionKind, reference: bool, thresholds: &[f32]) -> Manifest {
        let cost = Cost {
            macs: 1000,
            params: 10,
            peak_activation_bytes: 8,
        };
        Manifest {
            format_version: 1,
            model: "fake".into(),
            build: BuildInfo {
                backend: BackendKind::Cpu,
                precision: Precision::Fp32,
                offramp_version: "test".into(),
                tools: Default::default(),
                target_device: "test".into(),
                tensorrt_version: None,
            },
            inputs: vec![spec("x", 1)],
            exits: (0..EXITS)
                .map(|i| {
                    let mut outputs = vec![spec("hidden", 1), spec("feature", 2)];
                    if i == 0 && reference {
                        outputs.push(spec("ref", 2));
                    }
                    Segment {
                        name: format!("s{i}"),
                        artifact: format!("s{i}"),
                        sha256: String::new(),
                        inputs: vec![if i == 0 {
                            spec("x", 1)
                        } else {
                            spec("hidden", 1)
                        }],
                        outputs,
                        feature: Some("feature".into()),
                        action: None,
                        confidence: None,
                        cost,
                    }
                })
                .collect(),
            head: Some(Head {
                artifact: "head".into(),
                sha256: String::new(),
                inputs: vec![spec("feature", 2), spec("h_in", 1)],
                outputs: vec![spec("action", 2), spec("h_out", 1)],
                feature_input: "feature".into(),
                state_input: Some("h_in".into()),
                state_output: Some("h_out".into()),
                action_output: "action".into(),
                cost: Cost { macs: 0, ..cost },
            }),
            action: Default::default(),
            criterion: Criterion {
                kind,
                thresholds: thresholds.to_vec(),
                continuous_dims: vec![0, 1],
                fixed_exit: None,
                deepest_exit: None,
                exit0_reference: reference.then(|| "ref".to_string()),
            },
            preprocess: None,
            offload: None,
        }
    }

    struct Fixture {
        chain: ExitChain,
        script: Arc<Mutex<Script>>,
    }

    impl Fixture {
        fn new(m: Manifest) -> Self {
            Self::with_device(m, None)
        }

        fn with_device(m: Manifest, device: Option<Log>) -> Self {
            let script = Arc::new(Mutex::new(Script {
                actions: vec![[0.0; 2]; EXITS],
                reference: [0.0; 2],
                confidence: vec![0.0; EXITS],
                sleep: vec![Duration::ZERO; EXITS],
            }));
            let set = EngineSet {
                dir: "fake".into(),
                manifest_path: "fake/manifest.toml".into(),
                manifest: m,
            };
            let sc = script.clone();
            let chain = Chain::with_engines(&set, |role, _, _, _| {
                Ok(match role {
                    Role::Segment(index) => Box::new(FakeSegment {
                        index,
                        script: sc.clone(),
                        device: device.clone(),
                    }) as Box<dyn Engine>,
                    Role::Head => Box::new(FakeHead { script: sc.clone() }),
                })
            })
            .unwrap();
            Self {
                chain: ExitChain::with_chain(&set, chain).unwrap(),
                script,
            }
        }

        fn actions(&self, actions: &[[f32; 2]]) {
            self.script.lock().unwrap().actions = actions.to_vec();
        }

        fn state(&self) -> f32 {
            self.chain.state[0]
        }
    }

    /// Actions whose consecutive RMS deltas are `d[i]` (exit 0 vs the
    /// reference at 0): a_i = Σ_{k≤i} d_k on both dims.
    fn with_deltas(d: [f32; EXITS]) -> Vec<[f32; 2]> {
        let mut acc = 0.0;
        d.iter()
            .map(|x| {
                acc += x;
                [acc, acc]
            })
            .collect()
    }

    #[test]
    fn token_actions_decode_to_bin_centres_and_score_the_least_confident_dimension() {
        // Two dimensions of three bins: centres [-1, 0, 1] and [10, 20, 30].
        let bins = [-1.0, 0.0, 1.0, 10.0, 20.0, 30.0];
        let (mut p, mut a) = ([0.0; 6], [0.0; 2]);
        // Logits: dimension 0 sure of bin 2, dimension 1 torn between 0 and 1.
        let raw = [0.0, 0.0, 9.0, 2.0, 2.0, -5.0];
        Tokens::decode(&bins, 3, true, &raw, &mut p, &mut a);
        assert_eq!(a[0], 1.0);
        assert!(a[1] == 10.0 || a[1] == 20.0, "{a:?}");
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > 0.99 && (p[3] - p[4]).abs() < 1e-6, "{p:?}");
        // The torn dimension decides: its margin score is ~1 (a tie).
        let m = Tokens::score(CriterionKind::Margin, 3, &p);
        assert!(m > 0.99, "{m}");
        let sure = Tokens::score(CriterionKind::Margin, 3, &p[..3]);
        assert!(sure < 0.01, "{sure}");
        // Probabilities are taken as they are.
        let probs = [0.1, 0.8, 0.1, 0.6, 0.3, 0.1];
        Tokens::decode(&bins, 3, false, &probs, &mut p, &mut a);
        assert_eq!(a, [0.0, 10.0]);
        assert_eq!(p, probs);
        let c = Tokens::score(CriterionKind::MaxConfidence, 3, &p);
        assert!((c - 0.4).abs() < 1e-6, "{c}");
        // A non-finite score makes that dimension's action NaN (never used).
        let bad = [0.0, f32::NAN, 1.0, 0.0, 1.0, 2.0];
        Tokens::decode(&bins, 3, true, &bad, &mut p, &mut a);
        assert!(a[0].is_nan() && a[1] == 30.0, "{a:?}");
        assert!(Tokens::score(CriterionKind::Entropy, 3, &p).is_nan());
    }

    #[test]
    fn an_instruction_the_model_does_not_know_is_refused() {
        use offramp_engines::manifest::Preprocess;
        let mut m = manifest(CriterionKind::ActionConsistency, false, &[]);
        m.preprocess = Some(Preprocess {
            mean: Some([0.0; 3]),
            std: Some([1.0; 3]),
            images: Vec::new(),
            instruction: Some("x".into()),
            tokenizer: None,
            instruction_texts: Vec::new(),
            instruction_ids: Vec::new(),
        });
        // One-hot: the input "x" is [1, 1], so only instruction 0 exists.
        let mut f = Fixture::new(m.clone());
        f.chain.set_instruction(0).unwrap();
        assert_eq!(f.chain.chain.inputs_mut()[0], [1.0]);
        let e = f.chain.set_instruction(1).unwrap_err().to_string();
        assert!(
            e.contains("instruction 1: the model knows instructions 0..1"),
            "{e}"
        );
        assert_eq!(f.chain.chain.inputs_mut()[0], [0.0], "no stale instruction");
        // Token ids: instruction k is its ids; past the list is refused.
        if let Some(p) = m.preprocess.as_mut() {
            p.instruction_ids = vec![vec![7], vec![9]];
        }
        let mut f = Fixture::new(m);
        f.chain.set_instruction(1).unwrap();
        assert_eq!(f.chain.chain.inputs_mut()[0], [9.0]);
        assert!(f.chain.set_instruction(2).is_err());
    }

    /// The fake set without a head: segment i's second output, [i, 0], is
    /// its own action.
    fn headless(thresholds: &[f32]) -> Manifest {
        let mut m = manifest(CriterionKind::ActionConsistency, false, thresholds);
        m.head = None;
        for s in &mut m.exits {
            s.outputs[1].name = "action".into();
            s.feature = None;
            s.action = Some("action".into());
        }
        m
    }

    #[test]
    fn a_set_without_a_head_stops_on_its_exits_own_actions_and_keeps_no_state() {
        // Consecutive exits differ by 1 in dimension 0: RMS 0.707.
        let mut f = Fixture::new(headless(&[0.8, 0.8, 0.8]));
        assert!(f.chain.state.is_empty() && f.chain.head_macs == 0);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        // Exit 0 has no reference to compare with, so exit 1 is the first
        // that can stop.
        assert_eq!((o.exit, o.ran), (1, 2));
        assert!((o.scores[1] - 0.5f32.sqrt()).abs() < 1e-6, "{:?}", o.scores);
        assert_eq!(f.chain.action(), [1.0, 0.0]);
        // Tighter thresholds: nothing stops early, the deepest decides.
        let mut f = Fixture::new(headless(&[0.5, 0.5, 0.5]));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (3, 4));
        assert_eq!(f.chain.action(), [3.0, 0.0]);
        assert_eq!(f.chain.frame_macs(&o), 4000);
    }

    #[test]
    fn the_first_passing_exit_stops_the_chain_and_only_its_state_is_committed() {
        let mut f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        // Exit 0 differs from the reference by 1.0, exit 1 from exit 0 by
        // 0.05 (passes), exit 2 by 0.01 (would pass too: must not run).
        f.actions(&with_deltas([1.0, 0.05, 0.01, 0.0]));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran, o.heads), (1, 2, 3));
        assert!((o.scores[1] - 0.05).abs() < 1e-6, "{:?}", o.scores);
        assert!(o.scores[2].is_nan(), "exit 2 must not have run");
        assert_eq!(f.chain.action(), &[1.05, 1.05]);
        // Head state of exit 1: 0 + 1 + 1.
        assert_eq!(f.state(), 2.0);

        // Every exit run (calibration): the same exit is chosen and only
        // its state kept, not the deepest one's.
        let o = f.chain.step(ExitPolicy::All).unwrap();
        assert_eq!((o.exit, o.ran), (1, EXITS));
        assert_eq!(f.state(), 4.0);
    }

    #[test]
    fn exit_0_stops_on_its_reference_and_cannot_without_one() {
        let same = with_deltas([0.0, 0.5, 0.5, 0.5]);
        let mut f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        f.actions(&same);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran, o.heads), (0, 1, 2));
        assert_eq!(f.state(), 1.0);

        let mut f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            false,
            &[0.1, 0.1, 0.1],
        ));
        f.actions(&same);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.scores[0].is_nan());
        // No exit passes: the last always stops.
        assert_eq!((o.exit, o.ran, o.heads), (3, 4, 4));
    }

    /// Learned exits: the score is 1 − the exit's own confidence output,
    /// from exit 0 on (no reference needed); a confidence that is not a
    /// probability never stops an exit.
    #[test]
    fn learned_exits_stop_where_their_confidence_passes() {
        let mut m = manifest(CriterionKind::Learned, false, &[0.2, 0.2, 0.2]);
        for s in &mut m.exits[..EXITS - 1] {
            s.outputs.push(spec("conf", 1));
            s.confidence = Some("conf".into());
        }
        let mut f = Fixture::new(m);
        f.script.lock().unwrap().confidence = vec![0.5, 0.9, 0.95, 0.0];
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (1, 2));
        assert!((o.scores[0] - 0.5).abs() < 1e-6, "{:?}", o.scores);
        assert!((o.scores[1] - 0.1).abs() < 1e-6, "{:?}", o.scores);
        f.script.lock().unwrap().confidence = vec![0.85, 0.7, 0.6, 0.0];
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (0, 1));
        f.script.lock().unwrap().confidence = vec![1.5, f32::NAN, -0.2, 0.0];
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (3, 4));
        assert!(o.scores[..3].iter().all(|s| s.is_nan()), "{:?}", o.scores);
        // Every exit scored under ExitPolicy::All, for calibration.
        f.script.lock().unwrap().confidence = vec![0.1, 0.2, 0.3, 0.0];
        let o = f.chain.step(ExitPolicy::All).unwrap();
        let want = [0.9, 0.8, 0.7];
        for (s, w) in o.scores.iter().zip(want) {
            assert!((s - w).abs() < 1e-6, "{:?}", o.scores);
        }
        assert!(o.scores[3].is_nan());
    }

    #[test]
    fn max_confidence_scores_every_exit_including_exit_0() {
        // Thresholds bound 1 − p_max: stop once p_max > 0.9.
        let mut f = Fixture::new(manifest(
            CriterionKind::MaxConfidence,
            false,
            &[0.1, 0.1, 0.1],
        ));
        f.actions(&[[0.95, 0.05], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (0, 1));
        assert!((o.scores[0] - 0.05).abs() < 1e-6);
        f.actions(&[[0.6, 0.4], [0.8, 0.2], [0.92, 0.08], [0.5, 0.5]]);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (2, 3));
    }

    #[test]
    fn fixed_criterion_stops_at_its_fixed_exit() {
        let mut m = manifest(CriterionKind::Fixed, false, &[]);
        m.criterion.fixed_exit = Some(1);
        let mut f = Fixture::new(m);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran, o.heads), (1, 2, 1));
    }

    /// An offload link that hands each request to `answer` (a server
    /// stand-in) and records what it was asked.
    struct FakeLink {
        answer: Answer,
        asked: Asked,
    }

    /// A server stand-in: fills the reply, or says no answer came.
    type Answer = Box<dyn FnMut(&OffloadRequest<'_>, Instant, &mut OffloadReply) -> bool + Send>;

    impl Offload for FakeLink {
        fn run_remote(
            &mut self,
            req: &OffloadRequest<'_>,
            deadline: Instant,
            reply: &mut OffloadReply,
        ) -> Result<bool, crate::offload::OffloadError> {
            self.asked
                .lock()
                .unwrap()
                .push((req.from, req.state[0], req.prev_ok));
            Ok((self.answer)(req, deadline, reply))
        }
    }

    type Asked = Arc<Mutex<Vec<(usize, f32, bool)>>>;

    /// A fixture whose exits 2 and 3 are remote, answered by `answer`.
    fn offloaded(
        timeout: Duration,
        answer: impl FnMut(&OffloadRequest<'_>, Instant, &mut OffloadReply) -> bool + Send + 'static,
    ) -> (Fixture, Asked) {
        let mut f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        let asked = Asked::default();
        f.chain
            .set_offload(
                2,
                Box::new(FakeLink {
                    answer: Box::new(answer),
                    asked: asked.clone(),
                }),
                timeout,
            )
            .unwrap();
        (f, asked)
    }

    /// A link whose server never answers.
    fn silent() -> Box<dyn Offload> {
        Box::new(FakeLink {
            answer: Box::new(|_, _, _| false),
            asked: Asked::default(),
        })
    }

    #[test]
    fn on_a_gpu_hidden_states_stay_on_the_device_from_the_first_frame() {
        let log = Log::default();
        let mut m = manifest(CriterionKind::ActionConsistency, true, &[0.1, 0.1, 0.1]);
        // Segment 1 also reads exit 0's reference, which the criterion
        // reads too; segment 2 reads `hidden` twice.
        m.exits[1].inputs.push(spec("ref", 2));
        m.exits[2].inputs.push(spec("hidden", 1));
        let mut f = Fixture::with_device(m, Some(log.clone()));
        assert!(log.lock().unwrap().is_empty(), "nothing before a frame");
        f.chain.step(ExitPolicy::All).unwrap();
        // A segment reads the previous one's `hidden` (output 0) in place,
        // linked before anything ran. The reference stays copied (the host
        // reads it), and so does a tensor two inputs read.
        let got = log.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                "s1 input 0 <- 0",
                "s0 output 0 kept",
                "s3 input 0 <- 200",
                "s2 output 0 kept",
                "run s0",
                "run s1",
                "run s2",
                "run s3",
            ]
        );
        f.chain.step(ExitPolicy::All).unwrap();
        assert_eq!(log.lock().unwrap().len(), got.len() + EXITS, "linked once");
        // The host can no longer carry those tensors to a server.
        let e = f
            .chain
            .set_offload(2, silent(), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("keeps 2 tensor(s) between segments on the GPU"),
            "{e}"
        );
        assert!(e.contains("before the first frame"), "{e}");
    }

    #[test]
    fn an_offloading_or_serving_chain_carries_its_tensors_through_the_host() {
        let log = Log::default();
        let m = manifest(CriterionKind::ActionConsistency, true, &[0.1, 0.1, 0.1]);
        let mut robot = Fixture::with_device(m.clone(), Some(log.clone()));
        robot
            .chain
            .set_offload(2, silent(), Duration::ZERO)
            .unwrap();
        robot.chain.step(ExitPolicy::Criterion).unwrap();
        let mut server = Fixture::with_device(m, Some(log.clone()));
        let carried = vec![vec![0.0f32], vec![0.0, 0.0]];
        let req = OffloadRequest {
            frame: 1,
            from: 2,
            carried: &carried,
            state: &[0.0],
            prev_action: &[0.0, 0.0],
            prev_ok: false,
        };
        let mut reply = server.chain.offload_reply();
        server.chain.serve(&req, &mut reply).unwrap();
        server.chain.step(ExitPolicy::All).unwrap();
        assert!(
            log.lock().unwrap().iter().all(|l| l.starts_with("run")),
            "{:?}",
            log.lock().unwrap()
        );
    }

    /// The server's answer: exit 3 with action [7, 7] and next state 40.
    fn exit3(req: &OffloadRequest<'_>, reply: &mut OffloadReply) {
        reply.frame = req.frame;
        reply.exit = 3;
        reply.ran = 4;
        reply.action.copy_from_slice(&[7.0, 7.0]);
        reply.next_state[0] = 40.0;
        reply.scores[2] = 0.5;
        reply.heads = 2;
    }

    #[test]
    fn a_frame_needing_remote_depth_uses_the_answer_and_commits_its_state() {
        let (mut f, asked) = offloaded(Duration::from_millis(50), |req, _, reply| {
            exit3(req, reply);
            true
        });
        f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.remote && !o.fallback && !o.stopped);
        assert_eq!((o.exit, o.ran, o.heads), (3, 4, 5));
        assert_eq!((o.remote_ran, o.remote_heads), (2, 2));
        // The robot computed segments 0 and 1 of the four.
        assert_eq!(f.chain.robot_macs(&o), 2000);
        assert_eq!(f.chain.frame_macs(&o), 4000);
        assert_eq!(o.scores[2], 0.5);
        assert_eq!(f.chain.action(), &[7.0, 7.0]);
        assert_eq!(f.state(), 40.0);
        // The request carried the committed state (0) and a finite exit 1.
        assert_eq!(*asked.lock().unwrap(), [(2, 0.0, true)]);
        let c = f.chain.offload_counters().unwrap();
        assert_eq!((c.requests, c.answered, c.fallbacks), (1, 1, 0));
        // The next frame sends the state the answer left.
        f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!(asked.lock().unwrap()[1], (2, 40.0, true));
    }

    #[test]
    fn a_frame_the_local_exits_settle_asks_no_server() {
        let (mut f, asked) = offloaded(Duration::from_millis(50), |_, _, _| {
            panic!("no request expected")
        });
        f.actions(&with_deltas([1.0, 0.05, 0.0, 0.0]));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(!o.remote && !o.fallback);
        assert_eq!((o.exit, o.ran), (1, 2));
        assert!(asked.lock().unwrap().is_empty());
        // Fixed exits and calibration's run-everything stay local.
        let o = f.chain.step(ExitPolicy::Fixed(3)).unwrap();
        assert_eq!((o.exit, o.remote), (3, false));
        let o = f.chain.step(ExitPolicy::All).unwrap();
        assert_eq!((o.ran, o.remote), (EXITS, false));
        assert!(asked.lock().unwrap().is_empty());
    }

    #[test]
    fn without_an_answer_the_deepest_local_exit_is_used_and_the_state_stays_local() {
        let (mut f, _) = offloaded(Duration::from_millis(50), |_, _, _| false);
        f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.fallback && !o.remote && !o.stopped);
        assert_eq!((o.exit, o.ran), (1, 2));
        assert_eq!(f.chain.action(), &[1.5, 1.5]);
        // Exit 1's head state: 0 + 1 + 1.
        assert_eq!(f.state(), 2.0);
        let c = f.chain.offload_counters().unwrap();
        assert_eq!((c.requests, c.answered, c.fallbacks), (1, 0, 1));
    }

    #[test]
    fn an_answer_for_another_frame_or_not_finite_is_rejected() {
        let mut n = 0;
        let (mut f, _) = offloaded(Duration::from_millis(50), move |req, _, reply| {
            exit3(req, reply);
            n += 1;
            match n {
                1 => reply.frame = req.frame - 1,
                2 => reply.action[0] = f32::NAN,
                3 => reply.next_state[0] = f32::INFINITY,
                4 => reply.exit = 1,
                _ => {}
            }
            true
        });
        f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
        let mut state = 0.0;
        for _ in 0..4 {
            let o = f.chain.step(ExitPolicy::Criterion).unwrap();
            assert!(o.fallback && !o.remote);
            assert_eq!(o.exit, 1);
            state += 2.0;
            assert_eq!(f.state(), state, "the rejected answer's state was kept");
        }
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.remote);
        let c = f.chain.offload_counters().unwrap();
        assert_eq!((c.rejected, c.fallbacks, c.answered), (4, 4, 1));
    }

    #[test]
    fn the_wait_for_a_server_ends_at_the_frame_deadline() {
        // The link is handed the frame's deadline (not its own 400 ms
        // timeout) and the step returns once it gives up.
        let (mut f, _) = offloaded(Duration::from_millis(400), |_, deadline, _| {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            false
        });
        f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
        let t0 = Instant::now();
        let o = f
            .chain
            .step_until(ExitPolicy::Criterion, Some(t0 + Duration::from_millis(20)))
            .unwrap();
        let took = t0.elapsed();
        assert!(o.fallback && o.exit == 1, "{o:?}");
        assert!(took >= Duration::from_millis(20), "{took:?}");
        assert!(
            took < Duration::from_millis(300),
            "waited past the deadline: {took:?}"
        );
        // Without a deadline the offload's own timeout bounds the wait.
        let t0 = Instant::now();
        f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(400));
    }

    #[test]
    fn the_measured_partition_moves_the_cut_with_the_link() {
        use std::sync::atomic::{AtomicU64, Ordering};
        // Robot: 4 ms per segment. Server: 0.5 ms per exit. Every frame
        // wants the last exit.
        let link_ms = Arc::new(AtomicU64::new(1));
        let delay = link_ms.clone();
        let (mut f, _) = offloaded(Duration::from_secs(1), move |req, _, reply| {
            std::thread::sleep(Duration::from_millis(delay.load(Ordering::Relaxed)));
            exit3(req, reply);
            reply.heads = EXITS - req.from;
            reply.exit_seconds = [f32::NAN; MAX_EXITS];
            for s in &mut reply.exit_seconds[req.from..EXITS] {
                *s = 0.0005;
            }
            true
        });
        f.script.lock().unwrap().sleep = vec![Duration::from_millis(4); EXITS];
        f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
        f.chain.set_offload_auto(1e9);
        let step = |f: &mut Fixture, frames: u64| {
            for _ in 0..frames {
                f.chain.step(ExitPolicy::Criterion).unwrap();
            }
        };
        // The cut starts after exit 2 (of 4); a fast server and link take
        // every exit but the first.
        step(&mut f, REPARTITION_EVERY);
        assert_eq!(f.chain.local_exits(), Some(1));
        // The link slows to 30 ms: running everything on the robot (16 ms)
        // is faster now.
        link_ms.store(30, Ordering::Relaxed);
        step(&mut f, 2 * REPARTITION_EVERY);
        assert_eq!(f.chain.local_exits(), Some(EXITS));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(!o.remote && !o.fallback && o.exit == EXITS - 1);
        assert_eq!(f.chain.offload_counters().unwrap().cut_changes, 2);
    }

    #[test]
    fn offload_needs_a_local_and_a_remote_exit() {
        let mut f = Fixture::new(manifest(CriterionKind::ActionConsistency, true, &[]));
        for local in [0, EXITS] {
            let link = FakeLink {
                answer: Box::new(|_, _, _| false),
                asked: Asked::default(),
            };
            let e = f
                .chain
                .set_offload(local, Box::new(link), Duration::ZERO)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("{local} local exits")), "{e}");
        }
    }

    #[test]
    fn a_server_resumes_the_chain_from_the_carried_tensors_and_the_robots_state() {
        let mut robot = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        let mut server = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        // Exit 2 passes against exit 1.
        let actions = with_deltas([1.0, 0.5, 0.05, 0.0]);
        robot.actions(&actions);
        server.actions(&actions);
        let o = robot.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!(o.exit, 2);
        let carried = robot.chain.chain.exit_outputs(1).to_vec();
        let mut reply = OffloadReply::new(2, 1);
        let req = OffloadRequest {
            frame: 9,
            from: 2,
            carried: &carried,
            state: &[5.0],
            prev_action: &actions[1],
            prev_ok: true,
        };
        server.chain.serve(&req, &mut reply).unwrap();
        assert_eq!(
            (reply.frame, reply.exit, reply.ran, reply.heads),
            (9, 2, 3, 1)
        );
        assert_eq!(reply.action, actions[2]);
        // The robot's state, not the server's own: 5 + 2 + 1.
        assert_eq!(reply.next_state, [8.0]);
        assert!((reply.scores[2] - 0.05).abs() < 1e-6);
        assert!(reply.scores[1].is_nan());
        // Without a finite previous action, exit 2 has no score and the
        // server runs on to the last exit.
        let req = OffloadRequest {
            prev_ok: false,
            ..req
        };
        server.chain.serve(&req, &mut reply).unwrap();
        assert_eq!(reply.exit, 3);
        // Wrong sizes are refused, naming them.
        let short = [vec![0.0f32]];
        let req = OffloadRequest {
            carried: &short,
            ..req
        };
        let e = server
            .chain
            .serve(&req, &mut reply)
            .unwrap_err()
            .to_string();
        assert!(e.contains("carried tensors [1]"), "{e}");
        let req = OffloadRequest { from: 0, ..req };
        let e = server
            .chain
            .serve(&req, &mut reply)
            .unwrap_err()
            .to_string();
        assert!(e.contains("from 0"), "{e}");
    }

    #[test]
    fn a_nonfinite_middle_exit_never_stops_and_the_deepest_decides() {
        let mut f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        // Exit 1 is NaN; exit 2 would pass against exit 1 but has no valid
        // predecessor, so the chain runs on to the last exit.
        f.actions(&[[1.0, 1.0], [f32::NAN, 0.0], [1.0, 1.0], [1.0, 1.0]]);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.nonfinite && !o.stopped);
        assert_eq!((o.exit, o.ran), (3, 4));
        assert!(o.scores[1].is_nan() && o.scores[2].is_nan());
        assert_eq!(f.chain.action(), &[1.0, 1.0]);
        assert_eq!(f.state(), 4.0);
    }

    #[test]
    fn a_nonfinite_deepest_exit_stops_the_motors_and_resets_the_state() {
        let mut f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.1, 0.1, 0.1],
        ));
        f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
        f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!(f.state(), 4.0);
        f.actions(&[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [f32::INFINITY, 0.0]]);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.nonfinite && o.stopped);
        assert_eq!(o.exit, 3);
        assert_eq!(f.chain.action(), &[0.0, 0.0], "the action is stop");
        assert_eq!(f.state(), 0.0, "the head state is reset");
        // The next good frame drives again from a fresh state.
        f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(!o.stopped);
        assert_eq!(f.state(), 4.0);
    }

    #[test]
    fn exits_past_a_stored_cap_are_not_loaded_and_a_nan_at_the_cap_stops() {
        let mut m = manifest(CriterionKind::ActionConsistency, true, &[0.0, 0.0, 0.0]);
        m.criterion.deepest_exit = Some(1);
        let mut f = Fixture::new(m);
        assert_eq!(f.chain.exits(), 2);
        f.actions(&[[1.0, 1.0], [f32::NAN, 0.0], [1.0, 1.0], [1.0, 1.0]]);
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert_eq!((o.exit, o.ran), (1, 2));
        assert!(
            o.stopped,
            "a NaN at the cap exit stops; nothing runs past it"
        );
        // Compute ratios stay against the whole model.
        assert_eq!(f.chain.full_macs(), 4 * 1000);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sleeps(f: &Fixture, each: [u64; EXITS]) {
        f.script.lock().unwrap().sleep = each.iter().map(|m| ms(*m)).collect();
    }

    /// Thresholds at 0: every frame wants the deepest exit.
    fn wants_the_deepest() -> Fixture {
        let f = Fixture::new(manifest(
            CriterionKind::ActionConsistency,
            true,
            &[0.0, 0.0, 0.0],
        ));
        f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
        f
    }

    #[test]
    fn the_deadline_cuts_before_an_exit_that_cannot_finish() {
        let mut f = wants_the_deepest();
        sleeps(&f, [2, 2, 60, 2]);
        // Measured once without a deadline, three times for the ratios.
        for _ in 0..3 {
            f.chain.step(ExitPolicy::Criterion).unwrap();
        }
        let o = f
            .chain
            .step_until(ExitPolicy::Criterion, Some(Instant::now() + ms(30)))
            .unwrap();
        assert!(o.deadline_cut);
        assert_eq!((o.exit, o.ran), (1, 2));
        assert!(!o.stopped);
        // The state committed is exit 1's (tag 1, + 1) on top of three
        // frames that stopped at exit 3 (+ 4 each).
        assert_eq!(f.state(), 12.0 + 2.0);
    }

    #[test]
    fn a_spike_in_a_deep_exit_does_not_disable_it() {
        let mut f = wants_the_deepest();
        // The first frame runs everything; exit 2's first run is slow (a
        // warm-up), the others are not.
        sleeps(&f, [2, 2, 100, 2]);
        f.chain.step(ExitPolicy::Criterion).unwrap();
        sleeps(&f, [2, 2, 2, 2]);
        let mut deepest = 0;
        for _ in 0..20 {
            let o = f
                .chain
                .step_until(ExitPolicy::Criterion, Some(Instant::now() + ms(40)))
                .unwrap();
            deepest += (o.ran == EXITS) as usize;
        }
        assert!(
            deepest >= 15,
            "{deepest} of 20 frames reached the deepest exit"
        );
    }

    #[test]
    fn the_deep_exits_come_back_after_contention_ends() {
        let mut f = wants_the_deepest();
        let deadline = ms(30);
        let frame = |f: &mut Fixture| {
            f.chain
                .step_until(ExitPolicy::Criterion, Some(Instant::now() + deadline))
                .unwrap()
        };
        sleeps(&f, [2, 2, 2, 2]);
        for _ in 0..5 {
            assert_eq!(frame(&mut f).ran, EXITS);
        }
        // Contention: every segment takes 25 ms, so a deep exit measured now
        // looks too slow for the deadline.
        sleeps(&f, [25, 25, 25, 25]);
        for _ in 0..5 {
            frame(&mut f);
        }
        // Over: within the speed window the deep exits run again.
        sleeps(&f, [2, 2, 2, 2]);
        for _ in 0..LatencyModel::WINDOW {
            frame(&mut f);
        }
        let deepest = (0..20).filter(|_| frame(&mut f).ran == EXITS).count();
        assert!(
            deepest >= 15,
            "{deepest} of 20 frames reached the deepest exit"
        );
    }

    #[test]
    fn latency_model_follows_exit_0_and_medians_out_a_spike() {
        let mut m = LatencyModel::with_costs(&[100, 200, 400]);
        assert_eq!(m.predict(1), None);
        m.record_frame(&[0.001]);
        // Unmeasured exit 2: prior ratio 4.
        assert!((m.predict(2).unwrap() - 0.001 * 4.0 * 1.3).abs() < 1e-7);
        // One spiky measurement does not outvote the prior …
        m.record_frame(&[0.001, 0.002, 0.1]);
        assert!((m.ratio(2) - 4.0).abs() < 1e-6);
        // … three consistent ones do.
        for _ in 0..3 {
            m.record_frame(&[0.001, 0.002, 0.003]);
        }
        assert!((m.ratio(2) - 3.0).abs() < 1e-5);
        // A slow exit 0 raises every prediction until it leaves the window.
        m.record_frame(&[0.01]);
        assert!(m.predict(1).unwrap() > 0.01 * 2.0);
        for _ in 0..LatencyModel::WINDOW {
            m.record_frame(&[0.001]);
        }
        assert!((m.predict(1).unwrap() - 0.001 * 2.0 * 1.3).abs() < 1e-6);
    }
}
