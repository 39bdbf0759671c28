//! Frame sources and the newest-frame handoff.
//!
//! A capture thread owns the source and publishes into a [`Latest`] slot of
//! three preallocated buffers: the runtime always takes the newest frame, an
//! unread frame that is overwritten counts as dropped, and nothing queues.
//! When the source fails (a camera unplugged), the thread reports it, keeps
//! retrying with backoff, and the runtime sees frames stop: it must stop the
//! motors (see `run`).
//!
//! Sources implement [`Source`]: recorded episodes ([`Replay`], the format
//! `offramp sim record` and `offramp record` write) and V4L2 cameras (cargo
//! feature `v4l`) live here; the simulator's camera lives with the simulator
//! (`offramp_sim::camera`), so the real-time crate never links it.

use crate::npy;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{what}: {why}")]
    Source { what: String, why: String },
    #[error("camera {spec:?}: expected sim, replay:DIR or v4l:/dev/videoN")]
    Spec { spec: String },
    #[error(
        "{0}: this offramp was built without the `v4l` feature; rebuild with `--features v4l`"
    )]
    NoV4l(String),
}

/// Metadata of one published frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameMeta {
    pub seq: u64,
    /// When the frame was captured (the camera's timestamp where it has one).
    pub captured: Option<Instant>,
    /// Instruction for the model (simulator and replay know it).
    pub instruction: usize,
    /// A new episode starts with this frame (reset the recurrent state).
    pub new_episode: bool,
}

/// A triple buffer: `back` is the writer's, `front` the reader's, `middle`
/// the newest complete frame; the three are always a permutation of 0..3.
struct Slots {
    bufs: [Vec<u8>; 3],
    meta: [FrameMeta; 3],
    back: usize,
    middle: usize,
    front: usize,
    /// `middle` holds a frame the reader has not taken.
    fresh: bool,
}

/// Newest-frame triple buffer shared by one writer and one reader.
pub struct Latest {
    slots: Mutex<Slots>,
    cond: Condvar,
    pub dropped: AtomicU64,
    pub published: AtomicU64,
    pub failures: AtomicU64,
    pub closed: AtomicBool,
    len: usize,
}

impl Latest {
    pub fn new(frame_len: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Slots {
                bufs: [vec![0; frame_len], vec![0; frame_len], vec![0; frame_len]],
                meta: [FrameMeta::default(); 3],
                back: 0,
                middle: 1,
                front: 2,
                fresh: false,
            }),
            cond: Condvar::new(),
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            len: frame_len,
        })
    }

    pub fn frame_len(&self) -> usize {
        self.len
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writer side: fills the back buffer with `fill` (outside the lock) and
    /// makes it the newest frame. Allocates nothing. A new episode that
    /// started on a frame nobody read still starts: the flag passes to the
    /// frame that replaces it (else the reader would keep the last
    /// episode's recurrent state).
    pub fn publish(&self, mut meta: FrameMeta, fill: impl FnOnce(&mut [u8])) {
        let (k, mut buf) = {
            let mut s = self.lock();
            let k = s.back;
            (k, std::mem::take(&mut s.bufs[k]))
        };
        fill(&mut buf);
        let mut s = self.lock();
        s.bufs[k] = buf;
        if s.fresh {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            meta.new_episode |= s.meta[s.middle].new_episode;
        }
        s.meta[k] = meta;
        let m = s.middle;
        s.middle = k;
        s.back = m;
        s.fresh = true;
        self.published.fetch_add(1, Ordering::Relaxed);
        self.cond.notify_one();
    }

    /// Reader side: waits up to `timeout` for a frame newer than the last
    /// one read, and lends it to `use_frame`. None on timeout.
    pub fn take<R>(
        &self,
        timeout: Duration,
        use_frame: impl FnOnce(&[u8], FrameMeta) -> R,
    ) -> Option<R> {
        let mut s = self.lock();
        let deadline = Instant::now() + timeout;
        while !s.fresh {
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self
                .cond
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let m = s.middle;
        s.middle = s.front;
        s.front = m;
        s.fresh = false;
        let meta = s.meta[m];
        let buf = std::mem::take(&mut s.bufs[m]);
        drop(s);
        let r = use_frame(&buf, meta);
        self.lock().bufs[m] = buf;
        Some(r)
    }
}

/// Which camera.
#[derive(Debug, Clone)]
pub enum CameraSpec {
    Sim,
    Replay(PathBuf),
    V4l(PathBuf),
}

impl std::str::FromStr for CameraSpec {
    type Err = CameraError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "sim" => Ok(Self::Sim),
            Some(("replay", p)) if !p.is_empty() => Ok(Self::Replay(p.into())),
            Some(("v4l", p)) if !p.is_empty() => Ok(Self::V4l(p.into())),
            _ => Err(CameraError::Spec { spec: s.into() }),
        }
    }
}

