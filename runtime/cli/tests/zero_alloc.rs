//! After start-up, offramp's own code allocates nothing per frame; what is
//! still allocated per frame is tract's, counted exactly.
//!
//! A counting global allocator counts every allocation made on the test
//! thread. Each test drives one path of the robot's frame loop on the
//! committed demo set (4 exits) and counts the allocations inside that path
//! alone (the simulator that renders the frames and moves the robot is test
//! harness, outside the count):
//!
//! * `every_exit`: `Pipeline::infer` under `ExitPolicy::All`: preprocess and
//!   `ExitChain::step`, every segment, every head and the exit-0 reference.
//! * `run_loop_frame_criterion`: the newest-frame handoff (`Latest::publish`
//!   / `Latest::take`, what `RunLoop::run` does each frame) into
//!   `RunLoop::frame` under the calibrated criterion, with a new episode every
//!   50 frames and an actuator that keeps only the last command.
//! * `run_loop_frame_deadline`: the same with a deadline (`step_until`),
//!   alternating a deadline already past (exit 0 only, the rest cut) and a
//!   generous one (prediction, no cut).
//! * `run_loop_frame_recorder`: the robot's configuration: criterion,
//!   deadline and the flight recorder, whose batches go to a file inside the
//!   measured frames.
//! * `run_loop_gap`: a camera gap (`Latest::take` times out, `RunLoop::gap`
//!   stops the motors): nothing at all, tract does not run.
//!
//! The baseline is tract alone: [`TractOnly`] loads each engine of the set as
//! `offramp_engines_cpu::CpuEngine::load` does and drives it with the tract
//! calls `CpuEngine::run` makes (`set_input` with the input tensors made at
//! load, `exec`, `output`, `reset_turn`), no offramp code in between. Every
//! engine allocates the same number of times on every run (checked), so a
//! frame's tract share follows from its outcome: the segments it ran and the
//! heads it evaluated. Each path must allocate exactly that and no more.
//!
//! What tract still allocates, measured on the demo set (tract 0.23.9): 370,
//! 324, 316 and 316 allocations per run of segments 0–3 and 39 per run of
//! the head. These are mostly each node's output tensor and its reference
//! count. That makes 1,521 per frame when every exit runs (4 segments,
//! 5 head evaluations), and about 1,100 per frame under the criterion on the
//! simulator. Before the CPU backend kept its input tensors, `CpuEngine::run`
//! allocated 2 times per input per run (a tensor and its `Arc`), 30 per frame
//! when every exit ran (1,546 in all). The old baseline ran through
//! `CpuEngine` and counted those 30 as tract's. The head's 39 was 38 then:
//! tract copies an input it used to update in place, because the engine now
//! shares that input.

mod common;
use common::demo_set;
use offramp_engines::manifest::DType;
use offramp_engines::{BackendKind, EngineSet, TensorSpec};
use offramp_runtime::camera::{FrameMeta, Latest};
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::recorder::Recorder;
use offramp_runtime::run_loop::{Actuator, RunLoop};
use offramp_sim::{Sim, SimConfig, Twist};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn live(delta: i64) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        live(l.size() as i64);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        live(-(l.size() as i64));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        live(n as i64 - l.size() as i64);
        unsafe { System.realloc(p, l, n) }
    }
}

fn live_bytes() -> i64 {
    LIVE.with(|c| c.get())
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    COUNT.with(|c| c.get())
}

/// Frames measured per path, after [`WARM_UP`] frames (tract sizes its
/// scratch space on the first runs).
const FRAMES: u64 = 1000;
const WARM_UP: u64 = 20;

/// One engine in tract, no offramp code: loaded as `CpuEngine::load` loads
/// it, run with the tract calls `CpuEngine::run` makes. Keep the two alike.
/// (`CpuEngine` also binds tensors by name; the demo set's manifest lists
/// them in the graph's order, so binding by position here is the same.)
struct TractEngine {
    state: TypedSimpleState,
    inputs: Vec<Arc<Tensor>>,
    outputs: usize,
}

