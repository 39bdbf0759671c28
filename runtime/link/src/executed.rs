//! What the robot executed at a camera frame, from its telemetry (`offramp
//! record --telemetry`): the wheel speeds in the newest report from before
//! the frame, if no older than a bound. A report that came after the frame
//! tells what was executed later, and waits for a later frame.

use crate::inbox::Inbox;
use crate::zenoh_link::{Received, TELEMETRY_QUEUE};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub struct Executed {
    rx: Inbox<Received>,
    max_age: Duration,
    latest: Option<Received>,
    /// Reports newer than the last frame asked about (bounded: the oldest
    /// go first, as in the inbox).
    later: VecDeque<Received>,
    /// Reports received.
    pub reports: u64,
}

impl Executed {
    pub fn new(rx: Inbox<Received>, max_age: Duration) -> Self {
        Self {
            rx,
            max_age,
            latest: None,
            later: VecDeque::with_capacity(TELEMETRY_QUEUE),
            reports: 0,
        }
    }

    /// The (left, right) wheel speeds, m/s, the motor controller last
    /// reported applying before `at`; None without a report in `max_age`.
    pub fn at(&mut self, at: Instant) -> Option<[f32; 2]> {
        for r in self.rx.try_iter() {
            self.reports += 1;
            if self.later.len() == TELEMETRY_QUEUE {
                self.later.pop_front();
            }
            self.later.push_back(r);
        }
        let latest = &mut self.latest;
        self.later.retain(|r| {
            let due = r.1 <= at;
            if due && latest.is_none_or(|(_, t)| t <= r.1) {
                *latest = Some(*r);
            }
            !due
        });
        let (m, _) = self
            .latest
            .filter(|(_, t)| at.saturating_duration_since(*t) <= self.max_age)?;
        Some([m.firmware.applied_left, m.firmware.applied_right])
    }
}
