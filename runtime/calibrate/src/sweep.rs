//! The success-vs-compute curve (`offramp calibrate-sweep`). For each
//! budget the DeeR solve runs on calibration episodes, then the thresholds
//! are evaluated in closed loop on held-out episodes; every fixed exit, the
//! full model included, is evaluated on the same held-out episodes as
//! reference points. With `refine` each budget's thresholds are also
//! refined in closed loop on calibration episodes, by offramp's search and
//! by DeeR's Bayesian optimisation side by side (see [`crate::refine`]), and
//! all three are evaluated held-out. With `at_fixed_exits` the criterion is
//! also calibrated at each fixed exit's measured compute, so that every
//! fixed exit has a criterion point of the same cost beside it. Every
//! criterion point is compared with the full model and with the cheapest
//! fixed exit that costs at least what it costs (the exit deploying instead
//! would mean), paired on the same episodes with 95 % intervals
//! ([`crate::paired`]): success, completion time and command smoothness.
//! The manifest is not touched.

use crate::bayes::{bayes_opt, BO_CALLS, BO_INITIAL};
use crate::calibrate::{calibrate, Budget, CalibrateError, Frames};
use crate::eval::{evaluate_on, rollout, EvalError, EvalReport};
use crate::paired::{self, PairError, Paired};
use crate::refine::{race, Objective, RefineReport, Space, RACE_CANDIDATES};
use crate::solve::predict;
use offramp_runtime::closed_loop::Task;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Calibrate(#[from] CalibrateError),
    #[error(transparent)]
    Pair(#[from] PairError),
    #[error("no fixed exit was evaluated")]
    NoFixedExit,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Progress shown by the caller (a bar on a terminal): `bars(len, label)`
/// starts a phase of `len` steps and returns what to call as each step
/// ends; dropping that ends the phase.
pub type Bars<'a> = &'a dyn Fn(u64, &str) -> Box<dyn Fn() + Sync>;

/// What to sweep. Calibration and evaluation seeds must not overlap.
pub struct SweepConfig<'a> {
    /// The engine set's directory, for the report.
    pub engines: &'a Path,
    /// Budgets as shares of the full model's compute, in (0, 1].
    pub budgets: &'a [f64],
    pub calibration_episodes: usize,
    pub calibration_seed: u64,
    pub eval_episodes: usize,
    pub eval_seed: u64,
    /// DeeR solve iterations.
    pub iterations: usize,
    /// Also refine each budget in closed loop, this many calibration
    /// episodes per full evaluation.
    pub refine: Option<usize>,
    /// Also calibrate at each fixed exit's measured compute.
    pub at_fixed_exits: bool,
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
fn compare(
    r: &EvalReport,
    fixed: &[EvalReport],
    at: Option<usize>,
) -> Result<Comparison, SweepError> {
    let (full, shallow) = fixed.split_last().ok_or(SweepError::NoFixedExit)?;
    // The cheapest fixed exit that costs at least what this point costs:
    // deploying it is the alternative the criterion must beat.
    let vs_fixed = shallow
        .iter()
        .enumerate()
        .find(|(k, f)| match at {
            Some(a) => *k == a,
            None => r.compute_ratio <= f.compute_ratio * COMPUTE_SLACK,
        })
        .map(|(k, f)| -> Result<VsFixed, PairError> {
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

/// Runs the sweep on `ps`, pipelines of one engine set (episodes run on
/// all of them at once; the first calibrates). `files` is left empty: the
/// caller draws its charts, then [`write_json`].
pub fn run(
    ps: &mut [Pipeline],
    task: &dyn Task,
    a: &SweepConfig,
    bars: Bars,
) -> Result<Sweep, SweepError> {
    let Some(first) = ps.first() else {
        return Err(EvalError::NoPipeline.into());
    };
    let n = first.chain.exits();
    let full = first.chain.full_macs() as f64;
    let mut fixed_exits = Vec::new();
    for k in 0..n {
        fixed_exits.push(evaluate(
            ps,
            task,
            a,
            ExitPolicy::Fixed(k),
            bars,
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
        let tick = bars(
            (a.calibration_episodes * a.iterations) as u64,
            &format!("calibrate {b}"),
        );
        let c = calibrate(
            &mut ps[0],
            &Frames::ClosedLoop {
                task,
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
            &mut || tick(),
        )?;
        drop(tick);
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
            let tick = bars(5 * e as u64, &format!("refine {b}"));
            let ours = race(
                &space,
                objective,
                &mut |t: &[f32], seed: u64, k: usize| rollout(ps, task, t, seed, k, &*tick),
                a.calibration_seed,
                e,
                RACE_CANDIDATES,
            )?;
            drop(tick);
            let tick = bars((BO_CALLS * e) as u64, &format!("DeeR BO {b}"));
            let bo = bayes_opt(
                &space,
                objective,
                &mut |t: &[f32], seed: u64, k: usize| rollout(ps, task, t, seed, k, &*tick),
                a.calibration_seed,
                e,
                &c.thresholds,
                BO_CALLS,
                BO_INITIAL,
            )?;
            drop(tick);
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
            for p in ps.iter_mut() {
                p.chain.set_thresholds(&thresholds);
            }
            let r = evaluate(
                ps,
                task,
                a,
                ExitPolicy::Criterion,
                bars,
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
    Ok(Sweep {
        engines: a.engines.display().to_string(),
        calibration: format!(
            "{} episodes from seed {}",
            a.calibration_episodes, a.calibration_seed
        ),
        evaluation: format!(
            "{} episodes from seed {} ({} range)",
            a.eval_episodes,
            a.eval_seed,
            crate::seeds::describe(a.eval_seed, a.eval_episodes as u64)
        ),
        budgets,
        fixed_exits,
        searches,
        files: Vec::new(),
    })
}

/// `policy` evaluated held out, with a bar labelled `label`.
fn evaluate(
    ps: &mut [Pipeline],
    task: &dyn Task,
    a: &SweepConfig,
    policy: ExitPolicy,
    bars: Bars,
    label: &str,
) -> Result<EvalReport, EvalError> {
    let tick = bars(a.eval_episodes as u64, label);
    evaluate_on(ps, task, a.eval_seed, a.eval_episodes, policy, &*tick)
}

/// Writes `s` as `sweep.json` into `dir` (which must exist), listed last
/// in its `files`.
pub fn write_json(dir: &Path, s: &mut Sweep) -> Result<(), SweepError> {
    let json = dir.join("sweep.json");
    s.files.push(json.display().to_string());
    std::fs::write(&json, serde_json::to_vec_pretty(s)?)
        .map_err(|source| SweepError::Write { path: json, source })
}

impl std::fmt::Display for Sweep {
    /// The table `offramp calibrate-sweep` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        writeln!(
            f,
            "calibrated on {}, evaluated on {}",
            s.calibration, s.evaluation
        )?;
        writeln!(
            f,
        "  {:<14} {:>9} {:>9} {:>8} {:>9} {:>7} {:>7}  paired success difference, 95 % interval (points)",
        "policy", "compute", "vs asked", "success", "mean exit", "steps", "|dω|",
    )?;
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
            writeln!(
                f,
                "  {:<14} {:>9.3} {:>9} {:>7.1}% {:>9.2} {:>7} {:>7.3}",
                r.policy,
                r.compute_ratio,
                "-",
                100.0 * r.success_rate,
                r.mean_exit,
                steps(r.mean_success_steps),
                r.mean_abs_domega
            )?;
        }
        for b in &s.budgets {
            let (r, c) = (&b.held_out, &b.comparison);
            let fixed = c.vs_fixed.as_ref().map_or(String::new(), |v| {
                format!(
                    "; vs exit {} {}{}",
                    v.exit,
                    pts(&v.success),
                    v.gap_closed.map_or(String::new(), |g| format!(
                        ", closes {:.0} % of its gap",
                        100.0 * g
                    ))
                )
            });
            writeln!(
            f,
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
        )?;
        }
        for file in &s.files {
            writeln!(f, "  wrote {file}")?;
        }
        Ok(())
    }
}
