//! The robot's actuator: each action the run loop decides is published on
//! zenoh as a twist held inside the robot's limits, in every build (a
//! `cmd_vel` base has no firmware behind it that validates what it gets).

use crate::zenoh_link::{RuntimeLink, ZenohError};
use offramp_runtime::exit_chain::FrameOutcome;
use offramp_runtime::run_loop::Actuator;
use offramp_runtime::twist::{Limits, Twist};
use std::time::Instant;

/// Publishes each action over zenoh as well as driving the inner actuator
/// (a simulated robot, or nothing). zenoh allocates inside `put` (as tract
/// does inside a run): this actuator is outside the runtime's
/// zero-allocation guarantee.
pub struct ZenohActuator<A> {
    pub link: RuntimeLink,
    pub inner: A,
    pub limits: Limits,
    /// Publications that failed (the first is logged).
    pub errors: u64,
    /// The last publication's sequence number and send time (`None`: it
    /// failed), to pair with the firmware's telemetry.
    pub last: Option<(u64, Instant)>,
}

impl<A> ZenohActuator<A> {
    pub fn new(link: RuntimeLink, inner: A, limits: Limits) -> Self {
        Self {
            link,
            inner,
            limits,
            errors: 0,
            last: None,
        }
    }
}

impl<A: Actuator> Actuator for ZenohActuator<A> {
    fn act(&mut self, a: &[f32], o: &FrameOutcome) {
        let t = Twist::from_action(a, self.limits);
        let sent = self.link.publish(t.v, t.omega, o.exit as u8, false);
        self.note(sent);
        // A simulated robot drives what was published, limits included.
        self.inner.act(&[t.v, t.omega], o);
    }
    fn stop(&mut self) {
        let sent = self.link.publish(0.0, 0.0, 0, true);
        self.note(sent);
        self.inner.stop();
    }
}

impl<A> ZenohActuator<A> {
    fn note(&mut self, sent: Result<(u64, Instant), ZenohError>) {
        self.last = sent
            .map_err(|e| {
                if self.errors == 0 {
                    tracing::warn!("{e}");
                }
                self.errors += 1;
            })
            .ok();
    }
}
