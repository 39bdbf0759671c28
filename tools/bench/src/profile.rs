//! `offramp profile`: what each exit costs in milliseconds and millijoules
//! on this device, and what the calibrated thresholds cost per frame.
//!
//! The run has three phases on one clock while a sampler thread reads power:
//! 1. idle: the board's baseline power with the runtime loaded but waiting;
//! 2. fixed-exit blocks: every exit in turn, frames forced to stop there,
//!    interleaved over several rounds so drift (heat, clocks) hits all
//!    exits alike. A block's energy over its frames is the per-exit cost,
//!    and it holds even with tegrastats' slow sampling;
//! 3. the calibrated criterion over the frames: the exit mix, latency, and
//!    per-frame energy interpolated from the trace.
//!
//! "Active" energy is above the idle baseline: what running a frame adds.

use crate::held_frames::{run_frame, Frame};
use crate::Bars;
use anyhow::Context;
use offramp_engines::EngineSet;
use offramp_power::energy::{energy_mj, mean_power_mw};
use offramp_power::sampler::{PowerLog, Sampler};
use offramp_power::PowerChoice;
use offramp_runtime::camera::Views;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::stats::Summary;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to profile and how.
pub struct ProfileConfig<'a> {
    /// The engine set, and where it was opened from (for the report).
    pub set: &'a EngineSet,
    pub engines: &'a Path,
    /// Where the frames came from, for the report.
    pub camera: String,
    pub power: PowerChoice,
    /// Where /sys is looked for (a copy of a device's tree, for tests).
    pub sysfs_root: &'a Path,
    /// Power samples per second.
    pub sample_hz: f64,
    /// Idle baseline before the run.
    pub idle_seconds: f64,
    /// Time per exit in the fixed-exit blocks (split over `rounds`).
    pub block_seconds: f64,
    pub rounds: usize,
    /// Camera rate for the average-power projection.
    pub fps: f64,
}

/// What the report's figures were made of, for its charts and its power
/// trace.
pub struct Trace {
    /// Frame latencies of each fixed-exit block, ms.
    pub fixed_ms: Vec<Vec<f64>>,
    /// Frame latencies of the calibrated run, ms.
    pub calibrated_ms: Vec<f64>,
    /// Each frame of the calibrated run: start and end (s, on the power
    /// trace's clock) and the exit taken (0-based).
    pub spans: Vec<(f64, f64, usize)>,
    /// The power samples, when a source was found.
    pub log: Option<PowerLog>,
    pub idle_mw: Option<f64>,
}

#[derive(Serialize)]
pub struct PowerSummary {
    pub source: Option<String>,
    pub rails: Vec<String>,
    pub notes: Vec<String>,
    pub samples: usize,
    pub achieved_hz: f64,
    pub read_errors: u64,
    pub last_error: Option<String>,
    pub idle_mw: Option<f64>,
}

#[derive(Serialize)]
pub struct ExitCost {
    /// 1-based.
    pub exit: usize,
    pub mmacs_cumulative: f64,
    pub frames: usize,
    /// This exit's segment + head alone, ms (host clock).
    pub segment_ms: Option<Summary>,
    /// The same from CUDA events on the device (GPU backends only).
    pub segment_device_ms: Option<Summary>,
    /// Whole frames forced to stop here, ms.
    pub frame_ms: Option<Summary>,
    pub mean_power_mw: Option<f64>,
    pub energy_per_frame_mj: Option<f64>,
    pub active_energy_per_frame_mj: Option<f64>,
}

#[derive(Serialize)]
pub struct CalibratedRun {
    pub thresholds: Vec<f32>,
    pub frames: usize,
    pub mean_exit: f64,
    pub exit_counts: Vec<usize>,
    pub compute_ratio: f64,
    pub frame_ms: Option<Summary>,
    pub frame_ms_by_exit: Vec<Option<Summary>>,
    pub energy_per_frame_mj: Option<f64>,
    pub active_energy_per_frame_mj: Option<f64>,
    /// Interpolated per-frame active energy, averaged by exit taken.
    pub active_energy_by_exit_mj: Vec<Option<f64>>,
    /// The same figure predicted from the exit mix and the blocks.
    pub active_energy_predicted_mj: Option<f64>,
}

/// Average power at a camera rate: idle + rate × active energy per frame.
#[derive(Serialize)]
pub struct Projection {
    pub fps: f64,
    pub calibrated_mw: f64,
    pub full_model_mw: f64,
    /// Share of the full model's active power the thresholds save.
    pub active_power_saving: f64,
}

#[derive(Serialize)]
pub struct ProfileReport {
    pub engines: String,
    pub camera: String,
    pub backend: String,
    pub timing: &'static str,
    pub power: PowerSummary,
    pub per_exit: Vec<ExitCost>,
    pub calibrated: CalibratedRun,
    pub projection: Option<Projection>,
    pub wall_seconds: f64,
    pub files: Vec<String>,
    pub plots_skipped: Vec<String>,
}

