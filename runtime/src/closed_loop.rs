//! The runtime driving the simulator: camera frame → preprocess → exit chain
//! → (v, omega) → wheel speeds → physics, episode after episode. Each frame's
//! action is also scored against the privileged expert's action at the same
//! state, which says how often an exit already "gets the frame right".

use crate::exit_chain::{ExitChain, ExitChainError, ExitPolicy, MAX_EXITS};
use crate::preprocess::{PreprocessError, Preprocessor};
use offramp_sim::{Sim, SimConfig, Twist};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClosedLoopError {
    #[error(transparent)]
    Chain(#[from] ExitChainError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
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
    pub nonfinite_frames: usize,
    pub collisions: usize,
    pub by_difficulty: Vec<Bucket>,
    pub failures: Failures,
}

/// Why the failed episodes failed (every failure is a timeout: the step
/// limit ran out before the robot touched the target).
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
    /// Mean distance to the target at the end, metres.
    pub mean_final_distance_m: f64,
}

/// Runs `episodes` episodes from `first_seed` with `policy`.
pub fn evaluate(
    chain: &mut ExitChain,
    pre: &mut Preprocessor,
    cfg: &SimConfig,
    first_seed: u64,
    episodes: usize,
    policy: ExitPolicy,
    progress: &mut dyn FnMut(),
) -> Result<EvalReport, ClosedLoopError> {
    let mut buckets: Vec<Bucket> = BUCKETS
        .iter()
        .map(|(n, _, _)| Bucket {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    let mut exit_counts = [0usize; MAX_EXITS];
    let (mut frames, mut right, mut successes, mut nonfinite, mut collisions) = (0, 0, 0, 0, 0);
    let (mut exit_sum, mut macs_sum) = (0u64, 0u64);
    let mut failures = Failures::default();
    let mut final_distance_sum = 0.0f64;
    let mut frame = Vec::new();
    for e in 0..episodes {
        let seed = first_seed + e as u64;
        let mut sim = Sim::new(cfg, seed);
        frame.resize(sim.frame_len(), 0);
        let b = BUCKETS
            .iter()
            .position(|(_, lo, hi)| (*lo..*hi).contains(&sim.world.difficulty))
            .unwrap_or(BUCKETS.len() - 1);
        chain.reset();
        chain.set_instruction(sim.instruction() as usize);
        let mut seen = false;
        loop {
            seen |= sim.target_in_view();
            sim.render(&mut frame);
            pre.run(&frame, chain.image_mut())?;
            let o = chain.step(policy)?;
            let act = Twist::from_action(chain.action());
            let expert = sim.expert();
            let ok = (act.v - expert.v).abs() <= RIGHT_V
                && (act.omega - expert.omega).abs() <= RIGHT_OMEGA;
            frames += 1;
            right += ok as usize;
            buckets[b].frames += 1;
            buckets[b].frames_right += ok as usize;
            exit_counts[o.exit] += 1;
            exit_sum += o.exit as u64;
            macs_sum += chain.frame_macs(&o);
            nonfinite += o.nonfinite as usize;
            let out = sim.step(act.to_wheels(cfg.track_width));
            if out.done {
                successes += out.success as usize;
                buckets[b].episodes += 1;
                buckets[b].successes += out.success as usize;
                collisions += sim.collisions;
                if !out.success {
                    let d = sim.target_distance();
                    failures.episodes += 1;
                    failures.never_in_view += !seen as usize;
                    failures.ended_near += (d < 1.0) as usize;
                    failures.stuck += (sim.collisions * 4 >= sim.steps) as usize;
                    failures.in_view_at_end += sim.target_in_view() as usize;
                    final_distance_sum += d as f64;
                }
                break;
            }
        }
        progress();
    }
    for b in &mut buckets {
        b.success_rate = b.successes as f64 / b.episodes.max(1) as f64;
        b.right_share = b.frames_right as f64 / b.frames.max(1) as f64;
    }
    failures.mean_final_distance_m = final_distance_sum / failures.episodes.max(1) as f64;
    let n = chain.exits();
    let mean_macs = macs_sum as f64 / frames.max(1) as f64;
    Ok(EvalReport {
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
        mean_exit: exit_sum as f64 / frames.max(1) as f64 + 1.0,
        exit_shares: exit_counts[..n]
            .iter()
            .map(|c| *c as f64 / frames.max(1) as f64)
            .collect(),
        mean_macs,
        compute_ratio: mean_macs / chain.full_macs() as f64,
        nonfinite_frames: nonfinite,
        collisions,
        by_difficulty: buckets,
        failures,
    })
}

/// Rolls `thresholds` out with the criterion on `episodes` episodes from
/// `first_seed`: one call of a refinement search ([`crate::refine`]).
pub fn rollout(
    chain: &mut ExitChain,
    pre: &mut Preprocessor,
    cfg: &SimConfig,
    thresholds: &[f32],
    first_seed: u64,
    episodes: usize,
    progress: &mut dyn FnMut(),
) -> Result<crate::refine::Tally, ClosedLoopError> {
    chain.set_thresholds(thresholds);
    let r = evaluate(
        chain,
        pre,
        cfg,
        first_seed,
        episodes,
        ExitPolicy::Criterion,
        progress,
    )?;
    Ok(crate::refine::Tally::of(&r, chain.full_macs() as f64))
}
