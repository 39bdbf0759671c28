//! `offramp run`: the runtime on a camera, with live stats.

use crate::sim_cmd::load_config;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use offramp_engines::EngineSet;
use offramp_runtime::camera::{self, CameraSpec, CommandSlot};
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy, FrameOutcome};
use offramp_runtime::recorder::Recorder;
use offramp_runtime::run_loop::{Actuator, RunLoop, RunStats};
use offramp_runtime::zenoh_link::{open_session, Keys, RuntimeLink, ZenohOptions};
use offramp_sim::Twist;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Drives the simulated robot (the capture thread applies the command).
pub struct SimActuator(pub Arc<CommandSlot>);

impl Actuator for SimActuator {
    fn act(&mut self, a: &[f32], _: &FrameOutcome) {
        self.0.set(Twist::from_action(a));
    }
    fn stop(&mut self) {
        self.0.set(Twist::default());
    }
}

pub struct RunArgs {
    pub engines: PathBuf,
    pub camera: CameraSpec,
    pub deadline_ms: Option<f64>,
    pub record: Option<PathBuf>,
    pub frames: Option<u64>,
    pub seconds: Option<f64>,
    pub fps: f64,
    pub fixed_exit: Option<usize>,
    pub first_seed: u64,
    pub config: Option<PathBuf>,
    /// Publish actions over zenoh: (robot, session options, mirror cmd_vel).
    pub zenoh: Option<(String, ZenohOptions, bool)>,
    pub json: bool,
}

/// Publishes each action over zenoh as well as driving the inner actuator.
/// zenoh allocates inside `put` (as tract does inside a run): this actuator
/// is outside the runtime's zero-allocation guarantee.
pub struct ZenohActuator<A> {
    pub link: RuntimeLink,
    pub inner: A,
    pub errors: u64,
}

impl<A: Actuator> Actuator for ZenohActuator<A> {
    fn act(&mut self, a: &[f32], o: &FrameOutcome) {
        let t = Twist::from_action(a);
        if let Err(e) = self.link.publish(t.v, t.omega, o.exit as u8, false) {
            self.note(e);
        }
        self.inner.act(a, o);
    }
    fn stop(&mut self) {
        if let Err(e) = self.link.publish(0.0, 0.0, 0, true) {
            self.note(e);
        }
        self.inner.stop();
    }
}

impl<A> ZenohActuator<A> {
    fn note(&mut self, e: offramp_runtime::zenoh_link::ZenohError) {
        if self.errors == 0 {
            tracing::warn!("{e}");
        }
        self.errors += 1;
    }
}

#[derive(Serialize)]
pub struct RunReport {
    pub camera: String,
    pub engines: String,
    pub policy: String,
    #[serde(flatten)]
    pub stats: RunStats,
    pub sim_episodes: u64,
    pub sim_successes: u64,
    pub wall_seconds: f64,
}

