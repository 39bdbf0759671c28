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
//!
//! One concept per file: [`walk`] runs the exits and commits (DeeR's rule),
//! [`criteria`] scores an exit (and decodes token actions), [`latency`]
//! predicts an exit's latency for the deadline, [`costs`] counts MACs,
//! [`offload`] serves deep exits from another device (its wire contract,
//! the robot's client and the server's side), [`residency`] decides what
//! stays on the GPU between segments, [`kv_cache`] keeps a temporal
//! attention head's key/value cache (sinks, saddles, a recent ring) and
//! commits the chosen exit's entry.

mod costs;
mod criteria;
pub mod kv_cache;
pub mod latency;
pub mod offload;
mod residency;
mod walk;

pub use kv_cache::KvCache;
pub use latency::LatencyModel;

use criteria::Tokens;
use offload::Remote;
use offramp_engines::manifest::{ActionKind, CriterionKind, TokenScores};
use offramp_engines::{BackendKind, Chain, EngineSet};
use residency::Residency;
use thiserror::Error;

/// Most exits a set may have (fixed-size per-frame records).
pub const MAX_EXITS: usize = 16;

/// The instruction of a frame that carries none (a memory task's frames
/// after its cue): the model's instruction input is blank, all zeros (no
/// one-hot slot set; every token id 0).
pub const NO_INSTRUCTION: usize = usize::MAX;

/// An instruction as recordings store it (`instructions.npy`, i64): its
/// index, or -1 for [`NO_INSTRUCTION`].
pub fn instruction_code(k: usize) -> i64 {
    match k {
        NO_INSTRUCTION => -1,
        k => i64::try_from(k).unwrap_or(i64::MAX),
    }
}

#[derive(Debug, Error)]
pub enum ExitChainError {
    #[error(transparent)]
    Engine(#[from] offramp_engines::Error),
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error(transparent)]
    Offload(#[from] offload::OffloadError),
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
    /// A cache head's entries after the frame (0 without a cache)...
    pub cache_entries: u32,
    /// ...and the entries the frame's commit dropped (0 or 1).
    pub cache_evicted: u32,
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
            cache_entries: 0,
            cache_evicted: 0,
        }
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
    /// The instruction set last (`None` before any, or after a refusal).
    current_instruction: Option<usize>,
    segment_macs: Vec<u64>,
    head_macs: u64,
    full_macs: u64,
    latency: LatencyModel,
    remote: Option<Remote>,
    /// (state, action) bounds on a server's answer (the manifest's
    /// `[offload]`).
    offload_bounds: (f32, f32),
    residency: Residency,
    /// A temporal attention head's key/value cache.
    cache: Option<KvCache>,
    /// The head's inputs beside the feature, in its input order.
    head_inputs: Vec<HeadInput>,
    /// The head output that is the next recurrent state.
    state_output: Option<usize>,
}

/// What feeds one of the head's inputs beside the feature.
#[derive(Debug, Clone, Copy)]
enum HeadInput {
    State,
    /// The cache's buffer for head input `j`.
    Cache(usize),
}

impl ExitChain {
    pub fn new(set: &EngineSet, backend: BackendKind) -> Result<Self, ExitChainError> {
        Self::check_exits(set)?;
        Self::with_chain(set, crate::backend::load_chain(set, backend)?)
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
        let cache = match m.head.as_ref().and_then(|h| Some((h, h.cache.as_ref()?))) {
            Some((h, c)) => Some(KvCache::new(
                c.resolve(h)
                    .map_err(|(field, message)| bad(format!("{field}: {message}")))?,
                n,
            )),
            None => None,
        };
        let mut head_inputs = Vec::new();
        if let Some(h) = &m.head {
            for (j, t) in h.inputs.iter().enumerate() {
                if t.name == h.feature_input {
                    continue;
                }
                head_inputs.push(if Some(&t.name) == h.state_input.as_ref() {
                    HeadInput::State
                } else if cache.as_ref().is_some_and(|c| c.input(j).is_some()) {
                    HeadInput::Cache(j)
                } else {
                    return Err(bad(format!(
                        "head input {:?} is neither the feature, the state nor the cache's",
                        t.name
                    )));
                });
            }
        }
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
            current_instruction: None,
            segment_macs,
            head_macs,
            full_macs: m.exits.iter().map(|s| s.cost.macs).sum::<u64>() + head_macs,
            latency: LatencyModel::with_costs(&exit_cost),
            remote: None,
            offload_bounds: set.manifest.offload.unwrap_or_default().bounds(),
            residency: Residency::Undecided,
            cache,
            head_inputs,
            state_output: m.head.as_ref().and_then(|h| {
                let name = h.state_output.as_ref()?;
                h.outputs.iter().position(|t| &t.name == name)
            }),
        })
    }

    pub fn exits(&self) -> usize {
        self.n
    }

    /// The thresholds the criterion compares with.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
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
    /// element k, or the token ids of instruction k; [`NO_INSTRUCTION`]
    /// blanks the input. An instruction the model does not know is refused
    /// (the input keeps no stale one).
    pub fn set_instruction(&mut self, k: usize) -> Result<(), ExitChainError> {
        self.current_instruction = None;
        let Some(i) = self.instruction else {
            self.current_instruction = Some(k);
            return Ok(());
        };
        let buf = &mut self.chain.inputs_mut()[i];
        buf.iter_mut().for_each(|x| *x = 0.0);
        if k == NO_INSTRUCTION {
            self.current_instruction = Some(k);
            return Ok(());
        }
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
        self.current_instruction = Some(k);
        Ok(())
    }

    /// The instruction set last, if any (and not refused since).
    pub fn current_instruction(&self) -> Option<usize> {
        self.current_instruction
    }

    /// Forgets the recurrent state and empties the cache (new episode).
    pub fn reset(&mut self) {
        self.state.iter_mut().for_each(|x| *x = 0.0);
        if let Some(c) = &mut self.cache {
            c.reset();
        }
    }

    /// The key/value cache of a temporal attention head, if the set has one.
    pub fn cache(&self) -> Option<&KvCache> {
        self.cache.as_ref()
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

    /// Time spent inside the engines since the last call.
    pub fn take_engine_time(&mut self) -> std::time::Duration {
        self.chain.take_engine_time()
    }

    /// The per-exit latency estimates the deadline uses.
    pub fn latency_model(&self) -> &LatencyModel {
        &self.latency
    }
}

#[cfg(test)]
mod tests;
