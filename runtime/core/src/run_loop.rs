//! The runtime's main loop: newest camera frame → preprocess → exit chain
//! (with an optional per-frame deadline) → action out → flight record.
//!
//! The one frame loop: the robot (`offramp run`), the demo, closed-loop
//! evaluation, calibration and DAgger recording all drive [`RunLoop`], so
//! what they measure is what the robot runs. A camera on its capture
//! thread feeds [`RunLoop::run`]; a world stepped in lockstep with the loop
//! (the simulator) calls [`RunLoop::frame`] itself, frame by frame, and
//! reads the command back from its actuator ([`crate::twist::TwistCommand`]).
//!
//! Allocation-free per frame in offramp's code: every buffer is made in
//! [`RunLoop::new`] (tract allocates inside its runs; `tests/zero_alloc.rs`
//! in the cli crate counts both, path by path).
//! When frames stop arriving (camera lost) the loop keeps running, counts
//! the gap and commands stop; the firmware's own timeout is the last line of
//! defence behind that.

use crate::camera::{Capture, FrameMeta};
use crate::exit_chain::{ExitPolicy, FrameOutcome, MAX_EXITS};
use crate::pipeline::{Pipeline, PipelineError};
use crate::recorder::{Record, Recorder, RecorderError};
use crate::stats::Window;
use serde::Serialize;
use std::borrow::BorrowMut;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    /// The camera source failed for good; the motors were stopped.
    #[error("camera: {0}; the motors were stopped")]
    Camera(String),
}

/// Where actions go. Implementations must not block for long.
pub trait Actuator {
    fn act(&mut self, action: &[f32], outcome: &FrameOutcome);
    /// Stop the motors (no trustworthy action).
    fn stop(&mut self);
}

/// An actuator that drives nothing: recorded frames, a camera with no robot
/// behind it, a measurement.
pub struct Idle;

impl Actuator for Idle {
    fn act(&mut self, _: &[f32], _: &FrameOutcome) {}
    fn stop(&mut self) {}
}

impl<A: Actuator + ?Sized> Actuator for Box<A> {
    fn act(&mut self, action: &[f32], outcome: &FrameOutcome) {
        (**self).act(action, outcome)
    }
    fn stop(&mut self) {
        (**self).stop()
    }
}

/// Per-frame counts, summed: what every caller reports a frame by. Taken
/// at two moments, [`Tally::since`] gives what happened in between (an
/// episode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    pub frames: u64,
    /// Frames that stopped at each exit.
    pub exit_counts: [u64; MAX_EXITS],
    /// Multiply-accumulates of every frame ([`crate::exit_chain::ExitChain::frame_macs`]),
    /// and the part this machine computed (offload).
    pub macs: u64,
    pub robot_macs: u64,
    pub deadline_cuts: u64,
    pub deadline_misses: u64,
    pub nonfinite: u64,
    /// Frames whose action came from a server, and frames that asked one
    /// and fell back to the deepest local exit.
    pub remote: u64,
    pub fallback: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            frames: 0,
            exit_counts: [0; MAX_EXITS],
            macs: 0,
            robot_macs: 0,
            deadline_cuts: 0,
            deadline_misses: 0,
            nonfinite: 0,
            remote: 0,
            fallback: 0,
        }
    }
}

impl Tally {
    fn add(&mut self, o: &FrameOutcome, macs: u64, robot_macs: u64, missed: bool) {
        self.frames += 1;
        self.exit_counts[o.exit] += 1;
        self.macs += macs;
        self.robot_macs += robot_macs;
        self.deadline_cuts += o.deadline_cut as u64;
        self.deadline_misses += missed as u64;
        self.nonfinite += o.nonfinite as u64;
        self.remote += o.remote as u64;
        self.fallback += o.fallback as u64;
    }

    /// Adds another tally's counts (episodes run on several loops).
    pub fn merge(&mut self, other: &Tally) {
        for (c, o) in self.exit_counts.iter_mut().zip(other.exit_counts) {
            *c += o;
        }
        self.frames += other.frames;
        self.macs += other.macs;
        self.robot_macs += other.robot_macs;
        self.deadline_cuts += other.deadline_cuts;
        self.deadline_misses += other.deadline_misses;
        self.nonfinite += other.nonfinite;
        self.remote += other.remote;
        self.fallback += other.fallback;
    }

