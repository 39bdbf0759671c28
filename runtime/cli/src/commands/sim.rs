//! `offramp sim`: record demonstrations, evaluate an engine set in closed
//! loop, and measure the simulator.

use crate::args::{at_least, at_least_1, share, EngineArgs, SimConfigArgs};
use crate::progress::{evaluate_with_progress, pipelines, progress_bar};
use offramp_calibrate::eval::EvalReport;
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_sim::learner::ChainLearner;
use offramp_sim::record::{record, RecordOptions};
use offramp_sim::SimConfig;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(clap::Subcommand)]
enum SimCommand {
    /// Record expert demonstrations as .npy files (frames, instructions,
    /// expert actions, episode indices) for training.
    Record {
        #[arg(long)]
        episodes: usize,
        #[arg(long)]
        out: PathBuf,
        /// Episode i uses seed first_seed + i.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Driving noise (share of the limits) so the data covers recoveries.
        #[arg(long, default_value_t = 0.3)]
        noise: f32,
        /// DAgger: this engine set drives (a random exit per episode, or its
        /// criterion: --learner-criterion-share) while the expert labels every frame.
        #[arg(long)]
        learner: Option<PathBuf>,
        /// With --learner, the share of steps the expert drives instead.
        #[arg(long, default_value_t = 0.3, value_parser = share)]
        expert_share: f32,
        /// With --learner, the share of episodes its calibrated criterion
        /// drives (the deployed operating point) instead of a random fixed
        /// exit.
        #[arg(long, default_value_t = 0.0, value_parser = share)]
        learner_criterion_share: f32,
        #[command(flatten)]
        sim: SimConfigArgs,
    },
    /// Closed-loop evaluation of an engine set driving the simulator: success
    /// rate and the share of frames each exit gets right, per fixed exit and
    /// for the calibrated criterion.
    Eval {
        #[command(flatten)]
        engine: EngineArgs,
        #[arg(long, default_value_t = 200, value_parser = at_least_1)]
        episodes: usize,
        /// Held-out episodes: training data uses seeds from 100000.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Evaluate only this exit (1-based); default: every exit, then the
        /// criterion if the set is calibrated.
        #[arg(long)]
        exit: Option<usize>,
        /// Evaluate only the calibrated criterion (an operating point on
        /// many episodes without re-running the fixed exits).
        #[arg(long, conflicts_with = "exit")]
        criterion: bool,
        /// Episodes run at once, one engine set loaded per job (default:
        /// one per core). The results are the same for any number; only
        /// the latency figures feel the contention.
        #[arg(long, value_parser = at_least_1)]
        jobs: Option<usize>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        sim: SimConfigArgs,
    },
    /// Render + physics throughput in frames per second (JSON).
    Bench {
        #[arg(long, default_value_t = 20_000, value_parser = at_least(100))]
        frames: usize,
        #[command(flatten)]
        sim: SimConfigArgs,
    },
}

pub fn main(a: Args) -> anyhow::Result<()> {
    match a.command {
        SimCommand::Record {
            episodes,
            out,
            first_seed,
            noise,
            learner,
            expert_share,
            learner_criterion_share,
            sim,
        } => {
            let cfg = sim.load()?;
            let learner = learner.as_deref().map(|engines| LearnerOptions {
                engines,
                expert_share,
                criterion_share: learner_criterion_share,
            });
            run_record(&cfg, episodes, first_seed, noise, &out, learner)
        }
        SimCommand::Eval {
            engine,
            episodes,
            first_seed,
            exit,
            criterion,
            jobs,
            json,
            sim,
        } => {
            let cfg = sim.load()?;
            let which = match (exit, criterion) {
                (Some(k), _) => EvalPolicies::Exit(k),
                (None, true) => EvalPolicies::Criterion,
                (None, false) => EvalPolicies::All,
            };
            run_eval(
                &cfg,
                &engine.engines,
                episodes,
                first_seed,
                which,
                jobs,
                json,
            )
        }
        SimCommand::Bench { frames, sim } => {
            let cfg = sim.load()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&offramp_sim::bench::bench(&cfg, frames))?
            );
            Ok(())
        }
    }
}

/// Who drives a DAgger recording while the expert labels every frame.
pub struct LearnerOptions<'a> {
    /// The engine set that drives.
    pub engines: &'a Path,
    /// Share of steps the expert drives instead.
    pub expert_share: f32,
    /// Share of episodes driven by the engine set's calibrated criterion
    /// (its manifest thresholds); the rest use a random fixed exit. The
    /// criterion visits the states the deployed operating point leads to,
    /// which no single fixed exit does.
    pub criterion_share: f32,
}

