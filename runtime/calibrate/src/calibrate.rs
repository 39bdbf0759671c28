//! Calibration: run the model on calibration episodes (closed loop in the
//! simulator, or recorded), keep every exit's delta per frame, and solve for
//! the thresholds ([`crate::solve`]) under compute, latency and memory
//! budgets. The committed recurrent state depends on the thresholds, so
//! collection and solve repeat (the first pass commits the full model's
//! state).

use crate::solve::{
    first_stoppable, over_budget, predict, shares, solve_q, thresholds_from_shares, FrameDeltas,
    OverBudget, Prediction,
};
use offramp_runtime::camera::FrameMeta;
use offramp_runtime::closed_loop::Task;
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::{Pipeline, PipelineError};
use offramp_runtime::run_loop::{Idle, RunError, RunLoop};
use offramp_runtime::stats::quantile;
use offramp_runtime::twist::TwistCommand;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Boxed: a run loop's error is large, and calibration returns it
    /// rarely.
    #[error(transparent)]
    Run(Box<RunError>),
    /// Recorded frames whose parts do not line up.
    #[error("recorded frames: {0}")]
    Recorded(String),
}

impl From<RunError> for CalibrateError {
    fn from(e: RunError) -> Self {
        Self::Run(Box::new(e))
    }
}

/// Checks that recorded frames line up with their per-frame instructions and
/// episode indices (as `load_replay` gives them; a library caller may not),
/// so a mismatch is an error naming the counts, not an index panic.
fn check_recorded(
    frames: &[u8],
    frame_len: usize,
    instructions: &[usize],
    episodes: &[i32],
) -> Result<(), CalibrateError> {
    if frame_len == 0 || frames.len() % frame_len != 0 {
        return Err(CalibrateError::Recorded(format!(
            "{} bytes are not a whole number of {frame_len}-byte frames",
            frames.len()
        )));
    }
    let n = frames.len() / frame_len;
    if instructions.len() != n || episodes.len() != n {
        return Err(CalibrateError::Recorded(format!(
            "{n} frames, {} instructions and {} episode indices; one of each per frame",
            instructions.len(),
            episodes.len()
        )));
    }
    Ok(())
}

/// Recorded frames in order, each with what the run loop is told with it
/// (a new episode where the episode index changes), once they are checked
/// to line up.
pub(crate) fn recorded<'a>(
    frames: &'a [u8],
    frame_len: usize,
    instructions: &'a [usize],
    episodes: &'a [i32],
) -> Result<impl Iterator<Item = (&'a [u8], FrameMeta)> + 'a, CalibrateError> {
    check_recorded(frames, frame_len, instructions, episodes)?;
    Ok(frames
        .chunks_exact(frame_len)
        .enumerate()
        .map(move |(k, frame)| {
            let meta = FrameMeta {
                seq: k as u64,
                captured: None,
                instruction: instructions[k],
                new_episode: k == 0 || episodes[k] != episodes[k - 1],
            };
            (frame, meta)
        }))
}

/// Where calibration frames come from.
pub enum Frames<'a> {
    /// Closed loop in a task (the simulator): episodes
    /// `first_seed..first_seed + n`.
    ClosedLoop {
        task: &'a dyn Task,
        first_seed: u64,
        episodes: usize,
    },
    /// Recorded episodes (`offramp sim record`): frames HWC u8, one
    /// instruction and episode index per frame.
    Replay {
        frames: &'a [u8],
        frame_len: usize,
        instructions: &'a [usize],
        episodes: &'a [i32],
    },
}

/// Per-frame criterion scores of every exit (RMS action deltas for action
/// consistency, 1 − top probability for max confidence: what the chain
/// compares with the thresholds), with the state committed as the chain's
/// current thresholds choose; also the per-frame cumulative latency of each
/// exit (seconds).
pub fn collect(
    p: &mut Pipeline,
    frames: &Frames,
    progress: &mut dyn FnMut(),
) -> Result<(Vec<FrameDeltas>, Vec<Vec<f32>>), CalibrateError> {
    let n = p.chain.exits();
    let mut rl = RunLoop::new(p, ExitPolicy::All, None, None);
    let mut deltas = Vec::new();
    let mut latency = Vec::new();
    let mut keep = |o: &FrameOutcome| {
        deltas.push(o.scores[..n].to_vec());
        let mut cum = 0.0;
        latency.push(
            o.exit_seconds[..n]
                .iter()
                .map(|s| {
                    cum += s;
                    cum
                })
                .collect(),
        );
    };
    match frames {
        Frames::ClosedLoop {
            task,
            first_seed,
            episodes,
        } => {
            let mut buf = Vec::new();
            let mut command = TwistCommand::new(task.limits());
            for e in 0..*episodes {
                let mut sim = task.episode(first_seed + e as u64);
                buf.resize(sim.frame_len(), 0);
                loop {
                    sim.render(&mut buf);
                    let o = rl.frame(&buf, sim.frame_meta(), &mut command)?;
                    keep(&o);
                    if sim.step(command.twist).done {
                        break;
                    }
                }
                progress();
            }
        }
        Frames::Replay {
            frames,
            frame_len,
            instructions,
            episodes,
        } => {
            for (frame, meta) in recorded(frames, *frame_len, instructions, episodes)? {
                if meta.new_episode {
                    progress();
                }
                let o = rl.frame(frame, meta, &mut Idle)?;
                keep(&o);
            }
        }
    }
    Ok((deltas, latency))
}

