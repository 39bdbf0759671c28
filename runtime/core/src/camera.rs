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
    #[error("camera {spec:?}: expected sim, replay:DIR or v4l:/dev/videoN, or several of replay: and v4l: separated by commas (one camera per image input)")]
    Spec { spec: String },
    #[error(
        "{0}: this offramp was built without the `v4l` feature; rebuild with `--features v4l`"
    )]
    NoV4l(String),
}

/// The camera views one frame holds, in order, each (width, height): a
/// frame is their HWC RGB bytes end to end. One camera is one view; a
/// model with a front and a wrist camera reads frames of two views, view k
/// feeding `preprocess.images[k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Views(Vec<(usize, usize)>);

impl Views {
    pub fn new(sizes: Vec<(usize, usize)>) -> Self {
        Self(sizes)
    }

    /// Each view's (width, height).
    pub fn sizes(&self) -> &[(usize, usize)] {
        &self.0
    }

    /// Bytes of one frame: every view's.
    pub fn frame_len(&self) -> usize {
        self.0.iter().map(|(w, h)| w * h * 3).sum()
    }

    /// The views of `frame` (of [`Self::frame_len`] bytes), in order.
    pub fn split<'a>(&'a self, frame: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut at = 0;
        self.0.iter().map(move |(w, h)| {
            let v = frame.get(at..at + w * h * 3).unwrap_or(&[]);
            at += w * h * 3;
            v
        })
    }
}

impl From<(usize, usize)> for Views {
    fn from(size: (usize, usize)) -> Self {
        Self(vec![size])
    }
}

impl std::fmt::Display for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, (w, h)) in self.0.iter().enumerate() {
            write!(f, "{}{w}x{h}", if k > 0 { " + " } else { "" })?;
        }
        Ok(())
    }
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
    /// Why the source stopped, when it did not simply end: set (before
    /// `closed`) when the capture thread panicked, for example inside a
    /// decoder, so the run loop exits with it rather than waiting for frames
    /// that cannot come.
    fault: Mutex<Option<String>>,
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
            fault: Mutex::new(None),
            len: frame_len,
        })
    }

    /// Why the source stopped, if it failed (see [`Latest::fail`]).
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks the source failed with `why`, then closed.
    pub fn fail(&self, why: String) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.closed.store(true, Ordering::Release);
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

/// Which camera, or cameras (shown as given: `v4l:/dev/video0,replay:DIR`).
#[derive(Debug, Clone)]
pub enum CameraSpec {
    Sim,
    Replay(PathBuf),
    V4l(PathBuf),
    /// Several cameras, one per image input, in `preprocess.images` order
    /// (`v4l:/dev/video0,v4l:/dev/video2`): frames follow the first.
    Several(Vec<CameraSpec>),
}

