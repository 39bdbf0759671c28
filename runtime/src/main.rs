//! `offramp`: the early-exit edge runtime for robots, and its tools.

mod bridge;
mod build_cmd;
mod bundle_cmd;
mod calibrate_cmd;
mod demo;
mod engine_bench;
mod firmware_bench;
mod firmware_session;
mod plot;
mod profile_cmd;
mod run_cmd;
mod runtime_bench;
mod session;
mod sim_cmd;
mod stats;
mod sweep_cmd;
mod zenoh_bench;

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
    Demo {
        /// Which firmware closes the loop.
        #[arg(long, value_enum, default_value = "host")]
        firmware: demo::FirmwareKind,
        /// Where the serial bridge runs.
        #[arg(long, value_enum, default_value = "process")]
        bridge: demo::BridgeMode,
        /// Firmware image for `--firmware qemu` (default: build it).
        #[arg(long)]
        elf: Option<PathBuf>,
        /// Engine set (default: the committed demo set, from the repository root).
        #[arg(long, default_value = "engines/demo")]
        engines: PathBuf,
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        /// Held-out evaluation seeds start at 0.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Per-frame deadline from camera frame to command sent.
        #[arg(long)]
        deadline_ms: Option<f64>,
        /// Robot name: the zenoh keys are <robot>/action, <robot>/telemetry.
        #[arg(long, default_value = "offramp-demo")]
        robot: String,
        /// Also publish each command as a ROS 2 Twist (CDR) on `cmd_vel`.
        #[arg(long)]
        cmd_vel: bool,
        /// Write a latency plot (SVG) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// zenoh <-> the motor controller's serial link: forwards actions as
    /// wire-protocol commands, publishes firmware telemetry, reconnects.
    Bridge {
        /// Serial device (e.g. /dev/ttyACM0, /dev/serial/by-id/...).
        #[arg(long)]
        serial: PathBuf,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        #[command(flatten)]
        zenoh: ZenohArgs,
    },
    /// Package the aarch64 binary, an engine set, configs, systemd units and
    /// an install script into one file for the robot.
    Bundle {
        /// Only `jetson` (aarch64-unknown-linux-gnu, JetPack 5 and 6).
        #[arg(long, default_value = "jetson")]
        target: String,
        #[arg(long)]
        out: PathBuf,
        /// The aarch64 binary (default: $CARGO_TARGET_DIR or ./target,
        /// aarch64-unknown-linux-gnu/jetson/offramp).
        #[arg(long)]
        binary: Option<PathBuf>,
        #[arg(long, default_value = "engines/demo")]
        engines: PathBuf,
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
    /// Run the runtime on a camera: newest frame → preprocess → exit chain
    /// → action, with live stats.
    Run {
        #[arg(long)]
        engines: PathBuf,
        /// sim | replay:DIR | v4l:/dev/videoN
        #[arg(long, default_value = "sim")]
        camera: offramp_runtime::camera::CameraSpec,
        /// Per-frame deadline from capture; deeper exits are skipped when
        /// they cannot finish in time.
        #[arg(long)]
        deadline_ms: Option<f64>,
        /// Flight-record file (read it with `offramp recording`).
        #[arg(long)]
        record: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Camera rate for sim and replay.
        #[arg(long, default_value_t = 10.0)]
        fps: f64,
        /// Always exit here (1-based) instead of the calibrated criterion.
        #[arg(long)]
        exit: Option<usize>,
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Publish every action over zenoh (to `offramp bridge`).
        #[arg(long)]
        zenoh: bool,
        /// With --zenoh: mirror commands as a ROS 2 Twist on `cmd_vel`.
        #[arg(long)]
        cmd_vel: bool,
        #[command(flatten)]
        zenoh_args: ZenohArgs,
        #[arg(long)]
        json: bool,
    },
    /// Profile latency and energy per exit on this device: idle baseline,
    /// fixed-exit blocks, then the calibrated thresholds, with a power
    /// sampler running throughout.
    Profile {
        #[arg(long)]
        engines: PathBuf,
        /// sim | replay:DIR (frames are loaded into memory first).
        #[arg(long, default_value = "sim")]
        camera: offramp_runtime::camera::CameraSpec,
        /// Frames for the calibrated run (and the pool the blocks cycle over).
        #[arg(long, default_value_t = 2000)]
        frames: usize,
        /// auto | ina3221 | iio | tegrastats | rapl | none
        #[arg(long, default_value = "auto")]
        power: offramp_runtime::power::PowerChoice,
        /// Where /sys is looked for (a copy of a device's tree, for tests).
        #[arg(long, default_value = "/")]
        sysfs_root: PathBuf,
        /// Power samples per second.
        #[arg(long, default_value_t = 100.0)]
        sample_hz: f64,
        /// Idle baseline before the run.
        #[arg(long, default_value_t = 2.0)]
        idle_seconds: f64,
        /// Time per exit in the fixed-exit blocks (split over --rounds).
        #[arg(long, default_value_t = 3.0)]
        block_seconds: f64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Camera rate for the average-power projection.
        #[arg(long, default_value_t = 30.0)]
        fps: f64,
        /// Directory for profile.json, the plots and the power trace.
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print a flight record as JSON lines (default) or CSV.
    Recording {
        file: PathBuf,
        #[arg(long)]
        csv: bool,
        /// Exits shown in CSV columns.
        #[arg(long, default_value_t = 4)]
        exits: usize,
    },
    /// Calibrate exit thresholds under compute, latency and memory budgets
    /// (DeeR) and write them into the engine set's manifest.
    Calibrate {
        #[arg(long)]
        engines: PathBuf,
        /// Mean compute as a share of the full model's (e.g. 0.1667 for 1/6).
        #[arg(long)]
        budget_ratio: Option<f64>,
        /// Mean compute in MFLOPs per frame (2 FLOPs per MAC).
        #[arg(long)]
        budget_mflops: Option<f64>,
        /// Cap the deepest exit so that its p99 cumulative latency, measured
        /// here, stays under this.
        #[arg(long)]
        max_latency_ms: Option<f64>,
        /// Cap the deepest exit so that weights + activations fit.
        #[arg(long)]
        max_memory_mb: Option<f64>,
        /// Recorded episodes (`offramp sim record`); default: closed loop in
        /// the simulator on --sim-episodes episodes from --first-seed.
        #[arg(long)]
        episodes: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        sim_episodes: usize,
        /// Calibration seeds; keep them apart from evaluation (0..) and
        /// training (100000..) seeds.
        #[arg(long, default_value_t = 200_000)]
        first_seed: u64,
        /// Solve passes (the committed head state follows the thresholds).
        #[arg(long, default_value_t = 3)]
        iterations: usize,
        /// Then refine the thresholds in closed loop in the simulator
        /// (budget-matched successive halving, seeds from --first-seed), N
        /// episodes for the final comparison; about 5·N episodes in all.
        #[arg(long, value_name = "N")]
        refine: Option<usize>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The success-vs-compute curve: calibrate for each budget on
    /// calibration episodes, evaluate on held-out ones, with every fixed exit
    /// as a reference. Writes sweep.json and a plot; the manifest is untouched.
    CalibrateSweep {
        #[arg(long)]
        engines: PathBuf,
        /// Budgets as shares of the full model's compute.
        #[arg(long, value_delimiter = ',', default_value = "0.35,0.5,0.7")]
        budgets: Vec<f64>,
        #[arg(long, default_value_t = 100)]
        calibration_episodes: usize,
        #[arg(long, default_value_t = 200_000)]
        calibration_seed: u64,
        #[arg(long, default_value_t = 200)]
        eval_episodes: usize,
        #[arg(long, default_value_t = 0)]
        eval_seed: u64,
        #[arg(long, default_value_t = 3)]
        iterations: usize,
        /// Also refine each budget in closed loop, offramp's search and
        /// DeeR's 20-call Bayesian optimisation side by side, N calibration
        /// episodes per full evaluation.
        #[arg(long, value_name = "N")]
        refine: Option<usize>,
        #[arg(long)]
        report: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The simulator: record demonstrations, measure it.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Motor-controller firmware tools.
    Firmware {
        #[command(subcommand)]
        command: FirmwareCommand,
    },
}

/// Where the zenoh session connects. Without a config file: peer mode,
/// no multicast scouting, the endpoints given here.
#[derive(clap::Args, Clone, Debug)]
struct ZenohArgs {
    /// Robot name: keys <robot>/action, <robot>/telemetry, <robot>/alive/*.
    #[arg(long, default_value = "offramp")]
    robot: String,
    /// zenoh JSON5 config file (replaces the embedded default).
    #[arg(long)]
    zenoh_config: Option<PathBuf>,
    /// peer | client
    #[arg(long)]
    zenoh_mode: Option<String>,
    /// Endpoints to listen on, e.g. tcp/127.0.0.1:7447 (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// Endpoints to connect to (repeatable).
    #[arg(long)]
    connect: Vec<String>,
}

impl ZenohArgs {
    fn options(&self) -> offramp_runtime::zenoh_link::ZenohOptions {
        offramp_runtime::zenoh_link::ZenohOptions {
            config: self.zenoh_config.clone(),
            mode: self.zenoh_mode.clone(),
            listen: self.listen.clone(),
            connect: self.connect.clone(),
        }
    }
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
    /// The runtime on an engine set: overhead outside the engines, early
    /// exit vs the full model on the same frames, and deadline misses with
    /// CPU hogs on every core. Prints JSON.
    Runtime {
        #[arg(long)]
        engines: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        frames: usize,
        #[arg(long, default_value_t = 10.0)]
        deadline_ms: f64,
        /// CPU-hog threads during the deadline run (default: one per core).
        #[arg(long)]
        hogs: Option<usize>,
        /// Frame period of the deadline run (a camera's rate; 0: back to back).
        #[arg(long, default_value_t = 2.0)]
        period_ms: f64,
    },
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
    /// Action latency through offramp's zenoh path vs a bare zenoh
    /// put/subscribe of the same payload (interleaved, one run), then the
    /// end-to-end frame -> applied latency of a short demo. Prints JSON.
    Zenoh {
        #[arg(long, default_value_t = 2000)]
        iters: usize,
        #[arg(long, default_value = "engines/demo")]
        engines: PathBuf,
        /// Demo episodes for the end-to-end figure (0: skip).
        #[arg(long, default_value_t = 3)]
        demo_episodes: usize,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Record expert demonstrations as .npy files (frames, instructions,
    /// expert actions, episode indices) for training.
    Record {
        #[arg(long)]
        episodes: usize,
        #[arg(long)]
        out: PathBuf,
        /// Episode i uses seed first_seed + i.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Driving noise (share of the limits) so the data covers recoveries.
        #[arg(long, default_value_t = 0.3)]
        noise: f32,
        /// DAgger: this engine set drives (a random exit per episode, or its
        /// criterion: --learner-criterion-share) while the expert labels every frame.
        #[arg(long)]
        learner: Option<PathBuf>,
        /// With --learner, the share of steps the expert drives instead.
        #[arg(long, default_value_t = 0.3)]
        expert_share: f32,
        /// With --learner, the share of episodes its calibrated criterion
        /// drives (the deployed operating point) instead of a random fixed
        /// exit.
        #[arg(long, default_value_t = 0.0)]
        learner_criterion_share: f32,
        /// Simulator configuration (TOML); default: the built-in one.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Closed-loop evaluation of an engine set driving the simulator: success
    /// rate and the share of frames each exit gets right, per fixed exit and
    /// for the calibrated criterion.
    Eval {
        #[arg(long)]
        engines: PathBuf,
        #[arg(long, default_value_t = 200)]
        episodes: usize,
        /// Held-out episodes: training data uses seeds from 100000.
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        /// Evaluate only this exit (1-based); default: every exit, then the
        /// criterion if the set is calibrated.
        #[arg(long)]
        exit: Option<usize>,
        /// Evaluate only the calibrated criterion (an operating point on
        /// many episodes without re-running the fixed exits).
        #[arg(long, conflicts_with = "exit")]
        criterion: bool,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Render + physics throughput in frames per second (JSON).
    Bench {
        #[arg(long, default_value_t = 20_000)]
        frames: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FirmwareCommand {
    /// Drive the controller with an S-curve over the wire protocol, then
    /// check that it stops the motors on its own when commands stop.
    Session {
        #[arg(long, value_enum, default_value = "host")]
        firmware: demo::FirmwareKind,
        #[arg(long)]
        elf: Option<PathBuf>,
        /// Seconds of driving before the commands stop.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long)]
        json: bool,
    },
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
            bridge,
            elf,
            engines,
            episodes,
            first_seed,
            deadline_ms,
            robot,
            cmd_vel,
            report,
            json,
        } => {
            if episodes == 0 {
                anyhow::bail!("--episodes must be at least 1");
            }
            let report = demo::run(&demo::DemoArgs {
                firmware,
                bridge,
                elf,
                engines,
                episodes,
                first_seed,
                deadline_ms,
                robot,
                cmd_vel,
                report,
                json,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                demo::print_human(&report);
            }
            if report.commands_rejected > 0 {
                anyhow::bail!(
                    "the firmware rejected {} commands ({:?})",
                    report.commands_rejected,
                    report.rejections
                );
            }
        }
        Command::Firmware {
            command:
                FirmwareCommand::Session {
                    firmware,
                    elf,
                    seconds,
                    json,
                },
        } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                anyhow::bail!("--seconds must be a positive number, got {seconds}");
            }
            let cfg = session::SessionConfig {
                drive_for: Duration::from_secs_f64(seconds),
                ..Default::default()
            };
            let report = firmware_session::run(firmware, elf.as_deref(), &cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                firmware_session::print_human(&report);
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
                BenchCommand::Runtime {
                    engines,
                    frames,
                    deadline_ms,
                    hogs,
                    period_ms,
                },
        } => {
            let hogs =
                hogs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let report =
                runtime_bench::run(&engines, frames.max(100), deadline_ms, hogs, period_ms)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Bench {
            command:
                BenchCommand::Zenoh {
                    iters,
                    engines,
                    demo_episodes,
                },
        } => {
            let report = zenoh_bench::run(iters.max(10), engines, demo_episodes)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
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
        Command::Sim {
            command:
                SimCommand::Record {
                    episodes,
                    out,
                    first_seed,
                    noise,
                    learner,
                    expert_share,
                    learner_criterion_share,
                    config,
                },
        } => {
            let cfg = sim_cmd::load_config(config.as_deref())?;
            for (flag, v) in [
                ("--expert-share", expert_share),
                ("--learner-criterion-share", learner_criterion_share),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    anyhow::bail!("{flag} {v}: must be a share between 0 and 1");
                }
            }
            let learner = learner.as_deref().map(|engines| sim_cmd::LearnerOptions {
                engines,
                expert_share,
                criterion_share: learner_criterion_share,
            });
            sim_cmd::run_record(&cfg, episodes, first_seed, noise, &out, learner)?;
        }
        Command::Bundle {
            target,
            out,
            binary,
            engines,
            json,
        } => {
            let r = bundle_cmd::run(&bundle_cmd::BundleArgs {
                target,
                out,
                binary,
                engines,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {} ({} files; binary needs glibc {})",
                    r.out,
                    r.files.len(),
                    r.glibc_required.as_deref().unwrap_or("?")
                );
            }
        }
        Command::Bridge {
            serial,
            baud,
            zenoh,
        } => {
            bridge::run(&bridge::BridgeArgs {
                serial,
                baud,
                robot: zenoh.robot.clone(),
                zenoh: zenoh.options(),
            })?;
        }
        Command::Run {
            engines,
            camera,
            deadline_ms,
            record,
            frames,
            seconds,
            fps,
            exit,
            first_seed,
            config,
            zenoh,
            cmd_vel,
            zenoh_args,
            json,
        } => {
            if frames.is_none() && seconds.is_none() {
                tracing::info!("running until interrupted (--frames or --seconds to stop)");
            }
            let report = run_cmd::run(&run_cmd::RunArgs {
                engines,
                camera,
                deadline_ms,
                record,
                frames,
                seconds,
                fps,
                fixed_exit: exit,
                first_seed,
                config,
                zenoh: zenoh.then(|| (zenoh_args.robot.clone(), zenoh_args.options(), cmd_vel)),
                json,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                run_cmd::print_human(&report);
            }
        }
        Command::Profile {
            engines,
            camera,
            frames,
            power,
            sysfs_root,
            sample_hz,
            idle_seconds,
            block_seconds,
            rounds,
            fps,
            report,
            json,
        } => {
            let r = profile_cmd::run(&profile_cmd::ProfileArgs {
                engines,
                camera,
                frames,
                power,
                sysfs_root,
                sample_hz,
                idle_seconds,
                block_seconds,
                rounds,
                fps,
                report,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                profile_cmd::print_human(&r);
            }
        }
        Command::Recording { file, csv, exits } => {
            run_cmd::show_recording(&file, csv, run_cmd::check_exits(exits)?)?;
        }
        Command::Calibrate {
            engines,
            budget_ratio,
            budget_mflops,
            max_latency_ms,
            max_memory_mb,
            episodes,
            sim_episodes,
            first_seed,
            iterations,
            refine,
            json,
            config,
        } => {
            let cfg = sim_cmd::load_config(config.as_deref())?;
            let source = match episodes {
                Some(dir) => calibrate_cmd::Source::Recorded(dir),
                None => calibrate_cmd::Source::Sim {
                    first_seed,
                    episodes: sim_episodes.max(1),
                },
            };
            let budgets = calibrate_cmd::Budgets {
                ratio: budget_ratio,
                mflops: budget_mflops,
                max_latency_ms,
                max_memory_mb,
            };
            let refine = match refine {
                Some(0) => anyhow::bail!("--refine 0: give the number of episodes (at least 1)"),
                Some(e) => Some((first_seed, e)),
                None => None,
            };
            calibrate_cmd::run(&cfg, &engines, &budgets, &source, iterations, refine, json)?;
        }
        Command::CalibrateSweep {
            engines,
            budgets,
            calibration_episodes,
            calibration_seed,
            eval_episodes,
            eval_seed,
            iterations,
            refine,
            report,
            json,
            config,
        } => {
            let cfg = sim_cmd::load_config(config.as_deref())?;
            let s = sweep_cmd::run(
                &cfg,
                &sweep_cmd::SweepArgs {
                    engines,
                    budgets,
                    calibration_episodes: calibration_episodes.max(1),
                    calibration_seed,
                    eval_episodes: eval_episodes.max(1),
                    eval_seed,
                    iterations,
                    refine: refine.map(|e| e.max(1)),
                    report,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                sweep_cmd::print_human(&s);
            }
        }
        Command::Sim {
            command:
                SimCommand::Eval {
                    engines,
                    episodes,
                    first_seed,
                    exit,
                    criterion,
                    json,
                    config,
                },
        } => {
            let cfg = sim_cmd::load_config(config.as_deref())?;
            let which = match (exit, criterion) {
                (Some(k), _) => sim_cmd::EvalPolicies::Exit(k),
                (None, true) => sim_cmd::EvalPolicies::Criterion,
                (None, false) => sim_cmd::EvalPolicies::All,
            };
            sim_cmd::run_eval(&cfg, &engines, episodes, first_seed, which, json)?;
        }
        Command::Sim {
            command: SimCommand::Bench { frames, config },
        } => {
            let cfg = sim_cmd::load_config(config.as_deref())?;
            let report = sim_cmd::bench(&cfg, frames.max(100));
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
