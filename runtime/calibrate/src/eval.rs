//! Closed-loop evaluation: the runtime's pipeline driving the simulator,
//! camera frame → preprocess → exit chain → (v, omega) → wheel speeds →
//! physics, episode after episode. Each frame's action is also scored
//! against the privileged expert's action at the same state, which says how
//! often an exit already "gets the frame right".

//!
//! The task is a [`Task`]: the simulator, or any other world that renders
//! frames and takes commands in lockstep.

use offramp_runtime::closed_loop::Task;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::pipeline::PipelineError;
use offramp_runtime::run_loop::RunError;
use offramp_runtime::run_loop::{RunLoop, Tally as FrameTally};
use offramp_runtime::twist::TwistCommand;
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Boxed: a run loop's error is large, and evaluation returns it
    /// rarely.
    #[error(transparent)]
    Run(Box<RunError>),
    #[error("no pipeline to evaluate on")]
    NoPipeline,
}

impl From<RunError> for EvalError {
    fn from(e: RunError) -> Self {
        Self::Run(Box::new(e))
    }
}

/// A frame is right when the action is this close to the expert's.
pub const RIGHT_V: f32 = 0.1;
pub const RIGHT_OMEGA: f32 = 0.35;

/// Episode difficulty buckets (the simulator draws difficulty as u²).
pub const BUCKETS: [(&str, f32, f32); 3] = [
    ("easy", 0.0, 0.2),
    ("medium", 0.2, 0.5),
    ("hard", 0.5, 1.01),
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    pub name: String,
    pub episodes: usize,
    pub successes: usize,
    pub success_rate: f64,
    pub frames: usize,
    pub frames_right: usize,
    pub right_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub policy: String,
    pub episodes: usize,
    pub first_seed: u64,
    pub successes: usize,
    pub success_rate: f64,
    pub frames: usize,
    pub right_share: f64,
    pub mean_exit: f64,
    /// Share of frames stopping at each exit.
    pub exit_shares: Vec<f64>,
    pub mean_macs: f64,
    /// Mean compute relative to the full model (every segment, one head).
    pub compute_ratio: f64,
    /// The part of it this machine computed (less than `compute_ratio`
    /// when deep exits were offloaded to a server).
    pub robot_compute_ratio: f64,
    /// Frame latency (preprocess + exit chain, offload included), ms.
    pub latency_ms: Option<offramp_runtime::stats::Summary>,
    /// Frames whose action came from a server, and frames that asked one
    /// and fell back to the deepest local exit.
    pub remote_frames: usize,
    pub fallback_frames: usize,
    pub nonfinite_frames: usize,
    pub collisions: usize,
    /// Completion time: mean control steps of the successful episodes
    /// (None without one), and the same in seconds of simulated time.
    pub mean_success_steps: Option<f64>,
    pub mean_success_seconds: Option<f64>,
    /// Command smoothness: mean |Δω| between consecutive commands (rad/s
    /// per step), averaged per episode and then over episodes, as the
    /// paired comparison does (so long failed episodes weigh no more).
    pub mean_abs_domega: f64,
    pub by_difficulty: Vec<Bucket>,
    pub failures: Failures,
    /// Every episode's outcome, by seed, for paired comparisons of policies
    /// on the same episodes ([`crate::paired`]).
    pub per_episode: Vec<Episode>,
}

/// One episode's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Episode {
    pub seed: u64,
    pub success: bool,
    /// Control steps run: to the target, or to the step limit.
    pub steps: usize,
    /// Mean |Δω| between consecutive commands (rad/s per step).
    pub mean_abs_domega: f64,
}

/// Why the failed episodes failed: the step limit ran out before the robot
/// reached the target, or (where the simulator makes that the end) it
/// reached a decoy or crashed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failures {
    pub episodes: usize,
    /// The target never came into the camera's field of view.
    pub never_in_view: usize,
    /// Ended within 1 m of the target (found it, did not close in).
    pub ended_near: usize,
    /// Spent at least a quarter of the episode pressed against something.
    pub stuck: usize,
    /// The target was in view on the last frame.
    pub in_view_at_end: usize,
    /// Ended by reaching a decoy (where the simulator makes that the end).
    pub reached_decoy: usize,
    /// Ended by touching something (where the simulator makes that the
    /// end).
    pub crashed: usize,
    /// Mean distance to the target at the end, metres.
    pub mean_final_distance_m: f64,
}

