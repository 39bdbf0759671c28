//! offramp's digital twin: a differential-drive robot in a room of coloured
//! landmarks, seen through a ray-cast forward camera, told which landmark to
//! reach. Wheel commands are in the firmware's units (m/s per wheel) and go
//! through the same speed clamp and slew limit.
//!
//! * [`World`]: one episode's room, drawn from its seed (difficulty, clutter,
//!   decoys, lighting, noise).
//! * [`Camera`]: the software renderer.
//! * [`Sim`]: an episode in progress: render, expert action, step.
//! * [`record`]: episodes to `.npy` files for training (the runtime's replay
//!   format, [`offramp_runtime::npy`]).
//! * [`learner`]: the runtime's run loop as a DAgger learner for
//!   [`record`]; [`bench`]: the simulator's own throughput.
//! * [`camera`]: the simulator as a camera source for the runtime, closed
//!   loop: it takes the runtime's command back.

pub mod bench;
pub mod camera;
pub mod learner;
pub mod record;

pub use offramp_runtime::npy;
mod render;
mod rng;
mod world;

pub use render::Camera;
pub use rng::Rng;
pub use world::{ConfigError, Cylinder, Kind, SimConfig, World, LANDMARK_NAMES};

use offramp_runtime::closed_loop;
use std::f32::consts::PI;

pub use offramp_runtime::twist::{Limits, Twist, Wheels};

/// Largest commands the expert gives (and the model learns).
pub const MAX_V: f32 = 0.5;
pub const MAX_OMEGA: f32 = 2.0;
/// The same as the limits every command to the simulated robot is held
/// inside ([`Twist::from_action`]).
pub const LIMITS: Limits = Limits {
    v: MAX_V,
    omega: MAX_OMEGA,
};
/// How close to touching (metres between surfaces) counts as reaching a
/// landmark.
pub const REACH: f32 = 0.12;

pub use offramp_runtime::closed_loop::StepOutcome;

fn wrap(a: f32) -> f32 {
    (a + PI).rem_euclid(2.0 * PI) - PI
}

/// One episode in progress.
pub struct Sim {
    pub cfg: SimConfig,
    pub world: World,
    pub seed: u64,
    /// x, y (m), heading (rad).
    pub pose: (f32, f32, f32),
    /// Wheel speeds after the slew limit.
    pub wheels: Wheels,
    pub steps: usize,
    pub collisions: usize,
    outcome: StepOutcome,
    camera: Camera,
    noise: Rng,
}

impl Sim {
    /// What the run loop is told with the frame rendered now: the step,
    /// the episode's instruction, and whether the episode starts with it.
    pub fn frame_meta(&self) -> offramp_runtime::camera::FrameMeta {
        offramp_runtime::camera::FrameMeta {
            seq: self.steps as u64,
            captured: None,
            instruction: self.shown_instruction(),
            new_episode: self.steps == 0,
        }
    }

    pub fn new(cfg: &SimConfig, seed: u64) -> Self {
        let world = World::generate(cfg, seed);
        Self {
            cfg: cfg.clone(),
            pose: world.start,
            world,
            seed,
            wheels: Wheels::default(),
            steps: 0,
            collisions: 0,
            outcome: StepOutcome::default(),
            camera: Camera::new(cfg),
            noise: Rng::new(seed ^ 0xC0FF_EE00),
        }
    }

    pub fn frame_len(&self) -> usize {
        self.camera.frame_len()
    }

    /// The instructed landmark, 0..4 (see [`LANDMARK_NAMES`]).
    pub fn instruction(&self) -> u8 {
        self.world.instruction
    }

    /// The instruction the robot is told with the frame rendered now: the
    /// episode's, or, in the memory task, none once `cue_steps` frames have
    /// gone ([`offramp_runtime::exit_chain::NO_INSTRUCTION`]).
    pub fn shown_instruction(&self) -> usize {
        match self.cfg.cue_steps {
            Some(n) if self.steps >= n => offramp_runtime::exit_chain::NO_INSTRUCTION,
            _ => self.instruction() as usize,
        }
    }

