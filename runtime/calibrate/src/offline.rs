//! The offline curve (`offramp calibrate-sweep --episodes DIR`): does early
//! exit pay on my model and my data, before any robot moves?
//!
//! Thresholds are solved on the calibration episodes of a recording (its
//! earlier episodes, or another recording), and every policy (each budget's
//! thresholds, each fixed exit) then runs frame after frame on the
//! evaluation episodes, as the runtime runs it (the recurrent state carried,
//! reset per episode). Each frame's action is compared with the full
//! model's on that frame and, where the recording holds one
//! (`actions.npy`: the demonstration; else `executed.npy`: the command the
//! robot executed), with the recorded action: the mean absolute error and
//! the share of frames whose every dimension lies within a tolerance.
//! Episodes are the unit of the 95 % intervals: each policy's per-episode
//! share against the full model's on the same episodes (paired).

use crate::calibrate::{calibrate, recorded, Budget, CalibrateError, Frames};
use crate::paired::Paired;
use offramp_runtime::camera::{load_replay, Replay, Views};
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Actuator, RunLoop};
use serde::Serialize;
use std::path::Path;

/// Recorded episodes: frames (HWC u8, every view end to end), one
/// instruction and episode index per frame, and the recorded action of
/// each frame (`[N, D]`, row-major) where there is one.
pub struct Recorded<'a> {
    pub frames: &'a [u8],
    pub frame_len: usize,
    pub instructions: &'a [usize],
    pub episodes: &'a [i32],
    pub actions: Option<&'a [f32]>,
}

impl Recorded<'_> {
    fn frames(&self) -> Frames<'_> {
        Frames::Replay {
            frames: self.frames,
            frame_len: self.frame_len,
            instructions: self.instructions,
            episodes: self.episodes,
        }
    }
}

/// The recordings of a sweep: calibration and evaluation episodes, and
/// the recorded actions of the evaluation frames.
pub struct Loaded {
    calibration: Replay,
    evaluation: Option<Replay>,
    /// Frames of `calibration` solved on, when it is also evaluated on.
    cut: usize,
    actions: Option<Vec<f32>>,
    /// The file the actions come from.
    pub reference: Option<String>,
}

fn recorded_err(dir: &Path, why: impl std::fmt::Display) -> CalibrateError {
    CalibrateError::Recorded(format!("{}: {why}", dir.display()))
}

/// Loads `dir` and, if given, `held_out` (evaluated on; else the later
/// half of `dir`'s episodes is). The recorded action is `actions.npy` (a
/// demonstration), else `executed.npy` (the command executed), of the
/// evaluation recording.
pub fn load(dir: &Path, held_out: Option<&Path>) -> Result<Loaded, CalibrateError> {
    let calibration = load_replay(dir).map_err(|e| recorded_err(dir, e))?;
    let evaluation = match held_out {
        Some(h) => Some(load_replay(h).map_err(|e| recorded_err(h, e))?),
        None => None,
    };
    let (eval_dir, eval) = match (&evaluation, held_out) {
        (Some(e), Some(h)) => (h, e),
        _ => (dir, &calibration),
    };
    let cut = if evaluation.is_some() {
        0
    } else {
        // The first frame of the later half of the episodes.
        let starts: Vec<usize> = (0..calibration.episodes.len())
            .filter(|&k| k == 0 || calibration.episodes[k] != calibration.episodes[k - 1])
            .collect();
        if starts.len() < 2 {
            return Err(recorded_err(
                dir,
                format!("{} episode(s): the sweep solves on some and evaluates on others; record more, or give --held-out", starts.len()),
            ));
        }
        starts[starts.len() / 2]
    };
    let frames = eval.episodes.len();
    let mut actions = None;
    let mut reference = None;
    for file in ["actions.npy", "executed.npy"] {
        let path = eval_dir.join(file);
        if !path.exists() {
            continue;
        }
        let (shape, data) =
            offramp_runtime::npy::read::<f32>(&path).map_err(|e| recorded_err(&path, e))?;
        if shape.len() != 2 || shape[0] < frames {
            return Err(recorded_err(
                &path,
                format!("{shape:?}; expected [N, D] with a row for each of the {frames} frames"),
            ));
        }
        let d = shape[1];
        actions = Some(data[cut * d..frames * d].to_vec());
        reference = Some(file.to_string());
        break;
    }
    Ok(Loaded {
        calibration,
        evaluation,
        cut,
        actions,
        reference,
    })
}

impl Loaded {
    /// The camera views of the recordings (the same in both).
    pub fn views(&self) -> Views {
        self.calibration.views.clone()
    }

