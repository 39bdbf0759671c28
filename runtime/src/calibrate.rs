//! Exit thresholds from data under a compute budget (DeeR, Eq. 5).
//!
//! 1. Run the exit chain on calibration episodes with every exit evaluated
//!    (the recurrent state committed as the current thresholds would), and
//!    keep each frame's per-exit RMS deltas.
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
            // Strictly between the last frame that stops and the first that
            // does not (the criterion is delta < eta).
            w => 0.5 * (d[w - 1].0 + d[w].0),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn nan_deltas_never_stop() {
        let frames = vec![vec![f32::NAN, f32::NAN, 0.0]; 10];
        let t = thresholds_for(&frames, &[0.5, 0.5, 0.0]);
        let p = predict(&frames, &t, &[1.0, 2.0, 3.0]);
        assert_eq!(p.exit_shares[2], 1.0);
    }
}

use crate::exit_chain::{ExitChain, ExitChainError, ExitPolicy};
use crate::preprocess::{PreprocessError, Preprocessor};
use offramp_sim::{Sim, SimConfig, Twist};

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Chain(#[from] ExitChainError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
}

/// Where calibration frames come from.
pub enum Frames<'a> {
    /// Closed loop in the simulator: episodes `first_seed..first_seed + n`.
    Sim {
        cfg: &'a SimConfig,
        first_seed: u64,
        episodes: usize,
    },
    /// Recorded episodes (`offramp sim record`): frames HWC u8, one
    /// instruction and episode index per frame.
    Replay {
        frames: &'a [u8],
        frame_len: usize,
        instructions: &'a [i64],
        episodes: &'a [i32],
    },
}

/// Per-frame deltas of every exit, with the state committed as the chain's
/// current thresholds choose; also the per-frame cumulative latency of each
/// exit (seconds).
pub fn collect(
    chain: &mut ExitChain,
    pre: &mut Preprocessor,
    frames: &Frames,
    progress: &mut dyn FnMut(),
) -> Result<(Vec<FrameDeltas>, Vec<Vec<f32>>), CalibrateError> {
    let n = chain.exits();
    let mut deltas = Vec::new();
    let mut latency = Vec::new();
    let mut keep = |o: &crate::exit_chain::FrameOutcome| {
        deltas.push(o.deltas[..n].to_vec());
        let mut cum = 0.0;
        latency.push(
            o.exit_seconds[..n]
                .iter()
                .map(|s| {
                    cum += s;
                    cum
                })
                .collect(),
        );
    };
    match frames {
        Frames::Sim {
            cfg,
            first_seed,
            episodes,
        } => {
            let mut buf = Vec::new();
            for e in 0..*episodes {
                let mut sim = Sim::new(cfg, first_seed + e as u64);
                buf.resize(sim.frame_len(), 0);
                chain.reset();
                chain.set_instruction(sim.instruction() as usize);
                loop {
                    sim.render(&mut buf);
                    pre.run(&buf, chain.image_mut())?;
                    let o = chain.step(ExitPolicy::All)?;
                    keep(&o);
                    let t = Twist::from_action(chain.action());
                    if sim.step(t.to_wheels(cfg.track_width)).done {
                        break;
                    }
                }
                progress();
            }
        }
        Frames::Replay {
            frames,
            frame_len,
            instructions,
            episodes,
        } => {
            let mut last_episode = None;
            for (k, frame) in frames.chunks_exact(*frame_len).enumerate() {
                if last_episode != Some(episodes[k]) {
                    chain.reset();
                    chain.set_instruction(instructions[k].max(0) as usize);
                    last_episode = Some(episodes[k]);
                    progress();
                }
                pre.run(frame, chain.image_mut())?;
                let o = chain.step(ExitPolicy::All)?;
                keep(&o);
            }
        }
    }
    Ok((deltas, latency))
}

/// Result of [`calibrate`].
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub thresholds: Vec<f32>,
    pub q: f64,
    pub budget_macs: f64,
    pub full_macs: u64,
    /// Cumulative MACs of stopping at each exit under the criterion.
    pub exit_costs: Vec<u64>,
    pub deepest_exit: usize,
    pub frames: usize,
    pub predicted: Prediction,
    /// p99 cumulative latency to each exit on this machine, milliseconds.
    pub exit_latency_p99_ms: Vec<f64>,
    /// The last pass's per-frame deltas (what a refinement search derives
    /// its candidates from).
    #[serde(skip)]
    pub deltas: Vec<FrameDeltas>,
    /// The closed-loop refinement, when one ran (`--refine`).
    pub refined: Option<crate::refine::RefineReport>,
}

impl Calibration {
    pub fn exit_costs_f64(&self) -> Vec<f64> {
        self.exit_costs.iter().map(|c| *c as f64).collect()
    }
}

/// What [`calibrate`] solves for.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Mean MACs per frame.
    pub macs: f64,
    /// Deepest exit allowed (memory budget).
    pub cap: Option<usize>,
    /// Deepest exit whose p99 cumulative latency fits.
    pub latency_cap_ms: Option<f64>,
    /// Solve passes (the committed state follows the thresholds).
    pub iterations: usize,
}

/// The DeeR solve, repeated so the committed state matches the thresholds.
pub fn calibrate(
    chain: &mut ExitChain,
    pre: &mut Preprocessor,
    frames: &Frames,
    budget: Budget,
    progress: &mut dyn FnMut(),
) -> Result<Calibration, CalibrateError> {
    let Budget {
        macs: budget_macs,
        cap,
        latency_cap_ms,
        iterations,
    } = budget;
    let n = chain.exits();
    let costs_u: Vec<u64> = chain.criterion_costs();
    let mut deepest = cap.unwrap_or(n - 1).min(n - 1);
    let mut thresholds: Vec<f32> = Vec::new();
    chain.set_thresholds(&[]);
    let mut q = 1.0;
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..iterations.max(1) {
        last = collect(chain, pre, frames, progress)?;
        let p99 = p99_per_exit(&last.1, n);
        if let Some(l) = latency_cap_ms {
            // Deepest exit whose cumulative p99 latency fits (exit 0 always).
            let fit = (0..n).rev().find(|&i| p99[i] <= l).unwrap_or(0);
            deepest = deepest.min(fit);
        }
        let costs: Vec<f64> = costs_u[..=deepest].iter().map(|c| *c as f64).collect();
        q = solve_q(&costs, budget_macs);
        thresholds = thresholds_from_shares(&last.0, &shares(q, deepest + 1), n, deepest);
        chain.set_thresholds(&thresholds);
    }
    let costs: Vec<f64> = costs_u.iter().map(|c| *c as f64).collect();
    Ok(Calibration {
        predicted: predict(&last.0, &thresholds, &costs),
        thresholds,
        q,
        budget_macs,
        full_macs: chain.full_macs(),
        exit_costs: costs_u,
        deepest_exit: deepest,
        frames: last.0.len(),
        exit_latency_p99_ms: p99_per_exit(&last.1, n).to_vec(),
        deltas: last.0,
        refined: None,
    })
}

fn p99_per_exit(latency: &[Vec<f32>], n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = latency.iter().map(|l| l[i]).collect();
            v.sort_by(f32::total_cmp);
            v.get(((v.len() as f64 * 0.99) as usize).min(v.len().saturating_sub(1)))
                .map_or(0.0, |s| *s as f64 * 1e3)
        })
        .collect()
}
