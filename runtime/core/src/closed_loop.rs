//! A task the robot acts in, in lockstep with the run loop: each frame is
//! rendered, decided, then driven for one step. The simulator implements
//! it; calibration and closed-loop evaluation are written against it, so
//! they never depend on a particular simulator (and the robot's build
//! links none).

use crate::camera::FrameMeta;
use crate::twist::{Limits, Twist};

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepOutcome {
    /// The episode ended with this step.
    pub done: bool,
    /// It ended with the task achieved.
    pub success: bool,
    /// The robot touched something during the step.
    pub collided: bool,
    /// It ended by reaching a decoy (a failure), where the task makes that
    /// the end.
    pub reached_decoy: bool,
    /// It ended by touching something (a failure), where the task makes
    /// that the end.
    pub crashed: bool,
}

/// A family of episodes, one per seed. `Sync`: evaluation runs episodes of
/// one task on several threads.
pub trait Task: Sync {
    /// Episode `seed`, at its start. Boxed: an episode is built once per
    /// episode, off the frame path.
    fn episode(&self, seed: u64) -> Box<dyn Episode + '_>;
    /// The limits every command to the robot is held inside.
    fn limits(&self) -> Limits;
    /// Seconds a step lasts.
    fn step_seconds(&self) -> f32;
}

/// One episode in progress.
pub trait Episode {
    /// Bytes of one rendered frame.
    fn frame_len(&self) -> usize;
    /// Renders the current view into `out` (`frame_len` bytes).
    fn render(&mut self, out: &mut [u8]);
    /// What the run loop is told with the frame rendered now.
    fn frame_meta(&self) -> FrameMeta;
    /// Drives `twist` for one step.
    fn step(&mut self, twist: Twist) -> StepOutcome;
    /// What a privileged expert would command now (the yardstick a frame's
    /// action is scored against).
    fn expert(&self) -> Twist;
    /// How hard the episode was drawn, 0..1.
    fn difficulty(&self) -> f32;
    /// Whether the goal is in the camera's view now.
    fn target_in_view(&self) -> bool;
    /// Distance to the goal now, metres.
    fn target_distance(&self) -> f32;
    /// Steps taken so far.
    fn steps(&self) -> usize;
    /// Steps that touched something so far.
    fn collisions(&self) -> usize;
}
