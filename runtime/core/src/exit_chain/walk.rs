//! The walk over the exits for one frame: segment i, the shared head
//! evaluated without committing its state, the criterion, the next segment
//! or stop; the chosen exit's head state is committed (DeeR's rule). The
//! deadline caps the depth: an exit starts only if it can still finish.

use super::criteria::{finite, rms, Tokens};
use super::{ExitChain, ExitChainError, ExitPolicy, FrameOutcome, HeadInput};
use offramp_engines::manifest::CriterionKind;
use offramp_engines::MAX_IO;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Where a walk over the exits stands.
pub(super) struct Walk {
    pub(super) prev_ok: bool,
    pub(super) last_good: Option<usize>,
    pub(super) chosen: Option<usize>,
}

impl ExitChain {
    /// The head on output `k` of segment `i`, its other inputs the state
    /// and the cache as they are (nothing committed); returns `k` (the
    /// feature's index for `None`), for `Chain::head_action`.
    fn run_head_on(&mut self, i: usize, k: Option<usize>) -> Result<usize, ExitChainError> {
        let mut others: [&[f32]; MAX_IO] = [&[]; MAX_IO];
        for (slot, src) in others.iter_mut().zip(&self.head_inputs) {
            *slot = match (*src, &self.cache) {
                (HeadInput::State, _) => &self.state,
                (HeadInput::Cache(j), Some(c)) => c.input(j).unwrap_or(&[]),
                (HeadInput::Cache(_), None) => &[],
            };
        }
        let others = &others[..self.head_inputs.len().min(MAX_IO)];
        let k = k.unwrap_or_else(|| self.chain.feature_index(i));
        self.chain.run_head_with(i, k, others)?;
        Ok(k)
    }

    pub(super) fn head(&mut self, i: usize) -> Result<bool, ExitChainError> {
        let k = self.run_head_on(i, None)?;
        let a = self.chain.head_action(i, k);
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
        let outs = self.chain.head_outputs();
        if let Some(s) = self.state_output {
            self.next_states[i].copy_from_slice(&outs[s]);
        }
        let staged = match &mut self.cache {
            Some(c) => c.stage(i, outs),
            None => true,
        };
        Ok(finite(&self.actions[i]) && finite(&self.next_states[i]) && staged)
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
        self.decide_residency(false);
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
        let pick_ok = finite(&self.actions[pick])
            && finite(&self.next_states[pick])
            && self.cache.as_ref().is_none_or(|c| c.staged_ok(pick));
        if pick_ok {
            self.chosen = pick;
            self.stopped = false;
            self.state.copy_from_slice(&self.next_states[pick]);
            if let Some(c) = &mut self.cache {
                c.commit(pick);
            }
        } else {
            self.chosen = w.last_good.unwrap_or(pick);
            self.stopped = true;
            self.reset();
        }
        out.exit = pick;
        out.stopped = self.stopped;
        if let Some(c) = &self.cache {
            out.cache_entries = c.occupancy() as u32;
            out.cache_evicted = c.evicted_last();
        }
        if offloading {
            self.repartition(&out, None);
        }
        Ok(out)
    }

    /// Runs exits `range` (in order) until the criterion, the fixed exit or
    /// the deadline stops; `w` carries what the previous exits left.
    pub(super) fn walk(
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
                self.run_head_on(0, Some(r))?;
                let a = self.chain.head_action(0, r);
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