    pub fn outcome(&self) -> StepOutcome {
        self.outcome
    }

    /// Renders the current view into `out` (HWC RGB, `frame_len` bytes).
    pub fn render(&mut self, out: &mut [u8]) {
        self.camera
            .render(&self.world, self.pose, &mut self.noise, out);
    }

    fn target(&self) -> Cylinder {
        self.world.cylinders[self.world.target]
    }

    /// Distance from the robot's centre to the target's axis, metres.
    pub fn target_distance(&self) -> f32 {
        let t = self.target();
        t.distance_to(self.pose.0, self.pose.1)
    }

    /// Bearing of the target from the heading, radians, positive left.
    pub fn target_bearing(&self) -> f32 {
        let t = self.target();
        wrap((t.y - self.pose.1).atan2(t.x - self.pose.0) - self.pose.2)
    }

    /// Whether the target is inside the camera's field of view.
    pub fn target_in_view(&self) -> bool {
        self.target_bearing().abs() < self.cfg.fov_deg.to_radians() / 2.0
    }

    /// The privileged expert: knows the pose and the room. It behaves only in
    /// ways the camera can explain: when the target is out of view it turns
    /// left on the spot (a rule a policy can learn); in view, it drives to it,
    /// detouring around whatever stands on the straight line.
    pub fn expert(&self) -> Twist {
        let half_fov = self.cfg.fov_deg.to_radians() / 2.0;
        let b = self.target_bearing();
        if b.abs() > half_fov * 0.85 {
            return Twist {
                v: 0.0,
                omega: MAX_OMEGA,
            };
        }
        let (px, py, th) = self.pose;
        let t = self.target();
        let (tx, ty) = (t.x - px, t.y - py);
        let dist = (tx * tx + ty * ty).sqrt();
        let (ux, uy) = (tx / dist, ty / dist);
        let clearance = self.cfg.robot_radius + 0.2;
        let mut aim = (t.x, t.y);
        let mut nearest = f32::INFINITY;
        for (i, c) in self.world.cylinders.iter().enumerate() {
            if i == self.world.target {
                continue;
            }
            let (cx, cy) = (c.x - px, c.y - py);
            let s = cx * ux + cy * uy;
            let lateral = cx * uy - cy * ux;
            if s > 0.0 && s < dist && lateral.abs() < c.radius + clearance && s < nearest {
                nearest = s;
                // Pass on the side the obstacle leaves more room.
                let side = if lateral >= 0.0 { -1.0 } else { 1.0 };
                let off = c.radius + clearance + 0.1;
                aim = (c.x + side * uy * off, c.y - side * ux * off);
            }
        }
        let ba = wrap((aim.1 - py).atan2(aim.0 - px) - th);
        let omega = (3.0 * ba).clamp(-MAX_OMEGA, MAX_OMEGA);
        let align = ba.cos().max(0.0).powi(3);
        let v = MAX_V * align * ((dist - 0.3) / 0.6).clamp(0.4, 1.0);
        Twist { v, omega }
    }

    /// Whether a robot at (x, y) touches anything but the target, and
    /// whether it touches the target (success).
    fn contact(&self, x: f32, y: f32) -> (bool, bool) {
        let r = self.cfg.robot_radius;
        let size = self.world.size;
        let mut hit = x < r || y < r || x > size - r || y > size - r;
        let mut success = false;
        for (i, c) in self.world.cylinders.iter().enumerate() {
            if i == self.world.target {
                success = self.within_reach(c, x, y);
            } else if c.distance_to(x, y) < c.radius + r {
                hit = true;
            }
        }
        (hit, success)
    }

    /// Whether a robot at (x, y) is as close to `c` as reaching a landmark
    /// takes.
    fn within_reach(&self, c: &Cylinder, x: f32, y: f32) -> bool {
        c.distance_to(x, y) < c.radius + self.cfg.robot_radius + REACH
    }

