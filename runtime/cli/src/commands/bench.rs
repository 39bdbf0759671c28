//! `offramp bench`: benchmarks that print JSON.

use crate::args::at_least;
#[cfg(feature = "sim")]
use crate::args::{non_negative, positive};
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
        #[arg(long)]
        engines: PathBuf,
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
    /// same ONNX files, single-threaded, in one run; with --tensorrt, the
    /// same model's TensorRT plans too (host wall time and CUDA-event time).
    Engines {
        #[arg(long)]
        engines: PathBuf,
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
        #[arg(long, default_value = "engines/models/demo")]
        engines: PathBuf,
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
        #[arg(long, default_value = "engines/models/demo")]
        engines: PathBuf,
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

pub fn main(a: Args) -> anyhow::Result<()> {
    let json = match a.command {
        #[cfg(feature = "sim")]
        BenchCommand::Runtime {
            engines,
            frames,
            deadline_ms,
            hogs,
            period_ms,
        } => {
            let hogs =
                hogs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let r = super::bench_runtime::run(&engines, frames, deadline_ms, hogs, period_ms)?;
            serde_json::to_string_pretty(&r)?
        }
        BenchCommand::Engines {
            engines,
            tensorrt,
            iters,
            ops,
            python,
        } => serde_json::to_string_pretty(&super::bench_engines::run(
            &engines,
            tensorrt.as_deref(),
            iters,
            ops,
            &python,
        )?)?,
        #[cfg(feature = "sim")]
        BenchCommand::Offload {
            engines,
            episodes,
            first_seed,
            local_exits,
            robot_slowdown,
        } => serde_json::to_string_pretty(&super::bench_offload::run(
            &engines,
            episodes,
            first_seed,
            local_exits,
            robot_slowdown,
        )?)?,
        #[cfg(feature = "sim")]
        BenchCommand::Zenoh {
            iters,
            engines,
            demo_episodes,
        } => {
            serde_json::to_string_pretty(&super::bench_zenoh::run(iters, engines, demo_episodes)?)?
        }
    };
    println!("{json}");
    Ok(())
}
