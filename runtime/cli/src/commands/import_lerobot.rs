//! `offramp import-lerobot`: a LeRobot dataset (v2.x or v3.0: parquet rows
//! and one mp4 per camera) → the replay format, so that a team's existing
//! demonstrations calibrate its thresholds (`offramp calibrate --episodes`)
//! or replay as a camera (`--camera replay:DIR`).
//!
//! Writes `frames.npy` u8 [N, H, W, 3] (one camera), `instructions.npy` i64
//! [N] (the task index; `tasks.json` lists the texts in that order),
//! `episodes.npy` i32 [N], `timestamps_ns.npy` i64 [N] (the dataset's
//! timestamps, episodes laid end to end), `actions.npy` f32 [N, A] (the
//! dataset's `action`, where it has one) and `meta.json`.

use super::record::write_replay;
use crate::lerobot::{decode_video, Dataset};
use anyhow::{bail, Context};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The dataset directory (meta/info.json, data/, videos/).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The recording directory to write (must not hold a recording).
    #[arg(long)]
    pub out: PathBuf,
    /// The camera to import: a video feature of meta/info.json (needed when
    /// the dataset has more than one).
    #[arg(long)]
    pub camera: Option<String>,
    /// Import the first this many episodes only.
    #[arg(long)]
    pub episodes: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
pub struct ImportReport {
    pub dataset: String,
    pub codebase_version: String,
    pub camera: String,
    pub out: String,
    pub frames: usize,
    pub episodes: usize,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    pub action_dims: usize,
    pub tasks: Vec<String>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let r = import(&a)?;
    crate::args::print_report(a.json, &r, |r| {
        println!(
            "imported {} frames ({}x{}, camera {}) in {} episodes from {} (LeRobot {}) into {}",
            r.frames, r.width, r.height, r.camera, r.episodes, r.dataset, r.codebase_version, r.out
        )
    })
}

pub fn import(a: &Args) -> anyhow::Result<ImportReport> {
    if a.out.join("frames.npy").exists() {
        bail!("{}: already holds a recording", a.out.display());
    }
    let ds = Dataset::open(&a.dataset)?;
    let cameras = ds.cameras();
    let key = match (&a.camera, cameras.as_slice()) {
        (Some(k), _) if cameras.contains(&k.as_str()) => k.clone(),
        (Some(k), _) => bail!(
            "{}: no camera {k:?}; its cameras are {cameras:?}",
            a.dataset.display()
        ),
        (None, [one]) => one.to_string(),
        (None, []) => bail!(
            "{}: the dataset has no camera (video feature)",
            a.dataset.display()
        ),
        (None, many) => bail!(
            "{}: several cameras, {many:?}: choose one with --camera",
            a.dataset.display()
        ),
    };
    let (h, w) = ds.frame_size(&key)?;
    let mut rows = ds.frame_rows()?;
    let mut order: Vec<i64> = Vec::new();
    for r in &rows {
        if order.last() != Some(&r.episode) {
            order.push(r.episode);
        }
    }
    if let Some(n) = a.episodes {
        order.truncate(n);
        let keep: std::collections::HashSet<i64> = order.iter().copied().collect();
        rows.retain(|r| keep.contains(&r.episode));
    }
    let videos = ds.episode_videos(&key, &order)?;
    let frame_len = h * w * 3;
    // One decoded video at a time: rows come in episode order, and an
    // episode's frames lie in one file.
    let mut decoded: Option<(PathBuf, Vec<u8>)> = None;
    let n = rows.len();
    let mut frames = Vec::with_capacity(n * frame_len);
    let (mut instructions, mut episodes, mut stamps) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let action_dims = rows.first().map_or(0, |r| r.action.len());
    let mut actions = Vec::with_capacity(n * action_dims);
    let step = 1.0 / ds.info.fps;
    let (mut offset, mut last_end) = (0.0f64, 0.0f64);
    // The episode of the previous row, and its number in the import.
    let (mut current, mut episode) = (None, -1i32);
    for r in &rows {
        let (path, from) = videos.get(&r.episode).with_context(|| {
            format!(
                "episode {}: no video of camera {key:?} in the dataset's metadata",
                r.episode
            )
        })?;
        let video = match &decoded {
            Some((p, v)) if p == path => v,
            _ => &decoded.insert((path.clone(), decode_video(path, h, w)?)).1,
        };
        let index = ((from + r.timestamp) * ds.info.fps).round();
        let count = video.len() / frame_len;
        if !(index >= 0.0 && (index as usize) < count) {
            bail!(
                "episode {} frame {}: timestamp {} s is frame {index} of {}, which has {count}",
                r.episode,
                r.frame,
                r.timestamp,
                path.display()
            );
        }
        let k = index as usize;
        frames.extend_from_slice(&video[k * frame_len..(k + 1) * frame_len]);
        if current != Some(r.episode) {
            current = Some(r.episode);
            episode += 1;
            offset = last_end;
        }
        let t = offset + r.timestamp;
        last_end = last_end.max(t + step);
        stamps.push((t * 1e9).round() as i64);
        instructions.push(r.task);
        episodes.push(episode);
        if r.action.len() != action_dims {
            bail!(
                "episode {} frame {}: action has {} values, earlier frames {action_dims}",
                r.episode,
                r.frame,
                r.action.len()
            );
        }
        actions.extend_from_slice(&r.action);
    }
    if n == 0 {
        bail!("{}: no frames to import", a.dataset.display());
    }
    let tasks = ds.tasks()?;
    let extra = (action_dims > 0).then_some(("actions.npy", action_dims, &actions[..]));
    write_replay(
        &a.out,
        (h, w),
        &frames,
        &instructions,
        &episodes,
        &stamps,
        extra,
    )?;
    let io = |name: &str| format!("writing {}", a.out.join(name).display());
    std::fs::write(
        a.out.join("tasks.json"),
        serde_json::to_string_pretty(&tasks)?,
    )
    .with_context(|| io("tasks.json"))?;
    let report = ImportReport {
        dataset: a.dataset.display().to_string(),
        codebase_version: ds.info.codebase_version.clone(),
        camera: key,
        out: a.out.display().to_string(),
        frames: n,
        episodes: order.len(),
        width: w,
        height: h,
        fps: ds.info.fps,
        action_dims,
        tasks,
    };
    std::fs::write(
        a.out.join("meta.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .with_context(|| io("meta.json"))?;
    Ok(report)
}