    /// Whether a robot at (x, y) is as close to a decoy as reaching the
    /// target takes.
    fn at_decoy(&self, x: f32, y: f32) -> bool {
        self.world
            .cylinders
            .iter()
            .any(|c| matches!(c.kind, Kind::Decoy(_)) && self.within_reach(c, x, y))
    }

    /// Unit normals (pointing at the robot) of everything a robot at (x, y)
    /// touches; at most 4 walls and a few posts.
    fn contact_normals(&self, x: f32, y: f32) -> impl Iterator<Item = (f32, f32)> + '_ {
        let r = self.cfg.robot_radius;
        let size = self.world.size;
        let walls = [
            (x < r, (1.0, 0.0)),
            (y < r, (0.0, 1.0)),
            (x > size - r, (-1.0, 0.0)),
            (y > size - r, (0.0, -1.0)),
        ];
        walls.into_iter().filter(|(t, _)| *t).map(|(_, n)| n).chain(
            self.world.cylinders.iter().filter_map(move |c| {
                let (ox, oy) = (x - c.x, y - c.y);
                let d = (ox * ox + oy * oy).sqrt();
                (d < c.radius + r && d > 1e-6).then(|| (ox / d, oy / d))
            }),
        )
    }

    /// Moves a robot at (x, y) out of whatever it overlaps, to the surface:
    /// a step along a post's tangent dips into the post by about
    /// step² / 2·radius, which would otherwise pin a robot that should slide
    /// past. A robot wedged between two things stays overlapping (and so
    /// stays where it was).
    fn push_out(&self, mut x: f32, mut y: f32) -> (f32, f32) {
        let r = self.cfg.robot_radius;
        let size = self.world.size;
        let eps = 1e-4;
        for _ in 0..3 {
            x = x.clamp(r + eps, size - r - eps);
            y = y.clamp(r + eps, size - r - eps);
            for (i, c) in self.world.cylinders.iter().enumerate() {
                if i == self.world.target {
                    continue;
                }
                let (ox, oy) = (x - c.x, y - c.y);
                let d = (ox * ox + oy * oy).sqrt();
                if d < c.radius + r && d > 1e-6 {
                    let k = (c.radius + r + eps) / d;
                    (x, y) = (c.x + ox * k, c.y + oy * k);
                }
            }
        }
        (x, y)
    }

    /// Applies one control period of `cmd` (clamped and slew-limited like the
    /// firmware does), moves the robot, and checks for collision and success.
    pub fn step(&mut self, cmd: Wheels) -> StepOutcome {
        if self.outcome.done {
            return self.outcome;
        }
        let cfg = &self.cfg;
        let dv = cfg.max_wheel_accel * cfg.dt;
        let finite = |w: f32| if w.is_finite() { w } else { 0.0 };
        // The firmware's speed limit, which keeps the turn, then its slew.
        let ((left, right), _) =
            offramp_control::limit_wheels(finite(cmd.left), finite(cmd.right), cfg.max_wheel_speed);
        let slew = |cur: f32, want: f32| cur + (want - cur).clamp(-dv, dv);
        self.wheels = Wheels {
            left: slew(self.wheels.left, left),
            right: slew(self.wheels.right, right),
        };
        let v = (self.wheels.left + self.wheels.right) / 2.0;
        let omega = (self.wheels.right - self.wheels.left) / cfg.track_width;
        let (x, y, th) = self.pose;
        let mid = th + omega * cfg.dt / 2.0;
        let (nx, ny) = (x + v * cfg.dt * mid.cos(), y + v * cfg.dt * mid.sin());
        let nth = wrap(th + omega * cfg.dt);
        let (hit, success) = self.contact(nx, ny);
        let crashed = hit && !success && cfg.collision_ends_episode;
        if crashed {
            // Stopped at the contact: no slide, no recovery.
            self.pose = (x, y, th);
            self.wheels = Wheels::default();
            self.collisions += 1;
        } else if hit && !success {
            // Slide along what was hit (a bumper against a wall or a post):
            // drop the motion into every touched surface, keep the rest.
            let (mut tx, mut ty) = (nx - x, ny - y);
            for (cx, cy) in self.contact_normals(nx, ny) {
                let dot = tx * cx + ty * cy;
                if dot < 0.0 {
                    tx -= dot * cx;
                    ty -= dot * cy;
                }
            }
            let (sx, sy) = self.push_out(x + tx, y + ty);
            if self.contact(sx, sy).0 {
                self.pose = (x, y, nth);
                self.wheels = Wheels::default();
            } else {
                self.pose = (sx, sy, nth);
            }
            self.collisions += 1;
        } else {
            self.pose = (nx, ny, nth);
        }
        let collided = hit;
        let reached_decoy =
            !success && self.cfg.decoy_ends_episode && self.at_decoy(self.pose.0, self.pose.1);
        self.steps += 1;
        self.outcome = StepOutcome {
            done: success || reached_decoy || crashed || self.steps >= self.cfg.max_steps,
            success,
            collided,
            reached_decoy,
            crashed,
        };
        self.outcome
    }
}

