//! `offramp profile`: what each exit costs in milliseconds and millijoules
//! on this device, and what the calibrated thresholds cost per frame
//! ([`offramp_bench::profile`]); this module holds the flags, the frames'
//! source and the screen.

use crate::args::{at_least_1, non_negative, positive, print_report, CameraArgs, EngineArgs};
use offramp_bench::held_frames;
use offramp_bench::profile::{self, ProfileConfig, ProfileReport};
use offramp_power::PowerChoice;
#[cfg(feature = "plot")]
use offramp_report::profile::charts;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("camera", |a| a.help("sim | replay:DIR | v4l:/dev/videoN (several: commas); frames are held in memory before anything is timed")))]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub camera: CameraArgs,
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

/// Without the `plot` feature, the report says why it has no charts.
#[cfg(not(feature = "plot"))]
fn charts(
    _: &std::path::Path,
    r: &mut ProfileReport,
    _: &offramp_bench::profile::Trace,
) -> anyhow::Result<Vec<PathBuf>> {
    r.plots_skipped
        .push("*.svg: this offramp was built without the `plot` feature".into());
    Ok(Vec::new())
}

pub fn run(a: &Args) -> anyhow::Result<ProfileReport> {
    let set = a.engine.open()?;
    let (frames, views) = held_frames::held(&a.camera.camera, a.frames)?;
    let cfg = ProfileConfig {
        set: &set,
        engines: &a.engine.engines,
        camera: a.camera.camera.to_string(),
        power: a.power,
        sysfs_root: &a.sysfs_root,
        sample_hz: a.sample_hz,
        idle_seconds: a.idle_seconds,
        block_seconds: a.block_seconds,
        rounds: a.rounds,
        fps: a.fps,
    };
    let (mut report, trace) = profile::run(&cfg, &frames, views, &crate::progress::bars)?;
    if let Some(dir) = &a.report {
        profile::write(dir, &mut report, &trace, charts)?;
    }
    Ok(report)
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
