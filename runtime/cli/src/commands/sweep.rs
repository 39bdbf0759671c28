//! `offramp calibrate-sweep`: the success-vs-compute curve
//! ([`offramp_calibrate::sweep`]): calibration episodes from seed 200000,
//! held-out ones from 0, every fixed exit as a reference. This module holds
//! the flags and the screen. Writes success_vs_compute.svg, with `--refine`
//! refine_convergence.svg ([`offramp_report::sweep`]), and sweep.json.

use crate::args::{at_least_1, print_report, EngineArgs, SimConfigArgs};
use crate::progress::pipelines;
use anyhow::Context;
use offramp_calibrate::offline::{self, OfflineConfig, OfflineSweep};
use offramp_calibrate::sweep::{self, Sweep, SweepConfig};
use offramp_runtime::pipeline::Pipeline;
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
    /// Recorded episodes (`offramp record`, `offramp import-lerobot`): the
    /// curve on them, no simulator. Solved on the earlier half of the
    /// episodes (all, with --held-out), evaluated on the rest; actions
    /// compared with the full model's and the recorded ones (actions.npy,
    /// else executed.npy).
    #[arg(long, value_name = "DIR")]
    pub episodes: Option<PathBuf>,
    /// With --episodes: evaluate on these recorded episodes instead.
    #[arg(long, value_name = "DIR", requires = "episodes")]
    pub held_out: Option<PathBuf>,
    /// With --episodes: the largest |action - reference| per dimension
    /// that counts as agreeing.
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f32,
    #[command(flatten)]
    pub sim: SimConfigArgs,
    /// Evaluation episodes run at once, one engine set loaded per job
    /// (default: one per core). The results are the same for any number;
    /// only the latency figures feel the contention.
    #[arg(long, value_parser = at_least_1)]
    pub jobs: Option<usize>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    for &b in &a.budgets {
        anyhow::ensure!(
            b > 0.0 && b <= 1.0,
            "--budgets: {b} is not a share of the full model in (0, 1]"
        );
    }
    if let Some(dir) = &a.episodes {
        return print_report(a.json, &recorded(&a, dir)?, |s| print!("{s}"));
    }
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

/// The offline curve on recorded episodes ([`offline`]).
fn recorded(a: &Args, dir: &std::path::Path) -> anyhow::Result<OfflineSweep> {
    let loaded = offline::load(dir, a.held_out.as_deref())?;
    let (calibration, evaluation) = loaded.parts()?;
    let set = a.engine.open()?;
    let mut p = Pipeline::open(&set, set.manifest.build.backend, loaded.views())?;
    let cfg = OfflineConfig {
        budgets: &a.budgets,
        iterations: a.iterations,
        tolerance: a.tolerance,
        reference: loaded.reference.clone(),
    };
    let bar = crate::progress::progress_bar(
        (set.manifest.exits.len() + a.budgets.len()) as u64,
        "sweeping",
    );
    let mut s = offline::sweep(&mut p, &calibration, &evaluation, &cfg, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&a.report)
        .with_context(|| format!("creating {}", a.report.display()))?;
    offramp_report::sweep::offline_chart(&a.report, &mut s)?;
    let json = a.report.join("sweep.json");
    std::fs::write(&json, serde_json::to_string_pretty(&s)?)
        .with_context(|| format!("writing {}", json.display()))?;
    Ok(s)
}

pub fn print_human(s: &Sweep) {
    print!("{s}");
}
