//! The exit criterion's score at an exit (lower is more confident): DeeR's
//! action consistency, the probability criteria on discrete or token
//! actions, or a learned exit head's confidence; and how token actions are
//! decoded from the head's distributions.

use super::ExitChain;
use offramp_engines::manifest::CriterionKind;

/// Discrete action tokens: per dimension, a distribution over bins whose
/// top bin's centre is the action.
pub(super) struct Tokens {
    /// Bin centres, dimension-major (`per_dim` per dimension).
    pub(super) bins: Vec<f32>,
    pub(super) per_dim: usize,
    /// The head emits logits (softmax here) rather than probabilities.
    pub(super) logits: bool,
    /// Each exit's probabilities, for the probability criteria.
    pub(super) probs: Vec<Vec<f32>>,
    /// The exit-0 reference's probabilities.
    pub(super) ref_probs: Vec<f32>,
}

impl Tokens {
    /// Turns `raw` ([D × B] logits or probabilities) into probabilities and
    /// the action (each dimension's top bin centre). A dimension with a
    /// non-finite score gets a NaN action, which the chain never uses.
    pub(super) fn decode(
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
    pub(super) fn score(kind: CriterionKind, b: usize, probs: &[f32]) -> f32 {
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

pub(super) fn finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

pub(super) fn rms(a: &[f32], b: &[f32], dims: &[usize]) -> f32 {
    if dims.is_empty() {
        let s: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        return (s / a.len().max(1) as f32).sqrt();
    }
    let s: f32 = dims.iter().map(|&d| (a[d] - b[d]) * (a[d] - b[d])).sum();
    (s / dims.len() as f32).sqrt()
}

impl ExitChain {
    /// The criterion's score at exit `i` (lower is more confident), from
    /// this frame's actions; NaN where it is not defined.
    pub(super) fn score(&self, i: usize, delta: f32) -> f32 {
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
    pub(super) fn passes(&self, i: usize, score: f32) -> bool {
        self.thresholds.get(i).is_some_and(|t| score < *t)
    }
}
