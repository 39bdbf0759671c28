//! Closed-loop refinement of exit thresholds under a compute budget.
//!
//! DeeR refines its offline thresholds with Bayesian optimisation: 20 calls
//! of a GP search over the thresholds, each call a full closed-loop rollout,
//! with a soft penalty when a call goes over budget. Two things make that
//! wasteful, and this module's search ([`race`]) avoids both:
//!
//! * **The budget is known before any rollout.** The calibration deltas
//!   predict what any set of exit shares costs, so the search only proposes
//!   points *on* the budget: exit shares `s_i ∝ exp(a·x + b·x² + c·x³)`
//!   (`x = i / (n - 1)`) with `a` solved for the budget and `(b, c)` the
//!   search space. `(0, 0)` is DeeR's geometric solution, so the search
//!   starts from the offline solve and can only keep it or beat it.
//! * **Most candidates are obviously worse after a few episodes.** Successive
//!   halving evaluates many candidates on a few episodes, keeps the better
//!   half, doubles the episodes, and so on; with common random numbers (the
//!   same episode seeds for every candidate, extended, never redrawn) every
//!   comparison is paired and nothing is rolled out twice.
//!
//! [`crate::bayes::bayes_opt`] is the baseline as DeeR runs it (GP with a Matérn 5/2 kernel,
//! expected improvement, 10 initial points then 10 guided calls, each on all
//! calibration episodes), given a well-scaled space (each threshold as a
//! quantile of its exit's deltas) and DeeR's solve as an initial point.
//! Both maximise the same objective ([`Objective`]) on the same calibration
//! episodes, which must be disjoint from the evaluation episodes.

use crate::eval::{EvalError, Tally};
use crate::solve::{thresholds_from_shares, FrameDeltas};
use serde::Serialize;

/// Candidates offramp's search races.
pub const RACE_CANDIDATES: usize = 16;

/// Success rate, minus `penalty` per unit of relative overshoot of the budget.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Objective {
    pub budget_ratio: f64,
    pub penalty: f64,
}

impl Objective {
    pub fn new(budget_ratio: f64) -> Self {
        // 1 % over budget costs as much as 2 points of success.
        Self {
            budget_ratio,
            penalty: 2.0,
        }
    }

    pub fn score(&self, t: &Tally) -> f64 {
        let over = (t.compute_ratio() / self.budget_ratio - 1.0).max(0.0);
        t.success_rate() - self.penalty * over
    }
}

/// Rolls the thresholds out in closed loop on `episodes` episodes from
/// `first_seed`.
pub type Rollout<'a> = dyn FnMut(&[f32], u64, usize) -> Result<Tally, EvalError> + 'a;

/// What the searches may propose: thresholds derived from calibration
/// deltas, exits past `deepest` never reached.
pub struct Space<'a> {
    pub deltas: &'a [FrameDeltas],
    /// Cumulative MACs of stopping at each exit (criterion costs).
    pub costs: &'a [f64],
    pub deepest: usize,
    pub budget_macs: f64,
}

