//! `offramp demo`: the main job, end to end on one machine, every piece a
//! real component really started ([`offramp_rig::demo`]):
//!
//! simulator camera → preprocess → DeeR exit chain (demo engine set, CPU)
//! → zenoh (`<robot>/action`, peer session on loopback) → `offramp bridge`
//! (its own process) → serial device node → motor-controller firmware (its
//! control logic built for the host behind a pty, or the real image in QEMU)
//! → wheel speeds applied → zenoh telemetry → the simulated robot's wheels.
//!
//! Real time, 10 Hz. At the end the commands stop and the firmware must stop
//! the motors on its own.

use crate::args::{at_least_1, positive, print_report, DemoEngineArgs};
use crate::progress::progress_bar;
use anyhow::Context;
use offramp_report::plot::{self, Mark, Series};
use offramp_rig::demo::{DemoConfig, DemoReport, Offload};
use offramp_rig::{BridgeMode, FirmwareKind};
use std::path::PathBuf;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Which firmware closes the loop.
    #[arg(long, value_enum, default_value = "host")]
    pub firmware: FirmwareKind,
    /// Where the serial bridge runs.
    #[arg(long, value_enum, default_value = "process")]
    pub bridge: BridgeMode,
    /// Firmware image for `--firmware qemu` (default: build it).
    #[arg(long)]
    pub elf: Option<PathBuf>,
    #[command(flatten)]
    pub engine: DemoEngineArgs,
    #[arg(long, default_value_t = 10, value_parser = at_least_1)]
    pub episodes: usize,
    /// Held-out evaluation seeds start at 0.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Per-frame deadline from camera frame to command sent.
    #[arg(long, value_parser = positive)]
    pub deadline_ms: Option<f64>,
    /// Robot name: the zenoh keys are <robot>/action, <robot>/telemetry.
    #[arg(long, default_value = "offramp-demo")]
    pub robot: String,
    /// Also publish each command as a ROS 2 Twist (CDR) on `cmd_vel`.
    #[arg(long)]
    pub cmd_vel: bool,
    /// Write a latency plot (SVG) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep exits 1..=K in the runtime and serve the deeper ones from an
    /// `offramp serve` process (a second device's stand-in, on loopback).
    #[arg(long, value_name = "K", value_parser = at_least_1)]
    pub offload: Option<usize>,
}

impl Args {
    /// What the demo runs (the server, with --offload, is this binary).
    pub fn config(&self) -> anyhow::Result<DemoConfig> {
        let offload = match self.offload {
            Some(local_exits) => Some(Offload {
                local_exits,
                exe: std::env::current_exe().context("locating the offramp binary")?,
            }),
            None => None,
        };
        Ok(DemoConfig {
            firmware: self.firmware,
            bridge: self.bridge,
            elf: self.elf.clone(),
            engines: self.engine.engines.clone(),
            episodes: self.episodes,
            first_seed: self.first_seed,
            deadline_ms: self.deadline_ms,
            robot: self.robot.clone(),
            cmd_vel: self.cmd_vel,
            offload,
        })
    }
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let report = run(&a)?;
    print_report(a.json, &report, print_human)?;
    if report.commands_rejected > 0 {
        anyhow::bail!(
            "the firmware rejected {} commands ({:?})",
            report.commands_rejected,
            report.rejections
        );
    }
    Ok(())
}

/// The demo with a progress bar (unless --json), and its chart.
pub fn run(a: &Args) -> anyhow::Result<DemoReport> {
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(a.episodes as u64, "episodes")
    };
    let report = offramp_rig::demo::run(&a.config()?, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if let Some(path) = &a.report {
        plot::chart(
            path,
            "offramp demo: latency from camera frame",
            "ms",
            "fraction of frames",
            &[
                Series::new(
                    "frame -> action on zenoh",
                    plot::cdf(&report.to_sent_ms),
                    Mark::Line,
                ),
                Series::new(
                    "frame -> applied by the firmware",
                    plot::cdf(&report.to_applied_ms),
                    Mark::Bold,
                ),
            ],
        )?;
    }
    Ok(report)
}

/// One screen for a person.
pub fn print_human(r: &DemoReport) {
    println!(
        "offramp demo: simulator camera -> exit chain -> {} -> firmware -> wheels",
        r.link
    );
    println!("  firmware               {}", r.firmware);
    println!("  engine set             {}", r.engines);
    println!(
        "  episodes               {} reached the target of {} ({:.0}%)",
        r.successes,
        r.episodes,
        100.0 * r.success_rate
    );
    println!(
        "  frames                 {} (mean exit {:.2}; per exit {})",
        r.frames,
        r.mean_exit,
        r.exit_shares
            .iter()
            .map(|s| format!("{:.0}%", 100.0 * s))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "  compute saved          {:.0}% vs the full model",
        100.0 * r.compute_saved
    );
    if let (Some(robot), Some(o)) = (r.robot_compute_ratio, &r.offload) {
        println!(
            "  offload                robot computed {:.0}% of the full model; {} requests, {} answered, {} fallbacks",
            100.0 * robot,
            o.requests,
            o.answered,
            o.fallbacks
        );
    }
    if let Some(s) = r.frame_to_applied_ms {
        println!(
            "  frame -> applied       p50 {:.2} ms, p99 {:.2} ms",
            s.p50, s.p99
        );
    }
    if let Some(d) = r.deadline_ms {
        println!("  deadline {d} ms        {} misses", r.deadline_misses);
    }
    println!(
        "  commands               {} sent, {} forwarded by the bridge, {} rejected",
        r.commands_sent, r.bridge.forwarded, r.commands_rejected
    );
    if let Some(t) = r.timeout_to_stop_ms {
        println!(
            "  silence -> motors off  {t:.1} ms (firmware clock), state {}",
            r.final_motor_state
        );
    }
}