    /// The calibration episodes and the evaluation episodes.
    pub fn parts(&self) -> Result<(Recorded<'_>, Recorded<'_>), CalibrateError> {
        let len = self.calibration.frame_len();
        let c = &self.calibration;
        let (frames, instructions, episodes) =
            (&c.frames[..], &c.instructions[..], &c.episodes[..]);
        let split = |from: usize, to: usize| Recorded {
            frames: &frames[from * len..to * len],
            frame_len: len,
            instructions: &instructions[from..to],
            episodes: &episodes[from..to],
            actions: None,
        };
        let n = episodes.len();
        let (calibration, mut evaluation) = match &self.evaluation {
            None => (split(0, self.cut), split(self.cut, n)),
            Some(e) => {
                if e.views.sizes() != self.calibration.views.sizes() {
                    return Err(CalibrateError::Recorded(format!(
                        "the held-out frames are {:?}, the calibration frames {:?}: record both with the same cameras",
                        e.views.sizes(),
                        self.calibration.views.sizes()
                    )));
                }
                let held = Recorded {
                    frames: &e.frames,
                    frame_len: len,
                    instructions: &e.instructions,
                    episodes: &e.episodes,
                    actions: None,
                };
                (split(0, n), held)
            }
        };
        evaluation.actions = self.actions.as_deref();
        Ok((calibration, evaluation))
    }
}

/// How agreeing one policy's actions are with a reference's.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Mean over frames of the mean |action − reference| over dimensions.
    pub mean_abs_error: f64,
    /// Share of frames whose every dimension is within the tolerance.
    pub within_tolerance: f64,
    /// The per-episode share within tolerance: mean and 95 % interval
    /// over episodes.
    pub within_tolerance_episodes: Option<Paired>,
    /// Against the recorded action only: this policy's per-episode share
    /// within tolerance minus the full model's, paired over episodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minus_full_model: Option<Paired>,
}

/// One policy on the evaluation episodes.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// `exit k` or `budget B`.
    pub policy: String,
    pub budget_ratio: Option<f64>,
    pub thresholds: Vec<f32>,
    /// Mean compute per frame over the full model's.
    pub compute_ratio: f64,
    pub mean_exit: f64,
    pub vs_full_model: Agreement,
    pub vs_recorded: Option<Agreement>,
}

/// The curve.
#[derive(Debug, Clone, Serialize)]
pub struct OfflineSweep {
    pub calibration_episodes: usize,
    pub evaluation_episodes: usize,
    pub evaluation_frames: usize,
    /// Where the recorded action comes from (`actions.npy`,
    /// `executed.npy`), if anywhere.
    pub reference: Option<String>,
    pub tolerance: f32,
    /// Every fixed exit (the last is the full model), then each budget.
    pub fixed_exits: Vec<Point>,
    pub budgets: Vec<Point>,
    /// Files written beside the JSON (the plot).
    pub files: Vec<String>,
}

/// Each frame's action (NaN where the chain stopped the motors).
struct Collect {
    dims: usize,
    actions: Vec<f32>,
    exits: Vec<usize>,
}

impl Actuator for Collect {
    fn act(&mut self, action: &[f32], o: &FrameOutcome) {
        let mut row = action.iter().copied().take(self.dims).collect::<Vec<_>>();
        row.resize(self.dims, f32::NAN);
        self.actions.extend(row);
        self.exits.push(o.exit);
    }
    fn stop(&mut self) {
        self.actions
            .extend(std::iter::repeat_n(f32::NAN, self.dims));
        self.exits.push(usize::MAX);
    }
}

/// Runs `policy` over `rec` frame after frame: each frame's action, the
/// mean exit and compute over the full model's.
fn run(
    p: &mut Pipeline,
    rec: &Recorded,
    policy: ExitPolicy,
) -> Result<(Vec<f32>, f64, f64), CalibrateError> {
    let dims = p.chain.action().len();
    let full = p.chain.full_macs() as f64;
    let mut sink = Collect {
        dims,
        actions: Vec::new(),
        exits: Vec::new(),
    };
    let mut rl = RunLoop::new(p, policy, None, None);
    let frames = recorded(rec.frames, rec.frame_len, rec.instructions, rec.episodes)?;
    for (frame, meta) in frames {
        let before = sink.exits.len();
        rl.frame(frame, meta, &mut sink)?;
        if sink.exits.len() == before {
            // Neither acted nor stopped: no action this frame.
            sink.stop();
        }
    }
    let t = rl.tally();
    let ran: Vec<f64> = sink
        .exits
        .iter()
        .filter(|e| **e != usize::MAX)
        .map(|e| *e as f64)
        .collect();
    let mean_exit = ran.iter().sum::<f64>() / ran.len().max(1) as f64;
    Ok((sink.actions, mean_exit, t.mean_macs() / full))
}

