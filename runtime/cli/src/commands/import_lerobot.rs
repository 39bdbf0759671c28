//! `offramp import-lerobot`: a LeRobot dataset (v2.x or v3.0: parquet rows
//! and one mp4 per camera) → the replay format, so that a team's existing
//! demonstrations calibrate its thresholds (`offramp calibrate --episodes`)
//! or replay as a camera (`--camera replay:DIR`).
//!
//! Writes `frames.npy` u8 [N, H, W, 3] (the first camera; `frames.1.npy`...
//! the others, for `--camera top,wrist`), `instructions.npy` i64
//! [N] (the task index; `tasks.json` lists the texts in that order),
//! `episodes.npy` i32 [N], `timestamps_ns.npy` i64 [N] (the dataset's
//! timestamps, episodes laid end to end), `actions.npy` f32 [N, A] (the
//! dataset's `action`, where it has one) and `meta.json`.

use super::record::write_replay;
use crate::lerobot::{decode_video, Dataset};
use anyhow::{bail, Context};
use offramp_runtime::camera::Views;
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

#[derive(Serialize)]
pub struct ImportReport {
    pub dataset: String,
    pub codebase_version: String,
    pub cameras: Vec<String>,
    pub out: String,
    pub frames: usize,
    pub episodes: usize,
    /// Each camera's [width, height].
    pub views: Vec<(usize, usize)>,
    pub fps: f64,
    pub action_dims: usize,
    pub tasks: Vec<String>,
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
    let ds = Dataset::open(&a.dataset)?;
    let cameras = ds.cameras();
    let keys: Vec<String> = match (&a.camera, cameras.as_slice()) {
        (Some(list), _) => {
            let keys: Vec<String> = list.split(',').map(str::to_string).collect();
            for k in &keys {
                if !cameras.contains(&k.as_str()) {
                    bail!(
                        "{}: no camera {k:?}; its cameras are {cameras:?}",
                        a.dataset.display()
                    );
                }
                if keys.iter().filter(|o| *o == k).count() > 1 {
                    bail!("--camera {list}: camera {k:?} is named twice");
                }
            }
            keys
        }
        (None, [one]) => vec![one.to_string()],
        (None, []) => bail!(
            "{}: the dataset has no camera (video feature)",
            a.dataset.display()
        ),
        (None, many) => bail!(
            "{}: several cameras, {many:?}: choose with --camera (one, or several \
             separated by commas in the order of the model's image inputs)",
            a.dataset.display()
        ),
    };
    let views = Views::new(
        keys.iter()
            .map(|k| ds.frame_size(k).map(|(h, w)| (w, h)))
            .collect::<anyhow::Result<_>>()?,
    );
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
    let videos = keys
        .iter()
        .map(|k| ds.episode_videos(k, &order))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // One decoded video per camera at a time: rows come in episode order,
    // and an episode's frames of one camera lie in one file.
    let mut decoded: Vec<Option<(PathBuf, Vec<u8>)>> = vec![None; keys.len()];
    let n = rows.len();
    let mut frames = Vec::with_capacity(n * views.frame_len());
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
        for (c, key) in keys.iter().enumerate() {
            let (path, from) = videos[c].get(&r.episode).with_context(|| {
                format!(
                    "episode {}: no video of camera {key:?} in the dataset's metadata",
                    r.episode
                )
            })?;
            let (w, h) = views.sizes()[c];
            let video = match &decoded[c] {
                Some((p, v)) if p == path => v,
                _ => {
                    &decoded[c]
                        .insert((path.clone(), decode_video(path, h, w)?))
                        .1
                }
            };
            let frame_len = h * w * 3;
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
        }
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
        &views,
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
        cameras: keys,
        out: a.out.display().to_string(),
        frames: n,
        episodes: order.len(),
        views: views.sizes().to_vec(),
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
