//! The server's side of offloading: a second device runs exits `from..`
//! of the same engine set on the tensors the robot carried, under the
//! criterion, and answers with the exit it stopped at. The recurrent
//! state stays the robot's.

use super::super::walk::Walk;
use super::super::{ExitChain, ExitChainError, ExitPolicy, FrameOutcome};
use super::{OffloadReply, OffloadRequest};

impl ExitChain {
    /// Server side of offloading: runs exits `req.from..` under the
    /// criterion on the carried tensors and the robot's state, and writes
    /// the exit it stops at into `reply`. Keeps nothing of the request: the
    /// state stays the robot's.
    pub fn serve(
        &mut self,
        req: &OffloadRequest<'_>,
        reply: &mut OffloadReply,
    ) -> Result<(), ExitChainError> {
        self.refuse_host_carry("serving exits")?;
        self.decide_residency(true);
        let from = req.from;
        if !(1..self.n).contains(&from) {
            return Err(ExitChainError::Request(format!(
                "asks for exits from {from}; this set has exits 1..{} to serve",
                self.n
            )));
        }
        let ours = self.chain.exit_outputs(from - 1);
        let sizes_ok = req.carried.len() == ours.len()
            && req
                .carried
                .iter()
                .zip(ours)
                .all(|(c, o)| c.len() == o.len())
            && req.state.len() == self.state.len()
            && req.prev_action.len() == self.stop.len();
        if !sizes_ok {
            return Err(ExitChainError::Request(format!(
                "carried tensors {:?}, state {}, action {} do not match this set's {:?}, {}, {}",
                req.carried.iter().map(Vec::len).collect::<Vec<_>>(),
                req.state.len(),
                req.prev_action.len(),
                ours.iter().map(Vec::len).collect::<Vec<_>>(),
                self.state.len(),
                self.stop.len()
            )));
        }
        for (dst, src) in self
            .chain
            .exit_outputs_mut(from - 1)
            .iter_mut()
            .zip(req.carried)
        {
            dst.copy_from_slice(src);
        }
        self.state.copy_from_slice(req.state);
        self.actions[from - 1].copy_from_slice(req.prev_action);
        self.chain.take_device_seconds();
        let mut out = FrameOutcome::empty();
        let mut w = Walk {
            prev_ok: req.prev_ok,
            last_good: None,
            chosen: None,
        };
        self.walk(
            &mut out,
            &mut w,
            ExitPolicy::Criterion,
            None,
            None,
            from..self.n,
        )?;
        let pick = w.chosen.unwrap_or(out.ran - 1);
        reply.frame = req.frame;
        reply.exit = pick;
        reply.ran = out.ran;
        reply.action.copy_from_slice(&self.actions[pick]);
        reply.next_state.copy_from_slice(&self.next_states[pick]);
        reply.deltas = out.deltas;
        reply.scores = out.scores;
        reply.exit_seconds = out.exit_seconds;
        reply.heads = out.heads;
        Ok(())
    }
}
