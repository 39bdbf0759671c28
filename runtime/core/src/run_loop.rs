//! The runtime's main loop: newest camera frame → preprocess → exit chain
//! (with an optional per-frame deadline) → action out → flight record.
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
use serde::Serialize;
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

impl<A: Actuator + ?Sized> Actuator for Box<A> {
    fn act(&mut self, action: &[f32], outcome: &FrameOutcome) {
        (**self).act(action, outcome)
    }
    fn stop(&mut self) {
        (**self).stop()
    }
}

/// (v, ω) of a model's `[v, ω, ...]` action held inside ±`max_v` (m/s) and
/// ±`max_omega` (rad/s), a missing value taken as 0: what a differential
/// drive is commanded. One function for `offramp run`'s publisher (in every
/// build: a `cmd_vel` base has no firmware that validates what it gets) and
/// the simulator's robot (a regression head overshoots its training range).
/// The limits are positive, finite numbers (checked flags or constants).
pub fn clamped_twist(action: &[f32], max_v: f32, max_omega: f32) -> (f32, f32) {
    let get = |k: usize| action.get(k).copied().unwrap_or(0.0);
    (
        get(0).clamp(-max_v, max_v),
        get(1).clamp(-max_omega, max_omega),
    )
}

/// Fixed-capacity latency window for percentiles without allocating.
pub struct Window {
    buf: Vec<f32>,
    scratch: Vec<f32>,
    next: usize,
    filled: usize,
}

impl Window {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: vec![0.0; cap.max(1)],
            scratch: vec![0.0; cap.max(1)],
            next: 0,
            filled: 0,
        }
    }

    pub fn push(&mut self, v: f32) {
        self.buf[self.next] = v;
        self.next = (self.next + 1) % self.buf.len();
        self.filled = (self.filled + 1).min(self.buf.len());
    }

    /// The `q` quantile (0..=1) of the window.
    pub fn quantile(&mut self, q: f64) -> f32 {
        if self.filled == 0 {
            return 0.0;
        }
        let s = &mut self.scratch[..self.filled];
        s.copy_from_slice(&self.buf[..self.filled]);
        s.sort_unstable_by(f32::total_cmp);
        s[((self.filled - 1) as f64 * q).round() as usize]
    }
}

/// Totals of a run.
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

pub struct RunLoop {
    pub pipeline: Pipeline,
    pub policy: ExitPolicy,
    pub deadline: Option<Duration>,
    recorder: Option<Recorder>,
    latency: Window,
    exit_counts: [u64; MAX_EXITS],
    exit_sum: u64,
    macs_sum: u64,
    max_latency: f32,
    pub stats: RunStats,
    started: Instant,
}

impl RunLoop {
    pub fn new(
        pipeline: Pipeline,
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
            exit_counts: [0; MAX_EXITS],
            exit_sum: 0,
            macs_sum: 0,
            max_latency: 0.0,
            stats: RunStats {
                deadline_ms: deadline.map(|d| d.as_secs_f64() * 1e3),
                ..Default::default()
            },
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
        self.stats.stops_commanded += 1;
    }

    fn step(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        actuator: &mut dyn Actuator,
    ) -> Result<FrameOutcome, RunError> {
        let t0 = meta.captured.unwrap_or_else(Instant::now);
        if meta.new_episode {
            self.pipeline.begin_episode(meta.instruction)?;
        }
        let deadline = self.deadline.map(|d| t0 + d);
        let o = self.pipeline.infer(frame, self.policy, deadline)?;
        if o.stopped {
            self.stop(actuator);
        } else {
            actuator.act(self.pipeline.action(), &o);
        }
        let done = Instant::now();
        let latency = (done - t0).as_secs_f32();
        let missed = deadline.is_some_and(|d| done > d);
        self.latency.push(latency);
        self.max_latency = self.max_latency.max(latency);
        self.exit_counts[o.exit] += 1;
        self.exit_sum += o.exit as u64;
        self.macs_sum += self.pipeline.chain.frame_macs(&o);
        self.stats.frames += 1;
        self.stats.deadline_cuts += o.deadline_cut as u64;
        self.stats.deadline_misses += missed as u64;
        self.stats.nonfinite_frames += o.nonfinite as u64;
        if let Some(r) = &mut self.recorder {
            let rec = Record::from_outcome(
                meta.seq,
                (t0.saturating_duration_since(self.started)).as_nanos() as u64,
                &o,
                latency * 1e6,
                missed,
                self.pipeline.action(),
            );
            r.push(&rec)?;
        }
        Ok(o)
    }

    /// A period without frames: stop the motors and count it.
    pub fn gap(&mut self, actuator: &mut dyn Actuator) {
        self.stop(actuator);
        self.stats.camera_gaps += 1;
    }

    /// Runs until `until` says stop or the source closes; a source that
    /// failed (its capture thread panicked) stops the motors and is an error.
    pub fn run(
        &mut self,
        capture: &Capture,
        actuator: &mut dyn Actuator,
        frame_timeout: Duration,
        until: &mut dyn FnMut(&RunStats) -> bool,
    ) -> Result<(), RunError> {
        let latest = capture.latest.clone();
        while !until(&self.stats) {
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
            self.stats.dropped = latest.dropped.load(Ordering::Relaxed);
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
        let chain = &self.pipeline.chain;
        let n = chain.exits();
        let frames = self.stats.frames.max(1) as f64;
        let mut s = self.stats.clone();
        s.exit_counts = self.exit_counts[..n].to_vec();
        s.mean_exit = self.exit_sum as f64 / frames + 1.0;
        s.latency_p50_ms = self.latency.quantile(0.5) as f64 * 1e3;
        s.latency_p99_ms = self.latency.quantile(0.99) as f64 * 1e3;
        s.latency_max_ms = self.max_latency as f64 * 1e3;
        s.mean_macs = self.macs_sum as f64 / frames;
        s.compute_ratio = s.mean_macs / chain.full_macs() as f64;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_quantiles() {
        let mut w = Window::new(100);
        for i in 0..250 {
            w.push(i as f32);
        }
        // The last 100 values: 150..250.
        assert_eq!(w.quantile(0.0), 150.0);
        assert_eq!(w.quantile(1.0), 249.0);
        assert_eq!(w.quantile(0.5), 200.0);
    }
}
