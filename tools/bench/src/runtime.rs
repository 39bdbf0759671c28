//! `offramp bench runtime`: the runtime's own figures on an engine set, in
//! one run: per-frame overhead outside the engines, early exit against the
//! full model on the same frames (interleaved), and deadline misses with CPU
//! hogs competing for every core.

use crate::held_frames::{run_frame, stream};
use crate::Bars;
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::stats::Summary;
use offramp_sim::SimConfig;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Milliseconds (`overhead_us`: microseconds), `None` for no samples.
type Latency = Option<Summary>;

#[derive(Serialize)]
pub struct PolicyFigures {
    pub mean_exit: f64,
    pub compute_ratio: f64,
    pub latency_ms: Latency,
}

#[derive(Serialize)]
pub struct RuntimeBench {
    pub engines: String,
    pub frames: usize,
    pub thresholds: Vec<f32>,
    /// Preprocess + exit chain minus the time inside the engines.
    pub overhead_us: Latency,
    pub early_exit: PolicyFigures,
    pub full_model: PolicyFigures,
    pub latency_saving: f64,
    pub contention: Contention,
}

#[derive(Serialize)]
pub struct Contention {
    pub hog_threads: usize,
    pub realtime_priority: bool,
    /// Frames start on this period, as from a camera. Back to back, a
    /// SCHED_FIFO thread that never sleeps hits the kernel's real-time
    /// throttling (sched_rt_runtime_us: 950 ms of every second) and is
    /// stopped for 50 ms once a second: a miss that says nothing about the
    /// runtime.
    pub frame_period_ms: f64,
    pub deadline_ms: f64,
    pub frames: usize,
    pub deadline_misses: usize,
    pub frames_cut_short: usize,
    pub mean_exit: f64,
    pub latency_ms: Latency,
    /// Every missed frame, with what the kernel says held the thread up.
    pub misses: Vec<Miss>,
    /// Hypervisor steal over the whole contention run, milliseconds (all
    /// CPUs; 0 on bare metal).
    pub steal_ms: f64,
}

/// Why a frame missed: time the thread sat runnable in this kernel's run
/// queue (another task had the CPU) and time the hypervisor took the CPUs
/// away (steal), both during the frame.
#[derive(Serialize)]
pub struct Miss {
    pub frame: usize,
    pub latency_ms: f64,
    pub runqueue_wait_ms: f64,
    pub steal_ms: f64,
}

/// Nanoseconds this thread has waited runnable (`schedstat`'s 2nd field).
fn runqueue_wait_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Hypervisor steal of all CPUs, milliseconds (`/proc/stat`, USER_HZ ticks).
fn steal_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = s.lines().next()?;
    let ticks: f64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks * 1e3 / hz)
}

/// Tries SCHED_FIFO for this thread (what the systemd unit grants on the
/// robot); false without the privilege.
fn realtime() -> bool {
    let p = libc::sched_param { sched_priority: 50 };
    // SAFETY: plain syscall on the calling thread with a valid param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0 }
}

