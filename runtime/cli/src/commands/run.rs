//! `offramp run`: the runtime on a camera, with live stats.

use crate::args::{at_least_1, positive, print_report, CameraArgs, EngineArgs, ZenohArgs};
use indicatif::{ProgressBar, ProgressStyle};
use offramp_link::actuator::ZenohActuator;
use offramp_link::offload::ZenohOffload;
use offramp_link::zenoh_link::{open_session, Keys, RuntimeLink};
use offramp_link::COMMAND_VALIDITY;
use offramp_runtime::camera::{self, CameraSpec};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::recorder::Recorder;
use offramp_runtime::run_loop::{Actuator, Idle, RunLoop, RunStats};
use offramp_runtime::twist::Limits;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Drives the simulated robot (the capture thread applies the command).
#[cfg(feature = "sim")]
pub struct SimActuator(pub std::sync::Arc<offramp_sim::camera::CommandSlot>);

#[cfg(feature = "sim")]
impl Actuator for SimActuator {
    fn act(&mut self, a: &[f32], _: &offramp_runtime::exit_chain::FrameOutcome) {
        self.0
            .set(offramp_sim::Twist::from_action(a, offramp_sim::LIMITS));
    }
    fn stop(&mut self) {
        self.0.set(offramp_sim::Twist::default());
    }
}

/// The demo robot's command limits (the simulator's `MAX_V` and
/// `MAX_OMEGA`, what its expert commands): `run`'s defaults.
const DEMO_MAX_V: f64 = 0.5;
const DEMO_MAX_OMEGA: f64 = 2.0;

/// `--zenoh` publishes each action as (v, ω): a set whose action is
/// anything else (an arm's joints, a longer vector) is refused at start
/// rather than driven with its first two values.
fn check_twist_action(dims: usize, manifest: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        dims == 2,
        "--zenoh publishes each action as (v, ω) in m/s and rad/s, but the action of {} has {dims} values",
        manifest.display()
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub camera: CameraArgs,
    /// Per-frame deadline from capture; deeper exits are skipped when
    /// they cannot finish in time.
    #[arg(long, value_parser = positive)]
    pub deadline_ms: Option<f64>,
    /// Flight-record file (read it with `offramp recording`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = positive)]
    pub seconds: Option<f64>,
    /// Camera rate for sim and replay.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub fps: f64,
    /// Always exit here (1-based) instead of the calibrated criterion.
    #[arg(long = "exit", value_parser = at_least_1)]
    pub fixed_exit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Simulator configuration (TOML) for `--camera sim`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Publish every action over zenoh (to `offramp bridge`).
    #[arg(long)]
    pub zenoh: bool,
    /// Keep exits 1..=K on this machine and ask a server (`offramp serve`)
    /// for deeper ones when the criterion wants them; without an answer in
    /// time, exit K's action is used.
    #[arg(long, value_name = "K", value_parser = at_least_1)]
    pub offload: Option<usize>,
    /// With --offload and no --deadline-ms: the longest wait for an answer.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub offload_timeout_ms: f64,
    /// With --offload: move the cut by measurement (robot and server time
    /// per exit, the link's round trip), starting from K; it may move to
    /// the end (no offload) when the link is too slow.
    #[arg(long, requires = "offload")]
    pub offload_auto: bool,
    /// The link's bandwidth for --offload-auto, Mbit/s.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub link_mbps: f64,
    /// With --zenoh: mirror commands as a ROS 2 Twist on `cmd_vel`.
    #[arg(long)]
    pub cmd_vel: bool,
    /// With --zenoh: the largest |v| published, m/s (set it to the
    /// robot's; the firmware also clamps wheel speeds to its own limits).
    #[arg(long, default_value_t = DEMO_MAX_V, value_parser = positive, requires = "zenoh")]
    pub max_v: f64,
    /// With --zenoh: the largest |ω| published, rad/s.
    #[arg(long, default_value_t = DEMO_MAX_OMEGA, value_parser = positive, requires = "zenoh")]
    pub max_omega: f64,
    #[command(flatten)]
    pub zenoh_args: ZenohArgs,
    #[arg(long)]
    pub json: bool,
    /// Preprocess on the GPU (CUDA kernels), straight into the TensorRT
    /// engines' input buffer: the frame is uploaded once and its tensor
    /// never comes back to the host. Needs a TensorRT engine set.
    #[cfg(feature = "cuda")]
    #[arg(long)]
    pub gpu_preprocess: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    if a.frames.is_none() && a.seconds.is_none() {
        tracing::info!("running until interrupted (--frames or --seconds to stop)");
    }
    print_report(a.json, &run(&a)?, print_human)
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
    /// The process's peak resident memory (Linux), and the loaded weights in fp32.
    pub peak_rss_mb: Option<f64>,
    pub weights_mb: f64,
    /// With --offload: requests, answers, fallbacks, failovers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload: Option<offramp_runtime::exit_chain::offload::OffloadCounters>,
}

