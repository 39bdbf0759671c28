//! DeeR's refinement, the baseline [`crate::refine::race`] is compared with:
//! Bayesian optimisation (a GP with a Matérn 5/2 kernel and expected
//! improvement, as skopt's `gp_minimize` runs it) over the thresholds.

use crate::eval::EvalError;
use crate::refine::{halton, Objective, RefineReport, Rollout, Space, Trial};

/// BO's closed-loop calls and how many of them are initial, space-filling
/// points: skopt's `gp_minimize` defaults, as DeeR ran it.
pub const BO_CALLS: usize = 20;
pub const BO_INITIAL: usize = 10;

/// DeeR's refinement: Bayesian optimisation over the thresholds (as
/// quantile ranks of each exit's deltas), `calls` closed-loop rollouts on
/// all `episodes`, the first `initial` space-filling (the first of them
/// DeeR's solve `start`), the rest maximising expected improvement.
#[allow(clippy::too_many_arguments)]
pub fn bayes_opt(
    space: &Space,
    objective: Objective,
    rollout: &mut Rollout,
    first_seed: u64,
    episodes: usize,
    start: &[f32],
    calls: usize,
    initial: usize,
) -> Result<RefineReport, EvalError> {
    let d = space.deepest;
    let mut xs: Vec<Vec<f64>> = Vec::new();
    let mut trials: Vec<Trial> = Vec::new();
    let mut trace = Vec::new();
    let mut used = 0usize;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for call in 0..calls.max(1) {
        let x: Vec<f64> = if d == 0 {
            Vec::new()
        } else if call == 0 {
            (0..d).map(|i| space.rank(i, start[i])).collect()
        } else if call < initial || xs.len() < 2 {
            const PRIMES: [usize; 8] = [2, 3, 5, 7, 11, 13, 17, 19];
            (0..d).map(|i| halton(call, PRIMES[i % 8])).collect()
        } else {
            let best = trials
                .iter()
                .map(|t| t.score)
                .fold(f64::NEG_INFINITY, f64::max);
            let ys: Vec<f64> = trials.iter().map(|t| t.score).collect();
            let gp = Gp::fit(&xs, &ys);
            let mut pick = (f64::NEG_INFINITY, vec![0.5; d]);
            let incumbent = xs[ys
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)]
            .clone();
            for j in 0..2304 {
                let c: Vec<f64> = if j < 2048 {
                    (0..d).map(|_| rng.uniform()).collect()
                } else {
                    incumbent
                        .iter()
                        .map(|v| (v + 0.05 * rng.normal()).clamp(0.0, 1.0))
                        .collect()
                };
                let ei = gp.expected_improvement(&c, best);
                if ei > pick.0 {
                    pick = (ei, c);
                }
            }
            pick.1
        };
        let thresholds = if d == 0 {
            start.to_vec()
        } else {
            space.thresholds_for_ranks(&x)
        };
        let tally = rollout(&thresholds, first_seed, episodes)?;
        used += tally.episodes;
        let score = objective.score(&tally);
        xs.push(x);
        trials.push(Trial {
            label: format!("call {}", call + 1),
            thresholds,
            tally,
            score,
        });
        let best = trials
            .iter()
            .map(|t| t.score)
            .fold(f64::NEG_INFINITY, f64::max);
        trace.push((used, best));
    }
    let candidates = trials.len();
    let best = trials
        .into_iter()
        .reduce(|a, b| if b.score > a.score { b } else { a })
        .expect("at least one call");
    Ok(RefineReport {
        method: format!("Bayesian optimisation ({candidates} calls, DeeR)"),
        rollout_episodes: used,
        candidates,
        best,
        trace,
    })
}

/// A small, seeded generator (the searches must be reproducible).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Gaussian process regression with a Matérn 5/2 kernel on [0, 1]^d; length
/// scale and noise chosen by marginal likelihood over a small grid (what
/// skopt's gp_minimize fits by gradient, to the same end).
struct Gp {
    xs: Vec<Vec<f64>>,
    alpha: Vec<f64>,
    chol: Vec<Vec<f64>>,
    length: f64,
    mean: f64,
    scale: f64,
}

