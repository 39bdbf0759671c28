//! `offramp bench memory`: a long stream of frames through the exit chain,
//! every exit committing in turn, with the process's resident memory, the
//! per-frame cost and, for a head with a key/value cache, its occupancy,
//! evictions and buffer addresses read at every power of ten. What a robot
//! running for hours needs: nothing grows, nothing slows.
//!
//! The cost is compared side by side: a second chain on the same set runs
//! the same frames interleaved with the long stream's, reset every
//! [`WINDOW`] frames so it is never older than that; each checkpoint's
//! ratio is the long stream's median frame time over the young chain's in
//! the same window, so the machine's own drift cancels.

use crate::Bars;
use offramp_engines::EngineSet;
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use serde::Serialize;
use std::time::Instant;

/// Frames in each timing window (the window ends at its checkpoint).
pub const WINDOW: u64 = 1000;

#[derive(Serialize)]
pub struct MemoryBench {
    pub engines: String,
    pub backend: &'static str,
    pub threads: usize,
    pub frames: u64,
    /// The cache of a temporal attention head, if the set has one.
    pub cache: Option<CacheFigures>,
    /// At frame 10^3, 10^4, … and the last.
    pub checkpoints: Vec<Checkpoint>,
    /// Resident memory at the last checkpoint minus at frame 10^3, MiB.
    pub rss_growth_mib: f64,
    /// The last checkpoint's `cost_ratio`.
    pub frame_cost_ratio: f64,
    /// Whether the cache's buffers were at the same addresses at every
    /// checkpoint as after loading (true without a cache).
    pub cache_addresses_fixed: bool,
    pub seconds: f64,
}

#[derive(Serialize)]
pub struct CacheFigures {
    pub slots: usize,
    pub sinks: usize,
    pub saddles: usize,
    pub recent: usize,
    /// Keys, values, mask and positions, f32.
    pub bytes: usize,
}

#[derive(Serialize)]
pub struct Checkpoint {
    pub frame: u64,
    /// `VmRSS`, MiB.
    pub rss_mib: f64,
    /// Median frame time (`ExitChain::step`) over the [`WINDOW`] frames up
    /// to here, µs: the long stream's and the young chain's.
    pub frame_us_p50: f64,
    pub young_frame_us_p50: f64,
    /// The first over the second.
    pub cost_ratio: f64,
    pub cache_entries: usize,
    pub cache_evictions: u64,
}

/// Runs `frames` frames (at least [`WINDOW`]) of `set` on its backend:
/// frame t commits exit t mod the loaded exits, its inputs a pattern that
/// changes every frame.
pub fn run(set: &EngineSet, frames: u64, bars: Bars) -> anyhow::Result<MemoryBench> {
    anyhow::ensure!(
        frames >= WINDOW,
        "--frames {frames}: at least {WINDOW} (one timing window)"
    );
    let mut chain = ExitChain::new(set, set.manifest.build.backend)?;
    let mut young = ExitChain::new(set, set.manifest.build.backend)?;
    let exits = chain.exits();
    let addresses: Vec<usize> = chain
        .cache()
        .map(|c| c.addresses().collect())
        .unwrap_or_default();
    let cache = chain.cache().map(|c| {
        let l = c.layout();
        CacheFigures {
            slots: l.slots,
            sinks: l.sinks,
            saddles: l.saddles,
            recent: l.recent,
            bytes: l.bytes(),
        }
    });
    let mut marks: Vec<u64> = std::iter::successors(Some(WINDOW), |m| m.checked_mul(10))
        .take_while(|&m| m < frames)
        .collect();
    marks.push(frames);
    // Frame times of the window, the long stream's then the young chain's.
    let mut times = [vec![0f64; WINDOW as usize], vec![0f64; WINDOW as usize]];
    let mut checkpoints = Vec::with_capacity(marks.len());
    let mut fixed = true;
    let bar = bars(frames, "frames");
    let start = Instant::now();
    for t in 0..frames {
        if t % WINDOW == 0 {
            young.reset();
        }
        let exit = ExitPolicy::Fixed((t % exits as u64) as usize);
        for (c, times) in [&mut chain, &mut young].into_iter().zip(&mut times) {
            for (k, buf) in c.inputs_mut().iter_mut().enumerate() {
                // Cheap, different every frame: a ramp shifted by the frame.
                let phase = ((t.wrapping_mul(2_654_435_761) >> 7) % 97) as f32 / 97.0;
                for (j, v) in buf.iter_mut().enumerate() {
                    *v = ((j + k) % 17) as f32 / 17.0 - phase;
                }
            }
            let t0 = Instant::now();
            c.step(exit)?;
            times[(t % WINDOW) as usize] = t0.elapsed().as_secs_f64() * 1e6;
        }
        if (t + 1) % 1000 == 0 {
            bar();
        }
        if marks.contains(&(t + 1)) {
            let c = chain.cache();
            fixed &= c.is_none_or(|c| c.addresses().eq(addresses.iter().copied()));
            let [old, new] = [&times[0], &times[1]].map(|w| {
                let mut sorted = w.clone();
                sorted.sort_by(f64::total_cmp);
                sorted[sorted.len() / 2]
            });
            checkpoints.push(Checkpoint {
                frame: t + 1,
                rss_mib: offramp_engines::resident_bytes().unwrap_or(0) as f64
                    / (1u64 << 20) as f64,
                frame_us_p50: old,
                young_frame_us_p50: new,
                cost_ratio: old / new,
                cache_entries: c.map_or(0, |c| c.occupancy()),
                cache_evictions: c.map_or(0, |c| c.evicted_total()),
            });
        }
    }
    let (first, last) = (&checkpoints[0], &checkpoints[checkpoints.len() - 1]);
    Ok(MemoryBench {
        engines: set.dir.display().to_string(),
        backend: set.manifest.build.backend.name(),
        threads: offramp_engines_cpu::threads(),
        frames,
        cache,
        rss_growth_mib: last.rss_mib - first.rss_mib,
        frame_cost_ratio: last.cost_ratio,
        cache_addresses_fixed: fixed,
        seconds: start.elapsed().as_secs_f64(),
        checkpoints,
    })
}
