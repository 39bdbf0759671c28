//! The firmware's control logic built for the host: the same `offramp-control`
//! node the boards run, on a thread, speaking the wire protocol over a serial
//! device (either end of a pty). Its clock is the host's monotonic clock.
//!
//! When the other end closes (the bridge exits, the cable is pulled) the node
//! keeps ticking, so its command timeout stops the motors, and it listens
//! again: a pty master reads again once a new process opens the slave.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use offramp_control::{Config, Node, Output};
use offramp_protocol::{ResetCause, MAX_FRAME};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TICK_US: u64 = 1_000;

/// A running host MCU. Dropping it stops the thread.
pub struct HostMcu {
    stop: Arc<AtomicBool>,
    output: Arc<Mutex<Option<Output>>>,
    thread: Option<JoinHandle<()>>,
}

impl HostMcu {
    /// Starts the control node on `device`.
    pub fn spawn(device: File, cfg: Config) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let output = Arc::new(Mutex::new(None));
        let thread = std::thread::Builder::new()
            .name("offramp-host-mcu".into())
            .spawn({
                let stop = Arc::clone(&stop);
                let output = Arc::clone(&output);
                move || run(device, cfg, &stop, &output)
            })?;
        Ok(Self {
            stop,
            output,
            thread: Some(thread),
        })
    }

    /// The outputs of the latest control tick (what the motors would get).
    pub fn output(&self) -> Option<Output> {
        self.output.lock().ok().and_then(|o| *o)
    }
}

impl Drop for HostMcu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut device: File, cfg: Config, stop: &AtomicBool, output: &Mutex<Option<Output>>) {
    let start = Instant::now();
    let now_us = || start.elapsed().as_micros() as u64;
    let mut node = Node::new(cfg, "host", ResetCause::PowerOn, 0, false);
    let mut next_tick = 0u64;
    let mut rx = [0u8; 256];
    let mut tx = [0u8; MAX_FRAME];
    let mut link_up = true;
    let mut retry_at = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if !link_up && now_us() >= retry_at {
            link_up = true;
        }
        let wait_ms = next_tick.saturating_sub(now_us()).div_ceil(1_000).min(1) as u8;
        if link_up {
            let mut fds = [PollFd::new(device.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(wait_ms)).unwrap_or(0) > 0;
            if ready {
                match device.read(&mut rx) {
                    Ok(n) if n > 0 => {
                        let t = now_us();
                        for &b in &rx[..n] {
                            // The host build does not simulate faults.
                            let _ = node.on_byte(b, t);
                        }
                    }
                    // EOF or EIO: the other side closed. Keep ticking, so
                    // the command timeout stops the motors, as on a real
                    // board whose cable was pulled; look again in 5 ms.
                    _ => {
                        link_up = false;
                        retry_at = now_us() + 5_000;
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = now_us();
        if t >= next_tick {
            let out = node.tick(t);
            if let Ok(mut o) = output.lock() {
                *o = Some(out);
            }
            next_tick = (next_tick + TICK_US).max(t);
        }
        while let Some(n) = node.next_frame(&mut tx) {
            // A UART transmits into nothing when no one listens.
            if link_up && device.write_all(&tx[..n]).is_err() {
                link_up = false;
                retry_at = now_us() + 5_000;
            }
        }
    }
}
