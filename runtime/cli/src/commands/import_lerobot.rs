//! `offramp import-lerobot`: a LeRobot dataset (v2.x or v3.0: parquet rows
//! and one mp4 per camera) → the replay format ([`offramp_lerobot`]), so
//! that a team's existing demonstrations calibrate its thresholds
//! (`offramp calibrate --episodes`) or replay as a camera (`--camera
//! replay:DIR`).
//!
//! Writes `frames.npy` u8 [N, H, W, 3] (the first camera; `frames.1.npy`...
//! the others, for `--camera top,wrist`), `instructions.npy` i64
//! [N] (the task index; `tasks.json` lists the texts in that order),
//! `episodes.npy` i32 [N], `timestamps_ns.npy` i64 [N] (the dataset's
//! timestamps, episodes laid end to end), `actions.npy` f32 [N, A] (the
//! dataset's `action`, where it has one) and `meta.json`.

use anyhow::{bail, Context};
use offramp_lerobot::ImportReport;
use offramp_runtime::camera::Views;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The dataset directory (meta/info.json, data/, videos/).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The recording directory to write (must not hold a recording).
    #[arg(long)]
    pub out: PathBuf,
    /// The cameras to import: video features of meta/info.json, separated
    /// by commas in the order of the model's image inputs (needed when the
    /// dataset has more than one).
    #[arg(long)]
    pub camera: Option<String>,
    /// Import the first this many episodes only.
    #[arg(long)]
    pub episodes: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let r = import(&a)?;
    crate::args::print_report(a.json, &r, |r| {
        println!(
            "imported {} frames ({}, cameras {}) in {} episodes from {} (LeRobot {}) into {}",
            r.frames,
            Views::new(r.views.clone()),
            r.cameras.join(", "),
            r.episodes,
            r.dataset,
            r.codebase_version,
            r.out
        )
    })
}

pub fn import(a: &Args) -> anyhow::Result<ImportReport> {
    if a.out.join("frames.npy").exists() {
        bail!("{}: already holds a recording", a.out.display());
    }
    let report = offramp_lerobot::import(&a.dataset, a.camera.as_deref(), a.episodes, &a.out)?;
    let io = |name: &str| format!("writing {}", a.out.join(name).display());
    for (name, json) in [
        ("tasks.json", serde_json::to_string_pretty(&report.tasks)?),
        ("meta.json", serde_json::to_string_pretty(&report)?),
    ] {
        std::fs::write(a.out.join(name), json).with_context(|| io(name))?;
    }
    Ok(report)
}
