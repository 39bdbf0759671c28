//! offramp's measurements on frames held in memory, so that no capture
//! thread competes with the engines they time:
//!
//! * [`held_frames`]: the frames (from the simulator or a recording) and
//!   one frame through a pipeline.
//! * [`profile`]: latency and energy per exit on this device, with a power
//!   sampler running (`offramp profile`).
//! * [`runtime`]: the runtime's overhead outside the engines, early exit
//!   against the full model, deadline misses under CPU hogs (`offramp bench
//!   runtime`).
//! * [`zenoh`]: offramp's action path against bare zenoh (`offramp bench
//!   zenoh`).
//! * [`engines`]: each segment on tract against onnxruntime (and a TensorRT
//!   build's plans) on the same files (`offramp bench engines`).
//! * [`memory`]: resident memory, frame cost and a cache head's occupancy
//!   over a long stream (`offramp bench memory`).
//! * [`offload`]: local-only against offloading deep exits, on the same
//!   closed-loop episodes (`offramp bench offload`; the `sim` feature).
//!
//! The profile lives here rather than in `offramp-power` because it drives
//! the runtime over held frames like the benches do; `offramp-power` stays
//! what the profile reads (power sources and energy), with no engine in it.
//! A crate of its own so that the `offramp` command only parses flags and
//! prints what these return.

pub mod engines;
pub mod held_frames;
pub mod memory;
#[cfg(feature = "sim")]
pub mod offload;
pub mod profile;
pub mod runtime;
pub mod zenoh;

/// Progress shown by the caller (a bar on a terminal): `bars(len, label)`
/// starts a phase of `len` steps and returns what to call as each step
/// ends; dropping that ends the phase.
pub type Bars<'a> = &'a dyn Fn(u64, &str) -> Box<dyn Fn() + Sync>;