pub fn run(a: &Args) -> anyhow::Result<RunReport> {
    let set = a.engine.open()?;
    if a.zenoh {
        check_twist_action(set.manifest.action_dims(), &set.manifest_path)?;
    }
    // The camera's size sizes the pipeline; its thread starts only once the
    // engines are loaded, so no frame is dropped to the loading.
    #[cfg(feature = "sim")]
    let (source, sim): (Box<dyn camera::Source>, _) = match &a.camera.camera {
        CameraSpec::Sim => {
            let cfg = offramp_sim::SimConfig::load(a.config.as_deref())?;
            let cam = offramp_sim::camera::SimCamera::new(&cfg, a.first_seed);
            let sim = (cam.commands.clone(), cam.stats.clone());
            (Box::new(cam), Some(sim))
        }
        spec => (camera::open(spec)?, None),
    };
    #[cfg(not(feature = "sim"))]
    let source = match &a.camera.camera {
        CameraSpec::Sim => return Err(crate::args::no_sim("--camera sim")),
        spec => camera::open(spec)?,
    };
    // The backend the set was built for: CPU (tract) or TensorRT plans.
    #[allow(unused_mut)]
    let mut pipeline = Pipeline::open(&set, set.manifest.build.backend, source.views())?;
    #[cfg(feature = "cuda")]
    if a.gpu_preprocess {
        pipeline
            .use_cuda_preprocessing()
            .map_err(|e| anyhow::anyhow!("--gpu-preprocess: {e}"))?;
    }
    let n = pipeline.chain.exits();
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
    let session = if a.zenoh || a.offload.is_some() {
        Some(open_session(&a.zenoh_args.options())?)
    } else {
        None
    };
    if let (Some(k), Some(session)) = (a.offload, &session) {
        let link = ZenohOffload::for_set(session.clone(), &a.zenoh_args.robot, &set)?;
        pipeline
            .chain
            .set_offload(
                k,
                Box::new(link),
                Duration::from_secs_f64(a.offload_timeout_ms / 1e3),
            )
            .map_err(|e| anyhow::anyhow!("--offload {k}: {e}"))?;
        if a.offload_auto {
            pipeline.chain.set_offload_auto(a.link_mbps * 1e6 / 8.0);
        }
        tracing::info!(local_exits = k, robot = %a.zenoh_args.robot, "offloading deeper exits");
    }
    let deadline = a.deadline_ms.map(|d| Duration::from_secs_f64(d / 1e3));
    let recorder = match &a.record {
        Some(p) => Some(Recorder::create(p)?),
        None => None,
    };
    let mut rl = RunLoop::new(pipeline, policy, deadline, recorder);
    #[cfg(feature = "sim")]
    let local: Box<dyn Actuator> = match &sim {
        Some((commands, _)) => Box::new(SimActuator(commands.clone())),
        None => Box::new(Idle),
    };
    #[cfg(not(feature = "sim"))]
    let local: Box<dyn Actuator> = Box::new(Idle);
    let mut act: Box<dyn Actuator> = if let (true, Some(session)) = (a.zenoh, &session) {
        let link = RuntimeLink::open(
            session.clone(),
            Keys::new(&a.zenoh_args.robot)?,
            COMMAND_VALIDITY,
            a.cmd_vel,
        )?;
        Box::new(ZenohActuator::new(
            link,
            local,
            Limits {
                v: a.max_v as f32,
                omega: a.max_omega as f32,
            },
        ))
    } else {
        local
    };
    let capture = camera::start(source, a.fps)?;
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
    let frame_timeout = Duration::from_secs_f64(3.0 / a.fps);
    let (max_frames, max_secs) = (a.frames, a.seconds);
    rl.run(&capture, act.as_mut(), frame_timeout, &mut |s, c| {
        if last_print.elapsed() > Duration::from_millis(500) {
            last_print = Instant::now();
            bar.set_message(format!(
                "{} frames, {:.1} fps, {} dropped, {} camera gaps, {} deadline misses",
                s.frames,
                s.frames as f64 / start.elapsed().as_secs_f64(),
                c.dropped,
                c.camera_gaps,
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
    let offload = rl.pipeline.chain.offload_counters();
    // Episodes the simulated robot finished, and how many reached the target.
    #[cfg(feature = "sim")]
    let (sim_episodes, sim_successes) = sim
        .and_then(|(_, stats)| stats.lock().ok().map(|s| (s.episodes, s.successes)))
        .unwrap_or_default();
    #[cfg(not(feature = "sim"))]
    let (sim_episodes, sim_successes) = (0, 0);
    Ok(RunReport {
        camera: a.camera.camera.to_string(),
        engines: a.engine.engines.display().to_string(),
        policy: format!("{policy:?}"),
        stats,
        sim_episodes,
        sim_successes,
        wall_seconds: start.elapsed().as_secs_f64(),
        peak_rss_mb: offramp_engines::peak_resident_bytes().map(|b| b as f64 / 1e6),
        weights_mb: set.manifest.loaded_params() as f64 * 4e-6,
        offload,
    })
}

pub fn print_human(r: &RunReport) {
    let s = &r.stats;
    if let Some(o) = &r.offload {
        println!(
            "offload: {} requests, {} answered, {} fallbacks, {} failovers, {} rejected",
            o.requests, o.answered, o.fallbacks, o.failovers, o.rejected
        );
    }
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
    let peak = r.peak_rss_mb.map_or("?".into(), |m| format!("{m:.1} MB"));
    let weights = r.weights_mb;
    println!("  memory               peak RSS {peak}, weights {weights:.1} MB");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sim")]
    #[test]
    fn the_default_limits_are_the_simulated_robots() {
        assert_eq!(DEMO_MAX_V as f32, offramp_sim::MAX_V);
        assert_eq!(DEMO_MAX_OMEGA as f32, offramp_sim::MAX_OMEGA);
    }

    #[test]
    fn only_a_two_value_action_is_published_as_a_twist() {
        let m = std::path::Path::new("arm/manifest.toml");
        assert!(check_twist_action(2, m).is_ok());
        for dims in [0, 1, 7] {
            let e = check_twist_action(dims, m).unwrap_err().to_string();
            assert!(
                e.contains("arm/manifest.toml") && e.contains(&format!("has {dims} values")),
                "{e}"
            );
        }
    }
}
