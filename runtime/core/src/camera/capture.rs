//! The capture thread: owns a source and publishes its frames into a
//! [`Latest`]; a panicking source closes it with the reason.

use super::latest::Latest;
use super::source::{CameraError, Source, Views};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
