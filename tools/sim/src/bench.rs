//! The simulator's own speed: render and physics throughput, single
//! threaded, with the expert driving (`offramp sim bench`).

use crate::{Sim, SimConfig};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct SimBench {
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    pub render_fps: f64,
    pub step_fps: f64,
    pub render_and_step_fps: f64,
    pub expert_success_rate: f64,
}

/// Renders and steps `frames` frames, episode after episode from seed 0.
pub fn bench(cfg: &SimConfig, frames: usize) -> SimBench {
    let mut sim = Sim::new(cfg, 0);
    let mut frame = vec![0u8; sim.frame_len()];
    let (mut render_s, mut step_s) = (0.0f64, 0.0f64);
    let (mut episodes, mut successes, mut seed) = (0usize, 0usize, 0u64);
    for _ in 0..frames {
        let t0 = Instant::now();
        sim.render(&mut frame);
        let t1 = Instant::now();
        let cmd = sim.expert().to_wheels(cfg.track_width);
        let o = sim.step(cmd);
        let t2 = Instant::now();
        render_s += (t1 - t0).as_secs_f64();
        step_s += (t2 - t1).as_secs_f64();
        if o.done {
            episodes += 1;
            successes += o.success as usize;
            seed += 1;
            sim = Sim::new(cfg, seed);
        }
        std::hint::black_box(&frame);
    }
    SimBench {
        width: cfg.image_width,
        height: cfg.image_height,
        frames,
        render_fps: frames as f64 / render_s,
        step_fps: frames as f64 / step_s,
        render_and_step_fps: frames as f64 / (render_s + step_s),
        expert_success_rate: successes as f64 / episodes.max(1) as f64,
    }
}