impl TractEngine {
    fn load(path: &std::path::Path, inputs: &[TensorSpec]) -> TractResult<Self> {
        let mut model = tract_onnx::onnx().model_for_path(path)?;
        for (i, spec) in inputs.iter().enumerate() {
            let fact = match spec.dtype {
                DType::F32 => f32::fact(spec.shape.clone()),
                DType::I64 => i64::fact(spec.shape.clone()),
            };
            model.set_input_fact(i, fact.into())?;
        }
        let model = model.into_typed()?.into_decluttered()?.into_optimized()?;
        let outputs = model.outputs.len();
        let state = tract_onnx::tract_core::plan::SimplePlan::new(model)?.spawn()?;
        let inputs = inputs
            .iter()
            .map(|spec| {
                match spec.dtype {
                    DType::F32 => Tensor::zero::<f32>(&spec.shape),
                    DType::I64 => Tensor::zero::<i64>(&spec.shape),
                }
                .map(Arc::new)
            })
            .collect::<TractResult<_>>()?;
        Ok(Self {
            state,
            inputs,
            outputs,
        })
    }

    fn run(&mut self) {
        for (k, value) in self.inputs.iter().enumerate() {
            self.state
                .set_input(k, TValue::from_const(Arc::clone(value)))
                .unwrap();
        }
        self.state.exec().unwrap();
        for k in 0..self.outputs {
            let out = self.state.output(k).unwrap();
            std::hint::black_box(out.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap());
        }
        self.state.reset_turn().unwrap();
    }

    /// Allocations per run, the same on every one of 50 runs.
    fn allocs_per_run(&mut self, name: &str) -> u64 {
        let counts: Vec<u64> = (0..50)
            .map(|_| {
                let before = allocs();
                self.run();
                allocs() - before
            })
            .collect();
        assert!(
            counts.iter().all(|&c| c == counts[0]),
            "{name}: tract's allocations vary from run to run: {counts:?}"
        );
        counts[0]
    }
}

/// What tract alone allocates per run of each engine of the set.
struct TractOnly {
    segments: Vec<u64>,
    head: u64,
}

impl TractOnly {
    fn measure(set: &EngineSet) -> Self {
        let m = &set.manifest;
        let mut segments: Vec<TractEngine> = m
            .exits
            .iter()
            .map(|s| TractEngine::load(&set.artifact_path(&s.artifact), &s.inputs).unwrap())
            .collect();
        let mut head = m
            .head
            .as_ref()
            .map(|h| TractEngine::load(&set.artifact_path(&h.artifact), &h.inputs).unwrap());
        for _ in 0..WARM_UP {
            segments.iter_mut().for_each(TractEngine::run);
            head.iter_mut().for_each(TractEngine::run);
        }
        let t = Self {
            segments: segments
                .iter_mut()
                .enumerate()
                .map(|(i, e)| e.allocs_per_run(&format!("segment {i}")))
                .collect(),
            // Without a head nothing runs for it.
            head: head.as_mut().map_or(0, |h| h.allocs_per_run("head")),
        };
        eprintln!(
            "tract allocates per run: segments {:?}, head {}",
            t.segments, t.head
        );
        t
    }

    /// tract's allocations in a frame with outcome `o`.
    fn frame(&self, o: &FrameOutcome) -> u64 {
        self.segments[..o.ran].iter().sum::<u64>() + self.head * o.heads as u64
    }
}

/// Keeps the last command, as a motor driver would.
#[derive(Default)]
struct Motors {
    twist: Twist,
    stops: u64,
}

impl Actuator for Motors {
    fn act(&mut self, action: &[f32], _: &FrameOutcome) {
        self.twist = Twist::from_action(action, offramp_sim::LIMITS);
    }
    fn stop(&mut self) {
        self.twist = Twist::default();
        self.stops += 1;
    }
}

/// The robot in the simulator: its camera publishes into the newest-frame
/// handoff, the run loop takes the frame, the wheels drive the simulator.
struct Robot {
    cfg: SimConfig,
    sim: Sim,
    latest: Arc<Latest>,
    rl: RunLoop,
    motors: Motors,
    seq: u64,
}

