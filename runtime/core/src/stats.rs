//! Distribution summaries for reports, and the one percentile rule every
//! figure uses: the sample at rank `round((n − 1) · q)` of the sorted
//! sample (nearest rank, no interpolation).

use serde::Serialize;

/// The `q` quantile (0..=1) of an ascending `sorted` sample; `None` when it
/// is empty.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let n = sorted.len();
    (n > 0).then(|| sorted[(((n - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize).min(n - 1)])
}

/// Fixed-capacity window of the latest values, for percentiles without
/// allocating (the run loop's latency figures).
pub struct Window {
    buf: Vec<f32>,
    scratch: Vec<f32>,
    next: usize,
    filled: usize,
}

impl Window {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: vec![0.0; cap.max(1)],
            scratch: vec![0.0; cap.max(1)],
            next: 0,
            filled: 0,
        }
    }

    pub fn push(&mut self, v: f32) {
        self.buf[self.next] = v;
        self.next = (self.next + 1) % self.buf.len();
        self.filled = (self.filled + 1).min(self.buf.len());
    }

    /// The `q` quantile (0..=1) of the window ([`quantile`]); 0 when empty.
    pub fn quantile(&mut self, q: f64) -> f32 {
        let s = &mut self.scratch[..self.filled];
        s.copy_from_slice(&self.buf[..self.filled]);
        s.sort_unstable_by(f32::total_cmp);
        quantile(s, q).unwrap_or(0.0)
    }
}

/// Order statistics of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for an empty sample. NaNs are ignored.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| quantile(&v, p).unwrap_or(f64::NAN);
        Some(Self {
            n: v.len(),
            min: v[0],
            p50: q(0.5),
            p99: q(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_sample() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!(
            (s.n, s.min, s.p50, s.p99, s.max, s.mean),
            (101, 1.0, 51.0, 100.0, 101.0, 51.0)
        );
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN, 2.0]).unwrap().n, 1);
    }

    #[test]
    fn window_quantiles() {
        let mut w = Window::new(100);
        assert_eq!(w.quantile(0.5), 0.0);
        for i in 0..250 {
            w.push(i as f32);
        }
        // The last 100 values: 150..250.
        assert_eq!(w.quantile(0.0), 150.0);
        assert_eq!(w.quantile(1.0), 249.0);
        assert_eq!(w.quantile(0.5), 200.0);
        assert_eq!(w.quantile(0.99), 248.0);
    }
}
