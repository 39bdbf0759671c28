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

use crate::args::{at_least_1, non_negative, positive, print_report};
use crate::held_frames::{run_frame, Frame};
#[cfg(feature = "plot")]
use crate::plot::{self, Mark, Series};
use crate::progress::progress_bar;
use anyhow::Context;
use offramp_engines::EngineSet;
use offramp_power::energy::{energy_mj, mean_power_mw};
use offramp_power::sampler::{PowerLog, Sampler};
use offramp_power::PowerChoice;
use offramp_runtime::camera::{load_replay, CameraSpec, Views};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::stats::Summary;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub engines: PathBuf,
    /// sim | replay:DIR (frames are loaded into memory first).
    #[arg(long, default_value = "sim")]
    pub camera: CameraSpec,
    /// Frames for the calibrated run (and the pool the blocks cycle over).
    #[arg(long, default_value_t = 2000, value_parser = at_least_1)]
    pub frames: usize,
    /// auto | ina3221 | iio | tegrastats | rapl | none
    #[arg(long, default_value = "auto")]
    pub power: PowerChoice,
    /// Where /sys is looked for (a copy of a device's tree, for tests).
    #[arg(long, default_value = "/")]
    pub sysfs_root: PathBuf,
    /// Power samples per second.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub sample_hz: f64,
    /// Idle baseline before the run.
    #[arg(long, default_value_t = 2.0, value_parser = non_negative)]
    pub idle_seconds: f64,
    /// Time per exit in the fixed-exit blocks (split over --rounds).
    #[arg(long, default_value_t = 3.0, value_parser = positive)]
    pub block_seconds: f64,
    #[arg(long, default_value_t = 3, value_parser = at_least_1)]
    pub rounds: usize,
    /// Camera rate for the average-power projection.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Directory for profile.json, the plots and the power trace.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    print_report(a.json, &run(&a)?, print_human)
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

/// Frames for profiling, held in memory so no camera thread competes.
fn frames(spec: &CameraSpec, n: usize) -> anyhow::Result<(Vec<Frame>, Views)> {
    match spec {
        #[cfg(feature = "sim")]
        CameraSpec::Sim => {
            let cfg = offramp_sim::SimConfig::default();
            Ok((
                crate::held_frames::stream(&cfg, n),
                (cfg.image_width, cfg.image_height).into(),
            ))
        }
        #[cfg(not(feature = "sim"))]
        CameraSpec::Sim => Err(crate::args::no_sim("--camera sim")),
        CameraSpec::Replay(dir) => {
            let r = load_replay(dir)?;
            let len = r.frame_len();
            let count = (r.frames.len() / len).min(n);
            let v = (0..count)
                .map(|i| {
                    let new = i == 0 || r.episodes[i] != r.episodes[i - 1];
                    (
                        r.frames[i * len..(i + 1) * len].to_vec(),
                        r.instructions[i],
                        new,
                    )
                })
                .collect::<Vec<_>>();
            anyhow::ensure!(!v.is_empty(), "{}: no frames", dir.display());
            Ok((v, r.views))
        }
        CameraSpec::V4l(_) | CameraSpec::Several(_) => anyhow::bail!(
            "--camera {spec}: profile runs on frames held in memory (sim or replay:DIR, \
             which may hold several camera views), so that no capture thread competes \
             with the engines it measures"
        ),
    }
}

