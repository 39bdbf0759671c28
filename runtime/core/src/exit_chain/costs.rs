//! What a frame costs in multiply-accumulates: the segments it ran and
//! every head evaluation, in total and on this machine (offload).

use super::{ExitChain, FrameOutcome};

impl ExitChain {
    /// Multiply-accumulates a frame cost: the segments it ran and every head
    /// evaluation.
    pub fn frame_macs(&self, o: &FrameOutcome) -> u64 {
        self.segment_macs.iter().take(o.ran).sum::<u64>() + self.head_macs * o.heads as u64
    }

    /// The part of [`Self::frame_macs`] this machine computed: without the
    /// segments and head evaluations a server ran (offload).
    pub fn robot_macs(&self, o: &FrameOutcome) -> u64 {
        let local = o.ran - o.remote_ran;
        self.segment_macs.iter().take(local).sum::<u64>()
            + self.head_macs * (o.heads - o.remote_heads) as u64
    }

    /// Cumulative MACs of stopping at each exit under the criterion: the
    /// segments up to it, a head evaluation per exit, and the reference.
    pub fn criterion_costs(&self) -> Vec<u64> {
        let reference = self.reference.is_some() as u64;
        (0..self.n)
            .map(|i| {
                self.segment_macs[..=i].iter().sum::<u64>()
                    + self.head_macs * (i as u64 + 1 + reference)
            })
            .collect()
    }

    /// MACs of the full model: every segment and the head once (exits past
    /// a stored `deepest_exit` included: ratios stay against the model).
    pub fn full_macs(&self) -> u64 {
        self.full_macs
    }
}