/// Per-frame (error, within tolerance) of `a` against `b`, `dims` per row.
fn compare(a: &[f32], b: &[f32], dims: usize, tolerance: f32) -> Vec<(f64, bool)> {
    a.chunks_exact(dims)
        .zip(b.chunks_exact(dims))
        .map(|(x, y)| {
            let err: Vec<f32> = x.iter().zip(y).map(|(x, y)| (x - y).abs()).collect();
            // NaN (no action, or none recorded) is never within tolerance.
            let ok = err.iter().all(|e| *e <= tolerance);
            let mean = err.iter().map(|e| *e as f64).sum::<f64>() / dims.max(1) as f64;
            (mean, ok)
        })
        .collect()
}

/// The share within tolerance of each episode, in order.
fn per_episode(frames: &[(f64, bool)], episodes: &[i32]) -> Vec<f64> {
    let mut shares = Vec::new();
    let (mut ok, mut n) = (0usize, 0usize);
    for (k, (_, within)) in frames.iter().enumerate() {
        if k > 0 && episodes[k] != episodes[k - 1] {
            shares.push(ok as f64 / n as f64);
            (ok, n) = (0, 0);
        }
        ok += *within as usize;
        n += 1;
    }
    if n > 0 {
        shares.push(ok as f64 / n as f64);
    }
    shares
}

fn agreement(frames: &[(f64, bool)], episodes: &[i32], full: Option<&[f64]>) -> Agreement {
    let finite: Vec<f64> = frames
        .iter()
        .map(|f| f.0)
        .filter(|e| e.is_finite())
        .collect();
    let shares = per_episode(frames, episodes);
    let minus_full_model = full.and_then(|f| {
        let d: Vec<f64> = shares.iter().zip(f).map(|(a, b)| a - b).collect();
        Paired::of(&d)
    });
    Agreement {
        mean_abs_error: finite.iter().sum::<f64>() / finite.len().max(1) as f64,
        within_tolerance: frames.iter().filter(|f| f.1).count() as f64 / frames.len().max(1) as f64,
        within_tolerance_episodes: Paired::of(&shares),
        minus_full_model,
    }
}

/// What to sweep.
pub struct OfflineConfig<'a> {
    /// Budgets as shares of the full model's compute.
    pub budgets: &'a [f64],
    /// Solve passes per budget.
    pub iterations: usize,
    /// Largest |action − reference| per dimension that counts as agreeing.
    pub tolerance: f32,
    /// Where `evaluation.actions` comes from, for the report.
    pub reference: Option<String>,
}

/// Solves each budget on `calibration`, then runs every fixed exit and each
/// budget's thresholds on `evaluation`. The chain's thresholds are left as
/// they were.
pub fn sweep(
    p: &mut Pipeline,
    calibration: &Recorded,
    evaluation: &Recorded,
    cfg: &OfflineConfig,
    progress: &mut dyn FnMut(),
) -> Result<OfflineSweep, CalibrateError> {
    let n = p.chain.exits();
    let dims = p.chain.action().len();
    let saved = p.chain.thresholds().to_vec();
    let episodes = |r: &Recorded| {
        1 + r.episodes.windows(2).filter(|w| w[0] != w[1]).count() * !r.episodes.is_empty() as usize
    };
    if let Some(a) = evaluation.actions {
        let frames = evaluation.frames.len() / evaluation.frame_len.max(1);
        if a.len() != frames * dims {
            return Err(CalibrateError::Recorded(format!(
                "{}: {} values for {frames} frames; the model's action has {dims} dimensions",
                cfg.reference.as_deref().unwrap_or("the recorded actions"),
                a.len()
            )));
        }
    }
    // The full model first: every other policy is compared with it.
    let (full, _, _) = run(p, evaluation, ExitPolicy::Fixed(n - 1))?;
    progress();
    let to_full = |a: &[f32]| compare(a, &full, dims, cfg.tolerance);
    let to_recorded = |a: &[f32]| {
        evaluation
            .actions
            .map(|r| compare(a, r, dims, cfg.tolerance))
    };
    let full_shares = to_recorded(&full).map(|f| per_episode(&f, evaluation.episodes));
    let point =
        |policy: String, budget: Option<f64>, thresholds: Vec<f32>, r: (Vec<f32>, f64, f64)| {
            let (actions, mean_exit, compute_ratio) = r;
            Point {
                policy,
                budget_ratio: budget,
                thresholds,
                compute_ratio,
                mean_exit,
                vs_full_model: agreement(&to_full(&actions), evaluation.episodes, None),
                vs_recorded: to_recorded(&actions)
                    .map(|f| agreement(&f, evaluation.episodes, full_shares.as_deref())),
            }
        };
    let mut fixed_exits = Vec::with_capacity(n);
    for k in 0..n {
        let r = if k + 1 == n {
            (full.clone(), k as f64, 1.0)
        } else {
            let r = run(p, evaluation, ExitPolicy::Fixed(k))?;
            progress();
            r
        };
        fixed_exits.push(point(format!("exit {k}"), None, Vec::new(), r));
    }
    let mut budgets = Vec::with_capacity(cfg.budgets.len());
    for &b in cfg.budgets {
        let budget = Budget {
            macs: b * p.chain.full_macs() as f64,
            cap: None,
            latency_cap_ms: None,
            iterations: cfg.iterations,
            offload: None,
        };
        let c = calibrate(p, &calibration.frames(), budget, &mut || {})?;
        p.chain.set_thresholds(&c.thresholds);
        let r = run(p, evaluation, ExitPolicy::Criterion);
        p.chain.set_thresholds(&saved);
        progress();
        budgets.push(point(format!("budget {b:.3}"), Some(b), c.thresholds, r?));
    }
    Ok(OfflineSweep {
        calibration_episodes: episodes(calibration),
        evaluation_episodes: episodes(evaluation),
        evaluation_frames: evaluation.frames.len() / evaluation.frame_len.max(1),
        reference: evaluation.actions.and(cfg.reference.clone()),
        tolerance: cfg.tolerance,
        fixed_exits,
        budgets,
        files: Vec::new(),
    })
}

