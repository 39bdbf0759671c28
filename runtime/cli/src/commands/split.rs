//! `offramp split`: a full ONNX export → one segment per exit and the
//! `model.toml` that `offramp build` reads, checked against the full model.
//! Without the `split` feature (the robot's build) the command is there but
//! says that this build lacks the splitter.

#[cfg(feature = "split")]
use anyhow::Context;
#[cfg(feature = "split")]
use offramp_build::{init, split};
use std::path::PathBuf;

#[derive(clap::Args)]
#[cfg_attr(not(feature = "split"), allow(dead_code))]
pub struct Args {
    /// The full model, exported once with every exit's output as a named
    /// graph output.
    #[arg(long)]
    onnx: PathBuf,
    /// One graph output per exit, shallowest first: the exit's action, or,
    /// with --head, the feature the head reads (e.g. `a0,a1,a2,a3`).
    #[arg(long, value_delimiter = ',', required = true)]
    exit_outputs: Vec<String>,
    /// For the learned criterion (`kind = "learned"` in --with): each
    /// exit's confidence output, a probability that it may stop, shallowest
    /// first; the last exit may have none (e.g. `c0,c1,c2`).
    #[arg(long, value_delimiter = ',')]
    confidence_outputs: Vec<String>,
    /// Tensors to carry across each boundary besides those later segments
    /// read (which are always carried): boundaries separated by `;`, tensors
    /// within one by `,` (e.g. `hidden0,pooled0;hidden1;hidden2`).
    #[arg(long, default_value = "")]
    cuts: String,
    /// The shared head's ONNX file (a separate export: it runs once per
    /// exit, with a state), copied beside the segments.
    #[arg(long)]
    head: Option<PathBuf>,
    /// The rest of the model description: a model.toml without `exits`
    /// (model name, [preprocess], [head], [action], [criterion]).
    #[arg(long, value_name = "TOML")]
    with: Option<PathBuf>,
    /// Output directory: the segments and model.toml, ready for
    /// `offramp build --onnx`.
    #[arg(long)]
    out: PathBuf,
    /// Largest difference allowed between the chained segments and the full
    /// model, per exit output.
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Without the splitter: a clear refusal rather than a missing command.
#[cfg(not(feature = "split"))]
pub fn main(_: Args) -> anyhow::Result<()> {
    anyhow::bail!(
        "offramp split: this offramp was built without the ONNX splitter (the `split` \
         feature); split on a development machine and copy the segments here, or rebuild \
         with `--features split`"
    )
}

#[cfg(feature = "split")]
pub fn main(a: Args) -> anyhow::Result<()> {
    let cuts = if a.cuts.trim().is_empty() {
        Vec::new()
    } else {
        a.cuts
            .split(';')
            .map(|b| {
                b.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    };
    let opts = split::SplitOptions {
        onnx: a.onnx,
        exit_outputs: a.exit_outputs,
        confidence_outputs: a.confidence_outputs,
        cuts,
        head: a.head,
        with: a.with,
        out: a.out,
        tolerance: a.tolerance,
    };
    let r = split::split(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).context("report")?);
        return Ok(());
    }
    for (k, (s, d)) in r.segments.iter().zip(&r.max_abs_diff).enumerate() {
        let carried = r
            .carried
            .get(k)
            .map(|c| {
                c.iter()
                    .map(|(n, len)| format!("{n} ({len})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "-".into());
        println!("{s:<16} exit {k}: max |chain - full| = {d:.2e}; carries {carried}");
    }
    println!(
        "wrote {}; next: offramp build --onnx {} --out <engine set>",
        r.model_toml.display(),
        opts.out.display()
    );
    Ok(())
}

/// `offramp init`: a draft model.toml read off an export's graphs.
#[derive(clap::Args)]
pub struct InitArgs {
    /// A directory of per-segment ONNX exports (and the head's), or one
    /// full export (split into segments first).
    #[arg(long)]
    onnx: PathBuf,
    /// Where model.toml goes, with the segments (default: beside the
    /// exports; for a full export, `<name>-segments` beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print what was drafted as JSON.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "split")]
pub fn init(a: InitArgs) -> anyhow::Result<()> {
    let d = init::init(&init::InitOptions {
        onnx: a.onnx,
        out: a.out,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d).context("draft")?);
        return Ok(());
    }
    d.guessed.iter().for_each(|g| println!("guessed: {g}"));
    d.confirm.iter().for_each(|c| println!("confirm: {c}"));
    let dir = d.model_toml.parent().unwrap_or(&d.model_toml).display();
    println!(
        "wrote {}; next: offramp build --onnx {dir} --out <engine set>",
        d.model_toml.display()
    );
    Ok(())
}