impl std::fmt::Display for CameraSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sim => write!(f, "sim"),
            Self::Replay(p) => write!(f, "replay:{}", p.display()),
            Self::V4l(p) => write!(f, "v4l:{}", p.display()),
            Self::Several(specs) => {
                for (k, s) in specs.iter().enumerate() {
                    write!(f, "{}{s}", if k > 0 { "," } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for CameraSpec {
    type Err = CameraError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(',') {
            let specs = s
                .split(',')
                .map(|p| match p.parse()? {
                    CameraSpec::Sim => Err(CameraError::Spec {
                        spec: format!("{p} (the simulator has one camera; it cannot be combined)"),
                    }),
                    spec => Ok(spec),
                })
                .collect::<Result<_, _>>()?;
            return Ok(Self::Several(specs));
        }
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
    pub views: Views,
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

/// A frame source, run on its own capture thread by [`start`].
pub trait Source: Send + 'static {
    /// The views of a frame: one (width, height) per camera, HWC RGB.
    fn views(&self) -> Views;
    /// Publishes frames into `latest` at `period` until `stop` is set or the
    /// source ends; sets `latest.closed` when it returns.
    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, period: Duration);
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
        CameraSpec::Several(specs) => Ok(Box::new(Several {
            sources: specs.iter().map(open).collect::<Result<_, _>>()?,
        })),
        CameraSpec::Sim => Err(CameraError::Spec {
            spec: "sim (the simulator camera is opened by offramp_sim::camera)".into(),
        }),
    }
}

/// Several cameras as one source of multi-view frames. Each camera runs on
/// its own capture thread; every frame of the first publishes a frame
/// holding it and the newest image of each other camera. A camera whose
/// newest image is older than `stale` (or that has not delivered one yet)
/// holds frames back, so a vanished camera stops frames as one camera
/// would, and the runtime stops the motors.
pub struct Several {
    pub sources: Vec<Box<dyn Source>>,
}

impl Several {
    /// How old another camera's newest image may be when the first camera's
    /// frame arrives: a few of its periods.
    fn stale(period: Duration) -> Duration {
        (period * 5).max(Duration::from_millis(500))
    }
}

impl Source for Several {
    fn views(&self) -> Views {
        Views::new(
            self.sources
                .iter()
                .flat_map(|s| s.views().sizes().to_vec())
                .collect(),
        )
    }

    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, period: Duration) {
        let fps = 1.0 / period.as_secs_f64().max(1e-6);
        if self.sources.is_empty() {
            latest.closed.store(true, Ordering::Relaxed);
            return;
        }
        let mut captures = Vec::new();
        for s in self.sources {
            match start(s, fps) {
                Ok(c) => captures.push(c),
                Err(e) => {
                    tracing::error!("{e}");
                    latest.fail(e.to_string());
                    return;
                }
            }
        }
        // The newest image of each camera but the first, and when it came.
        let mut newest: Vec<(Vec<u8>, Option<Instant>)> = captures[1..]
            .iter()
            .map(|c| (vec![0; c.views.frame_len()], None))
            .collect();
        let stale = Self::stale(period);
        let wait = Duration::from_millis(50);
        // An episode that starts on a frame held back starts on the next.
        let mut new_episode = false;
        let failures = |cs: &[Capture]| {
            cs.iter()
                .map(|c| c.latest.failures.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        while !stop.load(Ordering::Relaxed) {
            if let Some((k, c)) = captures
                .iter()
                .enumerate()
                .find(|(_, c)| c.latest.closed.load(Ordering::Acquire))
            {
                // A camera that failed fails the frames, with its reason.
                if let Some(why) = c.latest.fault() {
                    latest.fail(format!("camera {k}: {why}"));
                    return;
                }
                break;
            }
            latest
                .failures
                .store(failures(&captures), Ordering::Relaxed);
            let (first, rest) = captures.split_at(1);
            first[0].latest.take(wait, |frame, mut meta| {
                // Ages by capture time, against the first camera's frame: an
                // image left unread through a stall is as old as it is.
                let now = meta.captured.unwrap_or_else(Instant::now);
                for (c, (buf, at)) in rest.iter().zip(newest.iter_mut()) {
                    if let Some(t) = c.latest.take(Duration::ZERO, |b, m| {
                        buf.copy_from_slice(b);
                        m.captured.unwrap_or_else(Instant::now)
                    }) {
                        *at = Some(t);
                    }
                }
                if newest
                    .iter()
                    .any(|(_, at)| at.is_none_or(|t| now.saturating_duration_since(t) > stale))
                {
                    latest.dropped.fetch_add(1, Ordering::Relaxed);
                    new_episode |= meta.new_episode;
                    return;
                }
                meta.new_episode |= std::mem::take(&mut new_episode);
                latest.publish(meta, |out| {
                    let (head, mut tail) = out.split_at_mut(frame.len());
                    head.copy_from_slice(frame);
                    for (buf, _) in &newest {
                        let (v, t) = tail.split_at_mut(buf.len());
                        v.copy_from_slice(buf);
                        tail = t;
                    }
                });
            });
        }
        latest.closed.store(true, Ordering::Relaxed);
    }
}

/// Starts the capture thread for `source` at `fps` frames per second.
pub fn start(source: Box<dyn Source>, fps: f64) -> Result<Capture, CameraError> {
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(1.0 / fps.max(0.1));
    let views = source.views();
    let latest = Latest::new(views.frame_len());
    let (l, st) = (latest.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("offramp-capture".into())
        .spawn(move || {
            // A panic in a source (a decoder fed a corrupt image, say) ends
            // the capture; caught here it closes the source with the reason,
            // where it would otherwise leave the loop commanding stop forever
            // while waiting for frames no thread will publish.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                source.run(&l, &st, period)
            }));
            if let Err(panic) = ran {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                let why = format!("the capture thread panicked: {message}");
                tracing::error!("{why}");
                l.fail(why);
            }
        })
        .map_err(|e| CameraError::Source {
            what: "capture thread".into(),
            why: e.to_string(),
        })?;
    Ok(Capture {
        latest,
        stop,
        views,
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

    fn replay(views: &[(usize, usize)], frames: usize, first: u8) -> Replay {
        let views = Views::new(views.to_vec());
        let mut data = Vec::new();
        for k in 0..frames {
            for (v, (w, h)) in views.sizes().iter().enumerate() {
                data.extend(std::iter::repeat_n(first + (k * 2 + v) as u8, w * h * 3));
            }
        }
        Replay {
            frames: data,
            instructions: vec![1; frames],
            episodes: (0..frames as i32).map(|k| k / 4).collect(),
            views,
        }
    }

    /// Every published frame holds the first camera's frame and the second
    /// camera's newest image, end to end.
    #[test]
    fn several_cameras_make_frames_of_several_views() {
        let src = Several {
            sources: vec![
                Box::new(replay(&[(4, 2)], 30, 0)),
                Box::new(replay(&[(2, 2)], 40, 100)),
            ],
        };
        assert_eq!(src.views(), Views::new(vec![(4, 2), (2, 2)]));
        let cap = start(Box::new(src), 100.0).unwrap();
        assert_eq!(cap.latest.frame_len(), 4 * 2 * 3 + 2 * 2 * 3);
        let mut got = 0;
        let mut episodes = 0;
        while let Some(ok) = cap.latest.take(Duration::from_secs(2), |f, meta| {
            let (a, b) = f.split_at(24);
            episodes += meta.new_episode as usize;
            // View 0 is the first camera's frame meta.seq; view 1 some
            // image of the second camera.
            a.iter().all(|&x| x as u64 == meta.seq * 2)
                && b.iter().all(|&x| x == b[0])
                && b[0] >= 100
                && (b[0] - 100) % 2 == 0
        }) {
            assert!(ok);
            got += 1;
        }
        assert!(cap.latest.closed.load(Ordering::Relaxed));
        assert!(got >= 10, "{got} frames");
        // Frames 0..30 hold 8 episodes; each start is seen (held-back
        // frames pass their start on), at most as often as there are.
        assert!((1..=8).contains(&episodes), "{episodes} episode starts");
    }

    /// A second camera whose capture thread panics fails the frames with
    /// its reason, naming the camera: a panic in a nested capture thread
    /// would otherwise close the frames as if the recording had ended.
    #[test]
    fn a_panicking_second_camera_fails_the_frames_with_its_reason() {
        struct Breaks;
        impl Source for Breaks {
            fn views(&self) -> Views {
                (1, 1).into()
            }
            fn run(self: Box<Self>, _: &Latest, _: &AtomicBool, _: Duration) {
                panic!("corrupt JPEG");
            }
        }
        let src = Several {
            sources: vec![Box::new(replay(&[(2, 1)], 200, 0)), Box::new(Breaks)],
        };
        let cap = start(Box::new(src), 100.0).unwrap();
        while cap.latest.take(Duration::from_secs(2), |_, _| ()).is_some() {}
        assert!(cap.latest.closed.load(Ordering::Acquire));
        let why = cap.latest.fault().expect("a failed camera is a fault");
        assert!(why.contains("camera 1"), "{why}");
        assert!(why.contains("corrupt JPEG"), "{why}");
    }

    /// A second camera that stops stops the frames: nothing is published
    /// with its last image once it is stale, and the source ends.
    #[test]
    fn a_vanished_second_camera_stops_frames() {
        let src = Several {
            sources: vec![
                Box::new(replay(&[(2, 1)], 200, 0)),
                Box::new(replay(&[(1, 1)], 3, 100)),
            ],
        };
        let cap = start(Box::new(src), 100.0).unwrap();
        let mut got = 0;
        while cap.latest.take(Duration::from_secs(2), |_, _| ()).is_some() {
            got += 1;
        }
        assert!(cap.latest.closed.load(Ordering::Relaxed));
        assert!(got <= 5, "{got} frames after the second camera's 3");
    }

    /// A camera whose only image was captured long ago (a stall) holds
    /// frames back, though the image was never read before: age is by
    /// capture time, not by when the image was taken from its buffer.
    #[test]
    fn a_stale_image_of_another_camera_is_never_published() {
        struct Stalled;
        impl Source for Stalled {
            fn views(&self) -> Views {
                (1, 1).into()
            }
            fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, _: Duration) {
                let meta = FrameMeta {
                    captured: Instant::now().checked_sub(Duration::from_secs(10)),
                    ..Default::default()
                };
                latest.publish(meta, |b| b.fill(7));
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                latest.closed.store(true, Ordering::Relaxed);
            }
        }
        let src = Several {
            sources: vec![Box::new(replay(&[(2, 1)], 100, 0)), Box::new(Stalled)],
        };
        let cap = start(Box::new(src), 100.0).unwrap();
        assert!(cap
            .latest
            .take(Duration::from_millis(400), |_, _| ())
            .is_none());
        assert!(cap.latest.dropped.load(Ordering::Relaxed) > 0);
    }

    /// A recording's views interleave into frames of several views.
    #[test]
    fn a_recording_of_two_cameras_loads_as_frames_of_two_views() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3;
        let a: Vec<u8> = (0..n * 2 * 2 * 3).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..n * 3).map(|i| 200 + i as u8).collect();
        npy::write(&dir.path().join("frames.npy"), &[n, 2, 2, 3], &a).unwrap();
        npy::write(&dir.path().join("frames.1.npy"), &[n, 1, 1, 3], &b).unwrap();
        npy::write(&dir.path().join("instructions.npy"), &[n], &[0i64; 3]).unwrap();
        npy::write(&dir.path().join("episodes.npy"), &[n], &[0i32; 3]).unwrap();
        let r = load_replay(dir.path()).unwrap();
        assert_eq!(r.views, Views::new(vec![(2, 2), (1, 1)]));
        assert_eq!(r.frame_len(), 15);
        assert_eq!(&r.frames[15..27], &a[12..24]);
        assert_eq!(&r.frames[27..30], &b[3..6]);
        let views: Vec<&[u8]> = r.views.split(&r.frames[15..30]).collect();
        assert_eq!(views, [&a[12..24], &b[3..6]]);
        // A view with another frame count is refused, naming the file.
        npy::write(&dir.path().join("frames.1.npy"), &[2, 1, 1, 3], &b[..6]).unwrap();
        let e = load_replay(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("frames.1.npy is [2, 1, 1, 3]; expected [3, H, W, 3]"),
            "{e}"
        );
    }

    #[test]
    fn a_negative_instruction_is_refused_naming_the_frame() {
        let dir = tempfile::tempdir().unwrap();
        npy::write(&dir.path().join("frames.npy"), &[3, 1, 1, 3], &[0u8; 9]).unwrap();
        npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64, 2, 0]).unwrap();
        npy::write(&dir.path().join("episodes.npy"), &[3], &[0i32; 3]).unwrap();
        assert!(load_replay(dir.path()).is_ok());
        // -1, a common "unknown" marker, would run as instruction 0.
        npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64, -1, 0]).unwrap();
        let e = load_replay(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("instructions.npy[1] is -1; an instruction is an index"),
            "{e}"
        );
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }

    /// Frames of no pixels are refused at load: replaying them panicked in
    /// `chunks_exact(0)` on the capture thread.
    #[test]
    fn frames_without_pixels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        npy::write(&dir.path().join("frames.npy"), &[3, 0, 4, 3], &[0u8; 0]).unwrap();
        npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64; 3]).unwrap();
        npy::write(&dir.path().join("episodes.npy"), &[3], &[0i32; 3]).unwrap();
        let e = load_replay(dir.path()).err().unwrap().to_string();
        assert!(e.contains("frames.npy is [3, 0, 4, 3]"), "{e}");
        assert!(e.contains("H and W at least 1"), "{e}");
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
        let two = "v4l:/dev/video0,replay:/r".parse::<CameraSpec>();
        assert!(
            matches!(&two, Ok(CameraSpec::Several(s)) if s.len() == 2),
            "{two:?}"
        );
        let e = "sim,v4l:/dev/video0".parse::<CameraSpec>().unwrap_err();
        assert!(e.to_string().contains("cannot be combined"), "{e}");
        let e = "usb".parse::<CameraSpec>().unwrap_err().to_string();
        assert!(
            e.contains("expected sim, replay:DIR or v4l:/dev/videoN"),
            "{e}"
        );
    }
}