/// Result of [`calibrate`].
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub thresholds: Vec<f32>,
    pub q: f64,
    pub budget_macs: f64,
    pub full_macs: u64,
    /// Cumulative MACs of stopping at each exit under the criterion.
    pub exit_costs: Vec<u64>,
    pub deepest_exit: usize,
    pub frames: usize,
    pub predicted: Prediction,
    /// p99 cumulative latency to each exit on this machine, milliseconds.
    pub exit_latency_p99_ms: Vec<f64>,
    /// The last pass's per-frame criterion scores (what a refinement search
    /// derives its candidates from).
    #[serde(skip)]
    pub deltas: Vec<FrameDeltas>,
    /// The closed-loop refinement, when one ran (`--refine`).
    pub refined: Option<crate::refine::RefineReport>,
    /// Heap held with exits `0..=k` loaded, measured, when a memory budget
    /// was given ([`crate::memory::Footprints`]).
    pub memory_bytes: Option<Vec<u64>>,
    /// With deep exits offloaded: how the budget counted, what the robot
    /// computes to stop at each exit, and the prediction on the robot
    /// (`predicted` is over both devices).
    pub offload: Option<OffloadCalibration>,
    /// The thresholds on recorded episodes they were not solved on
    /// ([`held_out`]), when some were given.
    pub held_out: Option<HeldOut>,
    /// Set when the thresholds spend more than the budget (on the robot
    /// alone when the budget counts only its compute): the least the
    /// criterion can spend on these frames, and why.
    pub over_budget: Option<OverBudget>,
}

/// What thresholds do on recorded frames they were not solved on.
#[derive(Debug, Clone, Serialize)]
pub struct HeldOut {
    pub frames: usize,
    pub episodes: usize,
    /// Mean compute per frame over the full model's.
    pub compute_ratio: f64,
    pub exit_shares: Vec<f64>,
}

/// Runs the chain's current criterion over recorded episodes, frame after
/// frame (the recurrent state carried as at run time, reset per episode),
/// and measures the compute it spends.
pub fn held_out(
    p: &mut Pipeline,
    frames: &[u8],
    frame_len: usize,
    instructions: &[usize],
    episodes: &[i32],
) -> Result<HeldOut, CalibrateError> {
    let (n, full_macs) = (p.chain.exits(), p.chain.full_macs());
    let mut rl = RunLoop::new(p, ExitPolicy::Criterion, None, None);
    let mut eps = 0;
    for (frame, meta) in recorded(frames, frame_len, instructions, episodes)? {
        eps += meta.new_episode as usize;
        rl.frame(frame, meta, &mut Idle)?;
    }
    let t = rl.tally();
    Ok(HeldOut {
        frames: t.frames as usize,
        episodes: eps,
        compute_ratio: t.mean_macs() / full_macs as f64,
        exit_shares: t.exit_shares(n),
    })
}

/// The robot's side of a calibration with offloaded deep exits.
#[derive(Debug, Clone, Serialize)]
pub struct OffloadCalibration {
    pub local_exits: usize,
    /// The budget counted the robot's compute only (else both devices').
    pub budget_counts_robot_only: bool,
    /// MACs the robot computes to stop at each exit: exits past the cut
    /// cost it only what the cut does.
    pub robot_exit_costs: Vec<u64>,
    pub predicted_robot: Prediction,
    /// The robot's p99 cumulative latency to each exit, measured here (the
    /// cut's for exits past it; the link and the server come on top).
    pub robot_exit_latency_p99_ms: Vec<f64>,
}

/// Deep exits on a server while calibrating (see [`Budget::offload`]).
#[derive(Debug, Clone, Copy)]
pub struct OffloadBudget {
    /// Exits the robot runs (`0..local_exits`).
    pub local_exits: usize,
    /// Count the robot's compute only against the budget.
    pub robot_only: bool,
}

/// What the robot spends to stop at each exit when exits from
/// `local_exits` on are served (MACs, or cumulative latency): the cut's
/// for every deeper exit.
pub fn robot_costs<T: Copy>(costs: &[T], local_exits: usize) -> Vec<T> {
    let last = local_exits.clamp(1, costs.len().max(1)) - 1;
    (0..costs.len()).map(|i| costs[i.min(last)]).collect()
}

impl Calibration {
    pub fn exit_costs_f64(&self) -> Vec<f64> {
        self.exit_costs.iter().map(|c| *c as f64).collect()
    }
}

/// What [`calibrate`] solves for.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Mean MACs per frame.
    pub macs: f64,
    /// Deepest exit allowed (memory budget).
    pub cap: Option<usize>,
    /// Deepest exit whose p99 cumulative latency fits.
    pub latency_cap_ms: Option<f64>,
    /// Solve passes (the committed state follows the thresholds).
    pub iterations: usize,
    /// Deep exits served by another device, and whether the budget counts
    /// only the robot's compute.
    pub offload: Option<OffloadBudget>,
}

