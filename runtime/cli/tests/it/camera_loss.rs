//! When frames stop coming (a camera unplugged), the loop keeps running,
//! counts the gap and commands stop; when they come back, it drives again.
//! When a frame fails, the loop commands stop before the error returns; when
//! the capture thread fails, the run ends with its reason, motors stopped.

use crate::common;
use common::demo_set;
use offramp_engines::BackendKind;
use offramp_runtime::camera::{start, FrameMeta, Latest, Source, Views};
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Actuator, RunLoop};
use offramp_sim::{Sim, SimConfig};
use std::sync::atomic::AtomicBool;
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

/// A capture thread that panics (a decoder fed a corrupt image, say) ends the
/// run with an error naming the panic, the motors stopped, where the loop
/// used to wait for frames no thread would publish, commanding stop forever.
#[test]
fn a_panicking_capture_thread_stops_the_motors_and_ends_the_run() {
    struct Breaks(Sim);
    impl Source for Breaks {
        fn views(&self) -> Views {
            (32, 32).into()
        }
        fn run(mut self: Box<Self>, latest: &Latest, _: &AtomicBool, period: Duration) {
            for seq in 0..5 {
                let instruction = self.0.instruction() as usize;
                latest.publish(
                    FrameMeta {
                        seq,
                        captured: None,
                        instruction,
                        new_episode: seq == 0,
                    },
                    |b| self.0.render(b),
                );
                std::thread::sleep(period);
            }
            panic!("corrupt JPEG in frame 5");
        }
    }
    let (mut rl, _, sim) = demo_loop();
    let capture = start(Box::new(Breaks(sim)), 50.0).unwrap();
    let mut log = Log::default();
    // Bounded for the code before the fix, whose loop never ended on its own.
    let ran = rl.run(
        &capture,
        &mut log,
        Duration::from_millis(30),
        &mut |_, c| c.camera_gaps >= 100,
    );
    let e = ran.expect_err("a failed camera must end the run with an error");
    assert!(e.to_string().contains("corrupt JPEG in frame 5"), "{e}");
    assert!(log.acts >= 1, "it drove on the frames before the panic");
    assert!(log.stopped_last, "the motors must be stopped");
    let s = rl.summary();
    assert!(s.camera_gaps < 100, "{} gaps", s.camera_gaps);
}