/// Runs `engines` on `frames` frames of the simulator (at most 5,000
/// distinct ones, cycled), then the same with `hogs` CPU hogs, a deadline of
/// `deadline_ms` and a frame every `period_ms`.
pub fn run(
    engines: &Path,
    frames: usize,
    deadline_ms: f64,
    hogs: usize,
    period_ms: f64,
    bars: Bars,
) -> anyhow::Result<RuntimeBench> {
    let cfg = SimConfig::default();
    let set = EngineSet::open(engines)?;
    let size = (cfg.image_width, cfg.image_height);
    let mut early = Pipeline::open(&set, BackendKind::Cpu, size)?;
    let mut full = Pipeline::open(&set, BackendKind::Cpu, size)?;
    let n = early.chain.exits();
    let frames_v = stream(&cfg, frames.min(5000));
    // Warm-up.
    for f in frames_v.iter().take(50) {
        run_frame(&mut early, f, ExitPolicy::Criterion, None)?;
        run_frame(&mut full, f, ExitPolicy::Fixed(n - 1), None)?;
    }
    let tick = bars(frames as u64 * 2, "bench");
    let (mut te, mut tf, mut over) = (Vec::new(), Vec::new(), Vec::new());
    let (mut exit_e, mut macs_e, mut macs_f) = (0u64, 0u64, 0u64);
    early.chain.take_engine_time();
    for k in 0..frames {
        let f = &frames_v[k % frames_v.len()];
        let t0 = Instant::now();
        let o = run_frame(&mut early, f, ExitPolicy::Criterion, None)?;
        let dt = t0.elapsed();
        te.push(dt.as_secs_f64() * 1e3);
        over.push((dt.saturating_sub(early.chain.take_engine_time())).as_secs_f64() * 1e6);
        exit_e += o.exit as u64;
        macs_e += early.chain.frame_macs(&o);
        let t0 = Instant::now();
        let o = run_frame(&mut full, f, ExitPolicy::Fixed(n - 1), None)?;
        tf.push(t0.elapsed().as_secs_f64() * 1e3);
        macs_f += full.chain.frame_macs(&o);
        tick();
        tick();
    }
    drop(tick);
    let full_macs = early.chain.full_macs() as f64 * frames as f64;
    let early_exit = PolicyFigures {
        mean_exit: exit_e as f64 / frames as f64 + 1.0,
        compute_ratio: macs_e as f64 / full_macs,
        latency_ms: Summary::of(&te),
    };
    let full_model = PolicyFigures {
        mean_exit: n as f64,
        compute_ratio: macs_f as f64 / full_macs,
        latency_ms: Summary::of(&tf),
    };
    // Contention: hog threads spin on every core while the runtime runs with
    // a deadline (measured from the start of each frame).
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..hogs)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let rt = realtime();
    let d = Duration::from_secs_f64(deadline_ms / 1e3);
    let period = Duration::from_secs_f64(period_ms / 1e3);
    let (mut misses, mut cuts, mut exits, mut lat) = (0, 0, 0u64, Vec::with_capacity(frames));
    let mut missed = Vec::new();
    let tick = bars(frames as u64, "contention");
    let steal_start = steal_ms();
    let mut next = Instant::now();
    for k in 0..frames {
        let f = &frames_v[k % frames_v.len()];
        next += period;
        // Read outside the timed frame: what held a missed frame up.
        let (wait0, steal0) = (runqueue_wait_ns(), steal_ms());
        let t0 = Instant::now();
        let o = run_frame(&mut early, f, ExitPolicy::Criterion, Some(t0 + d))?;
        let dt = t0.elapsed();
        if dt > d {
            misses += 1;
            let wait = runqueue_wait_ns()
                .zip(wait0)
                .map(|(b, a)| b.saturating_sub(a));
            missed.push(Miss {
                frame: k,
                latency_ms: dt.as_secs_f64() * 1e3,
                runqueue_wait_ms: wait.map_or(f64::NAN, |w| w as f64 / 1e6),
                steal_ms: steal_ms().zip(steal0).map_or(f64::NAN, |(b, a)| b - a),
            });
        }
        cuts += o.deadline_cut as usize;
        exits += o.exit as u64;
        lat.push(dt.as_secs_f64() * 1e3);
        tick();
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    drop(tick);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(RuntimeBench {
        engines: engines.display().to_string(),
        frames,
        thresholds: set.manifest.criterion.thresholds.clone(),
        overhead_us: Summary::of(&over),
        latency_saving: match (early_exit.latency_ms, full_model.latency_ms) {
            (Some(e), Some(f)) => 1.0 - e.mean / f.mean,
            _ => 0.0,
        },
        early_exit,
        full_model,
        contention: Contention {
            hog_threads: hogs,
            realtime_priority: rt,
            frame_period_ms: period_ms,
            deadline_ms,
            frames,
            deadline_misses: misses,
            frames_cut_short: cuts,
            mean_exit: exits as f64 / frames as f64 + 1.0,
            latency_ms: Summary::of(&lat),
            misses: missed,
            steal_ms: steal_ms().zip(steal_start).map_or(f64::NAN, |(b, a)| b - a),
        },
    })
}