/// Profiles the engine set on `frames` (of size `views`): idle, fixed-exit
/// blocks, then the calibrated criterion over the frames.
pub fn run(
    a: &ProfileConfig,
    frames: &[Frame],
    views: Views,
    bars: Bars,
) -> anyhow::Result<(ProfileReport, Trace)> {
    let set = a.set;
    let backend = set.manifest.build.backend;
    let mut p = Pipeline::open(set, backend, views)?;
    let n = p.chain.exits();
    let period = Duration::from_secs_f64(1.0 / a.sample_hz);
    let (source, notes) = offramp_power::open(a.power, a.sysfs_root, period)?;
    for note in &notes {
        tracing::info!("{note}");
    }
    let epoch = Instant::now();
    let now = || epoch.elapsed().as_secs_f64();
    let sampler = match source {
        Some(s) => Some(Sampler::start(s, epoch, period).context("starting the power sampler")?),
        None => None,
    };

    // 1. Idle baseline (the runtime loaded, nothing running).
    let idle = (now(), {
        std::thread::sleep(Duration::from_secs_f64(a.idle_seconds));
        now()
    });
    // Warm-up (not measured).
    for f in frames.iter().take(30) {
        run_frame(&mut p, f, ExitPolicy::Fixed(n - 1), None)?;
    }

    // 2. Fixed-exit blocks, interleaved over rounds.
    let rounds = a.rounds;
    let per_block = Duration::from_secs_f64(a.block_seconds / rounds as f64);
    let mut blocks: Vec<Vec<(f64, f64, usize)>> = vec![Vec::new(); n];
    let mut seg_ms: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut seg_dev_ms: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut frame_ms: Vec<Vec<f64>> = vec![Vec::new(); n];
    let tick = bars((rounds * n) as u64, "exit blocks");
    let mut cursor = 0usize;
    for _ in 0..rounds {
        for k in 0..n {
            let start = now();
            let mut count = 0;
            while count < 5 || Duration::from_secs_f64(now() - start) < per_block {
                let f = &frames[cursor % frames.len()];
                cursor += 1;
                let t0 = Instant::now();
                let o = run_frame(&mut p, f, ExitPolicy::Fixed(k), None)?;
                frame_ms[k].push(t0.elapsed().as_secs_f64() * 1e3);
                seg_ms[k].push(o.exit_seconds[k] as f64 * 1e3);
                if o.device_seconds[k].is_finite() {
                    seg_dev_ms[k].push(o.device_seconds[k] as f64 * 1e3);
                }
                count += 1;
            }
            blocks[k].push((start, now(), count));
            tick();
        }
    }
    drop(tick);

    // 3. The calibrated criterion over the frames, in order.
    let mut spans = Vec::with_capacity(frames.len());
    let (mut macs, mut lat) = (0u64, Vec::with_capacity(frames.len()));
    let tick = bars(frames.len() as u64, "calibrated");
    p.chain.reset();
    for f in frames {
        let t0 = now();
        let o = run_frame(&mut p, f, ExitPolicy::Criterion, None)?;
        let t1 = now();
        spans.push((t0, t1, o.exit));
        lat.push((t1 - t0) * 1e3);
        macs += p.chain.frame_macs(&o);
        tick();
    }
    drop(tick);
    let run_span = (spans[0].0, spans[spans.len() - 1].1);
    let log = sampler.map(Sampler::finish);

    // Attribution.
    let samples = log.as_ref().map(|l| l.samples.as_slice()).unwrap_or(&[]);
    let idle_mw = mean_power_mw(samples, idle.0, idle.1);
    let macs_table = p.chain.criterion_costs();
    let per_exit: Vec<ExitCost> = (0..n)
        .map(|k| {
            let frames: usize = blocks[k].iter().map(|b| b.2).sum();
            let secs: f64 = blocks[k].iter().map(|b| b.1 - b.0).sum();
            let e: Option<f64> = blocks[k].iter().map(|b| energy_mj(samples, b.0, b.1)).sum();
            ExitCost {
                exit: k + 1,
                mmacs_cumulative: macs_table.get(k).copied().unwrap_or(0) as f64 / 1e6,
                frames,
                segment_ms: Summary::of(&seg_ms[k]),
                segment_device_ms: Summary::of(&seg_dev_ms[k]),
                frame_ms: Summary::of(&frame_ms[k]),
                mean_power_mw: e.map(|e| e / secs),
                energy_per_frame_mj: e.map(|e| e / frames as f64),
                active_energy_per_frame_mj: e
                    .zip(idle_mw)
                    .map(|(e, i)| (e - i * secs) / frames as f64),
            }
        })
        .collect();
    let mut exit_counts = vec![0usize; n];
    let mut by_exit_lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut by_exit_active: Vec<Vec<f64>> = vec![Vec::new(); n];
    for (i, &(t0, t1, k)) in spans.iter().enumerate() {
        exit_counts[k] += 1;
        by_exit_lat[k].push(lat[i]);
        if let (Some(e), Some(idle)) = (energy_mj(samples, t0, t1), idle_mw) {
            by_exit_active[k].push(e - idle * (t1 - t0));
        }
    }
    let total = spans.len() as f64;
    let run_energy = energy_mj(samples, run_span.0, run_span.1);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let predicted: Option<f64> = (0..n)
        .map(|k| {
            per_exit[k]
                .active_energy_per_frame_mj
                .map(|e| e * exit_counts[k] as f64 / total)
        })
        .sum();
    let calibrated = CalibratedRun {
        thresholds: set.manifest.criterion.thresholds.clone(),
        frames: spans.len(),
        mean_exit: spans.iter().map(|s| s.2 as f64 + 1.0).sum::<f64>() / total,
        exit_counts,
        compute_ratio: macs as f64 / (p.chain.full_macs() as f64 * total),
        frame_ms: Summary::of(&lat),
        frame_ms_by_exit: by_exit_lat.iter().map(|v| Summary::of(v)).collect(),
        energy_per_frame_mj: run_energy.map(|e| e / total),
        active_energy_per_frame_mj: run_energy
            .zip(idle_mw)
            .map(|(e, i)| (e - i * (run_span.1 - run_span.0)) / total),
        active_energy_by_exit_mj: by_exit_active.iter().map(|v| mean(v)).collect(),
        active_energy_predicted_mj: predicted,
    };
    let projection = match (
        idle_mw,
        calibrated.active_energy_per_frame_mj,
        per_exit[n - 1].active_energy_per_frame_mj,
    ) {
        (Some(i), Some(c), Some(f)) => Some(Projection {
            fps: a.fps,
            calibrated_mw: i + a.fps * c,
            full_model_mw: i + a.fps * f,
            // Below a microjoule the difference is measurement noise.
            active_power_saving: if f > 1e-3 { 1.0 - c / f } else { 0.0 },
        }),
        _ => None,
    };
    let power = summarize_power(log.as_ref(), notes, idle_mw, epoch.elapsed().as_secs_f64());
    let report = ProfileReport {
        engines: a.engines.display().to_string(),
        camera: a.camera.clone(),
        backend: format!("{backend:?}").to_lowercase(),
        timing: if backend == offramp_engines::BackendKind::Cpu {
            "monotonic clock around each frame and each exit segment"
        } else {
            "monotonic clock around each frame and exit; CUDA events around each \
             engine run on the device (segment_device_ms)"
        },
        power,
        per_exit,
        calibrated,
        projection,
        wall_seconds: epoch.elapsed().as_secs_f64(),
        files: Vec::new(),
        plots_skipped: Vec::new(),
    };
    Ok((
        report,
        Trace {
            fixed_ms: frame_ms,
            calibrated_ms: lat,
            spans,
            log,
            idle_mw,
        },
    ))
}