/// Runs `episodes` episodes from `first_seed` with `policy`.
pub fn evaluate(
    p: &mut Pipeline,
    task: &dyn Task,
    first_seed: u64,
    episodes: usize,
    policy: ExitPolicy,
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport, EvalError> {
    evaluate_on(
        std::slice::from_mut(p),
        task,
        first_seed,
        episodes,
        policy,
        progress,
    )
}

/// The same spread over `pipelines`, one thread each (every pipeline opened
/// from the same set, with the same thresholds). Each episode starts the
/// chain afresh, so the report is the one a single pipeline gives, episode
/// for episode, but for the latency figures, which then include the
/// contention between the threads.
pub fn evaluate_on(
    pipelines: &mut [Pipeline],
    task: &dyn Task,
    first_seed: u64,
    episodes: usize,
    policy: ExitPolicy,
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport, EvalError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (n, full_macs) = match pipelines.first() {
        Some(p) => (p.chain.exits(), p.chain.full_macs()),
        None => return Err(EvalError::NoPipeline),
    };
    /// A worker's episodes, or the episode that failed and why.
    type Part = Result<Vec<(usize, EpisodeRun)>, Box<(usize, EvalError)>>;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    /// Tells the other workers to stop when this one panics.
    struct StopOnPanic<'a>(&'a AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
    // Episodes are handed out one at a time, so a slow one does not hold
    // up a whole share. A failed episode stops the others; the error of
    // the earliest failed episode is returned.
    let work = |p: &mut Pipeline| -> Part {
        let _guard = StopOnPanic(&failed);
        let mut done = Vec::new();
        let mut frame = Vec::new();
        let mut rl = RunLoop::new(p, policy, None, None);
        while !failed.load(Ordering::Relaxed) {
            let e = next.fetch_add(1, Ordering::Relaxed);
            if e >= episodes {
                break;
            }
            match run_episode(&mut rl, task, first_seed + e as u64, &mut frame) {
                Ok(r) => done.push((e, r)),
                Err(err) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(Box::new((e, err)));
                }
            }
            progress();
        }
        Ok(done)
    };
    let jobs = pipelines.len().min(episodes).max(1);
    let parts: Vec<Part> = if jobs == 1 {
        vec![work(&mut pipelines[0])]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = pipelines[..jobs]
                .iter_mut()
                .map(|p| s.spawn(|| work(p)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    let mut runs = Vec::with_capacity(episodes);
    let mut first_error: Option<(usize, EvalError)> = None;
    for part in parts {
        match part {
            Ok(done) => runs.extend(done),
            Err(failure) if first_error.as_ref().is_none_or(|(f, _)| failure.0 < *f) => {
                first_error = Some(*failure);
            }
            Err(_) => {}
        }
    }
    if let Some((_, err)) = first_error {
        return Err(err);
    }
    runs.sort_by_key(|(e, _)| *e);
    Ok(report(
        runs.into_iter().map(|(_, r)| r),
        task,
        first_seed,
        episodes,
        policy,
        n,
        full_macs,
    ))
}

/// One episode's outcome and tallies.
struct EpisodeRun {
    episode: Episode,
    bucket: usize,
    /// Frames whose action was right (see [`RIGHT_V`]).
    right: usize,
    /// The run loop's counts over the episode.
    tally: FrameTally,
    collisions: usize,
    /// One per frame.
    latency_ms: Vec<f64>,
    /// Why it failed, where it did.
    failure: Option<Failure>,
}

struct Failure {
    never_in_view: bool,
    final_distance: f32,
    stuck: bool,
    in_view_at_end: bool,
    reached_decoy: bool,
    crashed: bool,
}

/// Runs episode `seed` to its end: the simulator in lockstep with the run
/// loop, each frame rendered, decided and then driven.
fn run_episode(
    rl: &mut RunLoop<&mut Pipeline>,
    task: &dyn Task,
    seed: u64,
    frame: &mut Vec<u8>,
) -> Result<EpisodeRun, EvalError> {
    let mut sim = task.episode(seed);
    frame.resize(sim.frame_len(), 0);
    let bucket = BUCKETS
        .iter()
        .position(|(_, lo, hi)| (*lo..*hi).contains(&sim.difficulty()))
        .unwrap_or(BUCKETS.len() - 1);
    let mut r = EpisodeRun {
        episode: Episode {
            seed,
            success: false,
            steps: 0,
            mean_abs_domega: 0.0,
        },
        bucket,
        right: 0,
        tally: FrameTally::default(),
        collisions: 0,
        latency_ms: Vec::new(),
        failure: None,
    };
    let start = rl.tally();
    let mut command = TwistCommand::new(task.limits());
    let mut seen = false;
    let (mut last_omega, mut domega) = (None::<f32>, 0.0f64);
    loop {
        seen |= sim.target_in_view();
        sim.render(frame);
        rl.frame(frame, sim.frame_meta(), &mut command)?;
        r.latency_ms.push(rl.last_latency() as f64 * 1e3);
        let act = command.twist;
        // A NaN command (the robot stops) counts as ω = 0.
        let omega = if act.omega.is_finite() {
            act.omega
        } else {
            0.0
        };
        if let Some(w) = last_omega {
            domega += (omega - w).abs() as f64;
        }
        last_omega = Some(omega);
        let expert = sim.expert();
        let ok =
            (act.v - expert.v).abs() <= RIGHT_V && (act.omega - expert.omega).abs() <= RIGHT_OMEGA;
        r.right += ok as usize;
        let out = sim.step(act);
        if out.done {
            r.tally = rl.tally().since(&start);
            r.episode.success = out.success;
            r.episode.steps = sim.steps();
            r.episode.mean_abs_domega = domega / sim.steps().saturating_sub(1).max(1) as f64;
            r.collisions = sim.collisions();
            r.failure = (!out.success).then(|| Failure {
                never_in_view: !seen,
                final_distance: sim.target_distance(),
                // A crash ends the episode at once: not pressed against
                // anything for long.
                stuck: !out.crashed && sim.collisions() * 4 >= sim.steps(),
                in_view_at_end: sim.target_in_view(),
                reached_decoy: out.reached_decoy,
                crashed: out.crashed,
            });
            return Ok(r);
        }
    }
}

/// The report over episode runs in seed order.
fn report(
    runs: impl Iterator<Item = EpisodeRun>,
    task: &dyn Task,
    first_seed: u64,
    episodes: usize,
    policy: ExitPolicy,
    n: usize,
    full_macs: u64,
) -> EvalReport {
    let mut buckets: Vec<Bucket> = BUCKETS
        .iter()
        .map(|(n, _, _)| Bucket {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    let mut total = FrameTally::default();
    let (mut right, mut successes, mut collisions) = (0, 0, 0);
    let mut latency_ms = Vec::new();
    let mut failures = Failures::default();
    let mut final_distance_sum = 0.0f64;
    let mut per_episode = Vec::with_capacity(episodes);
    for r in runs {
        let b = &mut buckets[r.bucket];
        b.episodes += 1;
        b.successes += r.episode.success as usize;
        b.frames += r.latency_ms.len();
        b.frames_right += r.right;
        right += r.right;
        successes += r.episode.success as usize;
        collisions += r.collisions;
        total.merge(&r.tally);
        latency_ms.extend(r.latency_ms);
        if let Some(f) = r.failure {
            failures.episodes += 1;
            failures.never_in_view += f.never_in_view as usize;
            failures.ended_near += (f.final_distance < 1.0) as usize;
            failures.stuck += f.stuck as usize;
            failures.in_view_at_end += f.in_view_at_end as usize;
            failures.reached_decoy += f.reached_decoy as usize;
            failures.crashed += f.crashed as usize;
            final_distance_sum += f.final_distance as f64;
        }
        per_episode.push(r.episode);
    }
    for b in &mut buckets {
        b.success_rate = b.successes as f64 / b.episodes.max(1) as f64;
        b.right_share = b.frames_right as f64 / b.frames.max(1) as f64;
    }
    failures.mean_final_distance_m = final_distance_sum / failures.episodes.max(1) as f64;
    let frames = total.frames as usize;
    let mean_macs = total.mean_macs();
    let won: Vec<f64> = per_episode
        .iter()
        .filter(|e| e.success)
        .map(|e| e.steps as f64)
        .collect();
    let mean_success_steps = (!won.is_empty()).then(|| won.iter().sum::<f64>() / won.len() as f64);
    EvalReport {
        policy: match policy {
            ExitPolicy::Fixed(k) => format!("exit {}", k + 1),
            ExitPolicy::Criterion => "criterion".into(),
            ExitPolicy::All => "all".into(),
        },
        episodes,
        first_seed,
        successes,
        success_rate: successes as f64 / episodes.max(1) as f64,
        frames,
        right_share: right as f64 / frames.max(1) as f64,
        mean_exit: total.mean_exit(),
        exit_shares: total.exit_shares(n),
        mean_macs,
        compute_ratio: mean_macs / full_macs as f64,
        robot_compute_ratio: total.robot_macs as f64 / frames.max(1) as f64 / full_macs as f64,
        latency_ms: offramp_runtime::stats::Summary::of(&latency_ms),
        remote_frames: total.remote as usize,
        fallback_frames: total.fallback as usize,
        nonfinite_frames: total.nonfinite as usize,
        collisions,
        mean_success_steps,
        mean_success_seconds: mean_success_steps.map(|s| s * task.step_seconds() as f64),
        mean_abs_domega: per_episode.iter().map(|e| e.mean_abs_domega).sum::<f64>()
            / per_episode.len().max(1) as f64,
        by_difficulty: buckets,
        failures,
        per_episode,
    }
}

/// Rolls `thresholds` out with the criterion on `episodes` episodes from
/// `first_seed`, spread over `pipelines` ([`evaluate_on`]): one call of a
/// refinement search ([`crate::refine`]).
pub fn rollout(
    pipelines: &mut [Pipeline],
    task: &dyn Task,
    thresholds: &[f32],
    first_seed: u64,
    episodes: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Tally, EvalError> {
    for p in pipelines.iter_mut() {
        p.chain.set_thresholds(thresholds);
    }
    let r = evaluate_on(
        pipelines,
        task,
        first_seed,
        episodes,
        ExitPolicy::Criterion,
        progress,
    )?;
    let full_macs = pipelines.first().map_or(0, |p| p.chain.full_macs());
    Ok(Tally::of(&r, full_macs as f64))
}

/// Closed-loop results over some episodes, mergeable (common random numbers:
/// a candidate's episodes are extended, never redrawn).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub episodes: usize,
    pub successes: usize,
    pub frames: usize,
    /// Sum of per-frame MACs.
    pub macs: f64,
    /// MACs of the full model on one frame.
    pub full_macs: f64,
}

impl Tally {
    pub fn of(r: &EvalReport, full_macs: f64) -> Self {
        Self {
            episodes: r.episodes,
            successes: r.successes,
            frames: r.frames,
            macs: r.mean_macs * r.frames as f64,
            full_macs,
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.episodes += o.episodes;
        self.successes += o.successes;
        self.frames += o.frames;
        self.macs += o.macs;
        self.full_macs = o.full_macs;
    }

    pub fn success_rate(&self) -> f64 {
        self.successes as f64 / self.episodes.max(1) as f64
    }

    /// Mean compute per frame as a share of the full model.
    pub fn compute_ratio(&self) -> f64 {
        if self.frames == 0 || self.full_macs <= 0.0 {
            return 0.0;
        }
        self.macs / (self.frames as f64 * self.full_macs)
    }
}