impl Robot {
    fn new(
        set: &EngineSet,
        seed: u64,
        policy: ExitPolicy,
        deadline: Option<Duration>,
        recorder: Option<Recorder>,
    ) -> Self {
        let cfg = SimConfig::default();
        let p = Pipeline::open(set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap();
        let sim = Sim::new(&cfg, seed);
        let latest = Latest::new(sim.frame_len());
        Self {
            cfg,
            sim,
            latest,
            rl: RunLoop::new(p, policy, deadline, recorder),
            motors: Motors::default(),
            seq: 0,
        }
    }

    /// The camera publishes a frame (not counted).
    fn capture(&mut self) {
        let meta = FrameMeta {
            seq: self.seq,
            captured: Some(Instant::now()),
            instruction: self.sim.instruction() as usize,
            new_episode: self.seq % 50 == 0,
        };
        let sim = &mut self.sim;
        self.latest.publish(meta, |buf| sim.render(buf));
        self.seq += 1;
    }

    /// The wheels move the robot (not counted).
    fn drive(&mut self) {
        let wheels = self.motors.twist.to_wheels(self.cfg.track_width);
        if self.sim.step(wheels).done {
            // Keep driving the same world: a new episode would build a new
            // world, which the simulator does, not the robot.
            self.sim.steps = 0;
        }
    }

    /// One frame: what `RunLoop::run` does when a frame is there. Returns
    /// the allocations inside it and the outcome.
    fn frame(&mut self) -> (u64, FrameOutcome) {
        self.capture();
        let before = allocs();
        let (rl, motors) = (&mut self.rl, &mut self.motors);
        let o = self
            .latest
            .take(Duration::from_secs(1), |buf, meta| {
                rl.frame(buf, meta, motors)
            })
            .expect("a frame was published")
            .unwrap();
        let n = allocs() - before;
        self.drive();
        (n, o)
    }
}

/// Runs `frame` [`FRAMES`] times after a warm-up and asserts that the path
/// allocated exactly tract's share of each frame. `frame` returns the
/// allocations it counted and the frame's outcome.
fn assert_only_tract_allocates(
    path: &str,
    tract: &TractOnly,
    mut frame: impl FnMut() -> (u64, FrameOutcome),
) {
    for _ in 0..WARM_UP {
        frame();
    }
    let (mut counted, mut in_tract, mut exits) = (0u64, 0u64, 0u64);
    for _ in 0..FRAMES {
        let (n, o) = frame();
        counted += n;
        in_tract += tract.frame(&o);
        exits += o.ran as u64;
    }
    eprintln!(
        "{path}: {counted} allocations over {FRAMES} frames, {in_tract} of them tract's \
         ({:.1} per frame, {:.2} exits run per frame)",
        in_tract as f64 / FRAMES as f64,
        exits as f64 / FRAMES as f64,
    );
    assert_eq!(
        counted,
        in_tract,
        "{path}: {counted} allocations over {FRAMES} frames where tract alone makes {in_tract}: \
         offramp's own code allocated {} times",
        counted as i64 - in_tract as i64
    );
}

#[test]
fn every_exit() {
    every_exit_of(&demo_set());
}

/// Splits and builds a test shape (engines/models/testdata/shapes) the way
/// `offramp split` and `offramp build` do.
fn shape_set(name: &str, exits: [&str; 4], dir: &std::path::Path) -> EngineSet {
    use offramp_build::split::{split, SplitOptions};
    let shape = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../engines/models/testdata/shapes")
        .join(name);
    split(&SplitOptions {
        onnx: shape.join("full.onnx"),
        exit_outputs: exits.map(String::from).to_vec(),
        confidence_outputs: Vec::new(),
        cuts: ["hidden0", "hidden1", "hidden2"]
            .map(|c| vec![c.to_string()])
            .to_vec(),
        head: None,
        with: Some(shape.join("with.toml")),
        out: dir.join("src"),
        tolerance: 1e-5,
    })
    .unwrap();
    built(&dir.join("src"), &dir.join("set"))
}

/// `offramp build` of the ONNX files in `src` into a CPU set at `out`.
fn built(src: &std::path::Path, out: &std::path::Path) -> EngineSet {
    use offramp_build::builder::{build, BuildOptions};
    build(
        &BuildOptions {
            onnx_dir: src.to_path_buf(),
            out_dir: out.to_path_buf(),
            backend: BackendKind::Cpu,
            precision: offramp_engines::Precision::Fp32,
            int8_calibration_cache: None,
            offramp_version: "test".into(),
        },
        &mut |_| {},
    )
    .unwrap();
    EngineSet::open(out).unwrap()
}

/// A set without a head, with token actions (softmax, bin centres) and a
/// token-id instruction (read again, carried as f32, by the last segment).
#[test]
fn every_exit_of_a_token_model_without_a_head() {
    let dir = tempfile::tempdir().unwrap();
    let set = shape_set("tokens", ["t0", "t1", "t2", "t3"], dir.path());
    assert!(set.manifest.head.is_none());
    every_exit_of(&set);
}

/// A model with two cameras: frames of two views, each preprocessed into
/// its own image input.
#[test]
fn every_exit_of_a_two_camera_model() {
    let dir = tempfile::tempdir().unwrap();
    let set = shape_set("cameras", ["a0", "a1", "a2", "a3"], dir.path());
    every_exit_of(&set);
}

/// Every exit of every frame, on the simulator's frames: only tract
/// allocates.
fn every_exit_of(set: &EngineSet) {
    let set = set.clone();
    let tract = TractOnly::measure(&set);
    let cfg = SimConfig::default();
    // The simulator's camera, and for a second image input a 16x16 view of
    // the same scene.
    let cameras = set
        .manifest
        .preprocess
        .as_ref()
        .map_or(1, |p| p.image_inputs(&set.manifest.inputs).len());
    let mut views = vec![(cfg.image_width, cfg.image_height)];
    views.extend(std::iter::repeat_n((16, 16), cameras - 1));
    let views = offramp_runtime::camera::Views::new(views);
    let mut p = Pipeline::open(&set, BackendKind::Cpu, views.clone()).unwrap();
    let mut sim = Sim::new(&cfg, 3);
    let mut image = vec![0u8; views.frame_len()];
    p.begin_episode(sim.instruction() as usize).unwrap();
    let n = p.chain.exits();
    let len = sim.frame_len();
    assert_only_tract_allocates("Pipeline::infer, ExitPolicy::All", &tract, || {
        let (first, rest) = image.split_at_mut(len);
        sim.render(first);
        for (k, v) in rest.iter_mut().enumerate() {
            *v = first[(k * 5) % len];
        }
        let before = allocs();
        let o = p.infer(&image, ExitPolicy::All, None).unwrap();
        let count = allocs() - before;
        assert_eq!(o.ran, n);
        let twist = Twist::from_action(p.action(), offramp_sim::LIMITS);
        if sim.step(twist.to_wheels(cfg.track_width)).done {
            sim.steps = 0;
        }
        (count, o)
    });
}

#[test]
fn run_loop_frame_criterion() {
    let set = demo_set();
    let tract = TractOnly::measure(&set);
    let mut robot = Robot::new(&set, 4, ExitPolicy::Criterion, None, None);
    assert_only_tract_allocates("RunLoop::frame, criterion", &tract, || robot.frame());
    assert!(robot.rl.tally().frames > FRAMES);
}

#[test]
fn run_loop_frame_deadline() {
    let set = demo_set();
    let tract = TractOnly::measure(&set);
    let mut robot = Robot::new(&set, 5, ExitPolicy::Criterion, None, None);
    assert_only_tract_allocates("RunLoop::frame, criterion and deadline", &tract, || {
        // A deadline already past when the frame arrives: exit 0, then cut.
        // A generous one: every exit is predicted to fit.
        robot.rl.deadline = Some(if robot.seq % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(10)
        });
        robot.frame()
    });
    let s = robot.rl.tally();
    assert!(
        s.deadline_cuts > 0 && s.deadline_misses > 0,
        "the deadline never cut: {s:?}"
    );
}