/// The simulator as a closed-loop task: calibration and evaluation see it
/// through [`closed_loop::Task`], never by name.
impl closed_loop::Task for SimConfig {
    fn episode(&self, seed: u64) -> Box<dyn closed_loop::Episode + '_> {
        Box::new(Sim::new(self, seed))
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    fn step_seconds(&self) -> f32 {
        self.dt
    }
}

impl closed_loop::Episode for Sim {
    fn frame_len(&self) -> usize {
        Sim::frame_len(self)
    }

    fn render(&mut self, out: &mut [u8]) {
        Sim::render(self, out)
    }

    fn frame_meta(&self) -> offramp_runtime::camera::FrameMeta {
        Sim::frame_meta(self)
    }

    fn step(&mut self, twist: Twist) -> StepOutcome {
        let wheels = twist.to_wheels(self.cfg.track_width);
        Sim::step(self, wheels)
    }

    fn expert(&self) -> Twist {
        Sim::expert(self)
    }

    fn difficulty(&self) -> f32 {
        self.world.difficulty
    }

    fn target_in_view(&self) -> bool {
        Sim::target_in_view(self)
    }

    fn target_distance(&self) -> f32 {
        Sim::target_distance(self)
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn collisions(&self) -> usize {
        self.collisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::LANDMARK_RADIUS;

    #[test]
    fn expert_reaches_the_target() {
        let cfg = SimConfig::default();
        let mut ok = 0;
        let n = 200;
        for seed in 0..n {
            let mut sim = Sim::new(&cfg, seed);
            loop {
                let o = sim.step(sim.expert().to_wheels(cfg.track_width));
                if o.done {
                    ok += o.success as usize;
                    break;
                }
            }
        }
        assert!(ok >= n as usize * 97 / 100, "expert succeeded {ok}/{n}");
    }

    /// The memory task: the instruction is shown with the first
    /// `cue_steps` frames only; the expert still drives to the target.
    #[test]
    fn the_memory_task_shows_the_instruction_with_its_cue_only() {
        let cfg = SimConfig {
            cue_steps: Some(3),
            ..SimConfig::default()
        };
        let mut sim = Sim::new(&cfg, 5);
        let target = sim.instruction() as usize;
        let mut shown = Vec::new();
        for _ in 0..6 {
            shown.push(sim.frame_meta().instruction);
            sim.step(sim.expert().to_wheels(cfg.track_width));
        }
        let none = offramp_runtime::exit_chain::NO_INSTRUCTION;
        assert_eq!(shown, [target, target, target, none, none, none]);
        assert_eq!(
            Sim::new(&SimConfig::default(), 5).shown_instruction(),
            target
        );
        // The config file says so.
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sim/memory.toml"),
        )
        .unwrap();
        let from_file: SimConfig = toml::from_str(&text).unwrap();
        assert_eq!(from_file.cue_steps, Some(10));
        // A recording keeps it: -1 in instructions.npy, none on replay.
        let dir = tempfile::tempdir().unwrap();
        let opts = record::RecordOptions {
            episodes: 1,
            first_seed: 5,
            noise: 0.0,
            expert_share: 1.0,
        };
        record::record(&cfg, &opts, dir.path(), None, &mut |_| {}).unwrap();
        let r = offramp_runtime::camera::load_replay(dir.path()).unwrap();
        assert_eq!(r.instructions[..5], [target, target, target, none, none]);
    }

    /// Drives straight ahead at 0.5 m/s until the episode ends, at most 30
    /// steps; the last step's outcome.
    fn drive_ahead(sim: &mut Sim) -> StepOutcome {
        let mut last = StepOutcome::default();
        for _ in 0..30 {
            last = sim.step(Wheels {
                left: 0.5,
                right: 0.5,
            });
            if last.done {
                break;
            }
        }
        last
    }

    #[test]
    fn reaching_a_decoy_ends_the_episode_only_where_configured() {
        for ends in [false, true] {
            let cfg = SimConfig {
                decoy_ends_episode: ends,
                ..SimConfig::default()
            };
            let mut sim = Sim::new(&cfg, 1);
            sim.world.cylinders.clear();
            for (x, kind) in [(4.5, Kind::Landmark(0)), (2.5, Kind::Decoy(0))] {
                sim.world.cylinders.push(Cylinder {
                    x,
                    y: 1.0,
                    radius: LANDMARK_RADIUS,
                    height: 0.5,
                    colour: [0.0; 3],
                    kind,
                });
            }
            sim.world.target = 0;
            // Heading +x straight at the decoy, 0.8 m away.
            sim.pose = (1.7, 1.0, 0.0);
            let last = drive_ahead(&mut sim);
            assert!(!last.success);
            assert_eq!(last.reached_decoy, ends, "decoy_ends_episode = {ends}");
            assert_eq!(last.done, ends, "decoy_ends_episode = {ends}");
            if ends {
                // It ended on reaching the decoy, before pressing into it.
                let d = sim.pose.0 - 2.5;
                assert!(d.abs() < LANDMARK_RADIUS + cfg.robot_radius + REACH, "{d}");
                assert_eq!(
                    sim.step(Wheels::default()),
                    last,
                    "an ended episode stays ended"
                );
            } else {
                assert!(sim.collisions > 0, "a decoy is an obstacle");
            }
        }
    }

    #[test]
    fn touching_a_post_ends_the_episode_only_where_configured() {
        for ends in [false, true] {
            let cfg = SimConfig {
                collision_ends_episode: ends,
                ..SimConfig::default()
            };
            let mut sim = Sim::new(&cfg, 1);
            sim.world.cylinders.retain(|c| c.kind == Kind::Landmark(0));
            sim.world.target = 0;
            sim.world.cylinders[0].x = 4.5;
            sim.world.cylinders[0].y = 4.5;
            sim.world.cylinders.push(Cylinder {
                x: 2.5,
                y: 1.0,
                radius: 0.12,
                height: 0.7,
                colour: [100.0; 3],
                kind: Kind::Pillar,
            });
            // Heading +x straight at the post, 0.8 m away.
            sim.pose = (1.7, 1.0, 0.0);
            let last = drive_ahead(&mut sim);
            assert!(!last.success);
            assert_eq!(last.crashed, ends, "collision_ends_episode = {ends}");
            assert_eq!(last.done, ends, "collision_ends_episode = {ends}");
            assert!(last.collided && sim.collisions > 0);
            if ends {
                assert_eq!(sim.collisions, 1, "it stopped at the first contact");
                assert_eq!(sim.wheels, Wheels::default());
                let d = ((sim.pose.0 - 2.5).powi(2) + (sim.pose.1 - 1.0).powi(2)).sqrt();
                assert!(d >= 0.12 + cfg.robot_radius, "{d}: inside the post");
            }
        }
    }

    #[test]
    fn a_robot_slides_past_a_post_it_grazes() {
        let cfg = SimConfig::default();
        let mut sim = Sim::new(&cfg, 1);
        sim.world.cylinders.clear();
        for (x, y) in [(4.5, 4.5), (2.5, 2.5)] {
            sim.world.cylinders.push(Cylinder {
                x,
                y,
                radius: 0.15,
                height: 0.5,
                colour: [0.0; 3],
                kind: Kind::Landmark(0),
            });
        }
        sim.world.target = 0;
        // Heading +x, the post 8 degrees ahead of abeam on the right,
        // touching: the bumper meets it at a glancing angle.
        let reach = 0.15 + cfg.robot_radius;
        let a = (90.0f32 - 8.0).to_radians();
        sim.pose = (2.5 - reach * a.cos(), 2.5 + reach * a.sin(), 0.0);
        let x0 = sim.pose.0;
        for _ in 0..20 {
            sim.step(Wheels {
                left: 0.5,
                right: 0.5,
            });
        }
        assert!(sim.collisions > 0, "the robot never touched the post");
        assert!(
            sim.pose.0 > x0 + 0.5,
            "pinned at the post: moved {} m",
            sim.pose.0 - x0
        );
    }

    #[test]
    fn walls_stop_the_robot() {
        let cfg = SimConfig::default();
        let mut sim = Sim::new(&cfg, 1);
        sim.world.cylinders.clear();
        sim.world.cylinders.push(Cylinder {
            x: 4.5,
            y: 4.5,
            radius: 0.1,
            height: 0.5,
            colour: [0.0; 3],
            kind: Kind::Landmark(0),
        });
        sim.world.target = 0;
        sim.pose = (2.5, 1.0, -PI / 2.0);
        for _ in 0..40 {
            sim.step(Wheels {
                left: 1.0,
                right: 1.0,
            });
        }
        assert!(sim.pose.1 >= cfg.robot_radius - 1e-4, "{:?}", sim.pose);
        assert!(sim.collisions > 0);
    }

    #[test]
    fn the_camera_sees_the_target_where_it_is() {
        let cfg = SimConfig::default();
        let mut sim = Sim::new(&cfg, 5);
        let t = sim.world.cylinders[sim.world.target];
        // Stand 1.5 m in front of the target, facing it.
        sim.pose = (t.x - 1.5f32.min(t.x - 0.3), t.y, 0.0);
        sim.world.noise_sigma = 0.0;
        let mut frame = vec![0u8; sim.frame_len()];
        sim.render(&mut frame);
        let (w, h) = (cfg.image_width, cfg.image_height);
        let centre = ((h / 2) * w + w / 2) * 3;
        let px = &frame[centre..centre + 3];
        let want = world::LANDMARK_COLOURS[sim.world.instruction as usize];
        let dominant = |c: &[f32; 3]| (0..3).max_by(|&a, &b| c[a].total_cmp(&c[b])).unwrap();
        let got = [px[0] as f32, px[1] as f32, px[2] as f32];
        assert_eq!(dominant(&got), dominant(&want), "pixel {px:?} vs {want:?}");
    }

    #[test]
    fn nan_commands_stop_the_wheels() {
        let cfg = SimConfig::default();
        let mut sim = Sim::new(&cfg, 2);
        sim.step(Wheels {
            left: 0.5,
            right: 0.5,
        });
        for _ in 0..5 {
            sim.step(Wheels {
                left: f32::NAN,
                right: f32::INFINITY,
            });
        }
        assert_eq!(sim.wheels, Wheels::default());
    }
}