    /// What was counted after `earlier` (a tally of the same loop).
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut d = *self;
        for (c, e) in d.exit_counts.iter_mut().zip(earlier.exit_counts) {
            *c -= e;
        }
        d.frames -= earlier.frames;
        d.macs -= earlier.macs;
        d.robot_macs -= earlier.robot_macs;
        d.deadline_cuts -= earlier.deadline_cuts;
        d.deadline_misses -= earlier.deadline_misses;
        d.nonfinite -= earlier.nonfinite;
        d.remote -= earlier.remote;
        d.fallback -= earlier.fallback;
        d
    }

    /// Mean 1-based exit.
    pub fn mean_exit(&self) -> f64 {
        let sum: u64 = self
            .exit_counts
            .iter()
            .enumerate()
            .map(|(k, c)| k as u64 * c)
            .sum();
        sum as f64 / self.frames.max(1) as f64 + 1.0
    }

    /// Share of frames stopping at each of the first `exits` exits.
    pub fn exit_shares(&self, exits: usize) -> Vec<f64> {
        self.exit_counts[..exits.min(MAX_EXITS)]
            .iter()
            .map(|c| *c as f64 / self.frames.max(1) as f64)
            .collect()
    }

    /// Mean MACs per frame.
    pub fn mean_macs(&self) -> f64 {
        self.macs as f64 / self.frames.max(1) as f64
    }
}

/// What the loop counts besides its frames: the camera's trouble and the
/// stops it commanded.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LoopCounts {
    /// Frames the camera published that the loop never took (it keeps the
    /// newest).
    pub dropped: u64,
    /// Periods without a frame (each commanded a stop).
    pub camera_gaps: u64,
    pub stops_commanded: u64,
}

/// Totals of a run ([`RunLoop::summary`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    pub frames: u64,
    pub dropped: u64,
    pub camera_gaps: u64,
    pub stops_commanded: u64,
    pub mean_exit: f64,
    pub exit_counts: Vec<u64>,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub deadline_ms: Option<f64>,
    pub deadline_cuts: u64,
    pub deadline_misses: u64,
    pub nonfinite_frames: u64,
    pub mean_macs: f64,
    pub compute_ratio: f64,
}

/// The frame loop over a pipeline it owns (`P = Pipeline`: the robot) or
/// borrows (`&mut Pipeline`: an evaluation worker that keeps its pipeline
/// across many loops).
pub struct RunLoop<P: BorrowMut<Pipeline> = Pipeline> {
    pub pipeline: P,
    pub policy: ExitPolicy,
    pub deadline: Option<Duration>,
    recorder: Option<Recorder>,
    latency: Window,
    last_latency: f32,
    tally: Tally,
    max_latency: f32,
    pub counts: LoopCounts,
    started: Instant,
}

impl<P: BorrowMut<Pipeline>> RunLoop<P> {
    pub fn new(
        pipeline: P,
        policy: ExitPolicy,
        deadline: Option<Duration>,
        recorder: Option<Recorder>,
    ) -> Self {
        Self {
            pipeline,
            policy,
            deadline,
            recorder,
            latency: Window::new(8192),
            last_latency: 0.0,
            tally: Tally::default(),
            max_latency: 0.0,
            counts: LoopCounts::default(),
            started: Instant::now(),
        }
    }

    /// Processes one frame (HWC RGB of the preprocessor's source size).
    /// The deadline counts from `meta.captured` (else from now).
    ///
    /// A frame that fails (an unknown instruction, an engine error, a
    /// flight record that cannot be written) commands a stop before the
    /// error returns: the caller is about to end the loop, and the last
    /// command must not keep driving the robot (a `cmd_vel` base has no
    /// firmware timeout to fall back on).
    pub fn frame(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        actuator: &mut dyn Actuator,
    ) -> Result<FrameOutcome, RunError> {
        let r = self.step(frame, meta, actuator);
        if r.is_err() {
            self.stop(actuator);
        }
        r
    }

    /// Commands a stop and counts it: every stop the loop commands goes
    /// through here.
    fn stop(&mut self, actuator: &mut dyn Actuator) {
        actuator.stop();
        self.counts.stops_commanded += 1;
    }