/// A running capture thread.
pub struct Capture {
    pub latest: Arc<Latest>,
    pub stop: Arc<AtomicBool>,
    pub width: usize,
    pub height: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Recorded episodes (`offramp sim record`), loaded whole: frames HWC RGB,
/// one instruction and episode index per frame.
pub struct Replay {
    pub frames: Vec<u8>,
    pub instructions: Vec<i64>,
    pub episodes: Vec<i32>,
    pub width: usize,
    pub height: usize,
}

impl Replay {
    pub fn frame_len(&self) -> usize {
        self.width * self.height * 3
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
    let (shape, frames) =
        npy::read::<u8>(&dir.join("frames.npy")).map_err(|e| err(e.to_string()))?;
    let (_, instructions) =
        npy::read::<i64>(&dir.join("instructions.npy")).map_err(|e| err(e.to_string()))?;
    let (_, episodes) =
        npy::read::<i32>(&dir.join("episodes.npy")).map_err(|e| err(e.to_string()))?;
    if shape.len() != 4
        || shape[3] != 3
        || instructions.len() != shape[0]
        || episodes.len() != shape[0]
    {
        return Err(err(format!(
            "frames.npy is {shape:?}; expected [N, H, W, 3] with one instruction and episode per frame"
        )));
    }
    Ok(Replay {
        frames,
        instructions,
        episodes,
        width: shape[2],
        height: shape[1],
    })
}

/// A frame source, run on its own capture thread by [`start`].
pub trait Source: Send + 'static {
    /// Frame size in pixels (width, height); frames are HWC RGB.
    fn size(&self) -> (usize, usize);
    /// Publishes frames into `latest` at `period` until `stop` is set or the
    /// source ends; sets `latest.closed` when it returns.
    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, period: Duration);
}

impl Source for Replay {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
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
                instruction: self.instructions[k].max(0) as usize,
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

/// The source a spec names, for the specs this crate serves (`replay:` and
/// `v4l:`); `sim` is served by the simulator crate.
pub fn open(spec: &CameraSpec) -> Result<Box<dyn Source>, CameraError> {
    match spec {
        CameraSpec::Replay(dir) => Ok(Box::new(load_replay(dir)?)),
        CameraSpec::V4l(dev) => {
            #[cfg(feature = "v4l")]
            {
                Ok(Box::new(crate::v4l_source::V4lSource::probe(dev)?))
            }
            #[cfg(not(feature = "v4l"))]
            Err(CameraError::NoV4l(dev.display().to_string()))
        }
        CameraSpec::Sim => Err(CameraError::Spec {
            spec: "sim (the simulator camera is opened by offramp_sim::camera)".into(),
        }),
    }
}

/// Starts the capture thread for `source` at `fps` frames per second.
pub fn start(source: Box<dyn Source>, fps: f64) -> Result<Capture, CameraError> {
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(1.0 / fps.max(0.1));
    let (width, height) = source.size();
    let latest = Latest::new(width * height * 3);
    let (l, st) = (latest.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("offramp-capture".into())
        .spawn(move || source.run(&l, &st, period))
        .map_err(|e| CameraError::Source {
            what: "capture thread".into(),
            why: e.to_string(),
        })?;
    Ok(Capture {
        latest,
        stop,
        width,
        height,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_gets_the_newest_and_drops_are_counted() {
        let l = Latest::new(4);
        for k in 0..5u8 {
            l.publish(
                FrameMeta {
                    seq: k as u64,
                    ..Default::default()
                },
                |b| b.fill(k),
            );
        }
        let got = l
            .take(Duration::from_millis(10), |b, m| (b[0], m.seq))
            .unwrap();
        assert_eq!(got, (4, 4));
        assert_eq!(l.dropped.load(Ordering::Relaxed), 4);
        // Nothing new: the reader times out rather than re-reading.
        assert!(l.take(Duration::from_millis(10), |_, _| ()).is_none());
        l.publish(FrameMeta::default(), |b| b.fill(9));
        assert_eq!(l.take(Duration::from_millis(10), |b, _| b[0]), Some(9));
    }

    #[test]
    fn an_episode_start_on_a_dropped_frame_passes_to_the_next() {
        let l = Latest::new(4);
        let start = FrameMeta {
            seq: 1,
            new_episode: true,
            ..Default::default()
        };
        l.publish(start, |b| b.fill(1));
        l.publish(
            FrameMeta {
                seq: 2,
                ..Default::default()
            },
            |b| b.fill(2),
        );
        let got = l.take(Duration::from_millis(10), |b, m| {
            (b[0], m.seq, m.new_episode)
        });
        assert_eq!(got, Some((2, 2, true)));
        // Once read, the flag does not stick to later frames.
        l.publish(
            FrameMeta {
                seq: 3,
                ..Default::default()
            },
            |b| b.fill(3),
        );
        let got = l.take(Duration::from_millis(10), |_, m| m.new_episode);
        assert_eq!(got, Some(false));
    }

    #[test]
    fn camera_specs_parse_or_say_what_is_expected() {
        assert!(matches!("sim".parse::<CameraSpec>(), Ok(CameraSpec::Sim)));
        assert!(matches!(
            "replay:/x".parse::<CameraSpec>(),
            Ok(CameraSpec::Replay(_))
        ));
        assert!(matches!(
            "v4l:/dev/video0".parse::<CameraSpec>(),
            Ok(CameraSpec::V4l(_))
        ));
        let e = "usb".parse::<CameraSpec>().unwrap_err().to_string();
        assert!(
            e.contains("expected sim, replay:DIR or v4l:/dev/videoN"),
            "{e}"
        );
    }
}
