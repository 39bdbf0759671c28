//! `offramp build`: ONNX segments → engine set, with a progress bar and a
//! summary table.

use offramp_build::builder::{build, BuildOptions, Progress, Row};
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
    print!("{}", table(&rows, &manifest));
    Ok(manifest)
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The summary table: per exit MACs, FLOPs (2 × MACs), cumulative cost with
/// the head, parameters and peak activation memory.
pub fn table(rows: &[Row], m: &Manifest) -> String {
    let full = m.cumulative_macs(m.exits.len().saturating_sub(1)).max(1);
    let mut s = format!(
        "{:<8} {:<16} {:>10} {:>10} {:>14} {:>8} {:>10} {:>12}\n",
        "exit", "artifact", "MACs", "FLOPs", "cum. w/ head", "of full", "params", "peak act."
    );
    for r in rows {
        let (cum, share) = if r.name == "head" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                human(r.cumulative_macs),
                format!("{:.0}%", 100.0 * r.cumulative_macs as f64 / full as f64),
            )
        };
        s += &format!(
            "{:<8} {:<16} {:>10} {:>10} {:>14} {:>8} {:>10} {:>12}\n",
            r.name,
            r.artifact,
            human(r.macs),
            human(2 * r.macs),
            cum,
            share,
            human(r.params),
            format!("{}B", human(r.peak_activation_bytes)),
        );
    }
    s
}
