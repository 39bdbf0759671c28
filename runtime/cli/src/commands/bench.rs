//! `offramp bench`: benchmarks that print JSON.

#[cfg(feature = "sim")]
use crate::args::DemoEngineArgs;
use crate::args::{at_least, non_negative, positive, CameraArgs, EngineArgs};
use offramp_bench::held_frames;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// The runtime on an engine set: overhead outside the engines, early
    /// exit vs the full model on the same frames, latency by exit, and
    /// deadline misses with CPU hogs on every core. What is not given is
    /// sized from the set's measured latency. Prints JSON.
    #[command(mut_arg("camera", |a| a.help("sim | replay:DIR | v4l:/dev/videoN (several: commas); frames are held in memory before anything is timed")))]
    Runtime {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        camera: CameraArgs,
        /// Frames timed in each phase (default: 20 s of the full model, 100 to 10,000).
        #[arg(long, value_parser = at_least(100))]
        frames: Option<usize>,
        /// Deadline of the contended run (default: 1.5× the full model's p99, at least 1 ms).
        #[arg(long, value_parser = positive)]
        deadline_ms: Option<f64>,
        /// CPU-hog threads during the deadline run (default: one per core).
        #[arg(long)]
        hogs: Option<usize>,
        /// Frame period of the deadline run (a camera's; 0: back to back; default: the deadline).
        #[arg(long, value_parser = non_negative)]
        period_ms: Option<f64>,
    },
    /// Per-segment latency: the CPU backend (tract) against onnxruntime on the
    /// same ONNX files, on the same number of threads (--threads), in one run; with --tensorrt, the
    /// same model's TensorRT plans too (host wall time and CUDA-event time).
    Engines {
        #[command(flatten)]
        engine: EngineArgs,
        /// A TensorRT build of the same model (`offramp build --backend
        /// tensorrt`), timed exit by exit in the same run.
        #[arg(long, value_name = "DIR")]
        tensorrt: Option<PathBuf>,
        #[arg(long, default_value_t = 500, value_parser = at_least(10))]
        iters: usize,
        /// Also time every node of tract's plans and report each segment's
        /// time by operator kind (`tract_ops`): where a segment's time goes.
        #[arg(long)]
        ops: bool,
        /// Python with onnxruntime for the reference column.
        #[arg(long, env = "OFFRAMP_PYTHON", default_value = "python3")]
        python: String,
    },
    /// A long stream, every exit in turn: memory, frame cost, a cache's occupancy. Prints JSON.
    Memory {
        #[command(flatten)]
        engine: EngineArgs,
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
        frames: u64,
    },
    #[cfg(feature = "sim")]
    /// Local-only against offloading the deep exits to a server (in-process,
    /// zenoh on loopback) on the same closed-loop episodes, the robot's
    /// engines slowed down by a stated factor. Prints JSON.
    Offload {
        #[command(flatten)]
        engine: DemoEngineArgs,
        #[arg(long, default_value_t = 20, value_parser = at_least(1))]
        episodes: usize,
        /// Simulator seeds from here (validation range by default: see
        /// docs/offload.md).
        #[arg(long, default_value_t = 1_000_000)]
        first_seed: u64,
        /// Exits the robot keeps (1-based); deeper ones are served.
        #[arg(long, default_value_t = 1, value_parser = at_least(1))]
        local_exits: usize,
        /// How many times slower the robot's engines run than the server's.
        #[arg(long, default_value_t = 4.0, value_parser = offramp_bench::offload::parse_slowdown)]
        robot_slowdown: f64,
    },
    #[cfg(feature = "sim")]
    /// Action latency through offramp's zenoh path vs a bare zenoh
    /// put/subscribe of the same payload (interleaved, one run), then the
    /// end-to-end frame -> applied latency of a short demo. Prints JSON.
    Zenoh {
        #[arg(long, default_value_t = 2000, value_parser = at_least(10))]
        iters: usize,
        #[command(flatten)]
        engine: DemoEngineArgs,
        /// Demo episodes for the end-to-end figure (0: skip).
        #[arg(long, default_value_t = 3)]
        demo_episodes: usize,
    },
}

/// `bench zenoh`: the action path ([`offramp_bench::zenoh`]), then the
/// end-to-end figures of a short demo (camera frame → applied by the
/// firmware).
#[cfg(feature = "sim")]
fn zenoh(
    iters: usize,
    engines: PathBuf,
    demo_episodes: usize,
) -> anyhow::Result<offramp_bench::zenoh::ZenohBench> {
    let mut r = offramp_bench::zenoh::run(iters, &crate::progress::bars)?;
    if demo_episodes > 0 {
        let bar = crate::progress::progress_bar(demo_episodes as u64, "demo episodes");
        let d = offramp_rig::demo::run(
            &offramp_rig::demo::DemoConfig {
                firmware: offramp_rig::FirmwareKind::Host,
                bridge: offramp_rig::BridgeMode::Process,
                elf: None,
                engines,
                episodes: demo_episodes,
                first_seed: 0,
                deadline_ms: None,
                robot: "offramp-bench".into(),
                cmd_vel: false,
                offload: None,
            },
            &|| bar.inc(1),
        )?;
        bar.finish_and_clear();
        r.demo_episodes = demo_episodes;
        (r.frame_to_applied_ms, r.frame_to_sent_ms) = (d.frame_to_applied_ms, d.frame_to_sent_ms);
    }
    Ok(r)
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let json = match a.command {
        BenchCommand::Runtime {
            engine,
            camera,
            frames,
            deadline_ms,
            hogs,
            period_ms,
        } => {
            let set = engine.open()?;
            let (held, views) =
                held_frames::held(&camera.camera, frames.unwrap_or(5000).min(5000))?;
            let sizing = offramp_bench::runtime::Sizing {
                frames,
                deadline_ms,
                period_ms,
            };
            let hogs =
                hogs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let r = offramp_bench::runtime::run(
                &set,
                &engine.engines,
                &camera.camera.to_string(),
                (&held, views),
                &sizing,
                hogs,
                &crate::progress::bars,
            )?;
            serde_json::to_string_pretty(&r)?
        }
        BenchCommand::Engines {
            engine,
            tensorrt,
            iters,
            ops,
            python,
        } => serde_json::to_string_pretty(&offramp_bench::engines::run(
            &engine.engines,
            tensorrt.as_deref(),
            iters,
            ops,
            &python,
            engine.threads(),
        )?)?,
        BenchCommand::Memory { engine, frames } => serde_json::to_string_pretty(
            &offramp_bench::memory::run(&engine.open()?, frames, &crate::progress::bars)?,
        )?,
        #[cfg(feature = "sim")]
        BenchCommand::Offload {
            engine,
            episodes,
            first_seed,
            local_exits,
            robot_slowdown,
        } => serde_json::to_string_pretty(&offramp_bench::offload::run(
            &engine.engines,
            episodes,
            first_seed,
            local_exits,
            robot_slowdown,
            &crate::progress::bars,
        )?)?,
        #[cfg(feature = "sim")]
        BenchCommand::Zenoh {
            iters,
            engine,
            demo_episodes,
        } => serde_json::to_string_pretty(&zenoh(iters, engine.engines, demo_episodes)?)?,
    };
    println!("{json}");
    Ok(())
}
