//! `offramp bench runtime`: the runtime's own figures on an engine set, in
//! one run: per-frame overhead outside the engines, early exit against the
//! full model on the same frames (interleaved), and deadline misses with CPU
//! hogs competing for every core.

use crate::held_frames::{run_frame, Frame};
use crate::Bars;
use offramp_engines::EngineSet;
use offramp_runtime::camera::Views;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::stats::Summary;
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
    /// Frame latency by the exit the frame ended at (1-based): what a frame
    /// that runs k exits costs, p50 and p99 among them.
    pub by_exit: Vec<ExitLatency>,
}

/// The frames that ended at one exit, and their latency.
#[derive(Serialize, Debug, PartialEq)]
pub struct ExitLatency {
    /// 1-based.
    pub exit: usize,
    pub frames: usize,
    pub latency_ms: Latency,
}

/// Frame latency grouped by the exit each frame ended at (0-based in
/// `samples`, 1-based in the result); exits no frame ended at are left out.
pub fn by_exit(samples: &[(usize, f64)]) -> Vec<ExitLatency> {
    let deepest = samples.iter().map(|&(e, _)| e + 1).max().unwrap_or(0);
    (0..deepest)
        .filter_map(|k| {
            let ms: Vec<f64> = samples
                .iter()
                .filter(|&&(e, _)| e == k)
                .map(|&(_, ms)| ms)
                .collect();
            (!ms.is_empty()).then(|| ExitLatency {
                exit: k + 1,
                frames: ms.len(),
                latency_ms: Summary::of(&ms),
            })
        })
        .collect()
}

fn figures(samples: &[(usize, f64)], macs: u64, full_macs: f64) -> PolicyFigures {
    let n = samples.len().max(1) as f64;
    let ms: Vec<f64> = samples.iter().map(|&(_, ms)| ms).collect();
    PolicyFigures {
        mean_exit: samples.iter().map(|&(e, _)| e as f64 + 1.0).sum::<f64>() / n,
        compute_ratio: macs as f64 / (full_macs * n),
        latency_ms: Summary::of(&ms),
        by_exit: by_exit(samples),
    }
}

#[derive(Serialize)]
pub struct RuntimeBench {
    pub engines: String,
    pub camera: String,
    /// The set's backend and its threads.
    pub backend: &'static str,
    pub threads: usize,
    pub frames: usize,
    pub thresholds: Vec<f32>,
    /// Preprocess + exit chain minus the time inside the engines.
    pub overhead_us: Latency,
    pub early_exit: PolicyFigures,
    pub full_model: PolicyFigures,
    /// 1 − early exit's mean latency / the full model's.
    pub latency_saving: f64,
    /// `latency_saving` / (1 − early exit's compute ratio): the share of the
    /// compute cut that shows as wall time (1: all of it); `None` when early
    /// exit cut no compute.
    pub wall_over_compute_cut: Option<f64>,
    pub contention: Contention,
}

/// How the bench sizes what it was not told: the deadline and period from
/// the full model's latency measured in the same run, the frame count from
/// the warm-up, so one command serves a 1 ms model and a 100 ms one.
pub struct Sizing {
    /// Frames timed in each phase (`None`: as many as fit in
    /// [`Sizing::PHASE_SECONDS`] of the full model, 100 to 10,000).
    pub frames: Option<usize>,
    /// `None`: 1.5× the full model's p99 (at least 1 ms).
    pub deadline_ms: Option<f64>,
    /// `None`: the deadline (a camera whose next frame comes when this one
    /// must be done).
    pub period_ms: Option<f64>,
}

impl Sizing {
    pub const PHASE_SECONDS: f64 = 20.0;

    fn frames(&self, full_mean_ms: f64) -> usize {
        self.frames.unwrap_or_else(|| {
            (Self::PHASE_SECONDS * 1e3 / full_mean_ms.max(1e-3)).clamp(100.0, 10_000.0) as usize
        })
    }

