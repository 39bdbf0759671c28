//! Several cameras as one source of multi-view frames.

use super::capture::{start, Capture};
use super::latest::Latest;
use super::source::{Source, Views};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