impl Space<'_> {
    fn exits(&self) -> usize {
        self.costs.len()
    }

    /// Exit shares on the budget with shape `(b, c)`; `(0, 0)` is DeeR's
    /// geometric solution.
    pub fn shaped_shares(&self, shape: [f64; 2]) -> Vec<f64> {
        // Exits that never stop take no share (as in calibrate's solve).
        let first = crate::solve::first_stoppable(self.deltas, self.deepest);
        let mut s = vec![0.0; first];
        s.extend(shaped_shares(
            &self.costs[first..=self.deepest],
            self.budget_macs,
            shape,
        ));
        s
    }

    pub fn thresholds_for_shape(&self, shape: [f64; 2]) -> Vec<f32> {
        let s = self.shaped_shares(shape);
        thresholds_from_shares(self.deltas, &s, self.exits(), self.deepest)
    }

    /// Threshold `i` at quantile `u` of exit `i`'s finite deltas.
    fn quantile_threshold(&self, i: usize, u: f64) -> f32 {
        let mut d: Vec<f32> = self
            .deltas
            .iter()
            .map(|f| f[i])
            .filter(|v| v.is_finite())
            .collect();
        if d.is_empty() {
            return 0.0;
        }
        d.sort_by(f32::total_cmp);
        let k = (u.clamp(0.0, 1.0) * (d.len() - 1) as f64).round() as usize;
        // Strictly above the k-th delta, so that quantile 1 stops them all.
        let next = d.get(k + 1).copied().unwrap_or(d[k] * 1.01 + 1e-6);
        0.5 * (d[k] + next)
    }

    /// The quantile rank of threshold `t` among exit `i`'s deltas.
    pub(crate) fn rank(&self, i: usize, t: f32) -> f64 {
        let (mut below, mut all) = (0usize, 0usize);
        for f in self.deltas {
            if f[i].is_finite() {
                all += 1;
                below += (f[i] < t) as usize;
            }
        }
        below as f64 / all.max(1) as f64
    }

    pub(crate) fn thresholds_for_ranks(&self, u: &[f64]) -> Vec<f32> {
        let n = self.exits();
        let mut t: Vec<f32> = (0..n - 1)
            .map(|i| match u.get(i) {
                Some(&u) if i < self.deepest => self.quantile_threshold(i, u),
                _ => 0.0,
            })
            .collect();
        crate::solve::cap_thresholds(&mut t, self.deepest);
        t
    }
}

/// Shares ∝ exp(a·x + b·x² + c·x³) over `costs.len()` exits with `a` solved
/// so that the expected cost is `budget` (clamped to what the costs allow).
pub fn shaped_shares(costs: &[f64], budget: f64, shape: [f64; 2]) -> Vec<f64> {
    let n = costs.len();
    let x = |i: usize| {
        if n > 1 {
            i as f64 / (n - 1) as f64
        } else {
            0.0
        }
    };
    let weights = |a: f64| -> Vec<f64> {
        let logits: Vec<f64> = (0..n)
            .map(|i| a * x(i) + shape[0] * x(i).powi(2) + shape[1] * x(i).powi(3))
            .collect();
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|v| v / total).collect()
    };
    let expected = |a: f64| -> f64 { weights(a).iter().zip(costs).map(|(s, c)| s * c).sum() };
    // Expected cost rises with a (weight moves to deeper, dearer exits).
    let (mut lo, mut hi) = (-400.0f64, 400.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if expected(mid) > budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    weights(0.5 * (lo + hi))
}

/// One evaluated candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Where it came from (shape, or BO call).
    pub label: String,
    pub thresholds: Vec<f32>,
    pub tally: Tally,
    pub score: f64,
}

/// A search's result on the calibration episodes.
#[derive(Debug, Clone, Serialize)]
pub struct RefineReport {
    pub method: String,
    /// Closed-loop episodes rolled out, all candidates together.
    pub rollout_episodes: usize,
    /// Candidates tried.
    pub candidates: usize,
    pub best: Trial,
    /// (rollout episodes so far, score of the current best) after each
    /// round or call.
    pub trace: Vec<(usize, f64)>,
}

/// Halton sequence value `k` in base `b`.
pub(crate) fn halton(mut k: usize, b: usize) -> f64 {
    let (mut f, mut r) = (1.0, 0.0);
    while k > 0 {
        f /= b as f64;
        r += f * (k % b) as f64;
        k /= b;
    }
    r
}

