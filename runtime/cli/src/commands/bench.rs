//! `offramp bench`: benchmarks that print JSON.

use crate::args::{at_least, EngineArgs};
#[cfg(feature = "sim")]
use crate::args::{non_negative, positive, DemoEngineArgs};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    #[cfg(feature = "sim")]
    /// The runtime on an engine set: overhead outside the engines, early
    /// exit vs the full model on the same frames, and deadline misses with
    /// CPU hogs on every core. Prints JSON.
    Runtime {
        #[command(flatten)]
        engine: EngineArgs,
        #[arg(long, default_value_t = 10_000, value_parser = at_least(100))]
        frames: usize,
        #[arg(long, default_value_t = 10.0, value_parser = positive)]
        deadline_ms: f64,
        /// CPU-hog threads during the deadline run (default: one per core).
        #[arg(long)]
        hogs: Option<usize>,
        /// Frame period of the deadline run (a camera's rate; 0: back to back).
        #[arg(long, default_value_t = 2.0, value_parser = non_negative)]
        period_ms: f64,
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
        #[arg(long, default_value_t = 4.0, value_parser = slowdown)]
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

/// A slowdown factor: at least 1.
#[cfg(feature = "sim")]
fn slowdown(s: &str) -> Result<f64, String> {
    match positive(s)? {
        f if f >= 1.0 => Ok(f),
        f => Err(format!(
            "{f} is below 1 (the robot cannot be faster than itself)"
        )),
    }
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
        #[cfg(feature = "sim")]
        BenchCommand::Runtime {
            engine,
            frames,
            deadline_ms,
            hogs,
            period_ms,
        } => {
            let hogs =
                hogs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let r = offramp_bench::runtime::run(
                &engine.engines,
                frames,
                deadline_ms,
                hogs,
                period_ms,
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
