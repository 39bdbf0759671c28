//! Frames held in memory, for the benches and the profile: no capture thread
//! competes with the engines they measure.

use offramp_runtime::camera::Replay;
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use std::time::Instant;

/// A frame held in memory.
#[derive(Debug, Clone)]
pub struct Frame {
    /// HWC RGB, the views end to end.
    pub pixels: Vec<u8>,
    /// Index into the model's instructions.
    pub instruction: usize,
    /// The first frame of an episode.
    pub new_episode: bool,
}

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
        out.push(Frame {
            pixels: f,
            instruction: sim.instruction() as usize,
            new_episode: new,
        });
        new = false;
        if sim.step(sim.expert().to_wheels(cfg.track_width)).done {
            seed += 1;
            sim = Sim::new(cfg, seed);
            new = true;
        }
    }
    out
}

/// The first `n` frames of a recording (all, if it has fewer).
pub fn from_replay(r: &Replay, n: usize) -> Vec<Frame> {
    let len = r.frame_len();
    let count = (r.frames.len() / len).min(n);
    (0..count)
        .map(|i| Frame {
            pixels: r.frames[i * len..(i + 1) * len].to_vec(),
            instruction: r.instructions[i],
            new_episode: i == 0 || r.episodes[i] != r.episodes[i - 1],
        })
        .collect()
}

/// The pipeline on one held frame (a new episode starts where it says so).
pub fn run_frame(
    p: &mut Pipeline,
    f: &Frame,
    policy: ExitPolicy,
    deadline: Option<Instant>,
) -> anyhow::Result<FrameOutcome> {
    if f.new_episode {
        p.begin_episode(f.instruction)?;
    }
    Ok(p.infer(&f.pixels, policy, deadline)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_held_starts_episodes_where_it_does() {
        // Four 1×1 frames in episodes 0, 0, 1, 1.
        let r = Replay {
            frames: (0..12).collect(),
            instructions: vec![3, 3, 5, 5],
            episodes: vec![0, 0, 1, 1],
            views: (1, 1).into(),
        };
        let held = from_replay(&r, 3);
        assert_eq!(held.len(), 3, "at most as many as asked");
        assert_eq!(held[2].pixels, [6, 7, 8]);
        assert_eq!(
            held.iter()
                .map(|f| (f.instruction, f.new_episode))
                .collect::<Vec<_>>(),
            [(3, true), (3, false), (5, true)]
        );
        assert_eq!(from_replay(&r, 10).len(), 4, "all, if fewer");
    }
}
