//! Energy from a power trace: the trace is taken as linear between samples
//! and held flat before the first and after the last, and integrated over
//! any window. mW × s = mJ.
//!
//! A frame (about a millisecond) is far shorter than a sampling period (10 ms
//! for INA3221 at 100 Hz, 100 ms or more for tegrastats), so one frame's
//! figure is an interpolation; means over many frames, and blocks of frames
//! run at one fixed exit, are what the profile reports as measured.

use super::sampler::Sample;

/// Energy in mJ from `t0` to `t1` (seconds on the trace's clock); `None`
/// for an empty trace or an empty window.
pub fn energy_mj(samples: &[Sample], t0: f64, t1: f64) -> Option<f64> {
    if samples.is_empty() || t1 <= t0 {
        return None;
    }
    let p = |t: f64| power_at(samples, t);
    // Breakpoints: the window's ends and every sample inside it.
    let first = samples.partition_point(|s| s.t <= t0);
    let last = samples.partition_point(|s| s.t < t1);
    let mut e = 0.0;
    let (mut ta, mut pa) = (t0, p(t0));
    for s in &samples[first..last] {
        e += 0.5 * (pa + s.total_mw) * (s.t - ta);
        (ta, pa) = (s.t, s.total_mw);
    }
    e += 0.5 * (pa + p(t1)) * (t1 - ta);
    Some(e)
}

/// Mean power in mW over a window.
pub fn mean_power_mw(samples: &[Sample], t0: f64, t1: f64) -> Option<f64> {
    energy_mj(samples, t0, t1).map(|e| e / (t1 - t0))
}

/// Linear interpolation of the total at `t`.
fn power_at(samples: &[Sample], t: f64) -> f64 {
    let i = samples.partition_point(|s| s.t <= t);
    match i {
        0 => samples[0].total_mw,
        i if i == samples.len() => samples[i - 1].total_mw,
        i => {
            let (a, b) = (&samples[i - 1], &samples[i]);
            let w = (t - a.t) / (b.t - a.t);
            a.total_mw + w * (b.total_mw - a.total_mw)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(points: &[(f64, f64)]) -> Vec<Sample> {
        points
            .iter()
            .map(|&(t, p)| Sample {
                t,
                total_mw: p,
                rails_mw: vec![p],
            })
            .collect()
    }

    #[test]
    fn integrates_a_ramp_exactly() {
        // 0 mW at t=0 rising to 1000 mW at t=1: ∫ = 500 mJ.
        let s = trace(&[(0.0, 0.0), (0.5, 500.0), (1.0, 1000.0)]);
        assert!((energy_mj(&s, 0.0, 1.0).unwrap() - 500.0).abs() < 1e-9);
        // A window between samples: ∫_{0.2}^{0.3} 1000 t dt = 25 mJ.
        assert!((energy_mj(&s, 0.2, 0.3).unwrap() - 25.0).abs() < 1e-9);
        // Held flat outside the trace.
        assert!((energy_mj(&s, 1.0, 3.0).unwrap() - 2000.0).abs() < 1e-9);
        assert!((energy_mj(&s, -1.0, 0.0).unwrap()).abs() < 1e-9);
        assert!((mean_power_mw(&s, 0.0, 1.0).unwrap() - 500.0).abs() < 1e-9);
    }

    #[test]
    fn windows_add_up() {
        let s = trace(&[
            (0.0, 3000.0),
            (0.01, 5200.0),
            (0.02, 4100.0),
            (0.03, 6000.0),
        ]);
        let whole = energy_mj(&s, 0.001, 0.029).unwrap();
        let parts: f64 = (0..28)
            .map(|k| {
                let t = 0.001 + k as f64 * 0.001;
                energy_mj(&s, t, t + 0.001).unwrap()
            })
            .sum();
        assert!((whole - parts).abs() < 1e-9, "{whole} vs {parts}");
        assert_eq!(energy_mj(&s, 0.5, 0.5), None);
        assert_eq!(energy_mj(&[], 0.0, 1.0), None);
    }
}
