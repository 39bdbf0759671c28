//! Per-exit latency prediction for the per-frame deadline.

use super::MAX_EXITS;

/// Predicts each exit's latency (segment + head) for the deadline, so that an
/// exit starts only if it can still finish in time (AdaLLaVA's guarantee, by
/// construction: the deadline caps the depth, content picks the exit).
///
/// Exit 0 runs on every frame, so its recent latencies say how fast the
/// machine is right now; a deeper exit is predicted as exit 0's latency times
/// that exit's latency ratio to exit 0. The ratio is what the exit costs
/// relative to exit 0 — a property of the model, not of the moment — taken
/// from the manifest's MACs until the exit has run, then as the median of the
/// ratios measured in the same frames (with the prior counted as samples
/// until [`Self::PRIOR_WEIGHT`] measurements exist). Prediction = the largest of exit 0's
/// last [`Self::WINDOW`] latencies × ratio × margin.
///
/// Why not each exit's own recent maximum: an exit runs only when predicted to
/// fit, so a single spike (a warm-up run, a burst of contention) once pushed
/// its prediction past the deadline for good — it was never run, so never
/// re-measured. Here every prediction follows exit 0, which is measured every
/// frame: once the machine is fast again, the deep exits come back within
/// `WINDOW` frames, and a spike in a rarely used exit moves only one of the
/// ratios its median is taken over.
#[derive(Debug, Clone)]
pub struct LatencyModel {
    base: [f32; Self::WINDOW],
    base_next: usize,
    base_filled: usize,
    ratios: [[f32; Self::RATIOS]; MAX_EXITS],
    ratio_next: [usize; MAX_EXITS],
    ratio_filled: [usize; MAX_EXITS],
    prior: [f32; MAX_EXITS],
    pub margin: f32,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self {
            base: [0.0; Self::WINDOW],
            base_next: 0,
            base_filled: 0,
            ratios: [[0.0; Self::RATIOS]; MAX_EXITS],
            ratio_next: [0; MAX_EXITS],
            ratio_filled: [0; MAX_EXITS],
            prior: [1.0; MAX_EXITS],
            margin: 1.3,
        }
    }
}

impl LatencyModel {
    /// Frames of exit-0 latency the speed estimate looks back over.
    pub const WINDOW: usize = 64;
    /// Measured ratios per exit the median is taken over.
    pub const RATIOS: usize = 15;
    /// Measurements it takes to overrule the cost prior entirely.
    pub const PRIOR_WEIGHT: usize = 3;

    /// A model whose unmeasured exits are predicted from `costs` (any unit
    /// proportional to run time, e.g. MACs of each exit's segment + head).
    pub fn with_costs(costs: &[u64]) -> Self {
        let mut m = Self::default();
        if let Some(&c0) = costs.first().filter(|c| **c > 0) {
            for (p, c) in m.prior.iter_mut().zip(costs) {
                *p = *c as f32 / c0 as f32;
            }
        }
        m
    }

    /// Records one frame's per-exit latencies (`seconds[i]` for the exits
    /// that ran, in order; every exit's head evaluated).
    pub fn record_frame(&mut self, seconds: &[f32]) {
        let Some(&t0) = seconds.first().filter(|t| t.is_finite() && **t > 0.0) else {
            return;
        };
        self.base[self.base_next] = t0;
        self.base_next = (self.base_next + 1) % Self::WINDOW;
        self.base_filled = (self.base_filled + 1).min(Self::WINDOW);
        for (i, t) in seconds.iter().enumerate().skip(1).take(MAX_EXITS - 1) {
            if !t.is_finite() {
                continue;
            }
            let k = self.ratio_next[i];
            self.ratios[i][k] = t / t0;
            self.ratio_next[i] = (k + 1) % Self::RATIOS;
            self.ratio_filled[i] = (self.ratio_filled[i] + 1).min(Self::RATIOS);
        }
    }

    /// Exit `exit`'s latency relative to exit 0.
    pub fn ratio(&self, exit: usize) -> f32 {
        if exit == 0 || exit >= MAX_EXITS {
            return self.prior.get(exit).copied().unwrap_or(1.0);
        }
        // The prior counts as samples until PRIOR_WEIGHT measurements agree:
        // one spiky first run (a warm-up) does not outvote it.
        let n = self.ratio_filled[exit];
        let mut r = [self.prior[exit]; Self::RATIOS + Self::PRIOR_WEIGHT];
        r[..n].copy_from_slice(&self.ratios[exit][..n]);
        let m = n.max(Self::PRIOR_WEIGHT);
        r[..m].sort_unstable_by(f32::total_cmp);
        r[m / 2]
    }

    /// Predicted seconds for `exit`; None until exit 0 has been measured.
    pub fn predict(&self, exit: usize) -> Option<f32> {
        let n = self.base_filled;
        (n > 0).then(|| {
            let speed = self.base[..n].iter().copied().fold(0.0f32, f32::max);
            speed * self.ratio(exit) * self.margin
        })
    }
}