fn matern52(a: &[f64], b: &[f64], length: f64) -> f64 {
    let r = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
        / length;
    let s = 5f64.sqrt() * r;
    (1.0 + s + s * s / 3.0) * (-s).exp()
}

/// Lower Cholesky factor of a symmetric positive definite matrix.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = a[i][i] - s;
                if v <= 0.0 {
                    return None;
                }
                l[i][j] = v.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves L y = b (forward substitution).
fn forward(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; b.len()];
    for i in 0..b.len() {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    y
}

/// Solves Lᵀ x = y (back substitution).
fn backward(l: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let n = y.len();
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

impl Gp {
    fn fit(xs: &[Vec<f64>], ys: &[f64]) -> Self {
        let n = ys.len() as f64;
        let mean = ys.iter().sum::<f64>() / n;
        let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
        let scale = if var > 1e-12 { var.sqrt() } else { 1.0 };
        let y: Vec<f64> = ys.iter().map(|v| (v - mean) / scale).collect();
        let mut best: Option<(f64, Gp)> = None;
        for length in [0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0] {
            for noise in [1e-4, 1e-2, 0.05, 0.2] {
                let k: Vec<Vec<f64>> = xs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        xs.iter()
                            .enumerate()
                            .map(|(j, b)| matern52(a, b, length) + if i == j { noise } else { 0.0 })
                            .collect()
                    })
                    .collect();
                let Some(chol) = cholesky(&k) else { continue };
                let alpha = backward(&chol, &forward(&chol, &y));
                let fit: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
                let logdet: f64 = (0..y.len()).map(|i| chol[i][i].ln()).sum();
                let lml = -0.5 * fit - logdet;
                if best.as_ref().is_none_or(|(b, _)| lml > *b) {
                    best = Some((
                        lml,
                        Gp {
                            xs: xs.to_vec(),
                            alpha,
                            chol,
                            length,
                            mean,
                            scale,
                        },
                    ));
                }
            }
        }
        best.map(|(_, g)| g).unwrap_or(Gp {
            xs: Vec::new(),
            alpha: Vec::new(),
            chol: Vec::new(),
            length: 1.0,
            mean,
            scale,
        })
    }

    /// Posterior mean and standard deviation at `x` (original units).
    fn predict(&self, x: &[f64]) -> (f64, f64) {
        let k: Vec<f64> = self
            .xs
            .iter()
            .map(|a| matern52(a, x, self.length))
            .collect();
        let mu: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, &k);
        let var = (1.0 - v.iter().map(|x| x * x).sum::<f64>()).max(1e-12);
        (self.mean + self.scale * mu, self.scale * var.sqrt())
    }

    /// Expected improvement over `best` (maximisation, ξ = 0.01 as skopt).
    fn expected_improvement(&self, x: &[f64], best: f64) -> f64 {
        let (mu, sigma) = self.predict(x);
        let gain = mu - best - 0.01;
        let z = gain / sigma;
        gain * normal_cdf(z) + sigma * (-0.5 * z * z).exp() / (std::f64::consts::TAU).sqrt()
    }
}

/// Φ(z) via erfc (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    0.5 * erfc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_values() {
        for (z, p) in [(0.0, 0.5), (1.0, 0.841_344_746), (-1.96, 0.024_997_895)] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "{z}");
        }
    }

    #[test]
    fn gp_interpolates_and_is_unsure_away_from_data() {
        let xs: Vec<Vec<f64>> = (0..8).map(|i| vec![i as f64 / 7.0]).collect();
        let ys: Vec<f64> = xs.iter().map(|x| (6.0 * x[0]).sin()).collect();
        let gp = Gp::fit(&xs, &ys);
        for (x, y) in xs.iter().zip(&ys) {
            let (m, _) = gp.predict(x);
            assert!((m - y).abs() < 0.1, "{x:?}: {m} vs {y}");
        }
        let near = gp.predict(&[0.5]).1;
        let far = Gp::fit(&xs[..4], &ys[..4]).predict(&[1.0]).1;
        assert!(far > near, "{far} vs {near}");
    }
}
