//! `offramp build`: ONNX segments → engine set, with a progress bar and a
//! summary table.

use offramp_build::builder::{build, summary_table, BuildOptions, Progress};
use offramp_engines::{BackendKind, Manifest, Precision};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Directory with model.toml and the ONNX segments.
    #[arg(long)]
    onnx: PathBuf,
    /// Output engine-set directory.
    #[arg(long)]
    out: PathBuf,
    /// cpu: tract runs the segments; onnxruntime: onnxruntime does, opened
    /// at run time (OFFRAMP_ONNXRUNTIME_LIB); tensorrt: TensorRT plans.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
    /// Precision of TensorRT plans (the cpu backend runs fp32). int8 needs
    /// --int8-calibration-cache unless the ONNX graphs carry
    /// QuantizeLinear/DequantizeLinear nodes: without scales the plan's
    /// outputs are meaningless.
    #[arg(long, value_enum, default_value = "fp32")]
    precision: PrecisionArg,
    /// TensorRT INT8 calibration cache for --precision int8 (passed to trtexec
    /// as --calib): the per-tensor scales of these graphs, made by calibrating
    /// them on representative inputs with the TensorRT version that builds.
    #[arg(long, value_name = "FILE")]
    int8_calibration_cache: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Cpu,
    Onnxruntime,
    Tensorrt,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PrecisionArg {
    Fp32,
    Fp16,
    Int8,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let backend = match a.backend {
        BackendArg::Cpu => BackendKind::Cpu,
        BackendArg::Onnxruntime => BackendKind::Onnxruntime,
        BackendArg::Tensorrt => BackendKind::Tensorrt,
    };
    let precision = match a.precision {
        PrecisionArg::Fp32 => Precision::Fp32,
        PrecisionArg::Fp16 => Precision::Fp16,
        PrecisionArg::Int8 => Precision::Int8,
    };
    run(a.onnx, a.out, backend, precision, a.int8_calibration_cache)?;
    Ok(())
}

pub fn run(
    onnx: PathBuf,
    out: PathBuf,
    backend: BackendKind,
    precision: Precision,
    int8_calibration_cache: Option<PathBuf>,
) -> anyhow::Result<Manifest> {
    let opts = BuildOptions {
        onnx_dir: onnx,
        out_dir: out.clone(),
        backend,
        precision,
        int8_calibration_cache,
        offramp_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} building {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (manifest, rows) = build(&opts, &mut |p| match p {
        Progress::Start { total } => bar.set_length(total as u64),
        Progress::Artifact { name } => {
            bar.set_message(name);
            bar.inc(1);
        }
        Progress::Done => bar.finish_and_clear(),
    })?;
    bar.finish_and_clear();
    println!(
        "engine set {} ({} backend, {:?}) -> {}",
        manifest.model,
        manifest.build.backend.name(),
        manifest.build.precision,
        out.display()
    );
    print!("{}", summary_table(&rows, &manifest));
    Ok(manifest)
}
