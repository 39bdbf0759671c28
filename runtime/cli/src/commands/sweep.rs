//! `offramp calibrate-sweep`: the success-vs-compute curve. For each budget
//! the DeeR solve runs on calibration episodes (seeds from 200000), then the
//! thresholds are evaluated in closed loop on held-out episodes (seeds from
//! 0); every fixed exit, the full model included, is evaluated on the same
//! held-out episodes as reference points. With `--refine E` each budget's
//! thresholds are also refined in closed loop on calibration episodes, by
//! offramp's search and by DeeR's Bayesian optimisation side by side (see
//! [`offramp_calibrate::refine`]), and all three are evaluated held-out.
//! With `--at-fixed-exits` the criterion is also calibrated at each fixed
//! exit's measured compute, so that every fixed exit has a criterion point
//! of the same cost beside it. Every criterion point is compared with the
//! full model and with the cheapest fixed exit that costs at least what it
//! costs (the exit deploying instead would mean), paired on the same
//! episodes with 95 % intervals ([`offramp_calibrate::paired`]): success,
//! completion time and command smoothness.
//! The manifest is not touched. Writes sweep.json, success_vs_compute.svg
//! and, with `--refine`, refine_convergence.svg.

use crate::args::{at_least_1, print_report};
use crate::plot::{self, Mark, Series};
use crate::progress::{evaluate_with_progress, pipelines, progress_bar};
use anyhow::Context;
use offramp_calibrate::bayes::{bayes_opt, BO_CALLS, BO_INITIAL};
use offramp_calibrate::calibrate::{calibrate, Budget, Frames};
use offramp_calibrate::eval::{rollout, EvalReport};
use offramp_calibrate::paired::{self, Paired};
use offramp_calibrate::refine::{race, Objective, RefineReport, Space, RACE_CANDIDATES};
use offramp_calibrate::solve::predict;
use offramp_engines::EngineSet;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_sim::SimConfig;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub engines: PathBuf,
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
    /// Simulator configuration (TOML); default: the built-in one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Evaluation episodes run at once, one engine set loaded per job
    /// (default: one per core). The results are the same for any number;
    /// only the latency figures feel the contention.
    #[arg(long, value_parser = at_least_1)]
    pub jobs: Option<usize>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let cfg = SimConfig::load(a.config.as_deref())?;
    print_report(a.json, &run(&cfg, &a)?, print_human)
}