#[test]
fn run_loop_frame_recorder() {
    let set = demo_set();
    let tract = TractOnly::measure(&set);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.rec");
    let recorder = Recorder::create(&path).unwrap();
    let deadline = Some(Duration::from_millis(50));
    let mut robot = Robot::new(&set, 6, ExitPolicy::Criterion, deadline, Some(recorder));
    assert_only_tract_allocates(
        "RunLoop::frame, criterion, deadline and flight recorder",
        &tract,
        || robot.frame(),
    );
    let frames = robot.rl.tally().frames;
    robot.rl.summary();
    // Every frame reached the file, in batches written during the frames.
    assert_eq!(
        offramp_runtime::recorder::read(&path).unwrap().len() as u64,
        frames
    );
}

#[test]
fn run_loop_gap() {
    let set = demo_set();
    let mut robot = Robot::new(&set, 7, ExitPolicy::Criterion, None, None);
    // Warm-up: a frame, and a first gap.
    robot.frame();
    let gap = |robot: &mut Robot| {
        let before = allocs();
        let (rl, motors) = (&mut robot.rl, &mut robot.motors);
        let r = robot.latest.take(Duration::from_micros(50), |buf, meta| {
            rl.frame(buf, meta, motors)
        });
        assert!(r.is_none(), "no frame was published");
        robot.rl.gap(&mut robot.motors);
        allocs() - before
    };
    gap(&mut robot);
    let counted: u64 = (0..FRAMES).map(|_| gap(&mut robot)).sum();
    eprintln!("camera gap: {counted} allocations over {FRAMES} gaps");
    assert_eq!(
        counted, 0,
        "camera gap (Latest::take timing out, RunLoop::gap): {counted} allocations over {FRAMES} gaps"
    );
    assert_eq!(robot.rl.counts.camera_gaps, FRAMES + 1);
    assert_eq!(robot.motors.stops, FRAMES + 1);
}

