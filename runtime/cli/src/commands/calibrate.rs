//! `offramp calibrate`: thresholds under compute, latency and memory budgets,
//! written into the engine set's manifest.

use crate::args::{at_least_1, EngineArgs};
use crate::progress::progress_bar;
use anyhow::{bail, Context};
use offramp_calibrate::calibrate::{calibrate, Budget, Calibration, Frames, OffloadBudget};
use offramp_calibrate::memory::Footprints;
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::camera::load_replay;
use offramp_runtime::pipeline::Pipeline;
use std::path::PathBuf;

/// The simulator's configuration where there is a simulator.
#[cfg(feature = "sim")]
pub type SimCfg = offramp_sim::SimConfig;
/// Without the simulator (the robot's build) there is none: calibration
/// runs on recorded episodes only.
#[cfg(not(feature = "sim"))]
pub type SimCfg = ();

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub budgets: Budgets,
    /// Recorded episodes (`offramp record`, `offramp sim record`); default:
    /// closed loop in the simulator on --sim-episodes episodes from
    /// --first-seed. The robot's build (no simulator) needs them.
    #[arg(long)]
    pub episodes: Option<PathBuf>,
    #[cfg(feature = "sim")]
    #[arg(long, default_value_t = 100, value_parser = at_least_1)]
    pub sim_episodes: usize,
    /// Calibration seeds; keep them apart from evaluation (0..) and
    /// training (100000..) seeds.
    #[cfg(feature = "sim")]
    #[arg(long, default_value_t = 200_000)]
    pub first_seed: u64,
    /// Solve passes (the committed head state follows the thresholds).
    #[arg(long, default_value_t = 3, value_parser = at_least_1)]
    pub iterations: usize,
    /// Then refine the thresholds in closed loop in the simulator
    /// (budget-matched successive halving, seeds from --first-seed), N
    /// episodes for the final comparison; about 5·N episodes in all.
    #[arg(long, value_name = "N", value_parser = at_least_1)]
    pub refine: Option<usize>,
    /// Recorded episodes to check the thresholds on, frame after frame:
    /// the report's `held_out` is the compute they spend on frames they
    /// were not solved on.
    #[arg(long, value_name = "DIR")]
    pub held_out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[cfg(feature = "sim")]
    #[command(flatten)]
    pub sim: crate::args::SimConfigArgs,
}

/// The budgets a calibration solves under.
#[derive(clap::Args)]
pub struct Budgets {
    /// Mean compute as a share of the full model's (e.g. 0.1667 for 1/6).
    #[arg(long = "budget-ratio")]
    pub ratio: Option<f64>,
    /// Mean compute in MFLOPs per frame (2 FLOPs per MAC).
    #[arg(long = "budget-mflops")]
    pub mflops: Option<f64>,
    /// Cap the deepest exit so that its p99 cumulative latency, measured
    /// here, stays under this.
    #[arg(long)]
    pub max_latency_ms: Option<f64>,
    /// Cap the deepest exit so that the model fits: the heap a loaded
    /// pipeline holds (weights, the backend's plan and scratch, buffers),
    /// measured here for each possible cap. Exits past the cap are not
    /// loaded at run time.
    #[arg(long)]
    pub max_memory_mb: Option<f64>,
    /// Exits from K+1 on will run on a server (`offramp run --offload K`):
    /// the report shows the robot's compute beside both devices'.
    #[arg(long, value_name = "K", value_parser = at_least_1)]
    pub offload: Option<usize>,
    /// With --offload: whether the compute budget and the latency cap
    /// count the robot's share only (`robot`: a served exit costs it what
    /// the cut does) or all of it as measured here (`both`).
    #[arg(long, value_enum, default_value = "both", requires = "offload")]
    pub budget_counts: BudgetCounts,
}

/// What a compute budget counts when deep exits are offloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BudgetCounts {
    Robot,
    Both,
}

pub enum Source {
    /// Recorded episodes, loaded.
    Recorded(offramp_runtime::camera::Replay),
    #[cfg(feature = "sim")]
    Sim { first_seed: u64, episodes: usize },
}

pub fn main(a: Args) -> anyhow::Result<()> {
    #[cfg(feature = "sim")]
    let cfg = a.sim.load()?;
    #[cfg(not(feature = "sim"))]
    let cfg = ();
    #[cfg(not(feature = "sim"))]
    if a.refine.is_some() {
        return Err(crate::args::no_sim(
            "--refine (closed loop in the simulator)",
        ));
    }
    let source = match &a.episodes {
        Some(dir) => Source::Recorded(load_replay(dir)?),
        #[cfg(feature = "sim")]
        None => Source::Sim {
            first_seed: a.first_seed,
            episodes: a.sim_episodes,
        },
        #[cfg(not(feature = "sim"))]
        None => {
            return Err(crate::args::no_sim(
                "calibration in the simulator (give recorded episodes: --episodes DIR)",
            ))
        }
    };
    run(&cfg, &a, &source).map(drop)
}