pub fn run(a: &Args) -> anyhow::Result<ProfileReport> {
    let set = EngineSet::open(&a.engines)?;
    let backend = set.manifest.build.backend;
    let (frames, size) = frames(&a.camera, a.frames)?;
    let mut p = Pipeline::open(&set, backend, size)?;
    let n = p.chain.exits();
    let period = Duration::from_secs_f64(1.0 / a.sample_hz);
    let (source, notes) = offramp_power::open(a.power, &a.sysfs_root, period)?;
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
    let bar = progress_bar((rounds * n) as u64, "exit blocks");
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
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    // 3. The calibrated criterion over the frames, in order.
    let mut spans = Vec::with_capacity(frames.len());
    let (mut macs, mut lat) = (0u64, Vec::with_capacity(frames.len()));
    let bar = progress_bar(frames.len() as u64, "calibrated");
    p.chain.reset();
    for f in &frames {
        let t0 = now();
        let o = run_frame(&mut p, f, ExitPolicy::Criterion, None)?;
        let t1 = now();
        spans.push((t0, t1, o.exit));
        lat.push((t1 - t0) * 1e3);
        macs += p.chain.frame_macs(&o);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let run_span = (spans[0].0, spans[spans.len() - 1].1);
    let log = sampler.map(Sampler::finish);

    // Attribution.
    let trace = log.as_ref().map(|l| l.samples.as_slice()).unwrap_or(&[]);
    let idle_mw = mean_power_mw(trace, idle.0, idle.1);
    let macs_table = p.chain.criterion_costs();
    let per_exit: Vec<ExitCost> = (0..n)
        .map(|k| {
            let frames: usize = blocks[k].iter().map(|b| b.2).sum();
            let secs: f64 = blocks[k].iter().map(|b| b.1 - b.0).sum();
            let e: Option<f64> = blocks[k].iter().map(|b| energy_mj(trace, b.0, b.1)).sum();
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
        if let (Some(e), Some(idle)) = (energy_mj(trace, t0, t1), idle_mw) {
            by_exit_active[k].push(e - idle * (t1 - t0));
        }
    }
    let total = spans.len() as f64;
    let run_energy = energy_mj(trace, run_span.0, run_span.1);
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
    let mut report = ProfileReport {
        engines: a.engines.display().to_string(),
        camera: a.camera.to_string(),
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
    if let Some(dir) = &a.report {
        write_report(
            dir,
            &mut report,
            &frame_ms,
            &lat,
            &spans,
            log.as_ref(),
            idle_mw,
        )?;
    }
    Ok(report)
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

/// The report's SVG plots.
#[cfg(feature = "plot")]
#[allow(clippy::too_many_arguments)]
fn plots(
    dir: &Path,
    r: &mut ProfileReport,
    files: &mut Vec<std::path::PathBuf>,
    fixed_ms: &[Vec<f64>],
    calibrated_ms: &[f64],
    spans: &[(f64, f64, usize)],
    log: Option<&PowerLog>,
    idle_mw: Option<f64>,
) -> anyhow::Result<()> {
    let path = dir.join("latency_cdf.svg");
    let mut series: Vec<Series> = fixed_ms
        .iter()
        .enumerate()
        .map(|(k, v)| Series::new(format!("exit {} (forced)", k + 1), plot::cdf(v), Mark::Line))
        .collect();
    series.push(Series::new(
        "calibrated criterion",
        plot::cdf(calibrated_ms),
        Mark::Bold,
    ));
    plot::chart(
        &path,
        "Frame latency by exit",
        "frame latency (ms)",
        "fraction of frames",
        &series,
    )?;
    files.push(path);
    match (log, idle_mw) {
        (Some(l), Some(idle)) if l.samples.len() >= 2 => {
            let path = dir.join("energy_per_frame.svg");
            // Per-frame interpolated active energy, jittered around the exit
            // taken, and each exit's block mean.
            let mut pts = Vec::new();
            for (i, &(t0, t1, k)) in spans.iter().enumerate() {
                if let Some(e) = energy_mj(&l.samples, t0, t1) {
                    let jitter = ((i * 7919) % 100) as f64 / 100.0 * 0.4 - 0.2;
                    pts.push((k as f64 + 1.0 + jitter, e - idle * (t1 - t0)));
                }
            }
            let blocks: Vec<(f64, f64)> = r
                .per_exit
                .iter()
                .filter_map(|c| c.active_energy_per_frame_mj.map(|e| (c.exit as f64, e)))
                .collect();
            plot::chart(
                &path,
                "Active energy per frame vs exit taken",
                "exit taken",
                "energy above idle (mJ)",
                &[
                    Series::new("calibrated run, per frame", pts, Mark::Points),
                    Series::new("fixed-exit blocks, mean", blocks, Mark::Bold),
                ],
            )?;
            files.push(path);
            let path = dir.join("power_over_time.svg");
            let mut series = vec![Series::new(
                "total",
                l.samples.iter().map(|s| (s.t, s.total_mw)).collect(),
                Mark::Bold,
            )];
            for (j, rail) in l.rails.iter().enumerate() {
                series.push(Series::new(
                    rail.clone(),
                    l.samples.iter().map(|s| (s.t, s.rails_mw[j])).collect(),
                    Mark::Line,
                ));
            }
            plot::chart(&path, "Power over the profile", "time (s)", "mW", &series)?;
            files.push(path);
        }
        _ => r.plots_skipped.push(
            "energy_per_frame.svg, power_over_time.svg: no power samples (see power.notes)".into(),
        ),
    }
    Ok(())
}

fn write_report(
    dir: &Path,
    r: &mut ProfileReport,
    fixed_ms: &[Vec<f64>],
    calibrated_ms: &[f64],
    spans: &[(f64, f64, usize)],
    log: Option<&PowerLog>,
    idle_mw: Option<f64>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    #[cfg(feature = "plot")]
    plots(
        dir,
        r,
        &mut files,
        fixed_ms,
        calibrated_ms,
        spans,
        log,
        idle_mw,
    )?;
    #[cfg(not(feature = "plot"))]
    {
        let _ = (fixed_ms, calibrated_ms, spans, idle_mw);
        r.plots_skipped
            .push("*.svg: this offramp was built without the `plot` feature".into());
    }
    if let Some(l) = log {
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

/// The one-screen summary.
pub fn print_human(r: &ProfileReport) {
    println!(
        "offramp profile: {} on {} ({})",
        r.engines, r.camera, r.backend
    );
    match &r.power.source {
        Some(s) => println!(
            "  power     {s}: {} samples at {:.0} Hz, {} read errors, idle {}",
            r.power.samples,
            r.power.achieved_hz,
            r.power.read_errors,
            r.power.idle_mw.map_or("?".into(), |i| format!("{i:.0} mW"))
        ),
        None => println!(
            "  power     not measured: {}",
            r.power.notes.last().map_or("", |s| s.as_str())
        ),
    }
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.3} {unit}"));
    println!(
        "  {:<5} {:>8} {:>11} {:>11} {:>11} {:>13} {:>13}",
        "exit", "MMACs", "segment p50", "frame p50", "frame p99", "energy/frame", "active/frame"
    );
    for c in &r.per_exit {
        let (p50, p99) = c.frame_ms.map_or((f64::NAN, f64::NAN), |s| (s.p50, s.p99));
        println!(
            "  {:<5} {:>8.2} {:>8.3} ms {:>8.3} ms {:>8.3} ms {:>13} {:>13}",
            c.exit,
            c.mmacs_cumulative,
            c.segment_ms.map_or(f64::NAN, |s| s.p50),
            p50,
            p99,
            opt(c.energy_per_frame_mj, "mJ"),
            opt(c.active_energy_per_frame_mj, "mJ"),
        );
    }
    let c = &r.calibrated;
    println!(
        "  calibrated thresholds {:?}: mean exit {:.2}, exits {:?}, compute {:.1}% of full",
        c.thresholds,
        c.mean_exit,
        c.exit_counts,
        100.0 * c.compute_ratio
    );
    if let Some(s) = c.frame_ms {
        println!(
            "            frame p50 {:.3} ms, p99 {:.3} ms; active energy {} per frame (predicted from blocks {})",
            s.p50,
            s.p99,
            opt(c.active_energy_per_frame_mj, "mJ"),
            opt(c.active_energy_predicted_mj, "mJ")
        );
    }
    if let Some(p) = &r.projection {
        println!(
            "  at {} fps: {:.0} mW with the thresholds vs {:.0} mW always-full ({:.0}% of the active power saved)",
            p.fps,
            p.calibrated_mw,
            p.full_model_mw,
            100.0 * p.active_power_saving
        );
    }
    for f in &r.files {
        println!("  wrote {f}");
    }
}
