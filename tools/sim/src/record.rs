//! Recording demonstrations: the expert labels every frame while the robot
//! drives the expert's action plus noise (DART), so the data also covers the
//! states a slightly imperfect policy visits. Labels stay clean.
//!
//! A recording directory holds, for N frames in episode order:
//! `frames.npy` u8 [N, H, W, 3], `instructions.npy` i64 [N],
//! `actions.npy` f32 [N, 2] (expert v m/s, omega rad/s), `episodes.npy` i32 [N]
//! (episode index), `steps.npy` i32 [N], `difficulty.npy` f32 [N] (episode
//! difficulty), `in_view.npy` u8 [N] (target in the field of view), and
//! `meta.json` (configuration, seeds, expert success).

use crate::{npy, Rng, Sim, SimConfig, Twist, MAX_OMEGA, MAX_V};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub episodes: usize,
    /// Episode `i` uses seed `first_seed + i`.
    pub first_seed: u64,
    /// Standard deviation of the driving noise, as a share of the limits
    /// (scaled per episode by a random factor in [0, 1]).
    pub noise: f32,
    /// With a learner driving (DAgger), the share of steps the expert
    /// drives instead.
    pub expert_share: f32,
}

/// A learner that drives while the expert labels (DAgger): it sees the
/// rendered frame and the instruction, as on the robot.
pub trait Learner {
    /// A new episode starts (reset recurrent state).
    fn start(&mut self, sim: &Sim);
    /// The command for `frame`, told `instruction` with it (the episode's,
    /// or none after a memory task's cue: [`Sim::shown_instruction`]).
    fn act(&mut self, frame: &[u8], instruction: usize) -> Twist;
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub episodes: usize,
    pub frames: usize,
    pub first_seed: u64,
    /// Episodes the noisy expert completed.
    pub successes: usize,
    pub config: SimConfig,
}

/// Records `opts.episodes` episodes into `out`; `progress` gets each finished
/// episode's index.
pub fn record(
    cfg: &SimConfig,
    opts: &RecordOptions,
    out: &Path,
    mut learner: Option<&mut dyn Learner>,
    progress: &mut dyn FnMut(usize),
) -> Result<RecordSummary, RecordError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecordError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (mut frames, mut instr, mut actions, mut eps, mut steps, mut diff, mut in_view) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut successes = 0;
    for e in 0..opts.episodes {
        let seed = opts.first_seed + e as u64;
        let mut sim = Sim::new(cfg, seed);
        let mut noise = Rng::new(seed.wrapping_mul(31) ^ 0xDA27);
        let scale = opts.noise * noise.unit();
        let mut frame = vec![0u8; sim.frame_len()];
        let mut held = Twist::default();
        if let Some(l) = learner.as_deref_mut() {
            l.start(&sim);
        }
        loop {
            sim.render(&mut frame);
            let label = sim.expert();
            frames.extend_from_slice(&frame);
            instr.push(offramp_runtime::exit_chain::instruction_code(
                sim.shown_instruction(),
            ));
            actions.extend_from_slice(&[label.v, label.omega]);
            eps.push(e as i32);
            steps.push(sim.steps as i32);
            diff.push(sim.world.difficulty);
            in_view.push(sim.target_in_view() as u8);
            // Noise held for a few steps, like a real policy's drift.
            if sim.steps % 4 == 0 {
                held = Twist {
                    v: scale * MAX_V * noise.normal(),
                    omega: scale * MAX_OMEGA * noise.normal(),
                };
            }
            let base = match learner.as_deref_mut() {
                Some(l) => {
                    let a = l.act(&frame, sim.shown_instruction());
                    if noise.unit() < opts.expert_share {
                        label
                    } else {
                        a
                    }
                }
                None => label,
            };
            let driven = Twist {
                v: (base.v + held.v).clamp(-0.1, MAX_V),
                omega: (base.omega + held.omega).clamp(-MAX_OMEGA, MAX_OMEGA),
            };
            let o = sim.step(driven.to_wheels(cfg.track_width));
            if o.done {
                successes += o.success as usize;
                break;
            }
        }
        progress(e);
    }
    let n = instr.len();
    let (h, w) = (cfg.image_height, cfg.image_width);
    type Writer<'a> = Box<dyn Fn(&Path) -> std::io::Result<()> + 'a>;
    let files: [(&str, Writer); 7] = [
        (
            "frames.npy",
            Box::new(|p| npy::write(p, &[n, h, w, 3], &frames)),
        ),
        (
            "instructions.npy",
            Box::new(|p| npy::write(p, &[n], &instr)),
        ),
        (
            "actions.npy",
            Box::new(|p| npy::write(p, &[n, 2], &actions)),
        ),
        ("episodes.npy", Box::new(|p| npy::write(p, &[n], &eps))),
        ("steps.npy", Box::new(|p| npy::write(p, &[n], &steps))),
        ("difficulty.npy", Box::new(|p| npy::write(p, &[n], &diff))),
        ("in_view.npy", Box::new(|p| npy::write(p, &[n], &in_view))),
    ];
    for (name, write) in files {
        let p = out.join(name);
        write(&p).map_err(io(&p))?;
    }
    let summary = RecordSummary {
        episodes: opts.episodes,
        frames: n,
        first_seed: opts.first_seed,
        successes,
        config: cfg.clone(),
    };
    let meta = out.join("meta.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| RecordError::Io {
        path: meta.clone(),
        source: e.into(),
    })?;
    std::fs::write(&meta, text).map_err(io(&meta))?;
    Ok(summary)
}
