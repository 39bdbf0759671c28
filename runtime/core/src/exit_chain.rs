//! The DeeR exit chain over an engine set: segment i → the shared recurrent
//! head evaluated *without* committing its state → criterion → next segment
//! or stop; the chosen exit's head state is committed.
//!
//! Criterion (DeeR Eq. 3): stop at the first exit i with
//! RMS(a_i − a_{i−1}) over the continuous action dims < η_i; exit 0 compares
//! with the head on segment 0's reference feature when the model has one; the
//! last exit always stops. A NaN/Inf action or state is "not confident" and is
//! reported; if the deepest exit run is bad, the action is stop (zeros) and
//! the head state is reset.
//!
//! Every buffer is sized from the manifest in [`ExitChain::new`]; `step`
//! allocates nothing in this code.

use offramp_engines::manifest::CriterionKind;
use offramp_engines::{BackendKind, Chain, EngineSet};
use std::time::Instant;
use thiserror::Error;

/// Most exits a set may have (fixed-size per-frame records).
pub const MAX_EXITS: usize = 16;

#[derive(Debug, Error)]
pub enum ExitChainError {
    #[error(transparent)]
    Engine(#[from] offramp_engines::Error),
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
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
}

/// Recent per-exit latencies (segment + head), to predict whether the next
/// exit can still finish before a deadline (AdaLLaVA's guarantee, by
/// construction: the deadline caps the depth, content picks the exit).
/// The prediction is the largest of the last `WINDOW` samples times a margin:
/// conservative under bursts of contention, and it forgets them.
#[derive(Debug, Clone)]
pub struct LatencyModel {
    samples: [[f32; Self::WINDOW]; MAX_EXITS],
    next: [usize; MAX_EXITS],
    filled: [usize; MAX_EXITS],
    pub margin: f32,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self {
            samples: [[0.0; Self::WINDOW]; MAX_EXITS],
            next: [0; MAX_EXITS],
            filled: [0; MAX_EXITS],
            margin: 1.3,
        }
    }
}

impl LatencyModel {
    pub const WINDOW: usize = 64;

    pub fn record(&mut self, exit: usize, seconds: f32) {
        let k = self.next[exit];
        self.samples[exit][k] = seconds;
        self.next[exit] = (k + 1) % Self::WINDOW;
        self.filled[exit] = (self.filled[exit] + 1).min(Self::WINDOW);
    }

    /// Predicted seconds for `exit`; None until it has been measured.
    pub fn predict(&self, exit: usize) -> Option<f32> {
        let n = self.filled[exit];
        (n > 0).then(|| {
            self.samples[exit][..n]
                .iter()
                .copied()
                .fold(0.0f32, f32::max)
                * self.margin
        })
    }
}

