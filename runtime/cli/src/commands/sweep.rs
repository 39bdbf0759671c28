//! `offramp calibrate-sweep`: the success-vs-compute curve
//! ([`offramp_calibrate::sweep`]): calibration episodes from seed 200000,
//! held-out ones from 0, every fixed exit as a reference. This module holds
//! the flags and the screen. Writes success_vs_compute.svg, with `--refine`
//! refine_convergence.svg ([`offramp_report::sweep`]), and sweep.json.

use crate::args::{at_least_1, print_report, EngineArgs, SimConfigArgs};
use crate::progress::pipelines;
use anyhow::Context;
use offramp_calibrate::paired::Paired;
use offramp_calibrate::sweep::{self, Sweep, SweepConfig};
use offramp_sim::SimConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Budgets as shares of the full model's compute.
    #[arg(long, value_delimiter = ',', default_value = "0.35,0.5,0.7")]
    pub budgets: Vec<f64>,
    #[arg(long, default_value_t = 100, value_parser = at_least_1)]
    pub calibration_episodes: usize,
    #[arg(long, default_value_t = 200_000)]
    pub calibration_seed: u64,
    #[arg(long, default_value_t = 200, value_parser = at_least_1)]
    pub eval_episodes: usize,
    #[arg(long, default_value_t = 0)]
    pub eval_seed: u64,
    #[arg(long, default_value_t = 3, value_parser = at_least_1)]
    pub iterations: usize,
    /// Also refine each budget in closed loop, offramp's search and
    /// DeeR's 20-call Bayesian optimisation side by side, N calibration
    /// episodes per full evaluation.
    #[arg(long, value_name = "N", value_parser = at_least_1)]
    pub refine: Option<usize>,
    /// Also calibrate at each fixed exit's measured compute (exits 1 to
    /// N-1), the points where a criterion must beat simply deploying that
    /// exit.
    #[arg(long)]
    pub at_fixed_exits: bool,
    /// Directory for sweep.json and the plots.
    #[arg(long)]
    pub report: PathBuf,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sim: SimConfigArgs,
    /// Evaluation episodes run at once, one engine set loaded per job
    /// (default: one per core). The results are the same for any number;
    /// only the latency figures feel the contention.
    #[arg(long, value_parser = at_least_1)]
    pub jobs: Option<usize>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let cfg = a.sim.load()?;
    print_report(a.json, &run(&cfg, &a)?, print_human)
}

pub fn run(cfg: &SimConfig, a: &Args) -> anyhow::Result<Sweep> {
    let calibration_span = a.calibration_episodes.max(a.refine.unwrap_or(0)) as u64;
    anyhow::ensure!(
        a.calibration_seed >= a.eval_seed + a.eval_episodes as u64
            || a.eval_seed >= a.calibration_seed + calibration_span,
        "calibration seeds {}.. and evaluation seeds {}.. overlap",
        a.calibration_seed,
        a.eval_seed
    );
    offramp_calibrate::seeds::check_evaluation(a.eval_seed, a.eval_episodes as u64)
        .map_err(|e| anyhow::anyhow!("--eval-seed: {e}"))?;
    for &b in &a.budgets {
        anyhow::ensure!(
            b > 0.0 && b <= 1.0,
            "--budgets: {b} is not a share of the full model in (0, 1]"
        );
    }
    let set = a.engine.open()?;
    let mut ps = pipelines(
        &set,
        set.manifest.build.backend,
        (cfg.image_width, cfg.image_height),
        a.jobs,
        a.eval_episodes.max(a.refine.unwrap_or(0)),
    )?;
    let config = SweepConfig {
        engines: &a.engine.engines,
        budgets: &a.budgets,
        calibration_episodes: a.calibration_episodes,
        calibration_seed: a.calibration_seed,
        eval_episodes: a.eval_episodes,
        eval_seed: a.eval_seed,
        iterations: a.iterations,
        refine: a.refine,
        at_fixed_exits: a.at_fixed_exits,
    };
    let mut s = sweep::run(&mut ps, cfg, &config, &crate::progress::bars)?;
    let dir = &a.report;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    offramp_report::sweep::charts(dir, &mut s)?;
    sweep::write_json(dir, &mut s)?;
    Ok(s)
}

pub fn print_human(s: &Sweep) {
    println!(
        "calibrated on {}, evaluated on {}",
        s.calibration, s.evaluation
    );
    println!(
        "  {:<14} {:>9} {:>9} {:>8} {:>9} {:>7} {:>7}  paired success difference, 95 % interval (points)",
        "policy", "compute", "vs asked", "success", "mean exit", "steps", "|dω|",
    );
    let steps = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s:.1}"));
    let pts = |p: &Paired| {
        format!(
            "{:+.1} [{:+.1}, {:+.1}]",
            100.0 * p.mean,
            100.0 * p.ci95_low,
            100.0 * p.ci95_high
        )
    };
    for r in &s.fixed_exits {
        println!(
            "  {:<14} {:>9.3} {:>9} {:>7.1}% {:>9.2} {:>7} {:>7.3}",
            r.policy,
            r.compute_ratio,
            "-",
            100.0 * r.success_rate,
            r.mean_exit,
            steps(r.mean_success_steps),
            r.mean_abs_domega
        );
    }
    for b in &s.budgets {
        let (r, c) = (&b.held_out, &b.comparison);
        let fixed = c.vs_fixed.as_ref().map_or(String::new(), |f| {
            format!(
                "; vs exit {} {}{}",
                f.exit,
                pts(&f.success),
                f.gap_closed.map_or(String::new(), |g| format!(
                    ", closes {:.0} % of its gap",
                    100.0 * g
                ))
            )
        });
        println!(
            "  {:<14} {:>9.3} {:>+8.1}% {:>7.1}% {:>9.2} {:>7} {:>7.3}  vs full {}{fixed}  ({}, {} rollout episodes)",
            format!("budget {:.3}", b.budget_ratio),
            r.compute_ratio,
            100.0 * b.compute_error,
            100.0 * r.success_rate,
            r.mean_exit,
            steps(r.mean_success_steps),
            r.mean_abs_domega,
            pts(&c.vs_full),
            b.method,
            b.rollout_episodes
        );
    }
    for f in &s.files {
        println!("  wrote {f}");
    }
}
