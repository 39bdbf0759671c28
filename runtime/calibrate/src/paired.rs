//! Paired comparisons of two policies run on the same episodes.
//!
//! Two policies evaluated on the same seeds face the same worlds, so the
//! per-episode differences cancel most of the episode-to-episode variance:
//! a 1-point success difference over 2,000 paired episodes can be told from
//! noise where two independent samples could not. The interval is the
//! t interval of the mean per-episode difference; for success, which
//! differs only on the episodes one policy completes and the other does
//! not, McNemar's exact test on those episodes must agree before a
//! difference counts ([`Paired::above_zero`]): a t interval on a handful of
//! one-sided disagreements is too sure of itself.

use crate::eval::{Episode, EvalReport};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum PairError {
    #[error("{a} and {b} were not run on the same episodes ({a}: {na} from seed {sa}, {b}: {nb} from seed {sb}); a paired comparison needs the same seeds")]
    Seeds {
        a: String,
        b: String,
        na: usize,
        nb: usize,
        sa: u64,
        sb: u64,
    },
    #[error("{what}: no episode to compare")]
    Empty { what: String },
}

/// The mean of `a − b` over paired episodes, and its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    pub episodes: usize,
    pub mean: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// Success only: episodes `a` completed and `b` did not, the reverse,
    /// and McNemar's exact two-sided p on them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discordant: Option<(usize, usize)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_p: Option<f64>,
}

impl Paired {
    /// From per-episode differences.
    pub fn of(diffs: &[f64]) -> Option<Self> {
        let n = diffs.len();
        if n == 0 {
            return None;
        }
        let mean = diffs.iter().sum::<f64>() / n as f64;
        let half = if n < 2 {
            f64::INFINITY
        } else {
            let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t975(n - 1) * (var / n as f64).sqrt()
        };
        Some(Self {
            episodes: n,
            mean,
            ci95_low: mean - half,
            ci95_high: mean + half,
            discordant: None,
            exact_p: None,
        })
    }

    /// `a` is better than `b`: the interval lies above zero, and for
    /// success McNemar's exact test agrees (p < 0.05).
    pub fn above_zero(&self) -> bool {
        self.ci95_low > 0.0 && self.exact_p.is_none_or(|p| p < 0.05)
    }
}

/// McNemar's exact two-sided p for `wins` against `losses` discordant
/// pairs: twice the binomial(wins + losses, ½) tail of the smaller count.
pub fn mcnemar_exact(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses);
    // Σ_{i ≤ k} C(n, i) / 2^n, in logs.
    let ln_choose = |i: usize| -> f64 {
        (1..=i)
            .map(|j| ((n - i + j) as f64).ln() - (j as f64).ln())
            .sum()
    };
    let tail: f64 = (0..=k)
        .map(|i| (ln_choose(i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided
/// 95 %): to three decimals up to 30; past that the value at the low end of
/// each bracket (30, 40, 60, 120), never narrower than the truth.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        31..=40 => 2.042,
        41..=60 => 2.021,
        61..=120 => 2.000,
        _ => 1.980,
    }
}

/// Episodes of `a` and `b` paired by seed; refused unless both ran the same
/// seeds.
fn pairs<'a>(
    a: &'a EvalReport,
    b: &'a EvalReport,
) -> Result<impl Iterator<Item = (&'a Episode, &'a Episode)>, PairError> {
    let same = a.per_episode.len() == b.per_episode.len()
        && a.per_episode
            .iter()
            .zip(&b.per_episode)
            .all(|(x, y)| x.seed == y.seed);
    if !same {
        return Err(PairError::Seeds {
            a: a.policy.clone(),
            b: b.policy.clone(),
            na: a.per_episode.len(),
            nb: b.per_episode.len(),
            sa: a.first_seed,
            sb: b.first_seed,
        });
    }
    Ok(a.per_episode.iter().zip(&b.per_episode))
}

/// Success of `a` minus success of `b` (a share: 0.01 is one point).
pub fn success(a: &EvalReport, b: &EvalReport) -> Result<Paired, PairError> {
    let (mut p, d) = over_every(a, b, |x, y| x.success as u8 as f64 - y.success as u8 as f64)?;
    let wins = d.iter().filter(|x| **x > 0.0).count();
    let losses = d.iter().filter(|x| **x < 0.0).count();
    p.discordant = Some((wins, losses));
    p.exact_p = Some(mcnemar_exact(wins, losses));
    Ok(p)
}

/// Mean |Δω| per step of `a` minus that of `b` (negative: `a` is smoother).
pub fn smoothness(a: &EvalReport, b: &EvalReport) -> Result<Paired, PairError> {
    Ok(over_every(a, b, |x, y| x.mean_abs_domega - y.mean_abs_domega)?.0)
}

/// `diff` over every pair of episodes, and the differences.
fn over_every(
    a: &EvalReport,
    b: &EvalReport,
    diff: impl Fn(&Episode, &Episode) -> f64,
) -> Result<(Paired, Vec<f64>), PairError> {
    let d: Vec<f64> = pairs(a, b)?.map(|(x, y)| diff(x, y)).collect();
    let p = Paired::of(&d).ok_or_else(|| PairError::Empty {
        what: format!("{} vs {}", a.policy, b.policy),
    })?;
    Ok((p, d))
}