pub struct ExitChain {
    chain: Chain,
    n: usize,
    kind: CriterionKind,
    thresholds: Vec<f32>,
    dims: Vec<usize>,
    reference: Option<usize>,
    state: Vec<f32>,
    next_states: Vec<Vec<f32>>,
    actions: Vec<Vec<f32>>,
    ref_action: Vec<f32>,
    stop: Vec<f32>,
    chosen: usize,
    stopped: bool,
    instruction: Option<usize>,
    segment_macs: Vec<u64>,
    head_macs: u64,
    latency: LatencyModel,
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
        let m = &set.manifest;
        let n = m.exits.len();
        let bad = |message: String| ExitChainError::Manifest {
            path: set.manifest_path.display().to_string(),
            message,
        };
        if n > MAX_EXITS {
            return Err(bad(format!("{n} exits; at most {MAX_EXITS} are supported")));
        }
        let chain = Chain::load(set, backend)?;
        let state_len = m
            .head
            .input(&m.head.state_input)
            .ok_or_else(|| bad("head.state_input is not a head input".into()))?
            .elements();
        let action_len = m
            .head
            .output(&m.head.action_output)
            .ok_or_else(|| bad("head.action_output is not a head output".into()))?
            .elements();
        let reference = match &m.criterion.exit0_reference {
            Some(r) => Some(chain.output_index(0, r).ok_or_else(|| {
                bad(format!(
                    "criterion.exit0_reference {r:?} is not an output of exits[0]"
                ))
            })?),
            None => None,
        };
        let instruction = m
            .preprocess
            .as_ref()
            .and_then(|p| p.instruction.as_ref())
            .and_then(|name| m.inputs.iter().position(|t| &t.name == name));
        Ok(Self {
            chain,
            n,
            kind: m.criterion.kind,
            thresholds: m.criterion.thresholds.clone(),
            dims: m.criterion.continuous_dims.clone(),
            reference,
            state: vec![0.0; state_len],
            next_states: vec![vec![0.0; state_len]; n],
            actions: vec![vec![0.0; action_len]; n],
            ref_action: vec![0.0; action_len],
            stop: vec![0.0; action_len],
            chosen: n - 1,
            stopped: false,
            instruction,
            segment_macs: m.exits.iter().map(|s| s.cost.macs).collect(),
            head_macs: m.head.cost.macs,
            latency: LatencyModel::default(),
        })
    }

    /// Multiply-accumulates a frame cost: the segments it ran and every head
    /// evaluation.
    pub fn frame_macs(&self, o: &FrameOutcome) -> u64 {
        self.segment_macs.iter().take(o.ran).sum::<u64>() + self.head_macs * o.heads as u64
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

    /// MACs of the full model: every segment and the head once.
    pub fn full_macs(&self) -> u64 {
        self.segment_macs.iter().sum::<u64>() + self.head_macs
    }

    pub fn exits(&self) -> usize {
        self.n
    }

    /// Replaces the thresholds (calibration).
    pub fn set_thresholds(&mut self, thresholds: &[f32]) {
        self.thresholds.clear();
        self.thresholds.extend_from_slice(thresholds);
    }

    /// The image input tensor, to fill by preprocessing.
    pub fn image_mut(&mut self) -> &mut [f32] {
        &mut self.chain.inputs_mut()[0]
    }

    /// Sets the one-hot instruction input, if the model has one.
    pub fn set_instruction(&mut self, k: usize) {
        if let Some(i) = self.instruction {
            let buf = &mut self.chain.inputs_mut()[i];
            buf.iter_mut().for_each(|x| *x = 0.0);
            if let Some(x) = buf.get_mut(k) {
                *x = 1.0;
            }
        }
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
        self.actions[i].copy_from_slice(a);
        self.next_states[i].copy_from_slice(h);
        Ok(finite(&self.actions[i]) && finite(&self.next_states[i]))
    }

    fn passes(&self, i: usize, delta: f32) -> bool {
        match self.kind {
            CriterionKind::ActionConsistency => self.thresholds.get(i).is_some_and(|t| delta < *t),
            // Discrete heads: the action vector holds class probabilities.
            CriterionKind::MaxConfidence => self.thresholds.get(i).is_some_and(|t| {
                self.actions[i]
                    .iter()
                    .copied()
                    .fold(f32::NEG_INFINITY, f32::max)
                    > *t
            }),
            CriterionKind::Fixed => false,
        }
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
        let mut out = FrameOutcome {
            exit: 0,
            ran: 0,
            deltas: [f32::NAN; MAX_EXITS],
            exit_seconds: [0.0; MAX_EXITS],
            device_seconds: [f32::NAN; MAX_EXITS],
            nonfinite: false,
            stopped: false,
            heads: 0,
            deadline_cut: false,
        };
        // Device time is read per exit below; drop what came before.
        self.chain.take_device_seconds();
        let fixed = match (policy, self.kind) {
            (ExitPolicy::Fixed(k), _) => Some(k.min(self.n - 1)),
            (ExitPolicy::Criterion, CriterionKind::Fixed) => Some(self.n - 1),
            _ => None,
        };
        let mut prev_ok = false;
        let mut last_good: Option<usize> = None;
        let mut chosen: Option<usize> = None;
        for i in 0..self.n {
            let t0 = Instant::now();
            if let (Some(d), Some(_)) = (deadline, last_good) {
                // An exit never measured yet is predicted like the slowest
                // one that was.
                let predicted = self
                    .latency
                    .predict(i)
                    .or_else(|| {
                        (0..self.n)
                            .filter_map(|k| self.latency.predict(k))
                            .reduce(f32::max)
                    })
                    .unwrap_or(0.0);
                if t0 + std::time::Duration::from_secs_f32(predicted) > d {
                    out.deadline_cut = true;
                    break;
                }
            }
            self.chain.run_exit(i)?;
            if let (0, Some(r), None) = (i, self.reference, fixed) {
                let (a, _) = self.chain.run_head_on(0, r, &self.state)?;
                self.ref_action.copy_from_slice(a);
                prev_ok = finite(&self.ref_action);
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
            if want_head && fixed.is_none() {
                self.latency.record(i, out.exit_seconds[i]);
            }
            if !want_head {
                continue;
            }
            if !ok {
                out.nonfinite = true;
                prev_ok = false;
            } else {
                last_good = Some(i);
                if prev_ok {
                    let prev = if i == 0 {
                        &self.ref_action
                    } else {
                        &self.actions[i - 1]
                    };
                    out.deltas[i] = rms(&self.actions[i], prev, &self.dims);
                }
                prev_ok = true;
            }
            let stop_here = match fixed {
                Some(k) => i == k,
                None => {
                    chosen.is_none()
                        && ok
                        && !out.deltas[i].is_nan()
                        && self.passes(i, out.deltas[i])
                }
            };
            if stop_here && chosen.is_none() {
                chosen = Some(i);
                if policy != ExitPolicy::All {
                    break;
                }
            }
        }
        let last_run = out.ran - 1;
        let pick = match (chosen, out.deadline_cut) {
            (Some(c), _) => c,
            (None, true) => last_good.unwrap_or(last_run),
            (None, false) => last_run,
        };
        // The deepest exit run decides; if it is bad, stop.
        let pick_ok = finite(&self.actions[pick]) && finite(&self.next_states[pick]);
        if pick_ok {
            self.chosen = pick;
            self.stopped = false;
            self.state.copy_from_slice(&self.next_states[pick]);
        } else {
            self.chosen = last_good.unwrap_or(pick);
            self.stopped = true;
            self.reset();
        }
        out.exit = pick;
        out.stopped = self.stopped;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_over_selected_dims() {
        assert_eq!(
            rms(&[1.0, 5.0, 9.0], &[0.0, 5.0, 0.0], &[0, 1]),
            (0.5f32).sqrt()
        );
        assert_eq!(rms(&[3.0, 4.0], &[0.0, 0.0], &[]), (12.5f32).sqrt());
    }
}