#[derive(Serialize)]
pub struct BudgetPoint {
    pub budget_ratio: f64,
    /// "DeeR solve" (offline), "refined" (offramp's search) or "DeeR BO".
    pub method: String,
    /// Closed-loop calibration episodes the method rolled out.
    pub rollout_episodes: usize,
    pub thresholds: Vec<f32>,
    pub predicted_compute_ratio: f64,
    /// Held-out compute against the budget.
    pub compute_error: f64,
    /// The held-out evaluation: success, compute, completion time,
    /// smoothness, every episode by seed.
    #[serde(flatten)]
    pub held_out: EvalReport,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A criterion point against the fixed exits, on the same episodes.
#[derive(Serialize)]
pub struct Comparison {
    /// Against the full model: success difference, |Δω| difference, and
    /// steps-to-target difference where both succeed.
    pub vs_full: Paired,
    pub smoothness_vs_full: Paired,
    pub completion_steps_vs_full: Option<Paired>,
    /// Against the cheapest fixed exit that costs at least what this point
    /// costs (within 2 %), the one deploying instead would mean; for a point
    /// calibrated at a fixed exit's compute (`--at-fixed-exits`), that exit.
    pub vs_fixed: Option<VsFixed>,
}

#[derive(Serialize)]
pub struct VsFixed {
    /// 1-based, as `offramp run --exit` counts.
    pub exit: usize,
    pub compute_ratio: f64,
    pub success_rate: f64,
    /// Success of the criterion minus the fixed exit's.
    pub success: Paired,
    /// Share of the fixed exit's shortfall against the full model that the
    /// criterion closes; None unless the full model's lead over the fixed
    /// exit is real (paired, [`Paired::above_zero`]).
    pub gap_closed: Option<f64>,
    /// The full model's success minus the fixed exit's.
    pub full_lead: Paired,
}

/// Compute a criterion point may exceed a fixed exit's by and still be
/// compared with it (held-out compute misses its budget by a little).
const COMPUTE_SLACK: f64 = 1.02;

/// The comparisons of criterion report `r` with the fixed exits (the last
/// is the full model), paired on the same episodes. A point calibrated at
/// a fixed exit's compute (`at`, 0-based) is compared with that exit,
/// whatever it spent.
fn compare(r: &EvalReport, fixed: &[EvalReport], at: Option<usize>) -> anyhow::Result<Comparison> {
    let (full, shallow) = fixed.split_last().context("no fixed exit was evaluated")?;
    // The cheapest fixed exit that costs at least what this point costs:
    // deploying it is the alternative the criterion must beat.
    let vs_fixed = shallow
        .iter()
        .enumerate()
        .find(|(k, f)| match at {
            Some(a) => *k == a,
            None => r.compute_ratio <= f.compute_ratio * COMPUTE_SLACK,
        })
        .map(|(k, f)| -> anyhow::Result<VsFixed> {
            let full_lead = paired::success(full, f)?;
            Ok(VsFixed {
                exit: k + 1,
                compute_ratio: f.compute_ratio,
                success_rate: f.success_rate,
                success: paired::success(r, f)?,
                gap_closed: full_lead
                    .above_zero()
                    .then(|| paired::gap_closed(r.success_rate, f.success_rate, full.success_rate))
                    .flatten(),
                full_lead,
            })
        })
        .transpose()?;
    Ok(Comparison {
        vs_full: paired::success(r, full)?,
        smoothness_vs_full: paired::smoothness(r, full)?,
        completion_steps_vs_full: paired::completion_steps(r, full)?,
        vs_fixed,
    })
}

#[derive(Serialize)]
pub struct Sweep {
    pub engines: String,
    pub calibration: String,
    pub evaluation: String,
    pub budgets: Vec<BudgetPoint>,
    pub fixed_exits: Vec<EvalReport>,
    /// The searches' own records, per budget (with `--refine`).
    pub searches: Vec<(f64, RefineReport)>,
    pub files: Vec<String>,
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
    let set = EngineSet::open(&a.engines)?;
    let mut ps = pipelines(
        &set,
        set.manifest.build.backend,
        (cfg.image_width, cfg.image_height),
        a.jobs,
        a.eval_episodes.max(a.refine.unwrap_or(0)),
    )?;
    let n = ps[0].chain.exits();
    let full = ps[0].chain.full_macs() as f64;
    let mut fixed_exits = Vec::new();
    for k in 0..n {
        fixed_exits.push(evaluate_with_progress(
            &mut ps,
            cfg,
            a.eval_seed,
            a.eval_episodes,
            ExitPolicy::Fixed(k),
            &format!("exit {}", k + 1),
        )?);
    }
    let (mut budgets, mut searches) = (Vec::new(), Vec::new());
    let mut asked: Vec<(f64, Option<usize>)> = a.budgets.iter().map(|&b| (b, None)).collect();
    if a.at_fixed_exits {
        asked.extend(
            fixed_exits[..n - 1]
                .iter()
                .enumerate()
                .map(|(k, r)| (r.compute_ratio, Some(k))),
        );
    }
    for &(b, at) in &asked {
        let bar = progress_bar(
            (a.calibration_episodes * a.iterations) as u64,
            &format!("calibrate {b}"),
        );
        let c = calibrate(
            &mut ps[0],
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
                offload: None,
            },
            &mut || bar.inc(1),
        )?;
        bar.finish_and_clear();
        let mut methods = vec![("DeeR solve".to_string(), c.thresholds.clone(), 0usize)];
        let costs = c.exit_costs_f64();
        if let Some(e) = a.refine {
            let space = Space {
                deltas: &c.deltas,
                costs: &costs,
                deepest: c.deepest_exit,
                budget_macs: b * full,
            };
            let objective = Objective::new(b);
            let bar = progress_bar(5 * e as u64, &format!("refine {b}"));
            let ours = race(
                &space,
                objective,
                &mut |t: &[f32], seed: u64, k: usize| {
                    rollout(&mut ps, cfg, t, seed, k, &|| bar.inc(1))
                },
                a.calibration_seed,
                e,
                RACE_CANDIDATES,
            )?;
            bar.finish_and_clear();
            let bar = progress_bar((BO_CALLS * e) as u64, &format!("DeeR BO {b}"));
            let bo = bayes_opt(
                &space,
                objective,
                &mut |t: &[f32], seed: u64, k: usize| {
                    rollout(&mut ps, cfg, t, seed, k, &|| bar.inc(1))
                },
                a.calibration_seed,
                e,
                &c.thresholds,
                BO_CALLS,
                BO_INITIAL,
            )?;
            bar.finish_and_clear();
            methods.push((
                "refined".into(),
                ours.best.thresholds.clone(),
                ours.rollout_episodes,
            ));
            methods.push((
                "DeeR BO".into(),
                bo.best.thresholds.clone(),
                bo.rollout_episodes,
            ));
            searches.push((b, ours));
            searches.push((b, bo));
        }
        for (method, thresholds, rollout_episodes) in methods {
            for p in &mut ps {
                p.chain.set_thresholds(&thresholds);
            }
            let r = evaluate_with_progress(
                &mut ps,
                cfg,
                a.eval_seed,
                a.eval_episodes,
                ExitPolicy::Criterion,
                &format!("evaluate {b} {method}"),
            )?;
            let predicted = predict(&c.deltas, &thresholds, &costs).mean_cost / full;
            budgets.push(BudgetPoint {
                budget_ratio: b,
                method,
                rollout_episodes,
                thresholds,
                predicted_compute_ratio: predicted,
                compute_error: r.compute_ratio / b - 1.0,
                comparison: compare(&r, &fixed_exits, at)?,
                held_out: r,
            });
        }
    }
    let mut sweep = Sweep {
        engines: a.engines.display().to_string(),
        calibration: format!(
            "{} episodes from seed {}",
            a.calibration_episodes, a.calibration_seed
        ),
        evaluation: format!(
            "{} episodes from seed {} ({} range)",
            a.eval_episodes,
            a.eval_seed,
            offramp_calibrate::seeds::describe(a.eval_seed, a.eval_episodes as u64)
        ),
        budgets,
        fixed_exits,
        searches,
        files: Vec::new(),
    };
    write(&a.report, &mut sweep)?;
    Ok(sweep)
}

fn write(dir: &Path, s: &mut Sweep) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
    let json = dir.join("sweep.json");
    s.files.push(json.display().to_string());
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
