//! `offramp`: the early-exit edge runtime for robots, and its tools. Each
//! subcommand is a module of [`commands`] with its own arguments.
//!
//! Features: `sim` (default) brings the simulator and what drives it (demo,
//! sim, calibrate in closed loop, calibrate-sweep, bench runtime, zenoh and
//! offload, `--camera sim`);
//! `qemu` (default) the firmware image in QEMU; `plot` (default) SVG plots in
//! reports; `bundle` (default) the bundle for the robot. The robot's build
//! leaves them out (docs/jetson.md).

mod args;
mod commands;
// Counts live heap bytes for `calibrate --max-memory-mb`; the robot's build
// (no `sim`) keeps the plain system allocator.
#[cfg(feature = "sim")]
mod heap;
mod progress;

use anyhow::Context;
use clap::{Parser, Subcommand};
use commands::*;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "offramp",
    version,
    about = "Early-exit edge runtime for robots"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `debug` or `offramp=trace`.
    #[arg(
        long,
        global = true,
        env = "OFFRAMP_LOG",
        default_value = "info,zenoh=warn,zenoh_transport=warn,zenoh_link_tcp=warn"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job on the embedded defaults: simulator camera, the demo
    /// engine set on the CPU backend, the wire protocol, the firmware's
    /// control logic, closed back into the simulated wheels.
    #[cfg(feature = "sim")]
    Demo(demo::Args),
    /// Run the runtime on a camera: newest frame → preprocess → exit chain
    /// → action, with live stats.
    Run(run::Args),
    /// Serve the deep exits of an engine set to a robot over zenoh (run on
    /// a second device; the robot's `run --offload` asks it).
    Serve(serve::Args),
    /// zenoh <-> the motor controller's serial link: forwards actions as
    /// wire-protocol commands, publishes firmware telemetry, reconnects.
    Bridge(bridge::Args),
    /// An operator's stop that holds (in the bridge and the firmware) until
    /// `offramp operator release`, whatever the runtime sends.
    Operator(operator::Args),
    /// Cut a full ONNX export of a multi-exit model into one segment per
    /// exit (checked against the full model) and write its model.toml.
    Split(split::Args),
    /// Draft the model.toml of an export (segments, or one full export,
    /// split first): exits, carried tensors, actions, inputs; prints what
    /// it guessed and what to confirm.
    #[cfg(feature = "split")]
    Init(split::InitArgs),
    /// Build an engine set from ONNX segments (a directory with model.toml).
    Build(build_set::Args),
    /// Import a LeRobot dataset (v2.x or v3.0: parquet + mp4) into the
    /// replay format, to calibrate on or replay as a camera.
    #[cfg(feature = "lerobot")]
    ImportLerobot(import_lerobot::Args),
    /// Compile the TensorRT shim on this machine, against its TensorRT and
    /// CUDA headers, and check that it opens TensorRT (the bundle's install
    /// script runs it on the robot).
    #[cfg(feature = "tensorrt")]
    BuildShim(build_shim::Args),
    /// Calibrate exit thresholds under compute, latency and memory budgets
    /// (DeeR) and write them into the engine set's manifest: on recorded
    /// episodes (any build), or closed loop in the simulator.
    Calibrate(calibrate::Args),
    /// The success-vs-compute curve: calibrate for each budget on
    /// calibration episodes, evaluate on held-out ones, with every fixed exit
    /// as a reference. Writes sweep.json and a plot; the manifest is untouched.
    #[cfg(feature = "sim")]
    CalibrateSweep(sweep::Args),
    /// Profile latency and energy per exit on this device: idle baseline,
    /// fixed-exit blocks, then the calibrated thresholds, with a power
    /// sampler running throughout.
    Profile(profile::Args),
    /// Record camera episodes into the replay format from any frame source
    /// (V4L2, replay, simulator), to calibrate on the robot's own frames.
    Record(record::Args),
    /// Print a flight record as JSON lines (default) or CSV, or write it
    /// as MCAP (`--mcap OUT`).
    Recording(recording::Args),
    /// Benchmarks that print JSON.
    Bench(bench::Args),
    /// The simulator: record demonstrations, evaluate, measure it.
    #[cfg(feature = "sim")]
    Sim(sim::Args),
    /// Motor-controller firmware tools.
    Firmware(firmware::Args),
    /// Package the aarch64 binary, an engine set, configs, systemd units and
    /// an install script into one file for the robot.
    #[cfg(feature = "bundle")]
    Bundle(bundle::Args),
}

/// A user error prints its message (with its causes, on one line) and exits
/// non-zero, without a backtrace even under RUST_BACKTRACE; a closed pipe
/// (`offramp recording FILE | head`) ends quietly.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .with_context(|| format!("invalid --log filter {:?}", cli.log))?,
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        #[cfg(feature = "sim")]
        Command::Demo(a) => demo::main(a),
        Command::Run(a) => run::main(a),
        Command::Serve(a) => serve::main(a),
        Command::Bridge(a) => bridge::main(a),
        Command::Operator(a) => operator::main(a),
        Command::Split(a) => split::main(a),
        #[cfg(feature = "split")]
        Command::Init(a) => split::init(a),
        Command::Build(a) => build_set::main(a),
        #[cfg(feature = "lerobot")]
        Command::ImportLerobot(a) => import_lerobot::main(a),
        #[cfg(feature = "tensorrt")]
        Command::BuildShim(a) => build_shim::main(a),
        Command::Calibrate(a) => calibrate::main(a),
        #[cfg(feature = "sim")]
        Command::CalibrateSweep(a) => sweep::main(a),
        Command::Profile(a) => profile::main(a),
        Command::Record(a) => record::main(a),
        Command::Recording(a) => recording::main(a),
        Command::Bench(a) => bench::main(a),
        #[cfg(feature = "sim")]
        Command::Sim(a) => sim::main(a),
        Command::Firmware(a) => firmware::main(a),
        #[cfg(feature = "bundle")]
        Command::Bundle(a) => bundle::main(a),
    }
}