pub fn run_record(
    cfg: &SimConfig,
    episodes: usize,
    first_seed: u64,
    noise: f32,
    out: &Path,
    learner: Option<LearnerOptions>,
) -> anyhow::Result<()> {
    let bar = progress_bar(episodes as u64, "episodes");
    let opts = RecordOptions {
        episodes,
        first_seed,
        noise,
        expert_share: learner.as_ref().map_or(1.0, |l| l.expert_share),
    };
    let mut l = match learner {
        Some(lo) => {
            let set = EngineSet::open(lo.engines)?;
            if lo.criterion_share > 0.0 && set.manifest.criterion.thresholds.is_empty() {
                anyhow::bail!(
                    "{}: --learner-criterion-share {} needs calibrated thresholds, and the manifest has none (run `offramp calibrate` on it first)",
                    lo.engines.display(),
                    lo.criterion_share
                );
            }
            let p = Pipeline::open(&set, BackendKind::Cpu, (cfg.image_width, cfg.image_height))?;
            Some(ChainLearner::new(p, lo.criterion_share, first_seed))
        }
        None => None,
    };
    let s = record(
        cfg,
        &opts,
        out,
        l.as_mut()
            .map(|l| l as &mut dyn offramp_sim::record::Learner),
        &mut |_| bar.inc(1),
    )?;
    if let Some(e) = l.and_then(ChainLearner::into_error) {
        return Err(anyhow::Error::new(e).context("the learner failed while recording"));
    }
    bar.finish_and_clear();
    eprintln!(
        "recorded {} episodes, {} frames ({}x{}) into {}; the noisy expert reached the target in {}",
        s.episodes,
        s.frames,
        cfg.image_width,
        cfg.image_height,
        out.display(),
        s.successes
    );
    Ok(())
}

/// Which policies `sim eval` drives the simulator with.
#[derive(Debug, Clone, Copy)]
pub enum EvalPolicies {
    /// Every fixed exit, then the criterion if the set is calibrated.
    All,
    /// One fixed exit (1-based).
    Exit(usize),
    /// Only the calibrated criterion.
    Criterion,
}

pub fn run_eval(
    cfg: &SimConfig,
    engines: &Path,
    episodes: usize,
    first_seed: u64,
    which: EvalPolicies,
    jobs: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let set = EngineSet::open(engines)?;
    let mut ps = pipelines(
        &set,
        BackendKind::Cpu,
        (cfg.image_width, cfg.image_height),
        jobs,
        episodes,
    )?;
    let n = ps[0].chain.exits();
    let calibrated = set.manifest.criterion.thresholds.len() + 1 == n;
    let policies: Vec<ExitPolicy> = match which {
        EvalPolicies::Exit(k) if (1..=n).contains(&k) => vec![ExitPolicy::Fixed(k - 1)],
        EvalPolicies::Exit(k) => anyhow::bail!("--exit {k}: the engine set has exits 1..={n}"),
        EvalPolicies::Criterion if !calibrated => anyhow::bail!(
            "--criterion: {} has {} thresholds for {n} exits; run `offramp calibrate` on it first",
            engines.join("manifest.toml").display(),
            set.manifest.criterion.thresholds.len()
        ),
        EvalPolicies::Criterion => vec![ExitPolicy::Criterion],
        EvalPolicies::All => (0..n)
            .map(ExitPolicy::Fixed)
            .chain(calibrated.then_some(ExitPolicy::Criterion))
            .collect(),
    };
    let mut reports: Vec<EvalReport> = Vec::new();
    for policy in policies {
        let label = format!("{policy:?}");
        reports.push(evaluate_with_progress(
            &mut ps, cfg, first_seed, episodes, policy, &label,
        )?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "policy", "success", "easy", "medium", "hard", "right", "r.easy", "r.hard", "compute"
        );
        for r in &reports {
            let b = &r.by_difficulty;
            println!(
                "{:<10} {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>8.3}x",
                r.policy,
                100.0 * r.success_rate,
                100.0 * b[0].success_rate,
                100.0 * b[1].success_rate,
                100.0 * b[2].success_rate,
                100.0 * r.right_share,
                100.0 * b[0].right_share,
                100.0 * b[2].right_share,
                r.compute_ratio
            );
        }
        println!(
            "\n{:<10} {:>8} {:>9} {:>8} {:>8} {:>10} {:>6} {:>6} {:>9}",
            "failures",
            "episodes",
            "never saw",
            "near",
            "stuck",
            "in view",
            "decoy",
            "crash",
            "final d"
        );
        for r in &reports {
            let f = &r.failures;
            println!(
                "{:<10} {:>8} {:>9} {:>8} {:>8} {:>10} {:>6} {:>6} {:>8.2}m",
                r.policy,
                f.episodes,
                f.never_in_view,
                f.ended_near,
                f.stuck,
                f.in_view_at_end,
                f.reached_decoy,
                f.crashed,
                f.mean_final_distance_m
            );
        }
    }
    Ok(())
}
