//! The sampler thread: reads a [`PowerSource`] at a fixed rate and keeps the
//! trace on the profile's clock. A failed read (a file that vanished or holds
//! garbage, a tegrastats line without rails) is logged once, counted and
//! skipped: the trace gets a gap and sampling goes on.

use super::{PowerError, PowerSource};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading, `t` in seconds since the profile's epoch.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: f64,
    pub total_mw: f64,
    pub rails_mw: Vec<f64>,
}

/// What the sampler saw.
#[derive(Debug, Clone, Serialize)]
pub struct PowerLog {
    pub source: String,
    pub rails: Vec<String>,
    pub period_ms: f64,
    pub samples: Vec<Sample>,
    pub read_errors: u64,
    pub last_error: Option<String>,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<PowerLog>,
}

impl Sampler {
    /// Starts sampling `source` every `period` on a clock whose zero is `epoch`.
    pub fn start(
        mut source: Box<dyn PowerSource>,
        epoch: Instant,
        period: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("power-sampler".into())
            .spawn(move || {
                let rails = source.rails().to_vec();
                let mut log = PowerLog {
                    source: source.describe(),
                    rails,
                    period_ms: period.as_secs_f64() * 1e3,
                    samples: Vec::with_capacity(4096),
                    read_errors: 0,
                    last_error: None,
                };
                let mut mw = vec![0.0; log.rails.len()];
                let mut next = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    match source.read(&mut mw) {
                        Ok(Some(total)) => log.samples.push(Sample {
                            t: epoch.elapsed().as_secs_f64(),
                            total_mw: total,
                            rails_mw: mw.clone(),
                        }),
                        Ok(None) => {}
                        Err(e) => note_error(&mut log, e),
                    }
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        // Fell behind (a blocking source): restart the grid.
                        next = now;
                    }
                }
                log
            })?;
        Ok(Self { stop, handle })
    }

    /// Stops the thread and returns the trace.
    pub fn finish(self) -> PowerLog {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_else(|_| PowerLog {
            source: "sampler thread panicked".into(),
            rails: Vec::new(),
            period_ms: 0.0,
            samples: Vec::new(),
            read_errors: 1,
            last_error: Some("sampler thread panicked".into()),
        })
    }
}

fn note_error(log: &mut PowerLog, e: PowerError) {
    let msg = e.to_string();
    if log.last_error.as_deref() != Some(msg.as_str()) {
        tracing::warn!("power sampler: {msg} (skipping the sample, still sampling)");
    }
    log.read_errors += 1;
    log.last_error = Some(msg);
}
