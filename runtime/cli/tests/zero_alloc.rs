//! The frame loop allocates nothing in offramp's own code after start-up.
//!
//! A counting global allocator counts every allocation on this thread. The
//! loop under test is the whole per-frame path: simulator render → Pillow-
//! style preprocess → DeeR exit chain (every exit, every head) → wheels →
//! physics. tract (the CPU backend) allocates its input and output tensors
//! inside each run; that count is measured separately by driving the same
//! engines directly, and the test requires the full loop to add exactly
//! nothing on top of it.

mod common;
use common::demo_set;
use offramp_engines::{BackendKind, Chain, EngineSet};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_sim::{Sim, SimConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

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

/// The whole per-frame path, set up once: what both tests drive.
struct Loop {
    cfg: SimConfig,
    p: Pipeline,
    sim: Sim,
    frame: Vec<u8>,
}

impl Loop {
    fn new(set: &EngineSet, seed: u64) -> Self {
        let cfg = SimConfig::default();
        let mut p =
            Pipeline::open(set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap();
        let sim = Sim::new(&cfg, seed);
        let frame = vec![0u8; sim.frame_len()];
        p.begin_episode(sim.instruction() as usize);
        Self { cfg, p, sim, frame }
    }

    /// Render, preprocess, every exit and head, drive. Returns the exits run.
    fn frame(&mut self) -> usize {
        self.sim.render(&mut self.frame);
        let o = self.p.infer(&self.frame, ExitPolicy::All, None).unwrap();
        let twist = offramp_sim::Twist::from_action(self.p.action());
        if self.sim.step(twist.to_wheels(self.cfg.track_width)).done {
            // Keep driving the same world: a new episode would allocate a
            // new world, which start-up does, not the frame loop.
            self.sim.steps = 0;
        }
        o.ran
    }
}

#[test]
fn the_frame_loop_allocates_nothing_of_its_own() {
    let set = demo_set();
    let mut l = Loop::new(&set, 3);
    let n = l.p.chain.exits();
    let frames = 1000u64;
    let run = |l: &mut Loop| assert_eq!(l.frame(), n);
    // Warm-up: tract sizes its scratch on the first runs.
    for _ in 0..20 {
        run(&mut l);
    }
    let before = allocs();
    for _ in 0..frames {
        run(&mut l);
    }
    let loop_allocs = allocs() - before;

    // The same engine calls, driven directly: what tract allocates inside.
    let mut raw = Chain::load(&set, BackendKind::Cpu).unwrap();
    let m = &set.manifest;
    let reference = m
        .criterion
        .exit0_reference
        .as_deref()
        .and_then(|r| raw.output_index(0, r));
    let state_len = m.head.input(&m.head.state_input).unwrap().elements();
    let state = vec![0.0f32; state_len];
    let engines = |raw: &mut Chain| {
        for i in 0..n {
            raw.run_exit(i).unwrap();
            if let (0, Some(r)) = (i, reference) {
                raw.run_head_on(0, r, &state).unwrap();
            }
            raw.run_head(i, &state).unwrap();
        }
    };
    for _ in 0..20 {
        engines(&mut raw);
    }
    let before = allocs();
    for _ in 0..frames {
        engines(&mut raw);
    }
    let tract_allocs = allocs() - before;
    eprintln!(
        "{frames} frames: {loop_allocs} allocations in the whole loop, {tract_allocs} inside tract \
         ({:.1} per frame, {} engine runs per frame)",
        tract_allocs as f64 / frames as f64,
        2 * n + 1
    );
    assert_eq!(
        loop_allocs,
        tract_allocs,
        "the runtime's own code allocated {} times over {frames} frames",
        loop_allocs as i64 - tract_allocs as i64
    );
}

/// Memory does not grow with the stream: sampled every 500 frames over 5,000,
/// the bytes held stay within 1 KiB of each other (bounded temporal state
/// only; tract may settle a scratch size once).
#[test]
fn memory_is_flat_over_a_long_stream() {
    let set = demo_set();
    let mut l = Loop::new(&set, 8);
    let mut held = Vec::new();
    for f in 1..=5_000u32 {
        l.frame();
        if f % 500 == 0 {
            held.push(live_bytes());
        }
    }
    eprintln!("live heap bytes every 500 frames: {held:?}");
    let (lo, hi) = (held.iter().min().unwrap(), held.iter().max().unwrap());
    assert!(hi - lo <= 1024, "memory grew over the stream: {held:?}");
}