/// Steps to the target of `a` minus those of `b`, over the episodes both
/// completed (None if there is none).
pub fn completion_steps(a: &EvalReport, b: &EvalReport) -> Result<Option<Paired>, PairError> {
    let d: Vec<f64> = pairs(a, b)?
        .filter(|(x, y)| x.success && y.success)
        .map(|(x, y)| x.steps as f64 - y.steps as f64)
        .collect();
    Ok(Paired::of(&d))
}

/// The share of the success gap between a fixed exit and the full model
/// that `policy` closes: 1 matches the full model, 0 the fixed exit (None
/// when the fixed exit already does as well as the full model; callers
/// pass only gaps the full model's paired lead makes real, since a ratio
/// over a gap of a few episodes means nothing).
pub fn gap_closed(policy: f64, fixed: f64, full: f64) -> Option<f64> {
    (full > fixed).then(|| (policy - fixed) / (full - fixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(policy: &str, outcomes: &[(bool, usize, f64)], first_seed: u64) -> EvalReport {
        EvalReport {
            policy: policy.into(),
            episodes: outcomes.len(),
            first_seed,
            successes: outcomes.iter().filter(|o| o.0).count(),
            success_rate: 0.0,
            frames: 0,
            right_share: 0.0,
            mean_exit: 0.0,
            exit_shares: Vec::new(),
            mean_macs: 0.0,
            compute_ratio: 0.0,
            robot_compute_ratio: 0.0,
            latency_ms: None,
            remote_frames: 0,
            fallback_frames: 0,
            nonfinite_frames: 0,
            collisions: 0,
            mean_success_steps: None,
            mean_success_seconds: None,
            mean_abs_domega: 0.0,
            by_difficulty: Vec::new(),
            failures: Default::default(),
            per_episode: outcomes
                .iter()
                .enumerate()
                .map(|(k, &(success, steps, w))| Episode {
                    seed: first_seed + k as u64,
                    success,
                    steps,
                    mean_abs_domega: w,
                })
                .collect(),
        }
    }

    #[test]
    fn the_interval_matches_a_hand_computed_t_interval() {
        // Differences 1, 0, 0, 1, 0: mean 0.4, sd sqrt(0.3), t(4) = 2.776.
        let p = Paired::of(&[1.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
        let half = 2.776 * (0.3f64 / 5.0).sqrt();
        assert!((p.mean - 0.4).abs() < 1e-12);
        assert!((p.ci95_low - (0.4 - half)).abs() < 1e-12, "{p:?}");
        assert!((p.ci95_high - (0.4 + half)).abs() < 1e-12, "{p:?}");
        assert!(!p.above_zero());
        assert_eq!(Paired::of(&[]), None);
        // McNemar's exact p, by hand: 5 wins, 0 losses: 2 / 2^5.
        assert!((mcnemar_exact(5, 0) - 0.0625).abs() < 1e-12);
        assert!((mcnemar_exact(3, 3) - 1.0).abs() < 1e-12);
        // 10 vs 2: 2 · (1 + 12 + 66) / 4096.
        assert!((mcnemar_exact(10, 2) - 2.0 * 79.0 / 4096.0).abs() < 1e-12);
        assert_eq!(Paired::of(&[1.0]).unwrap().ci95_low, f64::NEG_INFINITY);
    }

    /// Pairing is what makes a small, consistent difference significant:
    /// the same outcomes shuffled across episodes are not.
    #[test]
    fn a_consistent_difference_on_the_same_episodes_is_significant() {
        // b fails one episode in 10; a succeeds wherever b does, and on 3 of
        // b's 10 failures per 100: 3 points better, on the same worlds.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for k in 0..1000 {
            let b_ok = k % 10 != 0;
            let a_ok = b_ok || k % 100 < 30;
            a.push((a_ok, 50, 0.1));
            b.push((b_ok, 60, 0.2));
        }
        let (ra, rb) = (report("criterion", &a, 0), report("exit 1", &b, 0));
        let p = success(&ra, &rb).unwrap();
        assert!((p.mean - 0.03).abs() < 1e-12, "{p:?}");
        assert!(p.above_zero(), "{p:?}");
        assert_eq!(p.discordant, Some((30, 0)));
        // Five one-sided wins in 2,000 episodes: the t interval lies above
        // zero, but McNemar's exact test does not call it a difference.
        let few: Vec<_> = (0..2000).map(|k| (k < 5, 50, 0.1)).collect();
        let none: Vec<_> = (0..2000).map(|_| (false, 50, 0.1)).collect();
        let p = success(&report("a", &few, 0), &report("b", &none, 0)).unwrap();
        assert!(p.ci95_low > 0.0 && !p.above_zero(), "{p:?}");
        let s = smoothness(&ra, &rb).unwrap();
        assert!((s.mean + 0.1).abs() < 1e-12 && s.ci95_high < 0.0, "{s:?}");
        let c = completion_steps(&ra, &rb).unwrap().unwrap();
        assert_eq!(c.episodes, 900);
        assert!((c.mean + 10.0).abs() < 1e-12);
        // Another seed range is refused, naming both policies.
        let e = success(&ra, &report("exit 1", &b, 1000)).unwrap_err();
        assert!(
            e.to_string()
                .contains("criterion and exit 1 were not run on the same episodes"),
            "{e}"
        );
    }

    #[test]
    fn the_gap_closed_is_a_share_of_the_fixed_exits_shortfall() {
        assert!((gap_closed(0.92, 0.80, 0.95).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(gap_closed(0.80, 0.80, 0.95), Some(0.0));
        assert_eq!(gap_closed(0.9, 0.95, 0.95), None);
    }
}
