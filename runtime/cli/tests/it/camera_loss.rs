//! When frames stop coming (a camera unplugged), the loop keeps running,
//! counts the gap and commands stop; when they come back, it drives again.
//! When a frame fails, the loop commands stop before the error returns.

use crate::common;
use common::demo_set;
use offramp_engines::BackendKind;
use offramp_runtime::camera::{FrameMeta, Latest};
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Actuator, RunLoop};
use offramp_sim::{Sim, SimConfig};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Log {
    acts: usize,
    stops: usize,
    stopped_last: bool,
}

impl Actuator for Log {
    fn act(&mut self, _: &[f32], _: &FrameOutcome) {
        self.acts += 1;
        self.stopped_last = false;
    }
    fn stop(&mut self) {
        self.stops += 1;
        self.stopped_last = true;
    }
}

/// The demo set's run loop on the CPU, the frame slot a camera publishes
/// into, and the simulator that renders its frames.
fn demo_loop() -> (RunLoop, Arc<Latest>, Sim) {
    let set = demo_set();
    let cfg = SimConfig::default();
    let p = Pipeline::open(&set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap();
    let rl = RunLoop::new(p, ExitPolicy::Criterion, None, None);
    (rl, Latest::new(32 * 32 * 3), Sim::new(&cfg, 1))
}

#[test]
fn a_vanished_camera_stops_the_motors_and_the_loop_recovers() {
    let (mut rl, latest, mut sim) = demo_loop();
    let mut log = Log::default();
    let timeout = Duration::from_millis(30);
    let publish = |seq: u64, sim: &mut Sim| {
        latest.publish(
            FrameMeta {
                seq,
                captured: None,
                instruction: sim.instruction() as usize,
                new_episode: seq == 0,
            },
            |b| sim.render(b),
        )
    };
    let tick =
        |rl: &mut RunLoop, log: &mut Log| match latest.take(timeout, |b, m| rl.frame(b, m, log)) {
            Some(r) => {
                r.unwrap();
            }
            None => rl.gap(log),
        };
    for k in 0..5 {
        publish(k, &mut sim);
        tick(&mut rl, &mut log);
    }
    assert_eq!((log.acts, log.stops), (5, 0));
    // The camera goes away for three frame periods.
    for _ in 0..3 {
        tick(&mut rl, &mut log);
        assert!(log.stopped_last, "no frame: the motors must be stopped");
    }
    // It comes back.
    for k in 5..10 {
        publish(k, &mut sim);
        tick(&mut rl, &mut log);
    }
    assert!(!log.stopped_last);
    let s = rl.summary();
    assert_eq!(s.camera_gaps, 3);
    assert_eq!(s.frames, 10);
    assert_eq!(log.acts, 10);
}

#[test]
fn a_frame_that_fails_stops_the_motors_before_the_error_returns() {
    let (mut rl, latest, mut sim) = demo_loop();
    let mut log = Log::default();
    let timeout = Duration::from_millis(30);
    let instruction = sim.instruction() as usize;
    let mut frame = |seq: u64, instruction: usize, new_episode: bool, log: &mut Log| {
        latest.publish(
            FrameMeta {
                seq,
                captured: None,
                instruction,
                new_episode,
            },
            |b| sim.render(b),
        );
        latest
            .take(timeout, |b, m| rl.frame(b, m, log))
            .expect("a frame was published")
    };
    for k in 0..5 {
        frame(k, instruction, k == 0, &mut log).unwrap();
    }
    assert_eq!((log.acts, log.stops), (5, 0));
    assert!(!log.stopped_last, "driving");
    // A new episode with an instruction the model does not have: the frame
    // fails, and the robot, driving until now, must be told to stop.
    let err = frame(5, 99, true, &mut log).unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
    assert!(log.stopped_last, "a failed frame must command stop");
    assert_eq!((log.acts, log.stops), (5, 1));
    assert_eq!(rl.summary().stops_commanded, 1);
}
