//! The charts of `offramp profile` ([`offramp_bench::profile`]): frame
//! latency by exit, and with power samples, active energy per frame against
//! the exit taken and power over the run.

use crate::plot::{self, Mark, Series};
use offramp_bench::profile::{ProfileReport, Trace};
use offramp_power::energy::energy_mj;
use std::path::{Path, PathBuf};

/// The report's charts, written into `dir`: the files written; what could
/// not be drawn is noted in its `plots_skipped`.
pub fn charts(dir: &Path, r: &mut ProfileReport, t: &Trace) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let path = dir.join("latency_cdf.svg");
    let mut series: Vec<Series> = t
        .fixed_ms
        .iter()
        .enumerate()
        .map(|(k, v)| Series::new(format!("exit {} (forced)", k + 1), plot::cdf(v), Mark::Line))
        .collect();
    series.push(Series::new(
        "calibrated criterion",
        plot::cdf(&t.calibrated_ms),
        Mark::Bold,
    ));
    plot::chart(
        &path,
        "Frame latency by exit",
        "frame latency (ms)",
        "fraction of frames",
        &series,
    )?;
    files.push(path);
    match (&t.log, t.idle_mw) {
        (Some(l), Some(idle)) if l.samples.len() >= 2 => {
            let path = dir.join("energy_per_frame.svg");
            // Per-frame interpolated active energy, jittered around the exit
            // taken, and each exit's block mean.
            let mut pts = Vec::new();
            for (i, &(t0, t1, k)) in t.spans.iter().enumerate() {
                if let Some(e) = energy_mj(&l.samples, t0, t1) {
                    let jitter = ((i * 7919) % 100) as f64 / 100.0 * 0.4 - 0.2;
                    pts.push((k as f64 + 1.0 + jitter, e - idle * (t1 - t0)));
                }
            }
            let blocks: Vec<(f64, f64)> = r
                .per_exit
                .iter()
                .filter_map(|c| c.active_energy_per_frame_mj.map(|e| (c.exit as f64, e)))
                .collect();
            plot::chart(
                &path,
                "Active energy per frame vs exit taken",
                "exit taken",
                "energy above idle (mJ)",
                &[
                    Series::new("calibrated run, per frame", pts, Mark::Points),
                    Series::new("fixed-exit blocks, mean", blocks, Mark::Bold),
                ],
            )?;
            files.push(path);
            let path = dir.join("power_over_time.svg");
            let mut series = vec![Series::new(
                "total",
                l.samples.iter().map(|s| (s.t, s.total_mw)).collect(),
                Mark::Bold,
            )];
            for (j, rail) in l.rails.iter().enumerate() {
                series.push(Series::new(
                    rail.clone(),
                    l.samples.iter().map(|s| (s.t, s.rails_mw[j])).collect(),
                    Mark::Line,
                ));
            }
            plot::chart(&path, "Power over the profile", "time (s)", "mW", &series)?;
            files.push(path);
        }
        _ => r.plots_skipped.push(
            "energy_per_frame.svg, power_over_time.svg: no power samples (see power.notes)".into(),
        ),
    }
    Ok(files)
}
