//! The simulator as a camera for the runtime: a capture thread renders each
//! frame, then steps the physics with the command the runtime last gave
//! ([`CommandSlot`]), episode after episode. Closed loop, in real time.

use crate::{Sim, SimConfig, Twist};
use offramp_runtime::camera::{FrameMeta, Latest, Source};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The latest command the runtime wants the simulated robot to drive.
#[derive(Default)]
pub struct CommandSlot(Mutex<Twist>);

impl CommandSlot {
    pub fn set(&self, t: Twist) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
    pub fn get(&self) -> Twist {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the simulated camera counted: finished episodes and successes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SimStats {
    pub episodes: u64,
    pub successes: u64,
}

/// The simulator camera; keep [`SimCamera::commands`] and
/// [`SimCamera::stats`] before handing it to `camera::start`.
pub struct SimCamera {
    cfg: SimConfig,
    first_seed: u64,
    pub commands: Arc<CommandSlot>,
    pub stats: Arc<Mutex<SimStats>>,
}

impl SimCamera {
    /// Episodes from `first_seed` on, one seed each.
    pub fn new(cfg: &SimConfig, first_seed: u64) -> Self {
        Self {
            cfg: cfg.clone(),
            first_seed,
            commands: Arc::default(),
            stats: Arc::default(),
        }
    }
}

impl Source for SimCamera {
    fn views(&self) -> offramp_runtime::camera::Views {
        (self.cfg.image_width, self.cfg.image_height).into()
    }

    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, period: Duration) {
        let cfg = &self.cfg;
        let mut seed = self.first_seed;
        let mut sim = Sim::new(cfg, seed);
        let mut new_episode = true;
        let mut seq = 0;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let meta = FrameMeta {
                seq,
                captured: Some(Instant::now()),
                instruction: sim.shown_instruction(),
                new_episode,
            };
            latest.publish(meta, |buf| sim.render(buf));
            seq += 1;
            new_episode = false;
            next += period;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            // The command in force over the last period moves the robot.
            let o = sim.step(self.commands.get().to_wheels(cfg.track_width));
            if o.done {
                let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                s.episodes += 1;
                s.successes += o.success as u64;
                seed += 1;
                sim = Sim::new(cfg, seed);
                new_episode = true;
            }
        }
        latest.closed.store(true, Ordering::Relaxed);
    }
}