impl std::fmt::Display for OfflineSweep {
    /// The table `offramp calibrate-sweep --episodes` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "calibrated on {} recorded episodes, evaluated on {} ({} frames); tolerance {} per dimension",
            self.calibration_episodes, self.evaluation_episodes, self.evaluation_frames, self.tolerance
        )?;
        let reference = self.reference.as_deref().unwrap_or("none recorded");
        writeln!(
            f,
            "  {:<13} {:>8} {:>9} {:>22} {:>24}  within tolerance of the recorded ({reference}) minus the full model's, 95 % interval over episodes",
            "policy", "compute", "mean exit", "vs full: |err|, within", "vs recorded: |err|, within"
        )?;
        for p in self.fixed_exits.iter().chain(&self.budgets) {
            let recorded = p.vs_recorded.as_ref().map_or("-".to_string(), |r| {
                format!(
                    "{:.4}, {:5.1}%",
                    r.mean_abs_error,
                    100.0 * r.within_tolerance
                )
            });
            let interval = p
                .vs_recorded
                .as_ref()
                .and_then(|r| r.minus_full_model)
                .map_or(String::new(), |d| {
                    format!(
                        "{:+.1} [{:+.1}, {:+.1}] points",
                        100.0 * d.mean,
                        100.0 * d.ci95_low,
                        100.0 * d.ci95_high
                    )
                });
            writeln!(
                f,
                "  {:<13} {:>8.3} {:>9.2} {:>14.4}, {:5.1}% {:>24}  {interval}",
                p.policy,
                p.compute_ratio,
                p.mean_exit,
                p.vs_full_model.mean_abs_error,
                100.0 * p.vs_full_model.within_tolerance,
                recorded
            )?;
        }
        for file in &self.files {
            writeln!(f, "  wrote {file}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_counts_frames_within_tolerance_and_pairs_episodes() {
        // Two episodes of two frames, 2 dims.
        let episodes = [0, 0, 1, 1];
        let reference = [0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0];
        let policy = [0.05, 0.0, 1.0, 1.3, 0.5, 0.5, f32::NAN, 0.0];
        let frames = compare(&policy, &reference, 2, 0.1);
        let within: Vec<bool> = frames.iter().map(|f| f.1).collect();
        // 1.3 is out; a missing action is never within.
        assert_eq!(within, [true, false, true, false]);
        assert_eq!(per_episode(&frames, &episodes), [0.5, 0.5]);
        let full_shares = [1.0, 0.5];
        let a = agreement(&frames, &episodes, Some(&full_shares));
        assert_eq!(a.within_tolerance, 0.5);
        // Mean error over frames with an action: (0.025 + 0.15 + 0) / 3.
        assert!(
            (a.mean_abs_error - 0.175 / 3.0).abs() < 1e-6,
            "{}",
            a.mean_abs_error
        );
        let d = a.minus_full_model.unwrap();
        assert_eq!(d.episodes, 2);
        assert!((d.mean + 0.25).abs() < 1e-12);
    }
}