pub fn run(a: &RunArgs) -> anyhow::Result<RunReport> {
    let cfg = load_config(a.config.as_deref())?;
    let set = EngineSet::open(&a.engines)?;
    // The backend the set was built for: CPU (tract) or TensorRT plans.
    let chain = ExitChain::new(&set, set.manifest.build.backend)?;
    let n = chain.exits();
    let policy = match a.fixed_exit {
        Some(k) if (1..=n).contains(&k) => ExitPolicy::Fixed(k - 1),
        Some(k) => anyhow::bail!("--exit {k}: the engine set has exits 1..={n}"),
        None => ExitPolicy::Criterion,
    };
    if policy == ExitPolicy::Criterion && set.manifest.criterion.thresholds.is_empty() {
        tracing::warn!(
            "{} has no thresholds: every frame runs the full model (run `offramp calibrate`)",
            set.manifest_path.display()
        );
    }
    let deadline = match a.deadline_ms {
        Some(d) if d > 0.0 && d.is_finite() => Some(Duration::from_secs_f64(d / 1e3)),
        Some(d) => anyhow::bail!("--deadline-ms must be a positive number, got {d}"),
        None => None,
    };
    let capture = camera::start(&a.camera, &cfg, a.fps, a.first_seed)?;
    let pre =
        offramp_runtime::preprocess::Preprocessor::for_set(&set, (capture.width, capture.height))?;
    let recorder = match &a.record {
        Some(p) => Some(Recorder::create(p)?),
        None => None,
    };
    let mut rl = RunLoop::new(chain, pre, policy, deadline, recorder);
    let sim_act = SimActuator(capture.commands.clone());
    let mut act: Box<dyn Actuator> = match &a.zenoh {
        Some((robot, opts, cmd_vel)) => {
            let session = open_session(opts)?;
            let link = RuntimeLink::open(
                session,
                Keys::new(robot)?,
                Duration::from_millis(200),
                *cmd_vel,
            )?;
            Box::new(ZenohActuator {
                link,
                inner: sim_act,
                errors: 0,
            })
        }
        None => Box::new(sim_act),
    };
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b
    };
    let start = Instant::now();
    let mut last_print = start;
    let frame_timeout = Duration::from_secs_f64(3.0 / a.fps.max(0.1));
    let (max_frames, max_secs) = (a.frames, a.seconds);
    rl.run(&capture, act.as_mut(), frame_timeout, &mut |s| {
        if last_print.elapsed() > Duration::from_millis(500) {
            last_print = Instant::now();
            bar.set_message(format!(
                "{} frames, {:.1} fps, {} dropped, {} camera gaps, {} deadline misses",
                s.frames,
                s.frames as f64 / start.elapsed().as_secs_f64(),
                s.dropped,
                s.camera_gaps,
                s.deadline_misses
            ));
            bar.tick();
        }
        max_frames.is_some_and(|m| s.frames >= m)
            || max_secs.is_some_and(|m| start.elapsed().as_secs_f64() >= m)
    })?;
    bar.finish_and_clear();
    act.stop();
    let stats = rl.summary();
    let sim = capture
        .sim_stats
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    Ok(RunReport {
        camera: format!("{:?}", a.camera),
        engines: a.engines.display().to_string(),
        policy: format!("{policy:?}"),
        stats,
        sim_episodes: sim.episodes,
        sim_successes: sim.successes,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

pub fn print_human(r: &RunReport) {
    let s = &r.stats;
    println!("offramp run: {} on {} ({})", r.engines, r.camera, r.policy);
    println!(
        "  frames               {} in {:.1} s ({} dropped, {} camera gaps)",
        s.frames, r.wall_seconds, s.dropped, s.camera_gaps
    );
    println!(
        "  mean exit            {:.2}  (frames per exit {:?})",
        s.mean_exit, s.exit_counts
    );
    println!(
        "  compute              {:.1}% of the full model",
        100.0 * s.compute_ratio
    );
    println!(
        "  frame latency        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        s.latency_p50_ms, s.latency_p99_ms, s.latency_max_ms
    );
    if let Some(d) = s.deadline_ms {
        println!(
            "  deadline {d} ms       {} misses, {} frames cut short",
            s.deadline_misses, s.deadline_cuts
        );
    }
    if r.sim_episodes > 0 {
        println!(
            "  simulator            {}/{} episodes reached the target",
            r.sim_successes, r.sim_episodes
        );
    }
}

/// `offramp recording FILE`: prints a flight record as JSON lines or CSV.
pub fn show_recording(path: &Path, csv: bool, exits: usize) -> anyhow::Result<()> {
    let records = offramp_runtime::recorder::read(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if csv {
        offramp_runtime::recorder::to_csv(&records, exits, &mut out)?;
    } else {
        use std::io::Write;
        for r in &records {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

pub fn check_exits(exits: usize) -> anyhow::Result<usize> {
    (1..=offramp_runtime::exit_chain::MAX_EXITS)
        .contains(&exits)
        .then_some(exits)
        .with_context(|| {
            format!(
                "--exits {exits}: between 1 and {}",
                offramp_runtime::exit_chain::MAX_EXITS
            )
        })
}
