//! The charts of `offramp calibrate-sweep` ([`offramp_calibrate::sweep`]):
//! held-out success against compute for each method and the fixed exits,
//! and with refinement, the searches' convergence.

use crate::plot::{self, Mark, Series};
use offramp_calibrate::offline::{OfflineSweep, Point as OfflinePoint};
use offramp_calibrate::sweep::Sweep;
use std::path::Path;

/// The sweep's charts, written into `dir` and listed in its `files`.
pub fn charts(dir: &Path, s: &mut Sweep) -> anyhow::Result<()> {
    let svg = dir.join("success_vs_compute.svg");
    let pct = |x: f64| 100.0 * x;
    let curve = |method: &str| -> Vec<(f64, f64)> {
        let mut c: Vec<(f64, f64)> = s
            .budgets
            .iter()
            .filter(|b| b.method == method)
            .map(|b| (b.held_out.compute_ratio, pct(b.held_out.success_rate)))
            .collect();
        c.sort_by(|a, b| a.0.total_cmp(&b.0));
        c
    };
    let fixed: Vec<(f64, f64)> = s
        .fixed_exits
        .iter()
        .map(|r| (r.compute_ratio, pct(r.success_rate)))
        .collect();
    let mut series = vec![Series::new(
        "calibrated thresholds (DeeR solve)",
        curve("DeeR solve"),
        Mark::Bold,
    )];
    if !s.searches.is_empty() {
        series.push(Series::new(
            "refined in closed loop (offramp)",
            curve("refined"),
            Mark::Line,
        ));
        series.push(Series::new(
            "refined by DeeR's BO (20 calls)",
            curve("DeeR BO"),
            Mark::Line,
        ));
    }
    series.push(Series::new(
        "fixed exits 1..n (last = full model)",
        fixed,
        Mark::Points,
    ));
    plot::chart(
        &svg,
        "Held-out success vs compute",
        "mean compute per frame (share of the full model)",
        "success rate (%)",
        &series,
    )?;
    s.files = vec![svg.display().to_string()];
    if !s.searches.is_empty() {
        let conv = dir.join("refine_convergence.svg");
        let series: Vec<Series> = s
            .searches
            .iter()
            .map(|(b, r)| {
                let name = if r.method.starts_with("Bayes") {
                    format!("DeeR BO, budget {b}")
                } else {
                    format!("offramp, budget {b}")
                };
                let pts = r.trace.iter().map(|(e, v)| (*e as f64, pct(*v))).collect();
                Series::new(name, pts, Mark::Line)
            })
            .collect();
        plot::chart(
            &conv,
            "Closed-loop refinement on calibration episodes",
            "episodes rolled out",
            "objective of the current best (success %, minus over-budget penalty)",
            &series,
        )?;
        s.files.push(conv.display().to_string());
    }
    Ok(())
}

/// The offline curve's chart ([`offramp_calibrate::offline`]): the share
/// of evaluation frames within tolerance of the recorded action (of the
/// full model's, where none is recorded) against compute, for the budgets
/// and the fixed exits. Written into `dir` and listed in its `files`.
pub fn offline_chart(dir: &Path, s: &mut OfflineSweep) -> anyhow::Result<()> {
    let svg = dir.join("agreement_vs_compute.svg");
    let recorded = s.reference.is_some();
    let y = |p: &OfflinePoint| {
        let a = match (&p.vs_recorded, recorded) {
            (Some(r), true) => r,
            _ => &p.vs_full_model,
        };
        (p.compute_ratio, 100.0 * a.within_tolerance)
    };
    let mut budgets: Vec<(f64, f64)> = s.budgets.iter().map(y).collect();
    budgets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let series = [
        Series::new("calibrated thresholds (DeeR solve)", budgets, Mark::Bold),
        Series::new(
            "fixed exits (last = full model)",
            s.fixed_exits.iter().map(y).collect(),
            Mark::Points,
        ),
    ];
    let against = match &s.reference {
        Some(r) => format!("the recorded action ({r})"),
        None => "the full model".into(),
    };
    plot::chart(
        &svg,
        &format!("Frames within {} of {against}", s.tolerance),
        "mean compute per frame (share of the full model)",
        "frames within tolerance (%)",
        &series,
    )?;
    s.files = vec![svg.display().to_string()];
    Ok(())
}
