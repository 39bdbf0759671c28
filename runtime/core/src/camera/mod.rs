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
//! (`offramp_sim::camera`), so the real-time crate never links it.//!
//! One concept per file: [`source`] (the [`Source`] trait, a frame's
//! [`Views`] and [`FrameMeta`]), [`latest`] (the triple buffer),
//! [`capture`] (the capture thread), [`replay`] (recorded episodes),
//! [`several`] (several cameras as one multi-view source), [`spec`] (what
//! `--camera` names, and opening it), `v4l` (V4L2 cameras, feature `v4l`).

pub mod capture;
pub mod latest;
pub mod replay;
pub mod several;
pub mod source;
pub mod spec;
#[cfg(feature = "v4l")]
pub mod v4l;

pub use capture::{start, Capture};
pub use latest::Latest;
pub use replay::{load_replay, view_file, Replay, ReplayWriter};
pub use several::Several;
pub use source::{CameraError, FrameMeta, Source, Views};
pub use spec::{open, CameraSpec};

#[cfg(test)]
mod tests;