/// Memory does not grow with the stream: in the robot's configuration,
/// sampled every 500 frames over 5,000, the bytes held stay within 1 KiB of
/// each other (bounded temporal state only; tract may settle a scratch size
/// once).
#[test]
fn memory_is_flat_over_a_long_stream() {
    let set = demo_set();
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::create(&dir.path().join("flight.rec")).unwrap();
    let deadline = Some(Duration::from_millis(50));
    let mut robot = Robot::new(&set, 8, ExitPolicy::Criterion, deadline, Some(recorder));
    let mut held = Vec::with_capacity(10);
    for f in 1..=5_000u32 {
        robot.frame();
        if f % 500 == 0 {
            held.push(live_bytes());
        }
    }
    eprintln!("live heap bytes every 500 frames: {held:?}");
    let (lo, hi) = (held.iter().min().unwrap(), held.iter().max().unwrap());
    assert!(hi - lo <= 1024, "memory grew over the stream: {held:?}");
}

/// A temporal attention head over a key/value cache (the kv-cache test
/// model: 9 slots, evicting from frame 9 on), every exit committing in
/// turn: after the warm-up only tract allocates, the live heap stays flat
/// and the cache's buffers never move.
#[test]
fn cache_head_frames_with_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../engines/models/testdata/kv-cache");
    let set = built(&src, &dir.path().join("set"));
    let tract = TractOnly::measure(&set);
    let mut chain = offramp_runtime::exit_chain::ExitChain::new(&set, BackendKind::Cpu).unwrap();
    let addresses: Vec<usize> = chain.cache().unwrap().addresses().collect();
    let mut t = 0usize;
    let mut held = Vec::new();
    assert_only_tract_allocates("ExitChain::step, cache head", &tract, || {
        for buf in chain.inputs_mut() {
            buf.iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v = ((t * 7 + k) % 13) as f32 / 13.0 - 0.5);
        }
        let before = allocs();
        let o = chain.step(ExitPolicy::Fixed(t % 3)).unwrap();
        let count = allocs() - before;
        t += 1;
        if t % 100 == 0 {
            held.push(live_bytes());
        }
        (count, o)
    });
    let c = chain.cache().unwrap();
    assert_eq!(c.occupancy(), 9);
    assert_eq!(c.evicted_total(), t as u64 - 9);
    assert_eq!(addresses, c.addresses().collect::<Vec<_>>());
    let (lo, hi) = (held.iter().min().unwrap(), held.iter().max().unwrap());
    assert!(hi - lo <= 1024, "memory grew: {held:?}");
}
