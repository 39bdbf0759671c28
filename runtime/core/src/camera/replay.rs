//! Recorded episodes in the replay format (`offramp sim record`, `offramp
//! record`, `offramp import-lerobot`), loaded whole and played as a camera.

use super::latest::Latest;
use super::source::{CameraError, FrameMeta, Source, Views};
use crate::npy;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Recorded episodes (`offramp sim record`, `offramp record`), loaded
/// whole: frames of one or more camera views (see [`Views`]), one
/// instruction and episode index per frame.
pub struct Replay {
    /// Frame k is `frames[k * frame_len ..][.. frame_len]`, its views end to
    /// end.
    pub frames: Vec<u8>,
    /// Indices into the model's instructions (`instructions.npy` holds them
    /// as i64; a negative one is refused at load).
    pub instructions: Vec<usize>,
    pub episodes: Vec<i32>,
    pub views: Views,
}

/// The file holding camera view `k` of a recording: `frames.npy` for the
/// first, `frames.1.npy`, `frames.2.npy`... for more cameras.
pub fn view_file(k: usize) -> String {
    if k == 0 {
        "frames.npy".into()
    } else {
        format!("frames.{k}.npy")
    }
}

impl Replay {
    pub fn frame_len(&self) -> usize {
        self.views.frame_len()
    }

    /// Number of episodes (indices are 0-based and in order).
    pub fn episode_count(&self) -> usize {
        self.episodes
            .iter()
            .max()
            .map_or(0, |m| (*m as i64 + 1) as usize)
    }
}

/// Reads a recording directory; errors name the directory and what is wrong.
pub fn load_replay(dir: &Path) -> Result<Replay, CameraError> {
    let err = |why: String| CameraError::Source {
        what: dir.display().to_string(),
        why,
    };
    let (shape, mut frames) =
        npy::read::<u8>(&dir.join("frames.npy")).map_err(|e| err(e.to_string()))?;
    let (_, instructions) =
        npy::read::<i64>(&dir.join("instructions.npy")).map_err(|e| err(e.to_string()))?;
    let (_, episodes) =
        npy::read::<i32>(&dir.join("episodes.npy")).map_err(|e| err(e.to_string()))?;
    if shape.len() != 4
        || shape[3] != 3
        || shape[1] == 0
        || shape[2] == 0
        || instructions.len() != shape[0]
        || episodes.len() != shape[0]
    {
        return Err(err(format!(
            "frames.npy is {shape:?}; expected [N, H, W, 3] (H and W at least 1) with one instruction and episode per frame"
        )));
    }
    // An instruction is an index into the model's instructions; a negative
    // one (an "unknown" marker) would otherwise run silently as task 0.
    let instructions = instructions
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            usize::try_from(v).map_err(|_| {
                err(format!(
                    "instructions.npy[{k}] is {v}; an instruction is an index, 0 or more"
                ))
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let mut views = vec![(shape[2], shape[1])];
    let mut more = Vec::new();
    while dir.join(view_file(views.len())).exists() {
        let file = view_file(views.len());
        let (s, v) = npy::read::<u8>(&dir.join(&file)).map_err(|e| err(e.to_string()))?;
        if s.len() != 4 || s[3] != 3 || s[0] != shape[0] || s[1] == 0 || s[2] == 0 {
            return Err(err(format!(
                "{file} is {s:?}; expected [{}, H, W, 3] (one image per frame of frames.npy, H and W at least 1)",
                shape[0]
            )));
        }
        views.push((s[2], s[1]));
        more.push(v);
    }
    let views = Views::new(views);
    if !more.is_empty() {
        // Interleave: frame k holds every view's image k.
        let first = frames;
        frames = Vec::with_capacity(shape[0] * views.frame_len());
        let arrays: Vec<&[u8]> = std::iter::once(&first[..])
            .chain(more.iter().map(|v| &v[..]))
            .collect();
        for k in 0..shape[0] {
            for (a, (w, h)) in arrays.iter().zip(views.sizes()) {
                let len = w * h * 3;
                frames.extend_from_slice(&a[k * len..(k + 1) * len]);
            }
        }
    }
    Ok(Replay {
        frames,
        instructions,
        episodes,
        views,
    })
}

impl Source for Replay {
    fn views(&self) -> Views {
        self.views.clone()
    }

    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, period: Duration) {
        let len = self.frame_len();
        let mut next = Instant::now();
        let mut last_ep = None;
        for (k, frame) in self.frames.chunks_exact(len).enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let meta = FrameMeta {
                seq: k as u64,
                captured: Some(Instant::now()),
                instruction: self.instructions[k],
                new_episode: last_ep != Some(self.episodes[k]),
            };
            last_ep = Some(self.episodes[k]);
            latest.publish(meta, |buf| buf.copy_from_slice(frame));
            next += period;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        latest.closed.store(true, Ordering::Relaxed);
    }
}
