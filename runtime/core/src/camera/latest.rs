//! The newest-frame handoff: a triple buffer shared by the capture thread
//! (the writer) and the runtime (the reader). The reader always takes the
//! newest frame; an unread frame that is overwritten counts as dropped;
//! nothing queues.

use super::source::FrameMeta;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