/// Successive halving over budget-matched exit-share shapes with common
/// random numbers. `candidates` shapes (DeeR's first) race on
/// `episodes >> rounds` episodes, the better half goes on with twice as many,
/// and the last two meet on all `episodes`.
pub fn race(
    space: &Space,
    objective: Objective,
    rollout: &mut Rollout,
    first_seed: u64,
    episodes: usize,
    candidates: usize,
) -> Result<RefineReport, EvalError> {
    const RANGE: f64 = 6.0;
    let k = candidates.max(1);
    let mut pool: Vec<(String, Vec<f32>)> = Vec::new();
    for j in 0..k {
        let shape = if j == 0 {
            [0.0, 0.0]
        } else {
            [
                RANGE * (2.0 * halton(j, 2) - 1.0),
                RANGE * (2.0 * halton(j, 3) - 1.0),
            ]
        };
        let t = space.thresholds_for_shape(shape);
        // Shapes that land on the same thresholds are one candidate.
        if pool.iter().all(|(_, p)| p != &t) {
            pool.push((format!("shape b={:.2} c={:.2}", shape[0], shape[1]), t));
        }
    }
    let rounds = (pool.len() as f64).log2().ceil() as u32;
    let mut m = (episodes >> rounds.saturating_sub(1)).max(1);
    let mut alive: Vec<Trial> = pool
        .into_iter()
        .map(|(label, thresholds)| Trial {
            label,
            thresholds,
            tally: Tally::default(),
            score: f64::NEG_INFINITY,
        })
        .collect();
    let candidates = alive.len();
    let (mut used, mut trace) = (0usize, Vec::new());
    loop {
        for t in alive.iter_mut() {
            let have = t.tally.episodes;
            if have < m {
                let more = rollout(&t.thresholds, first_seed + have as u64, m - have)?;
                used += more.episodes;
                t.tally.merge(&more);
                t.score = objective.score(&t.tally);
            }
        }
        // Best score first; ties to the cheaper candidate, then the earlier.
        alive.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.tally.compute_ratio().total_cmp(&b.tally.compute_ratio()))
        });
        trace.push((used, alive[0].score));
        if alive.len() == 1 && m >= episodes {
            break;
        }
        alive.truncate(alive.len().div_ceil(2));
        m = (m * 2).min(episodes);
    }
    Ok(RefineReport {
        method: format!("budget-matched successive halving ({candidates} candidates)"),
        rollout_episodes: used,
        candidates,
        best: alive.swap_remove(0),
        trace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayes::{bayes_opt, XorShift};
    use crate::solve::{predict, shares, solve_q};

    #[test]
    fn flat_shape_is_deers_geometric_solution() {
        let costs = [1.0, 2.0, 3.0, 4.0];
        for budget in [1.3, 2.0, 3.1] {
            let a = shaped_shares(&costs, budget, [0.0, 0.0]);
            let b = shares(solve_q(&costs, budget), 4);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn every_shape_meets_the_budget() {
        let costs = [1.0, 2.0, 3.0, 4.0];
        for shape in [[3.0, -2.0], [-6.0, 6.0], [6.0, 6.0], [-6.0, -6.0]] {
            let s = shaped_shares(&costs, 2.2, shape);
            let e: f64 = s.iter().zip(&costs).map(|(s, c)| s * c).sum();
            assert!((e - 2.2).abs() < 1e-9, "{shape:?}: {e}");
            assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    /// Synthetic calibration deltas and a rollout whose success depends on
    /// how many frames stop at exit 1 vs 2 (exit 2 is the sweet spot), with
    /// per-episode noise that is the same for every candidate (CRN).
    fn world() -> (Vec<FrameDeltas>, Vec<f64>) {
        let mut r = XorShift(7);
        let deltas = (0..2000)
            .map(|_| (0..4).map(|_| r.uniform() as f32).collect())
            .collect();
        (deltas, vec![1.0, 2.0, 3.0, 4.0])
    }

    /// All four exits open, a budget of 2.2 of the full model's 4.
    fn space<'a>(deltas: &'a [FrameDeltas], costs: &'a [f64]) -> Space<'a> {
        Space {
            deltas,
            costs,
            deepest: 3,
            budget_macs: 2.2,
        }
    }

    fn synthetic<'a>(deltas: &'a [FrameDeltas], calls: &'a mut usize) -> Box<Rollout<'a>> {
        Box::new(move |t: &[f32], first_seed: u64, episodes: usize| {
            *calls += 1;
            let p = predict(deltas, t, &[1.0, 2.0, 3.0, 4.0]);
            // Success peaks when 60 % of frames stop at exit 2.
            let quality = 0.9 - 1.5 * (p.exit_shares[1] - 0.6).powi(2);
            let mut tally = Tally {
                full_macs: 4.0,
                ..Default::default()
            };
            for e in 0..episodes as u64 {
                let mut r = XorShift((first_seed + e + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let u = r.uniform();
                tally.episodes += 1;
                tally.successes += (u < quality) as usize;
                tally.frames += 100;
                tally.macs += 100.0 * p.mean_cost;
            }
            Ok(tally)
        })
    }

    #[test]
    fn racing_beats_the_geometric_start_with_few_rollouts() {
        let (deltas, costs) = world();
        let space = space(&deltas, &costs);
        let obj = Objective::new(2.2 / 4.0);
        let mut calls = 0;
        let r = {
            let mut f = synthetic(&deltas, &mut calls);
            race(&space, obj, &mut *f, 0, 400, 16).unwrap()
        };
        // 16 candidates, 50, 100, 200, 400 episodes: 16·50 + 8·50 + 4·100 + 2·200.
        assert_eq!(r.rollout_episodes, 800 + 400 + 400 + 400);
        assert_eq!(r.best.tally.episodes, 400);
        let mut calls2 = 0;
        let geometric = {
            let mut f = synthetic(&deltas, &mut calls2);
            let t = space.thresholds_for_shape([0.0, 0.0]);
            obj.score(&f(&t, 0, 400).unwrap())
        };
        assert!(r.best.score > geometric, "{} vs {geometric}", r.best.score);
        // It stays on the budget.
        assert!(r.best.tally.compute_ratio() < 0.55 * 1.02);
        assert!(calls > 16);
    }

    #[test]
    fn bayes_opt_spends_calls_times_episodes() {
        let (deltas, costs) = world();
        let space = space(&deltas, &costs);
        let start = space.thresholds_for_shape([0.0, 0.0]);
        let obj = Objective::new(0.55);
        let mut calls = 0;
        // Every call's thresholds and score, as the rollout saw them.
        let mut seen: Vec<(Vec<f32>, f64)> = Vec::new();
        let r = {
            let mut f = synthetic(&deltas, &mut calls);
            let mut recording =
                |t: &[f32], first_seed: u64, episodes: usize| -> Result<Tally, EvalError> {
                    let tally = f(t, first_seed, episodes)?;
                    seen.push((t.to_vec(), obj.score(&tally)));
                    Ok(tally)
                };
            bayes_opt(&space, obj, &mut recording, 0, 100, &start, 20, 10).unwrap()
        };
        assert_eq!(calls, 20);
        assert_eq!(r.rollout_episodes, 2000);
        assert_eq!(r.trace.len(), 20);
        assert_eq!(seen.len(), 20);
        // The trace is the best score among the calls so far.
        let mut best = f64::NEG_INFINITY;
        for (k, ((used, traced), (_, score))) in r.trace.iter().zip(&seen).enumerate() {
            best = best.max(*score);
            assert_eq!(*used, 100 * (k + 1));
            assert_eq!(*traced, best, "call {}", k + 1);
        }
        // The result is the first call with the best score.
        let winner = seen
            .iter()
            .position(|(_, s)| *s == best)
            .expect("a best call");
        assert_eq!(r.best.score, best);
        assert_eq!(r.best.thresholds, seen[winner].0);
        assert_eq!(r.best.label, format!("call {}", winner + 1));
        // The first call is DeeR's solve, reproduced through the rank map:
        // the same exit shares on the calibration deltas, to a frame or two.
        let want = predict(&deltas, &start, &costs).exit_shares;
        let got = predict(&deltas, &seen[0].0, &costs).exit_shares;
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 3.0 / deltas.len() as f64,
                "{got:?} vs {want:?}"
            );
        }
    }
}
