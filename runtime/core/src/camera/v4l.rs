//! V4L2 cameras (feature `v4l`): MMAP streaming, YUYV or MJPEG, the driver's
//! monotonic timestamps. A vanished device is reported and reopened with
//! backoff while the runtime commands stop.

use super::latest::Latest;
use super::source::{CameraError, FrameMeta};
use crate::pixfmt::{mjpeg_to_rgb, yuyv_to_rgb};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::FourCC;

fn err(dev: &Path, why: impl std::fmt::Display) -> CameraError {
    CameraError::Source {
        what: dev.display().to_string(),
        why: why.to_string(),
    }
}

/// A V4L2 camera, probed: its device node and negotiated size.
pub struct V4lSource {
    dev: PathBuf,
    width: usize,
    height: usize,
}

impl V4lSource {
    /// Opens `dev`, prefers YUYV then MJPEG, and keeps the negotiated size.
    pub fn probe(dev: &Path) -> Result<Self, CameraError> {
        let (_, width, height, _) = open(dev)?;
        Ok(Self {
            dev: dev.to_path_buf(),
            width,
            height,
        })
    }
}

impl super::source::Source for V4lSource {
    fn views(&self) -> super::source::Views {
        (self.width, self.height).into()
    }

    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, _period: Duration) {
        run(&self.dev, self.width, self.height, latest, stop)
    }
}

fn open(dev: &Path) -> Result<(Device, usize, usize, FourCC), CameraError> {
    let d = Device::with_path(dev).map_err(|e| err(dev, e))?;
    let mut fmt = d.format().map_err(|e| err(dev, e))?;
    for cc in [b"YUYV", b"MJPG"] {
        fmt.fourcc = FourCC::new(cc);
        if let Ok(f) = d.set_format(&fmt) {
            if f.fourcc == FourCC::new(cc) {
                return Ok((d, f.width as usize, f.height as usize, f.fourcc));
            }
        }
    }
    Err(err(
        dev,
        format!(
            "supports neither YUYV nor MJPEG (current format {})",
            fmt.fourcc
        ),
    ))
}

/// The driver's CLOCK_MONOTONIC timestamp as an Instant (same clock on Linux).
// time_t is i64 on aarch64 and x86_64 but i32 on 32-bit ARM boards.
#[allow(clippy::useless_conversion)]
fn captured(ts: v4l::timestamp::Timestamp) -> Option<Instant> {
    use nix::time::{clock_gettime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?;
    let now_us = i64::from(now.tv_sec()) * 1_000_000 + i64::from(now.tv_nsec()) / 1000;
    let ts_us = i64::from(ts.sec) * 1_000_000 + i64::from(ts.usec);
    let age = now_us
        .checked_sub(ts_us)
        .filter(|a| (0..10_000_000).contains(a))?;
    Instant::now().checked_sub(Duration::from_micros(age as u64))
}

/// Capture loop: streams until `stop`; on errors, reopens with backoff.
pub fn run(dev: &Path, width: usize, height: usize, latest: &Latest, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(100);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match stream(dev, width, height, latest, stop, &mut seq) {
            Ok(()) => break,
            Err(e) => {
                latest.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("camera {}: {e}; retrying in {backoff:?}", dev.display());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    latest.closed.store(true, Ordering::Relaxed);
}

fn stream(
    dev: &Path,
    width: usize,
    height: usize,
    latest: &Latest,
    stop: &AtomicBool,
    seq: &mut u64,
) -> Result<(), CameraError> {
    let (d, w, h, cc) = open(dev)?;
    if (w, h) != (width, height) {
        return Err(err(
            dev,
            format!("came back as {w}x{h}, was {width}x{height}"),
        ));
    }
    let mut s = MmapStream::with_buffers(&d, Type::VideoCapture, 4).map_err(|e| err(dev, e))?;
    let yuyv = cc == FourCC::new(b"YUYV");
    while !stop.load(Ordering::Relaxed) {
        let (buf, meta) = s.next().map_err(|e| err(dev, e))?;
        let used = (meta.bytesused as usize).min(buf.len());
        let mut bad = None;
        let m = FrameMeta {
            seq: *seq,
            captured: captured(meta.timestamp),
            instruction: 0,
            new_episode: *seq == 0,
        };
        latest.publish(m, |rgb| {
            let r = if yuyv {
                yuyv_to_rgb(&buf[..used], w, h, rgb)
            } else {
                mjpeg_to_rgb(&buf[..used], w, h, rgb)
            };
            if let Err(e) = r {
                bad = Some(e);
            }
        });
        if let Some(e) = bad {
            // A malformed frame is dropped and counted; streaming goes on.
            latest.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("camera {}: malformed frame {}: {e}", dev.display(), *seq);
        }
        *seq += 1;
    }
    Ok(())
}
