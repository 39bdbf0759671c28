//! Recorded episodes in the replay format (`offramp sim record`, `offramp
//! record`, `offramp import-lerobot`): written frame by frame
//! ([`ReplayWriter`]), loaded whole and played as a camera.
//!
//! A recording directory holds, for N frames: `frames.npy` u8 [N, H, W, 3]
//! (the first camera; `frames.1.npy`... the others), `instructions.npy` i64
//! [N], `episodes.npy` i32 [N], `timestamps_ns.npy` i64 [N] (capture time
//! since the first frame) and, where the recorder has one, an f32 [N, D]
//! array (`executed.npy`, `actions.npy`).

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

/// A recording written frame by frame. Every array counts its rows after
/// each frame, `frames.npy` last, so that the directory loads
/// ([`load_replay`]) with every whole frame whenever the writer stops:
/// Ctrl-C, a crash, a camera fault. Memory stays one frame, however long
/// the recording.
pub struct ReplayWriter {
    views: Views,
    /// One per camera view, the first (`frames.npy`) first.
    frames: Vec<npy::Appender<u8>>,
    instructions: npy::Appender<i64>,
    episodes: npy::Appender<i32>,
    stamps: npy::Appender<i64>,
    /// An f32 [N, D] array beside the frames, and its D.
    extra: Option<(npy::Appender<f32>, usize)>,
}

impl ReplayWriter {
    /// Creates `dir` (if needed) and the recording's files in it, with an
    /// f32 [N, D] array `extra = (file, D)` if given; refuses a directory
    /// that already holds a recording.
    pub fn create(
        dir: &Path,
        views: &Views,
        extra: Option<(&str, usize)>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))
        })?;
        let frames = views
            .sizes()
            .iter()
            .enumerate()
            .map(|(k, &(w, h))| npy::Appender::create(&dir.join(view_file(k)), &[h, w, 3]))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            views: views.clone(),
            frames,
            instructions: npy::Appender::create(&dir.join("instructions.npy"), &[])?,
            episodes: npy::Appender::create(&dir.join("episodes.npy"), &[])?,
            stamps: npy::Appender::create(&dir.join("timestamps_ns.npy"), &[])?,
            extra: match extra {
                Some((file, d)) => Some((npy::Appender::create(&dir.join(file), &[d])?, d)),
                None => None,
            },
        })
    }

    /// Appends one frame (its views end to end) with its instruction,
    /// episode, capture time and, if the recording has one, its extra row.
    pub fn push(
        &mut self,
        frame: &[u8],
        instruction: i64,
        episode: i32,
        stamp_ns: i64,
        extra: Option<&[f32]>,
    ) -> std::io::Result<()> {
        let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        if frame.len() != self.views.frame_len() {
            return Err(bad(format!(
                "a frame of {} is {} bytes, got {}",
                self.views,
                self.views.frame_len(),
                frame.len()
            )));
        }
        match (&mut self.extra, extra) {
            (Some((a, _)), Some(row)) => a.push(row)?,
            (None, None) => {}
            (Some((_, d)), None) => {
                return Err(bad(format!(
                    "this recording needs {d} extra values a frame"
                )))
            }
            (None, Some(_)) => return Err(bad("this recording has no extra array".into())),
        }
        self.instructions.push(&[instruction])?;
        self.episodes.push(&[episode])?;
        self.stamps.push(&[stamp_ns])?;
        // The first view last: frames.npy's count is the recording's.
        let mut views = self.views.split(frame);
        let first = views.next().unwrap_or(&[]);
        for (a, view) in self.frames.iter_mut().skip(1).zip(views) {
            a.push(view)?;
        }
        self.frames[0].push(first)
    }

    /// Frames written.
    pub fn frames(&self) -> usize {
        self.frames[0].rows()
    }

    /// Flushes every file to the disk.
    pub fn finish(self) -> std::io::Result<()> {
        for a in self.frames {
            a.finish()?;
        }
        self.instructions.finish()?;
        self.episodes.finish()?;
        self.stamps.finish()?;
        if let Some((a, _)) = self.extra {
            a.finish()?;
        }
        Ok(())
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
    let (_, mut instructions) =
        npy::read::<i64>(&dir.join("instructions.npy")).map_err(|e| err(e.to_string()))?;
    let (_, mut episodes) =
        npy::read::<i32>(&dir.join("episodes.npy")).map_err(|e| err(e.to_string()))?;
    // A recording stopped mid-frame (Ctrl-C, a crash) may hold one entry
    // more in the arrays written before frames.npy: that frame is not in
    // the recording.
    let n = shape.first().copied().unwrap_or(0);
    let whole = |len: usize| len == n || len == n + 1;
    if shape.len() != 4
        || shape[3] != 3
        || shape[1] == 0
        || shape[2] == 0
        || !whole(instructions.len())
        || !whole(episodes.len())
    {
        return Err(err(format!(
            "frames.npy is {shape:?}; expected [N, H, W, 3] (H and W at least 1) with one instruction and episode per frame"
        )));
    }
    instructions.truncate(n);
    episodes.truncate(n);
    // An instruction is an index into the model's instructions, or -1 for a
    // frame that carries none (a memory task's frames after the cue); any
    // other negative value (an "unknown" marker) would otherwise run
    // silently as task 0.
    let instructions = instructions
        .iter()
        .enumerate()
        .map(|(k, &v)| match v {
            -1 => Ok(crate::exit_chain::NO_INSTRUCTION),
            v => usize::try_from(v).map_err(|_| {
                err(format!(
                    "instructions.npy[{k}] is {v}; an instruction is an index, 0 or more, or -1 for none"
                ))
            }),
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let mut views = vec![(shape[2], shape[1])];
    let mut more = Vec::new();
    while dir.join(view_file(views.len())).exists() {
        let file = view_file(views.len());
        let (s, mut v) = npy::read::<u8>(&dir.join(&file)).map_err(|e| err(e.to_string()))?;
        if s.len() != 4 || s[3] != 3 || !whole(s[0]) || s[1] == 0 || s[2] == 0 {
            return Err(err(format!(
                "{file} is {s:?}; expected [{}, H, W, 3] (one image per frame of frames.npy, H and W at least 1)",
                shape[0]
            )));
        }
        views.push((s[2], s[1]));
        v.truncate(n * s[1] * s[2] * 3);
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
