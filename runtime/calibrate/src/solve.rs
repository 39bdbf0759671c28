//! The DeeR solve (Eq. 5): exit thresholds from per-frame criterion scores
//! under a compute budget. Pure arithmetic on recorded scores;
//! [`crate::calibrate`] runs the model to get them. A score is whatever the
//! criterion compares with the threshold (an exit stops when its score is
//! below): DeeR's RMS action delta, or 1 − the top class probability for
//! max confidence; the solve is the same for every kind. "Delta" below means
//! that score.
//!
//! 1. Run the exit chain on calibration episodes with every exit evaluated
//!    (the recurrent state committed as the current thresholds would), and
//!    keep each frame's per-exit scores.
//! 2. Assume each exit passes with probability q: the share of frames that
//!    stop at exit i is ∝ q^i. Find q by bisection so that the expected cost
//!    Σ share_i · cost_i meets the budget.
//! 3. Walk the exits in order: among frames not yet stopped, η_i is the delta
//!    below which exactly share_i of all frames stop at i (MSDNet-style).
//!
//! Because the committed state depends on the thresholds, steps 1-3 repeat
//! (the first pass commits the full model's state). Latency and memory
//! budgets cap the deepest exit: the cap exit's threshold is +∞.

use serde::Serialize;

/// One frame's deltas: `deltas[i]` for exit i (NaN when undefined or bad).
pub type FrameDeltas = Vec<f32>;

/// Geometric exit shares for `n` exits with pass probability `q`.
pub fn shares(q: f64, n: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..n).map(|i| q.powi(i as i32)).collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|r| r / total).collect()
}

/// The q whose shares give expected cost `budget` (same units as `costs`,
/// cumulative per exit), clamped to what the costs allow.
pub fn solve_q(costs: &[f64], budget: f64) -> f64 {
    let expected = |q: f64| -> f64 {
        shares(q, costs.len())
            .iter()
            .zip(costs)
            .map(|(s, c)| s * c)
            .sum()
    };
    // Expected cost rises with q: bisect on log q.
    let (mut lo, mut hi) = (-30.0f64, 30.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if expected(mid.exp()) > budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// Thresholds (one per exit but the last) that make `target` shares of the
/// frames stop at each exit, from the frames' deltas.
pub fn thresholds_for(deltas: &[FrameDeltas], target: &[f64]) -> Vec<f32> {
    let n = target.len();
    let total = deltas.len();
    let mut remaining: Vec<usize> = (0..total).collect();
    let mut out = Vec::with_capacity(n.saturating_sub(1));
    for (i, share) in target.iter().enumerate().take(n.saturating_sub(1)) {
        let want = (share * total as f64).round() as usize;
        let mut d: Vec<(f32, usize)> = remaining
            .iter()
            .map(|&f| (deltas[f][i], f))
            .filter(|(v, _)| !v.is_nan())
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        let eta = match want {
            0 => 0.0,
            w if w >= d.len() => f32::INFINITY,
            w => cut(&d, w),
        };
        let stopped: std::collections::HashSet<usize> = d
            .iter()
            .filter(|(v, _)| *v < eta)
            .map(|(_, f)| *f)
            .collect();
        remaining.retain(|f| !stopped.contains(f));
        out.push(eta);
    }
    out
}

/// The threshold that stops `want` (1 ≤ want < len) of the `sorted`
/// frames (the criterion is delta < eta): midway between the last frame
/// that stops and the first that does not. Frames with equal scores (a
/// learned exit head saturating at confidence 1 gives many at exactly 0)
/// cannot be told apart, so a cut that falls inside such a tie moves to the
/// tie's nearer edge, and to its upper edge (the whole tie stops) when both
/// are as near: frames sent deeper than planned overshoot the budget. A
/// score of +∞ never stops.
fn cut(sorted: &[(f32, usize)], want: usize) -> f32 {
    let v = sorted[want].0;
    let below = sorted.partition_point(|(x, _)| *x < v);
    let upto = sorted.partition_point(|(x, _)| *x <= v);
    let stop = if upto - want <= want - below {
        upto
    } else {
        below
    };
    match stop {
        0 => sorted[0].0,
        s if s >= sorted.len() => f32::INFINITY,
        s => {
            let (lo, hi) = (sorted[s - 1].0, sorted[s].0);
            // The midpoint of two neighbouring floats can round down to `lo`.
            Some(lo + 0.5 * (hi - lo)).filter(|m| *m > lo).unwrap_or(hi)
        }
    }
}

/// Thresholds for exit shares over exits `0..=deepest` (the rest get none),
/// the deepest exit capped: what every solve and search turns shares into.
pub fn thresholds_from_shares(
    deltas: &[FrameDeltas],
    shares: &[f64],
    exits: usize,
    deepest: usize,
) -> Vec<f32> {
    let mut target = shares.to_vec();
    target.resize(exits, 0.0);
    let mut t = thresholds_for(deltas, &target);
    cap_thresholds(&mut t, deepest);
    t
}

/// The first exit (up to `deepest`) with a score on any frame: the exits
/// before it never stop (exit 0 of a model without a reference to compare
/// with), so the shares go to the exits from it on, or the budget would be
/// overshot by what those exits were meant to take.
pub fn first_stoppable(deltas: &[FrameDeltas], deepest: usize) -> usize {
    (0..deepest)
        .find(|&i| deltas.iter().any(|f| f.get(i).is_some_and(|d| !d.is_nan())))
        .unwrap_or(deepest)
}

/// Applies a deepest-exit cap: exits at or past `cap` all stop at `cap`.
pub fn cap_thresholds(thresholds: &mut [f32], cap: usize) {
    if cap < thresholds.len() {
        thresholds[cap] = f32::INFINITY;
    }
}

/// What thresholds predict on the frames they came from.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub exit_shares: Vec<f64>,
    pub mean_cost: f64,
}

pub fn predict(deltas: &[FrameDeltas], thresholds: &[f32], costs: &[f64]) -> Prediction {
    let n = costs.len();
    let mut counts = vec![0usize; n];
    for f in deltas {
        let exit = (0..n - 1)
            .find(|&i| {
                let d = f[i];
                !d.is_nan() && thresholds.get(i).is_some_and(|t| d < *t)
            })
            .unwrap_or(n - 1);
        counts[exit] += 1;
    }
    let total = deltas.len().max(1) as f64;
    let exit_shares: Vec<f64> = counts.iter().map(|c| *c as f64 / total).collect();
    Prediction {
        mean_cost: exit_shares.iter().zip(costs).map(|(s, c)| s * c).sum(),
        exit_shares,
    }
}

/// A budget the solve does not meet, the least compute the criterion
/// allows on these frames, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverBudget {
    pub budget_macs: f64,
    /// What the thresholds spend on the calibration frames.
    pub predicted_macs: f64,
    /// The least any thresholds can spend: every frame stops at the first
    /// exit (up to the deepest allowed) where the criterion has a score.
    pub cheapest_macs: f64,
    pub why: String,
}