// Without the simulator `cfg` is `()` and unused.
#[cfg_attr(not(feature = "sim"), allow(unused_variables))]
pub fn run(cfg: &SimCfg, a: &Args, source: &Source) -> anyhow::Result<Calibration> {
    let (budgets, iterations, json) = (&a.budgets, a.iterations, a.json);
    let held_out = a.held_out.as_deref();
    let mut set = a.engine.open()?;
    // Calibrate the whole model: a cap stored by an earlier calibration is
    // re-decided from this one's budgets.
    set.manifest.criterion.deepest_exit = None;
    // The frames, their size (recorded frames keep their own; the simulator
    // renders its own) and the episodes in one pass.
    let (frames, frame, per_pass) = match source {
        Source::Recorded(r) => (
            Frames::Replay {
                frames: &r.frames,
                frame_len: r.frame_len(),
                instructions: &r.instructions,
                episodes: &r.episodes,
            },
            r.views.clone(),
            r.episode_count() as u64,
        ),
        #[cfg(feature = "sim")]
        Source::Sim {
            first_seed,
            episodes,
        } => (
            Frames::ClosedLoop {
                task: cfg,
                first_seed: *first_seed,
                episodes: *episodes,
            },
            (cfg.image_width, cfg.image_height).into(),
            *episodes as u64,
        ),
    };
    // Held-out frames are checked before minutes of calibration.
    let held_out = held_out
        .map(|d| load_replay(d).map(|h| (h, d)))
        .transpose()?;
    if let Some((h, d)) = held_out.as_ref().filter(|(h, _)| h.views != frame) {
        let (d, views) = (d.display(), &h.views);
        bail!("--held-out {d}: frames are {views}, the calibration frames {frame}");
    }
    let mut p = Pipeline::open(&set, BackendKind::Cpu, frame.clone())?;
    let full = p.chain.full_macs() as f64;
    let budget_macs = match (budgets.ratio, budgets.mflops) {
        (Some(r), None) if r > 0.0 && r.is_finite() => r * full,
        (None, Some(f)) if f > 0.0 && f.is_finite() => f * 1e6 / 2.0,
        (Some(_), Some(_)) => bail!("give --budget-ratio or --budget-mflops, not both"),
        (None, None) => bail!("a compute budget is needed: --budget-ratio R or --budget-mflops F"),
        (r, f) => bail!("the budget must be a positive number (got ratio {r:?}, MFLOPs {f:?})"),
    };
    let footprints: Option<Footprints> =
        match budgets.max_memory_mb {
            #[cfg(feature = "sim")]
            Some(mb) if mb > 0.0 && mb.is_finite() => Some(Footprints::measure(
                &set,
                BackendKind::Cpu,
                frame.clone(),
                &crate::heap::live_bytes,
            )?),
            // The robot's build keeps the plain system allocator: nothing counts
            // the heap.
            #[cfg(not(feature = "sim"))]
            Some(mb) if mb > 0.0 && mb.is_finite() => return Err(crate::args::no_sim(
                "--max-memory-mb (the heap is measured by the tools build's counting allocator)",
            )),
            Some(mb) => bail!("--max-memory-mb {mb}: must be a positive number of megabytes"),
            None => None,
        };
    let cap = match (&footprints, budgets.max_memory_mb) {
        (Some(f), Some(mb)) => Some(f.cap((mb * 1e6) as u64).with_context(|| {
            format!(
                "--max-memory-mb {mb}: not even exit 1 fits (it holds {:.3} MB loaded)",
                f.bytes[0] as f64 / 1e6
            )
        })?),
        _ => None,
    };
    if let Some(k) = budgets.offload {
        let n = p.chain.exits();
        if k >= n {
            bail!(
                "--offload {k}: the engine set has {n} exits; keep between 1 and {} on the robot",
                n - 1
            );
        }
    }
    let bar = progress_bar(per_pass * iterations as u64, "calibrating");
    let mut c = calibrate(
        &mut p,
        &frames,
        Budget {
            macs: budget_macs,
            cap,
            latency_cap_ms: budgets.max_latency_ms,
            iterations,
            offload: budgets.offload.map(|k| OffloadBudget {
                local_exits: k,
                robot_only: budgets.budget_counts == BudgetCounts::Robot,
            }),
        },
        &mut || bar.inc(1),
    )?;
    bar.finish_and_clear();
    #[cfg(feature = "sim")]
    if let Some(episodes) = a.refine {
        let first_seed = a.first_seed;
        use offramp_calibrate::eval::rollout;
        use offramp_calibrate::refine::{race, Objective, Space, RACE_CANDIDATES};
        use offramp_calibrate::solve::predict;
        let costs = c.exit_costs_f64();
        let space = Space {
            deltas: &c.deltas,
            costs: &costs,
            deepest: c.deepest_exit,
            budget_macs,
        };
        let bar = progress_bar(5 * episodes as u64, "refining");
        let r = race(
            &space,
            Objective::new(budget_macs / full),
            &mut |t: &[f32], seed: u64, k: usize| {
                rollout(std::slice::from_mut(&mut p), cfg, t, seed, k, &|| {
                    bar.inc(1)
                })
            },
            first_seed,
            episodes,
            RACE_CANDIDATES,
        )?;
        bar.finish_and_clear();
        c.predicted = predict(&c.deltas, &r.best.thresholds, &costs);
        c.thresholds = r.best.thresholds.clone();
        c.refined = Some(r);
    }
    if let Some((h, _)) = &held_out {
        p.chain.set_thresholds(&c.thresholds);
        c.held_out = Some(offramp_calibrate::calibrate::held_out(
            &mut p,
            &h.frames,
            h.frame_len(),
            &h.instructions,
            &h.episodes,
        )?);
    }
    let mut m = set.manifest.clone();
    m.criterion.thresholds = c.thresholds.clone();
    // Exits past the cap are never used: store it, so that the runtime
    // does not load them.
    m.criterion.deepest_exit = (c.deepest_exit + 1 < m.exits.len()).then_some(c.deepest_exit);
    c.memory_bytes = footprints.map(|f| f.bytes);
    // Written only if it loads back; otherwise the set keeps its manifest.
    EngineSet::write_manifest(&set.dir, &m).context("the calibrated manifest is not written")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!(
            "thresholds {:?} written to {}",
            c.thresholds,
            set.manifest_path.display()
        );
        println!(
            "budget {:.3} MMACs ({:.1}% of the full model's {:.3}); expected {:.3} MMACs on {} calibration frames",
            c.budget_macs / 1e6,
            100.0 * c.budget_macs / c.full_macs as f64,
            c.full_macs as f64 / 1e6,
            c.predicted.mean_cost / 1e6,
            c.frames
        );
        for (i, s) in c.predicted.exit_shares.iter().enumerate() {
            println!(
                "  exit {}: {:5.1}% of frames, {:.3} MMACs, p99 {:.3} ms cumulative",
                i + 1,
                100.0 * s,
                c.exit_costs[i] as f64 / 1e6,
                c.exit_latency_p99_ms[i]
            );
        }
        if let Some(o) = &c.over_budget {
            println!("  over budget: {}", o.summary(c.full_macs));
        }
        if let Some(h) = &c.held_out {
            println!(
                "  held out: {:.3} of the full model on {} frames ({} episodes) the thresholds were not solved on",
                h.compute_ratio, h.frames, h.episodes
            );
        }
        if let Some(o) = &c.offload {
            println!(
                "  with exits {}.. on a server: the robot computes {:.3} MMACs per frame ({:.1}% of the full model), both devices {:.3}; the budget counted {}",
                o.local_exits + 1,
                o.predicted_robot.mean_cost / 1e6,
                100.0 * o.predicted_robot.mean_cost / c.full_macs as f64,
                c.predicted.mean_cost / 1e6,
                if o.budget_counts_robot_only { "the robot only" } else { "both" }
            );
        }
        if let Some(r) = &c.refined {
            println!(
                "  refined in closed loop ({}): {} rollout episodes, best of {} candidates: success {:.1}% at {:.3} of the full model on {} calibration episodes",
                r.method,
                r.rollout_episodes,
                r.candidates,
                100.0 * r.best.tally.success_rate(),
                r.best.tally.compute_ratio(),
                r.best.tally.episodes
            );
        }
        if c.deepest_exit + 1 < c.exit_costs.len() {
            println!(
                "  deepest exit capped at {} by the latency/memory budget: exits past it are not loaded",
                c.deepest_exit + 1
            );
        }
        if let Some(b) = &c.memory_bytes {
            let mb: Vec<String> = b
                .iter()
                .map(|x| format!("{:.3}", *x as f64 / 1e6))
                .collect();
            println!(
                "  heap held when loaded up to exit 1..{}: {} MB",
                b.len(),
                mb.join(", ")
            );
        }
    }
    Ok(c)
}
