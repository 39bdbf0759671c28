//! GPU residency: whether the tensors between segments stay on the device
//! from one segment to the next, decided once at the first frame.

use super::{ExitChain, ExitChainError};

/// Whether the tensors between segments stay on the GPU
/// ([`Chain::keep_between_segments_on_device`]), decided at the first frame:
/// yes unless the chain offloads or serves, which carry them on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Residency {
    Undecided,
    /// This many tensors stay on the device (0 on the CPU).
    Kept(usize),
    Never,
}

impl ExitChain {
    /// Decides, once, whether the tensors between segments stay on the GPU:
    /// not for a chain that serves (`serving`) or offloads, whose carried
    /// tensors travel through the host. Outputs the criterion reads (a
    /// confidence, the exit-0 reference) stay copied.
    pub(super) fn decide_residency(&mut self, serving: bool) {
        if self.residency != Residency::Undecided {
            return;
        }
        if serving || self.remote.is_some() {
            self.residency = Residency::Never;
            return;
        }
        let (reference, confidence) = (self.reference, &self.confidence);
        let kept = self.chain.keep_between_segments_on_device(|i, k| {
            (i == 0 && reference == Some(k)) || confidence.get(i) == Some(&Some(k))
        });
        if kept > 0 {
            tracing::info!(
                tensors = kept,
                "the tensors between segments stay on the GPU"
            );
        }
        self.residency = Residency::Kept(kept);
    }

    /// The error for carrying tensors through the host once they stay on
    /// the GPU.
    pub(super) fn refuse_host_carry(&self, what: &str) -> Result<(), ExitChainError> {
        if self.cache.is_some() {
            return Err(ExitChainError::Request(format!(
                "{what}: this set's head keeps a key/value cache on the robot, which a server does not have"
            )));
        }
        match self.residency {
            Residency::Kept(n) if n > 0 => Err(ExitChainError::Request(format!(
                "{what}: this chain already keeps {n} tensor(s) between segments on the GPU, \
                 where the host cannot carry them; set it up before the first frame"
            ))),
            _ => Ok(()),
        }
    }
}
