//! What every frame source is: the [`Source`] trait, the camera views a
//! frame holds, a frame's metadata, and the camera errors.

use super::latest::Latest;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{what}: {why}")]
    Source { what: String, why: String },
    #[error("camera {spec:?}: expected sim, replay:DIR or v4l:/dev/videoN, or several of replay: and v4l: separated by commas (one camera per image input)")]
    Spec { spec: String },
    #[error(
        "{0}: this offramp was built without the `v4l` feature; rebuild with `--features v4l`"
    )]
    NoV4l(String),
}

/// The camera views one frame holds, in order, each (width, height): a
/// frame is their HWC RGB bytes end to end. One camera is one view; a
/// model with a front and a wrist camera reads frames of two views, view k
/// feeding `preprocess.images[k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Views(Vec<(usize, usize)>);

impl Views {
    pub fn new(sizes: Vec<(usize, usize)>) -> Self {
        Self(sizes)
    }

    /// Each view's (width, height).
    pub fn sizes(&self) -> &[(usize, usize)] {
        &self.0
    }

    /// Bytes of one frame: every view's.
    pub fn frame_len(&self) -> usize {
        self.0.iter().map(|(w, h)| w * h * 3).sum()
    }

    /// The views of `frame` (of [`Self::frame_len`] bytes), in order.
    pub fn split<'a>(&'a self, frame: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut at = 0;
        self.0.iter().map(move |(w, h)| {
            let v = frame.get(at..at + w * h * 3).unwrap_or(&[]);
            at += w * h * 3;
            v
        })
    }
}

impl From<(usize, usize)> for Views {
    fn from(size: (usize, usize)) -> Self {
        Self(vec![size])
    }
}

impl std::fmt::Display for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, (w, h)) in self.0.iter().enumerate() {
            write!(f, "{}{w}x{h}", if k > 0 { " + " } else { "" })?;
        }
        Ok(())
    }
}

/// Metadata of one published frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameMeta {
    pub seq: u64,
    /// When the frame was captured (the camera's timestamp where it has one).
    pub captured: Option<Instant>,
    /// Instruction for the model (simulator and replay know it);
    /// [`crate::exit_chain::NO_INSTRUCTION`] for a frame that carries none.
    pub instruction: usize,
    /// A new episode starts with this frame (reset the recurrent state).
    pub new_episode: bool,
}

/// A frame source, run on its own capture thread by [`start`].
pub trait Source: Send + 'static {
    /// The views of a frame: one (width, height) per camera, HWC RGB.
    fn views(&self) -> Views;
    /// Publishes frames into `latest` at `period` until `stop` is set or the
    /// source ends; sets `latest.closed` when it returns.
    fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, period: Duration);
}
