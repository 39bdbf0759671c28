//! Frames held in memory, for the benches and the profile: no capture thread
//! competes with the engines they measure.

use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use std::time::Instant;

/// A frame held in memory: HWC RGB, instruction, first of an episode.
pub type Frame = (Vec<u8>, usize, bool);

/// Frames of closed-loop episodes with the expert driving.
#[cfg(feature = "sim")]
pub fn stream(cfg: &offramp_sim::SimConfig, n: usize) -> Vec<Frame> {
    use offramp_sim::Sim;
    let mut out = Vec::with_capacity(n);
    let mut seed = 0;
    let mut sim = Sim::new(cfg, seed);
    let mut new = true;
    while out.len() < n {
        let mut f = vec![0u8; sim.frame_len()];
        sim.render(&mut f);
        out.push((f, sim.instruction() as usize, new));
        new = false;
        if sim.step(sim.expert().to_wheels(cfg.track_width)).done {
            seed += 1;
            sim = Sim::new(cfg, seed);
            new = true;
        }
    }
    out
}

/// The pipeline on one held frame (a new episode starts where it says so).
pub fn run_frame(
    p: &mut Pipeline,
    f: &Frame,
    policy: ExitPolicy,
    deadline: Option<Instant>,
) -> anyhow::Result<FrameOutcome> {
    if f.2 {
        p.begin_episode(f.1)?;
    }
    Ok(p.infer(&f.0, policy, deadline)?)
}