    fn deadline_ms(&self, full_p99_ms: f64) -> f64 {
        self.deadline_ms.unwrap_or_else(|| {
            // Rounded up to 0.1 ms: a figure a reader can repeat.
            ((1.5 * full_p99_ms).max(1.0) * 10.0).ceil() / 10.0
        })
    }
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
    /// Where the deadline and period came from.
    pub sized: String,
    pub frames: usize,
    pub deadline_misses: usize,
    pub frames_cut_short: usize,
    pub mean_exit: f64,
    pub latency_ms: Latency,
    pub by_exit: Vec<ExitLatency>,
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

/// Runs the set on `held` frames (cycled) with the CPU backend: early exit
/// against the full model, interleaved, then early exit with `hogs` CPU
/// hogs, a deadline and a frame every period ([`Sizing`]).
pub fn run(
    set: &EngineSet,
    engines: &Path,
    camera: &str,
    (held, views): (&[Frame], Views),
    sizing: &Sizing,
    hogs: usize,
    bars: Bars,
) -> anyhow::Result<RuntimeBench> {
    anyhow::ensure!(!held.is_empty(), "--camera {camera}: no frames");
    // The set's own backend: tract or onnxruntime (what `offramp run` uses).
    let backend = set.manifest.build.backend;
    let mut early = Pipeline::open(set, backend, views.clone())?;
    let mut full = Pipeline::open(set, backend, views)?;
    let n = early.chain.exits();
    let full_macs = early.chain.full_macs() as f64;
    // Warm-up; the full model's last frames size the run.
    let mut warm = Vec::new();
    for (k, f) in held.iter().cycle().take(20).enumerate() {
        run_frame(&mut early, f, ExitPolicy::Criterion, None)?;
        let t0 = Instant::now();
        run_frame(&mut full, f, ExitPolicy::Fixed(n - 1), None)?;
        if k >= 10 {
            warm.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let frames = sizing.frames(warm.iter().sum::<f64>() / warm.len().max(1) as f64);
    let tick = bars(frames as u64 * 2, "bench");
    let (mut te, mut tf, mut over) = (Vec::new(), Vec::new(), Vec::new());
    let (mut macs_e, mut macs_f) = (0u64, 0u64);
    early.chain.take_engine_time();
    for f in held.iter().cycle().take(frames) {
        let t0 = Instant::now();
        let o = run_frame(&mut early, f, ExitPolicy::Criterion, None)?;
        let dt = t0.elapsed();
        te.push((o.exit, dt.as_secs_f64() * 1e3));
        over.push((dt.saturating_sub(early.chain.take_engine_time())).as_secs_f64() * 1e6);
        macs_e += early.chain.frame_macs(&o);
        let t0 = Instant::now();
        let o = run_frame(&mut full, f, ExitPolicy::Fixed(n - 1), None)?;
        tf.push((o.exit, t0.elapsed().as_secs_f64() * 1e3));
        macs_f += full.chain.frame_macs(&o);
        tick();
        tick();
    }
    drop(tick);
    let early_exit = figures(&te, macs_e, full_macs);
    let full_model = figures(&tf, macs_f, full_macs);
    let full_p99 = full_model.latency_ms.map_or(0.0, |l| l.p99);
    let deadline_ms = sizing.deadline_ms(full_p99);
    let period_ms = sizing.period_ms.unwrap_or(deadline_ms);
    let sized = format!(
        "deadline {}, period {} (the full model's p99 here: {full_p99:.3} ms)",
        sizing
            .deadline_ms
            .map_or("1.5× the full model's p99, at least 1 ms", |_| "given"),
        sizing.period_ms.map_or("the deadline", |_| "given"),
    );
    let contention = contention(&mut early, held, frames, hogs, deadline_ms, period_ms, bars)?;
    let latency_saving = match (early_exit.latency_ms, full_model.latency_ms) {
        (Some(e), Some(f)) => 1.0 - e.mean / f.mean,
        _ => 0.0,
    };
    Ok(RuntimeBench {
        engines: engines.display().to_string(),
        camera: camera.to_string(),
        backend: backend.name(),
        threads: offramp_engines_cpu::threads(),
        frames,
        thresholds: set.manifest.criterion.thresholds.clone(),
        overhead_us: Summary::of(&over),
        wall_over_compute_cut: (early_exit.compute_ratio < 0.999)
            .then(|| latency_saving / (1.0 - early_exit.compute_ratio)),
        latency_saving,
        early_exit,
        full_model,
        contention: Contention {
            sized,
            ..contention
        },
    })
}

/// Early exit with hog threads spinning on every core and a deadline
/// (measured from the start of each frame), frames started every period.
fn contention(
    early: &mut Pipeline,
    held: &[Frame],
    frames: usize,
    hogs: usize,
    deadline_ms: f64,
    period_ms: f64,
    bars: Bars,
) -> anyhow::Result<Contention> {
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
    let (mut misses, mut cuts, mut lat) = (0, 0, Vec::with_capacity(frames));
    let mut missed = Vec::new();
    let tick = bars(frames as u64, "contention");
    let steal_start = steal_ms();
    let mut next = Instant::now();
    let mut result = Ok(());
    for (k, f) in held.iter().cycle().take(frames).enumerate() {
        next += period;
        // Read outside the timed frame: what held a missed frame up.
        let (wait0, steal0) = (runqueue_wait_ns(), steal_ms());
        let t0 = Instant::now();
        let o = match run_frame(early, f, ExitPolicy::Criterion, Some(t0 + d)) {
            Ok(o) => o,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
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
        lat.push((o.exit, dt.as_secs_f64() * 1e3));
        tick();
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    drop(tick);
    // The hogs stop whether or not a frame failed.
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    result?;
    let f = figures(&lat, 0, 1.0);
    Ok(Contention {
        hog_threads: hogs,
        realtime_priority: rt,
        frame_period_ms: period_ms,
        deadline_ms,
        sized: String::new(),
        frames,
        deadline_misses: misses,
        frames_cut_short: cuts,
        mean_exit: f.mean_exit,
        latency_ms: f.latency_ms,
        by_exit: f.by_exit,
        misses: missed,
        steal_ms: steal_ms().zip(steal_start).map_or(f64::NAN, |(b, a)| b - a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_grouped_by_the_exit_each_frame_ended_at() {
        let samples = [(0, 1.0), (2, 5.0), (0, 3.0), (2, 7.0), (2, 6.0)];
        let g = by_exit(&samples);
        assert_eq!(
            g.iter().map(|e| (e.exit, e.frames)).collect::<Vec<_>>(),
            [(1, 2), (3, 3)],
            "exit 2 ran no frame: left out"
        );
        assert_eq!(g[1].latency_ms.map(|l| l.p50), Some(6.0));
        let f = figures(&samples, 0, 1.0);
        assert!((f.mean_exit - 2.2).abs() < 1e-12, "{}", f.mean_exit);
    }

    #[test]
    fn unset_figures_are_sized_from_the_full_models_latency() {
        let s = Sizing {
            frames: None,
            deadline_ms: None,
            period_ms: None,
        };
        // A 130 ms model: 100 frames at least, a 195.1 ms deadline.
        assert_eq!(s.frames(130.0), 153);
        assert_eq!(s.frames(500.0), 100);
        assert_eq!(s.frames(0.3), 10_000);
        assert!((s.deadline_ms(130.04) - 195.1).abs() < 1e-9);
        assert_eq!(s.deadline_ms(0.2), 1.0, "at least 1 ms");
        let given = Sizing {
            frames: Some(7),
            deadline_ms: Some(10.0),
            period_ms: Some(2.0),
        };
        assert_eq!((given.frames(130.0), given.deadline_ms(130.0)), (7, 10.0));
    }
}