fn summarize_power(
    log: Option<&PowerLog>,
    notes: Vec<String>,
    idle_mw: Option<f64>,
    secs: f64,
) -> PowerSummary {
    match log {
        Some(l) => PowerSummary {
            source: Some(l.source.clone()),
            rails: l.rails.clone(),
            notes,
            samples: l.samples.len(),
            achieved_hz: l.samples.len() as f64 / secs.max(1e-9),
            read_errors: l.read_errors,
            last_error: l.last_error.clone(),
            idle_mw,
        },
        None => PowerSummary {
            source: None,
            rails: Vec::new(),
            notes,
            samples: 0,
            achieved_hz: 0.0,
            read_errors: 0,
            last_error: None,
            idle_mw: None,
        },
    }
}

/// Writes the report into `dir` (created): first `charts`, which draws
/// its charts there and returns the files it wrote (or notes in
/// `plots_skipped` why it drew none), then `power_trace.json` and
/// `profile.json`; `files` lists them all.
pub fn write(
    dir: &Path,
    r: &mut ProfileReport,
    trace: &Trace,
    charts: impl FnOnce(&Path, &mut ProfileReport, &Trace) -> anyhow::Result<Vec<PathBuf>>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = charts(dir, r, trace)?;
    if let Some(l) = &trace.log {
        let path = dir.join("power_trace.json");
        std::fs::write(&path, serde_json::to_vec(l)?)
            .with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    r.files = files.iter().map(|p| p.display().to_string()).collect();
    let path = dir.join("profile.json");
    r.files.push(path.display().to_string());
    std::fs::write(&path, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
