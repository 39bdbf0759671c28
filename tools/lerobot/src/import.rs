//! A LeRobot dataset's frames written in the replay format, for N frames:
//! each camera's frames u8 [N, H, W, 3] (`frames.npy`, `frames.1.npy`...,
//! in the order asked), the task index i64 [N] as the instruction (the task
//! texts in that order beside), the episode i32 [N], the dataset's
//! timestamps in ns i64 [N] (episodes laid end to end) and its `action`
//! f32 [N, A] (`actions.npy`), where it has one.
//!
//! Frames stream into a [`ReplayWriter`] as they are decoded: memory holds
//! one episode's video per camera, however large the dataset, and an import
//! that stops half way leaves every frame before the stop readable.

use crate::dataset::{decode_video, Dataset};
use anyhow::{bail, Context};
use offramp_runtime::camera::{ReplayWriter, Views};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What was imported (the recording's `meta.json`, and `--json`).
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

/// Imports the dataset at `dir` into the recording directory `out`:
/// cameras `cameras` (video features separated by commas, in the order of
/// the model's image inputs; needed when it has more than one), its first
/// `episodes` episodes (default: all).
pub fn import(
    dir: &Path,
    cameras: Option<&str>,
    episodes: Option<usize>,
    out: &Path,
) -> anyhow::Result<ImportReport> {
    let ds = Dataset::open(dir)?;
    let keys = choose_cameras(&ds, dir, cameras)?;
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
    if let Some(n) = episodes {
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
    if n == 0 {
        bail!("{}: no frames to import", dir.display());
    }
    let action_dims = rows.first().map_or(0, |r| r.action.len());
    let mut writer = ReplayWriter::create(
        out,
        &views,
        (action_dims > 0).then_some(("actions.npy", action_dims)),
    )
    .with_context(|| format!("writing a recording into {}", out.display()))?;
    let mut frame = vec![0u8; views.frame_len()];
    let step = 1.0 / ds.info.fps;
    let (mut offset, mut last_end) = (0.0f64, 0.0f64);
    // The episode of the previous row, and its number in the import.
    let (mut current, mut episode) = (None, -1i32);
    for r in &rows {
        let mut at = 0;
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
            frame[at..at + frame_len].copy_from_slice(&video[k * frame_len..(k + 1) * frame_len]);
            at += frame_len;
        }
        if current != Some(r.episode) {
            current = Some(r.episode);
            episode += 1;
            offset = last_end;
        }
        let t = offset + r.timestamp;
        last_end = last_end.max(t + step);
        if r.action.len() != action_dims {
            bail!(
                "episode {} frame {}: action has {} values, earlier frames {action_dims} \
                 (the {} frames before it are in {})",
                r.episode,
                r.frame,
                r.action.len(),
                writer.frames(),
                out.display()
            );
        }
        writer
            .push(
                &frame,
                r.task,
                episode,
                (t * 1e9).round() as i64,
                (action_dims > 0).then_some(&r.action[..]),
            )
            .with_context(|| format!("writing a frame into {}", out.display()))?;
    }
    writer
        .finish()
        .with_context(|| format!("finishing the recording in {}", out.display()))?;
    let report = ImportReport {
        dataset: dir.display().to_string(),
        codebase_version: ds.info.codebase_version.clone(),
        cameras: keys,
        out: out.display().to_string(),
        frames: n,
        episodes: order.len(),
        views: views.sizes().to_vec(),
        fps: ds.info.fps,
        action_dims,
        tasks: ds.tasks()?,
    };
    Ok(report)
}

/// The cameras asked for (`--camera top,wrist`), or the dataset's only one.
fn choose_cameras(ds: &Dataset, dir: &Path, asked: Option<&str>) -> anyhow::Result<Vec<String>> {
    let cameras = ds.cameras();
    Ok(match (asked, cameras.as_slice()) {
        (Some(list), _) => {
            let keys: Vec<String> = list.split(',').map(str::to_string).collect();
            for k in &keys {
                if !cameras.contains(&k.as_str()) {
                    bail!(
                        "{}: no camera {k:?}; its cameras are {cameras:?}",
                        dir.display()
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
            dir.display()
        ),
        (None, many) => bail!(
            "{}: several cameras, {many:?}: choose with --camera (one, or several \
             separated by commas in the order of the model's image inputs)",
            dir.display()
        ),
    })
}