/// The DeeR solve, repeated so the committed state matches the thresholds.
pub fn calibrate(
    p: &mut Pipeline,
    frames: &Frames,
    budget: Budget,
    progress: &mut dyn FnMut(),
) -> Result<Calibration, CalibrateError> {
    let Budget {
        macs: budget_macs,
        cap,
        latency_cap_ms,
        iterations,
        offload,
    } = budget;
    let n = p.chain.exits();
    let costs_u: Vec<u64> = p.chain.criterion_costs();
    let robot_u = offload.map(|o| robot_costs(&costs_u, o.local_exits));
    // The costs the budget is solved against.
    let budgeted: &[u64] = match (offload, &robot_u) {
        (Some(o), Some(r)) if o.robot_only => r,
        _ => &costs_u,
    };
    let mut deepest = cap.unwrap_or(n - 1).min(n - 1);
    let mut thresholds: Vec<f32> = Vec::new();
    p.chain.set_thresholds(&[]);
    let mut q = 1.0;
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..iterations.max(1) {
        last = collect(p, frames, progress)?;
        let mut p99 = p99_per_exit(&last.1, n);
        if let Some(o) = offload.filter(|o| o.robot_only) {
            // The cap counts the robot's time only: a served exit costs it
            // what the cut does.
            p99 = robot_costs(&p99, o.local_exits);
        }
        if let Some(l) = latency_cap_ms {
            // Deepest exit whose cumulative p99 latency fits (exit 0 always).
            let fit = (0..n).rev().find(|&i| p99[i] <= l).unwrap_or(0);
            deepest = deepest.min(fit);
        }
        let first = first_stoppable(&last.0, deepest);
        let costs: Vec<f64> = budgeted[first..=deepest]
            .iter()
            .map(|c| *c as f64)
            .collect();
        q = solve_q(&costs, budget_macs);
        let mut target = vec![0.0; first];
        target.extend(shares(q, deepest + 1 - first));
        thresholds = thresholds_from_shares(&last.0, &target, n, deepest);
        p.chain.set_thresholds(&thresholds);
    }
    let costs: Vec<f64> = costs_u.iter().map(|c| *c as f64).collect();
    let budgeted: Vec<f64> = budgeted.iter().map(|c| *c as f64).collect();
    let predicted = predict(&last.0, &thresholds, &costs);
    let offload = match (offload, robot_u) {
        (Some(o), Some(r)) => {
            let rc: Vec<f64> = r.iter().map(|c| *c as f64).collect();
            Some(OffloadCalibration {
                local_exits: o.local_exits,
                budget_counts_robot_only: o.robot_only,
                predicted_robot: predict(&last.0, &thresholds, &rc),
                robot_exit_costs: r,
                robot_exit_latency_p99_ms: robot_costs(&p99_per_exit(&last.1, n), o.local_exits),
            })
        }
        _ => None,
    };
    // What the budget counted, as predicted above: no second pass.
    let spent = match &offload {
        Some(o) if o.budget_counts_robot_only => o.predicted_robot.mean_cost,
        _ => predicted.mean_cost,
    };
    let over_budget = over_budget(&last.0, &budgeted, deepest, budget_macs, spent);
    Ok(Calibration {
        offload,
        held_out: None,
        over_budget,
        predicted,
        thresholds,
        q,
        budget_macs,
        full_macs: p.chain.full_macs(),
        exit_costs: costs_u,
        deepest_exit: deepest,
        frames: last.0.len(),
        exit_latency_p99_ms: p99_per_exit(&last.1, n).to_vec(),
        deltas: last.0,
        refined: None,
        memory_bytes: None,
    })
}

fn p99_per_exit(latency: &[Vec<f32>], n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = latency.iter().map(|l| l[i]).collect();
            v.sort_by(f32::total_cmp);
            quantile(&v, 0.99).map_or(0.0, |s| s as f64 * 1e3)
        })
        .collect()
}

#[cfg(test)]
mod recorded_tests {
    use super::check_recorded;

    /// Recorded frames passed by a library caller whose parts do not line
    /// up are an error naming the counts, where indexing them panicked (or a
    /// zero frame length panicked in `chunks_exact`).
    #[test]
    fn recorded_frames_must_line_up_with_their_instructions_and_episodes() {
        let frames = [0u8; 12];
        assert!(check_recorded(&frames, 4, &[0, 1, 0], &[0, 0, 1]).is_ok());
        let e = check_recorded(&frames, 4, &[0, 1], &[0, 0, 1])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3 frames, 2 instructions and 3 episode indices"),
            "{e}"
        );
        let e = check_recorded(&frames, 5, &[0, 1], &[0, 0])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("12 bytes are not a whole number of 5-byte frames"),
            "{e}"
        );
        assert!(check_recorded(&frames, 0, &[], &[]).is_err());
    }
}
