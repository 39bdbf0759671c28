//! `offramp calibrate`: thresholds under compute, latency and memory budgets,
//! written into the engine set's manifest.

use crate::sim_cmd::{preprocessor, progress_bar};
use crate::sweep_cmd::RACE_CANDIDATES;
use anyhow::{bail, Context};
use offramp_engines::{BackendKind, EngineSet, Manifest};
use offramp_runtime::calibrate::{calibrate, predict, Budget, Calibration, Frames};
use offramp_runtime::camera::load_replay;
use offramp_runtime::closed_loop::rollout;
use offramp_runtime::exit_chain::ExitChain;
use offramp_runtime::refine::{race, Objective, Space};
use offramp_sim::SimConfig;
use std::path::{Path, PathBuf};

pub struct Budgets {
    pub ratio: Option<f64>,
    pub mflops: Option<f64>,
    pub max_latency_ms: Option<f64>,
    pub max_memory_mb: Option<f64>,
}

pub enum Source {
    Recorded(PathBuf),
    Sim { first_seed: u64, episodes: usize },
}

/// Deepest exit whose weights (all segments so far and the head) plus the
/// largest activation peak fit in `mb` megabytes.
pub fn memory_cap(m: &Manifest, mb: f64) -> Option<usize> {
    let limit = mb * 1e6;
    let mut params = m.head.cost.params * 4;
    let mut peak = m.head.cost.peak_activation_bytes;
    let mut deepest = None;
    for (i, s) in m.exits.iter().enumerate() {
        params += s.cost.params * 4;
        peak = peak.max(s.cost.peak_activation_bytes);
        if (params + peak) as f64 <= limit {
            deepest = Some(i);
        }
    }
    deepest
}

pub fn run(
    cfg: &SimConfig,
    engines: &Path,
    budgets: &Budgets,
    source: &Source,
    iterations: usize,
    refine: Option<(u64, usize)>,
    json: bool,
) -> anyhow::Result<Calibration> {
    let set = EngineSet::open(engines)?;
    let mut chain = ExitChain::new(&set, BackendKind::Cpu)?;
    let full = chain.full_macs() as f64;
    let budget_macs = match (budgets.ratio, budgets.mflops) {
        (Some(r), None) if r > 0.0 && r.is_finite() => r * full,
        (None, Some(f)) if f > 0.0 && f.is_finite() => f * 1e6 / 2.0,
        (Some(_), Some(_)) => bail!("give --budget-ratio or --budget-mflops, not both"),
        (None, None) => bail!("a compute budget is needed: --budget-ratio R or --budget-mflops F"),
        (r, f) => bail!("the budget must be a positive number (got ratio {r:?}, MFLOPs {f:?})"),
    };
    let cap = match budgets.max_memory_mb {
        Some(mb) => Some(memory_cap(&set.manifest, mb).with_context(|| {
            format!("--max-memory-mb {mb}: not even exit 1 fits (weights + activations)")
        })?),
        None => None,
    };
    let recorded;
    let frames = match source {
        Source::Sim {
            first_seed,
            episodes,
        } => Frames::Sim {
            cfg,
            first_seed: *first_seed,
            episodes: *episodes,
        },
        Source::Recorded(dir) => {
            recorded = load_replay(dir)?;
            if (recorded.width, recorded.height) != (cfg.image_width, cfg.image_height) {
                bail!(
                    "{}: frames are {}x{}, the simulator config says {}x{}",
                    dir.display(),
                    recorded.width,
                    recorded.height,
                    cfg.image_width,
                    cfg.image_height
                );
            }
            Frames::Replay {
                frames: &recorded.frames,
                frame_len: recorded.frame_len(),
                instructions: &recorded.instructions,
                episodes: &recorded.episodes,
            }
        }
    };
    let mut pre = preprocessor(&set, cfg)?;
    let per_pass = match source {
        Source::Sim { episodes, .. } => *episodes as u64,
        Source::Recorded(_) => match &frames {
            Frames::Replay { episodes, .. } => episodes
                .iter()
                .map(|e| *e as i64)
                .max()
                .map_or(0, |m| m + 1) as u64,
            _ => 0,
        },
    };
    let bar = progress_bar(per_pass * iterations.max(1) as u64, "calibrating");
    let mut c = calibrate(
        &mut chain,
        &mut pre,
        &frames,
        Budget {
            macs: budget_macs,
            cap,
            latency_cap_ms: budgets.max_latency_ms,
            iterations,
        },
        &mut || bar.inc(1),
    )?;
    bar.finish_and_clear();
    if let Some((first_seed, episodes)) = refine {
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
                rollout(&mut chain, &mut pre, cfg, t, seed, k, &mut || bar.inc(1))
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
    let mut m = set.manifest.clone();
    m.criterion.thresholds = c.thresholds.clone();
    EngineSet::write_manifest(&set.dir, &m)?;
    EngineSet::open(&set.dir).context("the calibrated manifest does not load back")?;
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
                "  deepest exit capped at {} by the latency/memory budget",
                c.deepest_exit + 1
            );
        }
    }
    Ok(c)
}