    fn step(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        actuator: &mut dyn Actuator,
    ) -> Result<FrameOutcome, RunError> {
        let t0 = meta.captured.unwrap_or_else(Instant::now);
        let pipeline = self.pipeline.borrow_mut();
        if meta.new_episode {
            pipeline.begin_episode(meta.instruction)?;
        } else if pipeline.chain.current_instruction() != Some(meta.instruction) {
            // The model reads its instruction every frame: one given in the
            // middle of an episode (a new command, a recording that changes
            // it) applies from this frame on, the recurrent state kept.
            pipeline
                .chain
                .set_instruction(meta.instruction)
                .map_err(PipelineError::from)?;
        }
        let deadline = self.deadline.map(|d| t0 + d);
        let o = pipeline.infer(frame, self.policy, deadline)?;
        if o.stopped {
            self.stop(actuator);
        } else {
            actuator.act(self.pipeline.borrow().action(), &o);
        }
        let done = Instant::now();
        let latency = done.saturating_duration_since(t0).as_secs_f32();
        let missed = deadline.is_some_and(|d| done > d);
        self.latency.push(latency);
        self.last_latency = latency;
        self.max_latency = self.max_latency.max(latency);
        let chain = &self.pipeline.borrow().chain;
        self.tally
            .add(&o, chain.frame_macs(&o), chain.robot_macs(&o), missed);
        if let Some(r) = &mut self.recorder {
            let rec = Record::from_outcome(
                meta.seq,
                (t0.saturating_duration_since(self.started)).as_nanos() as u64,
                &o,
                latency * 1e6,
                missed,
                self.pipeline.borrow().action(),
            );
            r.push(&rec)?;
        }
        Ok(o)
    }

    /// What the loop has counted so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Seconds from the last frame's capture (or its start) to its command.
    pub fn last_latency(&self) -> f32 {
        self.last_latency
    }

    /// A period without frames: stop the motors and count it.
    pub fn gap(&mut self, actuator: &mut dyn Actuator) {
        self.stop(actuator);
        self.counts.camera_gaps += 1;
    }

    /// Runs until `until` says stop or the source closes; a source that
    /// failed (its capture thread panicked) stops the motors and is an error.
    pub fn run(
        &mut self,
        capture: &Capture,
        actuator: &mut dyn Actuator,
        frame_timeout: Duration,
        until: &mut dyn FnMut(&Tally, &LoopCounts) -> bool,
    ) -> Result<(), RunError> {
        let latest = capture.latest.clone();
        while !until(&self.tally, &self.counts) {
            let r = latest.take(frame_timeout, |buf, meta| self.frame(buf, meta, actuator));
            match r {
                Some(r) => {
                    r?;
                }
                None if latest.closed.load(Ordering::Acquire) => {
                    if let Some(why) = latest.fault() {
                        self.stop(actuator);
                        return Err(RunError::Camera(why));
                    }
                    break;
                }
                None => {
                    tracing::warn!("no camera frame for {frame_timeout:?}: commanding stop");
                    self.gap(actuator);
                }
            }
            self.counts.dropped = latest.dropped.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Final figures (also fine to call mid-run for live stats).
    pub fn summary(&mut self) -> RunStats {
        if let Some(r) = &mut self.recorder {
            if let Err(e) = r.flush() {
                tracing::error!("{e}");
            }
        }
        let chain = &self.pipeline.borrow().chain;
        let n = chain.exits();
        let t = &self.tally;
        let mean_macs = t.mean_macs();
        RunStats {
            frames: t.frames,
            dropped: self.counts.dropped,
            camera_gaps: self.counts.camera_gaps,
            stops_commanded: self.counts.stops_commanded,
            mean_exit: t.mean_exit(),
            exit_counts: t.exit_counts[..n].to_vec(),
            latency_p50_ms: self.latency.quantile(0.5) as f64 * 1e3,
            latency_p99_ms: self.latency.quantile(0.99) as f64 * 1e3,
            latency_max_ms: self.max_latency as f64 * 1e3,
            deadline_ms: self.deadline.map(|d| d.as_secs_f64() * 1e3),
            deadline_cuts: t.deadline_cuts,
            deadline_misses: t.deadline_misses,
            nonfinite_frames: t.nonfinite,
            mean_macs,
            compute_ratio: mean_macs / chain.full_macs() as f64,
        }
    }
}
