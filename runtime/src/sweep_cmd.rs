//! `offramp calibrate-sweep`: the success-vs-compute curve. For each budget
//! the DeeR solve runs on calibration episodes (seeds from 200000), then the
//! thresholds are evaluated in closed loop on held-out episodes (seeds from
//! 0); every fixed exit, the full model included, is evaluated on the same
//! held-out episodes as reference points. The manifest is not touched.
//! Writes sweep.json and success_vs_compute.svg.

use crate::plot::{self, Mark, Series};
use crate::sim_cmd::{evaluate_with_progress, preprocessor, progress_bar};
use anyhow::Context;
use offramp_engines::EngineSet;
use offramp_runtime::calibrate::{calibrate, Budget, Frames};
use offramp_runtime::closed_loop::EvalReport;
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use offramp_sim::SimConfig;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub struct SweepArgs {
    pub engines: PathBuf,
    pub budgets: Vec<f64>,
    pub calibration_episodes: usize,
    pub calibration_seed: u64,
    pub eval_episodes: usize,
    pub eval_seed: u64,
    pub iterations: usize,
    pub report: PathBuf,
}

#[derive(Serialize)]
pub struct BudgetPoint {
    pub budget_ratio: f64,
    pub thresholds: Vec<f32>,
    pub predicted_compute_ratio: f64,
    /// Held-out.
    pub compute_ratio: f64,
    pub compute_error: f64,
    pub success_rate: f64,
    pub mean_exit: f64,
    pub exit_shares: Vec<f64>,
}

#[derive(Serialize)]
pub struct Sweep {
    pub engines: String,
    pub calibration: String,
    pub evaluation: String,
    pub budgets: Vec<BudgetPoint>,
    pub fixed_exits: Vec<EvalReport>,
    pub files: Vec<String>,
}

pub fn run(cfg: &SimConfig, a: &SweepArgs) -> anyhow::Result<Sweep> {
    anyhow::ensure!(
        a.calibration_seed >= a.eval_seed + a.eval_episodes as u64
            || a.eval_seed >= a.calibration_seed + a.calibration_episodes as u64,
        "calibration seeds {}.. and evaluation seeds {}.. overlap",
        a.calibration_seed,
        a.eval_seed
    );
    for &b in &a.budgets {
        anyhow::ensure!(
            b > 0.0 && b <= 1.0,
            "--budgets: {b} is not a share of the full model in (0, 1]"
        );
    }
    let set = EngineSet::open(&a.engines)?;
    let mut chain = ExitChain::new(&set, set.manifest.build.backend)?;
    let mut pre = preprocessor(&set, cfg)?;
    let n = chain.exits();
    let full = chain.full_macs() as f64;
    let mut fixed_exits = Vec::new();
    for k in 0..n {
        fixed_exits.push(evaluate_with_progress(
            &mut chain,
            &mut pre,
            cfg,
            a.eval_seed,
            a.eval_episodes,
            ExitPolicy::Fixed(k),
            &format!("exit {}", k + 1),
        )?);
    }
    let mut budgets = Vec::new();
    for &b in &a.budgets {
        let bar = progress_bar(
            (a.calibration_episodes * a.iterations.max(1)) as u64,
            &format!("calibrate {b}"),
        );
        let c = calibrate(
            &mut chain,
            &mut pre,
            &Frames::Sim {
                cfg,
                first_seed: a.calibration_seed,
                episodes: a.calibration_episodes,
            },
            Budget {
                macs: b * full,
                cap: None,
                latency_cap_ms: None,
                iterations: a.iterations,
            },
            &mut || bar.inc(1),
        )?;
        bar.finish_and_clear();
        chain.set_thresholds(&c.thresholds);
        let r = evaluate_with_progress(
            &mut chain,
            &mut pre,
            cfg,
            a.eval_seed,
            a.eval_episodes,
            ExitPolicy::Criterion,
            &format!("evaluate {b}"),
        )?;
        budgets.push(BudgetPoint {
            budget_ratio: b,
            thresholds: c.thresholds.clone(),
            predicted_compute_ratio: c.predicted.mean_cost / full,
            compute_ratio: r.compute_ratio,
            compute_error: r.compute_ratio / b - 1.0,
            success_rate: r.success_rate,
            mean_exit: r.mean_exit,
            exit_shares: r.exit_shares.clone(),
        });
    }
    let mut sweep = Sweep {
        engines: a.engines.display().to_string(),
        calibration: format!(
            "{} episodes from seed {}",
            a.calibration_episodes, a.calibration_seed
        ),
        evaluation: format!("{} episodes from seed {}", a.eval_episodes, a.eval_seed),
        budgets,
        fixed_exits,
        files: Vec::new(),
    };
    write(&a.report, &mut sweep)?;
    Ok(sweep)
}

fn write(dir: &Path, s: &mut Sweep) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let svg = dir.join("success_vs_compute.svg");
    let pct = |x: f64| 100.0 * x;
    let mut curve: Vec<(f64, f64)> = s
        .budgets
        .iter()
        .map(|b| (b.compute_ratio, pct(b.success_rate)))
        .collect();
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    let fixed: Vec<(f64, f64)> = s
        .fixed_exits
        .iter()
        .map(|r| (r.compute_ratio, pct(r.success_rate)))
        .collect();
    plot::chart(
        &svg,
        "Held-out success vs compute",
        "mean compute per frame (share of the full model)",
        "success rate (%)",
        &[
            Series::new("calibrated thresholds (budgets)", curve, Mark::Bold),
            Series::new("fixed exits 1..n (last = full model)", fixed, Mark::Points),
        ],
    )?;
    let json = dir.join("sweep.json");
    s.files = vec![svg.display().to_string(), json.display().to_string()];
    std::fs::write(&json, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(())
}

pub fn print_human(s: &Sweep) {
    println!(
        "calibrated on {}, evaluated on {}",
        s.calibration, s.evaluation
    );
    println!(
        "  {:<14} {:>9} {:>9} {:>8} {:>9}",
        "policy", "compute", "vs asked", "success", "mean exit"
    );
    for r in &s.fixed_exits {
        println!(
            "  {:<14} {:>9.3} {:>9} {:>7.1}% {:>9.2}",
            r.policy,
            r.compute_ratio,
            "-",
            100.0 * r.success_rate,
            r.mean_exit
        );
    }
    for b in &s.budgets {
        println!(
            "  {:<14} {:>9.3} {:>+8.1}% {:>7.1}% {:>9.2}",
            format!("budget {}", b.budget_ratio),
            b.compute_ratio,
            100.0 * b.compute_error,
            100.0 * b.success_rate,
            b.mean_exit
        );
    }
    for f in &s.files {
        println!("  wrote {f}");
    }
}