impl OverBudget {
    /// One line, compute as shares of the full model's `full_macs`.
    pub fn summary(&self, full_macs: u64) -> String {
        let r = |m: f64| m / full_macs as f64;
        format!(
            "{:.3} of the full model for a budget of {:.3}; the least the criterion allows on these frames is {:.3}: {}",
            r(self.predicted_macs),
            r(self.budget_macs),
            r(self.cheapest_macs),
            self.why
        )
    }
}

/// Shares of frames can miss a budget by rounding; more than this over it
/// is reported.
pub const BUDGET_TOLERANCE: f64 = 0.005;

/// Whether thresholds predicted to spend `predicted` (per frame, in the
/// units of `costs`, cumulative per exit) meet `budget` on `deltas`; if not,
/// the nearest they can and why.
pub fn over_budget(
    deltas: &[FrameDeltas],
    costs: &[f64],
    deepest: usize,
    budget: f64,
    predicted: f64,
) -> Option<OverBudget> {
    if predicted <= budget * (1.0 + BUDGET_TOLERANCE) || deltas.is_empty() {
        return None;
    }
    let first_score = |f: &FrameDeltas| {
        (0..deepest)
            .find(|&i| f.get(i).is_some_and(|d| !d.is_nan()))
            .unwrap_or(deepest)
    };
    let cheapest = deltas.iter().map(|f| costs[first_score(f)]).sum::<f64>() / deltas.len() as f64;
    let first = first_stoppable(deltas, deepest);
    let why = if first == 0 && budget < costs[0] {
        format!(
            "the budget is below exit 1's own cost ({:.0} MACs): every frame runs exit 1 at least",
            costs[0]
        )
    } else if budget < costs[first] {
        format!(
            "no frame can stop before exit {}: the criterion has no score at exit{} {} (action consistency compares each exit's action with the one before, so exit 1 needs the model's `exit0_reference`; a learned or max-confidence criterion needs none)",
            first + 1,
            if first > 1 { "s" } else { "" },
            (1..=first).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        )
    } else if budget < cheapest {
        let late = deltas.iter().filter(|f| first_score(f) > first).count();
        format!(
            "{late} of {} frames have no criterion score at exit {} (a non-finite action or score there): they cannot stop before a deeper exit",
            deltas.len(),
            first + 1
        )
    } else {
        "frames tie at the thresholds' cuts (saturated scores): no threshold stops exactly the shares the budget asks for".to_string()
    };
    Some(OverBudget {
        budget_macs: budget,
        predicted_macs: predicted,
        cheapest_macs: cheapest,
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_the_criterion_cannot_meet_names_the_nearest_and_why() {
        let costs = [1.0, 2.0, 3.0];
        // Action consistency without a reference: exit 0 has no score.
        let frames = vec![vec![f32::NAN, 0.1, 0.2]; 10];
        let t = thresholds_for(&frames, &[0.0, 1.0, 0.0]);
        let p = predict(&frames, &t, &costs);
        assert_eq!(p.mean_cost, 2.0);
        assert_eq!(over_budget(&frames, &costs, 2, 2.0, p.mean_cost), None);
        let o = over_budget(&frames, &costs, 2, 1.5, p.mean_cost).unwrap();
        assert_eq!((o.cheapest_macs, o.predicted_macs), (2.0, 2.0));
        assert!(
            o.why.contains("before exit 2") && o.why.contains("reference"),
            "{}",
            o.why
        );
        // Exit 0 scores, but half the frames are NaN there.
        let mut frames = vec![vec![0.1, 0.1, 0.2]; 5];
        frames.extend(vec![vec![f32::NAN, 0.1, 0.2]; 5]);
        let o = over_budget(&frames, &costs, 2, 1.2, 1.6).unwrap();
        assert_eq!(o.cheapest_macs, 1.5);
        assert!(o.why.starts_with("5 of 10 frames"), "{}", o.why);
        // Feasible in principle, missed by ties; within the tolerance, fine.
        let o = over_budget(&frames, &costs, 2, 1.6, 1.7).unwrap();
        assert!(o.why.contains("tie"), "{}", o.why);
        assert_eq!(over_budget(&frames, &costs, 2, 1.6, 1.6 * 1.004), None);
        let o = over_budget(&frames, &costs, 2, 0.5, 1.6).unwrap();
        assert!(o.why.contains("below exit 1's own cost"), "{}", o.why);
    }

    #[test]
    fn q_meets_the_budget() {
        let costs = [1.0, 2.0, 3.0, 4.0];
        for budget in [1.2, 2.0, 2.5, 3.7] {
            let q = solve_q(&costs, budget);
            let e: f64 = shares(q, 4).iter().zip(&costs).map(|(s, c)| s * c).sum();
            assert!((e - budget).abs() < 1e-9, "budget {budget}: {e}");
        }
        // Below the cheapest exit: everything at exit 0.
        assert!(shares(solve_q(&costs, 0.5), 4)[0] > 0.999);
    }

    #[test]
    fn thresholds_reproduce_the_shares() {
        // Deltas uniform-ish and independent per exit.
        let mut x = 12345u64;
        let mut rnd = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32
        };
        let frames: Vec<FrameDeltas> = (0..10_000)
            .map(|_| (0..4).map(|_| rnd()).collect())
            .collect();
        let target = shares(0.6, 4);
        let t = thresholds_for(&frames, &target);
        let p = predict(&frames, &t, &[1.0, 2.0, 3.0, 4.0]);
        for (got, want) in p.exit_shares.iter().zip(&target) {
            assert!(
                (got - want).abs() < 0.002,
                "{:?} vs {target:?}",
                p.exit_shares
            );
        }
    }

    #[test]
    fn a_share_ending_inside_a_tie_stops_the_whole_tie() {
        // A saturated learned exit: 600 frames score exactly 0 at exit 0,
        // 400 spread above; asking exit 0 for 30 % of the frames.
        let frames: Vec<FrameDeltas> = (0..1000)
            .map(|k| {
                let d0 = if k < 600 { 0.0 } else { 0.1 + k as f32 * 1e-4 };
                vec![d0, 0.5, 0.5]
            })
            .collect();
        let costs = [1.0, 2.0, 3.0];
        let target = [0.3, 0.3, 0.4];
        let planned: f64 = target.iter().zip(&costs).map(|(s, c)| s * c).sum();
        let t = thresholds_for(&frames, &target);
        let p = predict(&frames, &t, &costs);
        // Stopping none of the tie or all of it are as far from the 300
        // asked for: all of it stops, none is sent deeper than planned, so
        // the cost stays under the plan.
        assert_eq!(p.exit_shares[0], 0.6, "{t:?}");
        assert!(p.mean_cost <= planned, "{} > {planned}", p.mean_cost);
        // A head certain that 800 frames are unsafe (score exactly 1): the
        // 200 below the tie are nearer to the 300 asked for than all 1,000.
        let frames: Vec<FrameDeltas> = (0..1000)
            .map(|k| vec![if k < 200 { k as f32 * 1e-3 } else { 1.0 }, 0.5, 0.5])
            .collect();
        let t = thresholds_for(&frames, &target);
        let p = predict(&frames, &t, &costs);
        assert_eq!(p.exit_shares[0], 0.2, "{t:?}");
        assert!(t[0] > 0.199 && t[0] < 1.0, "{t:?}");
        // Neighbouring floats: the threshold still separates them.
        let a = 1.0f32;
        let b = f32::from_bits(a.to_bits() + 1);
        let t = thresholds_for(&[vec![a, 0.0], vec![b, 0.0]], &[0.5, 0.5]);
        assert!(a < t[0] && b >= t[0], "{t:?}");
    }

    #[test]
    fn nan_deltas_never_stop() {
        let frames = vec![vec![f32::NAN, f32::NAN, 0.0]; 10];
        let t = thresholds_for(&frames, &[0.5, 0.5, 0.0]);
        let p = predict(&frames, &t, &[1.0, 2.0, 3.0]);
        assert_eq!(p.exit_shares[2], 1.0);
    }
}
