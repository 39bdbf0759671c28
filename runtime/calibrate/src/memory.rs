//! The memory budget, measured: what a runtime holds for the model when it
//! loads exits `0..=k`, for every k.
//!
//! Counting parameters and activations understates what a backend keeps:
//! tract holds the graph, its optimised plan and scratch next to the
//! weights (about 3× the demo model's fp32 weights). So the cap is chosen
//! from the heap the loaded pipeline actually holds, measured by loading it
//! capped at each exit and running one frame.

use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::camera::{FrameMeta, Views};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Idle, RunError, RunLoop};
use serde::Serialize;

/// Heap bytes held by a pipeline loaded up to each exit.
#[derive(Debug, Clone, Serialize)]
pub struct Footprints {
    /// `bytes[k]`: exits `0..=k` loaded, after one frame.
    pub bytes: Vec<u64>,
}

impl Footprints {
    /// Loads `set` capped at each exit in turn and measures the heap it
    /// holds with `live_bytes` (the process's live heap bytes, from a
    /// counting global allocator).
    pub fn measure(
        set: &EngineSet,
        backend: BackendKind,
        frame: impl Into<Views>,
        live_bytes: &dyn Fn() -> i64,
    ) -> Result<Self, RunError> {
        let frame: Views = frame.into();
        let image = vec![0u8; frame.frame_len()];
        let mut bytes = Vec::with_capacity(set.manifest.exits.len());
        for k in 0..set.manifest.exits.len() {
            let mut capped = set.clone();
            capped.manifest.criterion.deepest_exit = Some(k);
            let before = live_bytes();
            let p = Pipeline::open(&capped, backend, frame.clone())?;
            // The loop's own figures (its latency window) are not the
            // model's: measured apart and taken off.
            let before_loop = live_bytes();
            let mut rl = RunLoop::new(p, ExitPolicy::All, None, None);
            let own = live_bytes() - before_loop;
            rl.frame(&image, FrameMeta::default(), &mut Idle)?;
            bytes.push((live_bytes() - before - own).max(0) as u64);
        }
        Ok(Self { bytes })
    }

    /// The deepest exit whose footprint fits in `budget` bytes.
    pub fn cap(&self, budget: u64) -> Option<usize> {
        self.bytes.iter().rposition(|b| *b <= budget)
    }
}
