//! `offramp`: the early-exit edge runtime for robots, and its tools.

mod build_cmd;
mod demo;
mod engine_bench;
mod firmware_bench;
mod mcu_host;
mod pty;
mod session;
mod stats;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "offramp",
    version,
    about = "Early-exit edge runtime for robots"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `debug` or `offramp=trace`.
    #[arg(long, global = true, env = "OFFRAMP_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job on the embedded defaults.
    Demo {
        /// Which firmware closes the loop.
        #[arg(long, value_enum, default_value = "host")]
        firmware: demo::FirmwareKind,
        /// Firmware image for `--firmware qemu` (default: build it).
        #[arg(long)]
        elf: Option<PathBuf>,
        /// Seconds of driving before the commands stop.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build an engine set from ONNX segments (a directory with model.toml).
    Build {
        /// Directory with model.toml and the ONNX segments.
        #[arg(long)]
        onnx: PathBuf,
        /// Output engine-set directory.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        #[arg(long, value_enum, default_value = "fp32")]
        precision: PrecisionArg,
    },
    /// Benchmarks that print JSON.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Motor-controller firmware tools.
    Firmware {
        #[command(subcommand)]
        command: FirmwareCommand,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Cpu,
    Tensorrt,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PrecisionArg {
    Fp32,
    Fp16,
    Int8,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per-segment latency: the CPU backend (tract) against onnxruntime on the
    /// same ONNX files, single-threaded, in one run.
    Engines {
        #[arg(long)]
        engines: PathBuf,
        #[arg(long, default_value_t = 500)]
        iters: usize,
        /// Python with onnxruntime for the reference column.
        #[arg(long, env = "OFFRAMP_PYTHON", default_value = "python3")]
        python: String,
    },
}

#[derive(Subcommand)]
enum FirmwareCommand {
    /// Measure command→applied latency and timeout→stop time of the real
    /// firmware image in QEMU, in its own clock. Prints JSON.
    Bench {
        /// Firmware image (default: build it).
        #[arg(long)]
        elf: Option<PathBuf>,
        /// Commands whose latency is measured.
        #[arg(long, default_value_t = 100)]
        commands: u32,
        /// Command-timeout trials.
        #[arg(long, default_value_t = 10)]
        trials: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .with_context(|| format!("invalid --log filter {:?}", cli.log))?,
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Command::Demo {
            firmware,
            elf,
            seconds,
            json,
        } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                anyhow::bail!("--seconds must be a positive number, got {seconds}");
            }
            let cfg = session::SessionConfig {
                drive_for: Duration::from_secs_f64(seconds),
                ..Default::default()
            };
            let report = demo::run(firmware, elf, &cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                demo::print_human(&report);
            }
            if !report.all_accepted || report.rejected > 0 {
                anyhow::bail!("the firmware did not accept every command");
            }
        }
        Command::Build {
            onnx,
            out,
            backend,
            precision,
        } => {
            let backend = match backend {
                BackendArg::Cpu => offramp_engines::BackendKind::Cpu,
                BackendArg::Tensorrt => offramp_engines::BackendKind::Tensorrt,
            };
            let precision = match precision {
                PrecisionArg::Fp32 => offramp_engines::Precision::Fp32,
                PrecisionArg::Fp16 => offramp_engines::Precision::Fp16,
                PrecisionArg::Int8 => offramp_engines::Precision::Int8,
            };
            build_cmd::run(onnx, out, backend, precision)?;
        }
        Command::Bench {
            command:
                BenchCommand::Engines {
                    engines,
                    iters,
                    python,
                },
        } => {
            let report = engine_bench::run(&engines, iters.max(10), &python)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Firmware {
            command:
                FirmwareCommand::Bench {
                    elf,
                    commands,
                    trials,
                },
        } => {
            let elf = match elf {
                Some(e) => e,
                None => offramp_qemu_harness::firmware_elf()?,
            };
            let report = firmware_bench::run(&elf, commands.max(1), trials.max(1))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
