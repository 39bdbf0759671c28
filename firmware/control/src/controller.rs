//! The safety state machine between received commands and motor outputs.

use crate::Config;
use offramp_protocol::{
    Counters, Fault, HostMsg, MotorState, Reject, ResetCause, Setpoint, Telemetry,
};

/// What the board must do after [`Controller::handle`] accepted a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    None,
    /// Answer a ping.
    Pong {
        nonce: u32,
    },
    /// Simulate a fault (boards that support it; others reject).
    Fault(Fault),
}

/// Outputs for one control tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    /// Wheel surface speeds, m/s.
    pub left: f32,
    pub right: f32,
    /// PWM duty, 1/10000 of full scale, signed for direction.
    pub duty_left: i16,
    pub duty_right: i16,
    pub state: MotorState,
}

/// PWM model: full scale is the soft speed limit.
fn duty(speed: f32, max: f32) -> i16 {
    if !speed.is_finite() || max <= 0.0 {
        return 0;
    }
    (speed / max * 10_000.0).clamp(-10_000.0, 10_000.0) as i16
}

/// Boots disarmed; see the crate docs for the rules.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: Config,
    state: MotorState,
    last_seq: Option<u32>,
    last_exit: u8,
    /// Target wheel speeds of the active command.
    target: (f32, f32),
    /// Outputs after slew limiting.
    applied: (f32, f32),
    /// When the active command (or arming) was accepted.
    accepted_us: u64,
    /// When the active command stops being valid (timeout or its deadline).
    expires_us: u64,
    last_tick_us: Option<u64>,
    /// Acceptance time of a command not yet applied by a tick.
    pending_since_us: Option<u64>,
    last_apply_latency_us: u32,
    last_timeout_stop_us: u32,
    counters: Counters,
}

impl Controller {
    pub const fn new(cfg: Config) -> Self {
        Self {
            cfg,
            state: MotorState::Disarmed,
            last_seq: None,
            last_exit: 0,
            target: (0.0, 0.0),
            applied: (0.0, 0.0),
            accepted_us: 0,
            expires_us: 0,
            last_tick_us: None,
            pending_since_us: None,
            last_apply_latency_us: 0,
            last_timeout_stop_us: 0,
            counters: Counters {
                frames_ok: 0,
                overflow: 0,
                cobs: 0,
                too_short: 0,
                crc: 0,
                version: 0,
                decode: 0,
                stale: 0,
                deadline_too_far: 0,
                replay: 0,
                out_of_range: 0,
                not_armed: 0,
                unsupported: 0,
                clamped: 0,
                timeouts: 0,
                rx_dropped: 0,
                latched: 0,
            },
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn state(&self) -> MotorState {
        self.state
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Handles one decoded message received at `now_us`. A rejection is already
    /// counted when this returns `Err`.
    pub fn handle(&mut self, msg: HostMsg, now_us: u64) -> Result<Action, Reject> {
        let r = self.check_and_apply(msg, now_us);
        if let Err(reason) = r {
            self.counters.count(reason);
        }
        r
    }

    fn check_and_apply(&mut self, msg: HostMsg, now_us: u64) -> Result<Action, Reject> {
        match msg {
            HostMsg::Stop => {
                // The runtime's stop never lifts an operator's.
                let next = if self.state == MotorState::Latched {
                    MotorState::Latched
                } else {
                    MotorState::Disarmed
                };
                self.stop(next);
                Ok(Action::None)
            }
            HostMsg::Latch => {
                self.stop(MotorState::Latched);
                Ok(Action::None)
            }
            HostMsg::Release { seq } => {
                self.check_seq(seq)?;
                self.last_seq = Some(seq);
                if self.state == MotorState::Latched {
                    self.stop(MotorState::Disarmed);
                }
                Ok(Action::None)
            }
            HostMsg::Ping { nonce } => Ok(Action::Pong { nonce }),
            HostMsg::InjectFault(f) => Ok(Action::Fault(f)),
            HostMsg::Arm { seq } => {
                if self.state == MotorState::Latched {
                    return Err(Reject::Latched);
                }
                self.check_seq(seq)?;
                self.last_seq = Some(seq);
                // Arm while Running changes nothing but the sequence: the
                // active drive keeps its own deadline. The bridge arms at
                // every link-up, and a reconnect must not make a command
                // from before the drop live again by extending it.
                if self.state != MotorState::Running {
                    self.target = (0.0, 0.0);
                    self.applied = (0.0, 0.0);
                    self.state = MotorState::Running;
                    self.accepted_us = now_us;
                    self.expires_us = now_us.saturating_add(self.cfg.command_timeout_us);
                }
                Ok(Action::None)
            }
            HostMsg::Drive(d) => {
                match self.state {
                    MotorState::Latched => return Err(Reject::Latched),
                    MotorState::Disarmed => return Err(Reject::NotArmed),
                    MotorState::Running | MotorState::TimedOut => {}
                }
                self.check_seq(d.seq)?;
                if d.valid_until_us <= now_us {
                    return Err(Reject::Stale);
                }
                if d.valid_until_us - now_us > self.cfg.max_validity_us {
                    return Err(Reject::DeadlineTooFar);
                }
                let (l, r) = self.wheel_speeds(d.setpoint)?;
                let ((cl, cr), clamped) = limit_wheels(l, r, self.cfg.max_wheel_speed);
                if clamped {
                    self.counters.clamped = self.counters.clamped.saturating_add(1);
                }
                self.last_seq = Some(d.seq);
                self.last_exit = d.exit_index;
                self.target = (cl, cr);
                self.state = MotorState::Running;
                self.accepted_us = now_us;
                self.expires_us = d
                    .valid_until_us
                    .min(now_us.saturating_add(self.cfg.command_timeout_us));
                self.pending_since_us = Some(now_us);
                Ok(Action::None)
            }
        }
    }

    fn check_seq(&self, seq: u32) -> Result<(), Reject> {
        match self.last_seq {
            Some(last) if seq <= last => Err(Reject::Replay),
            _ => Ok(()),
        }
    }

    fn wheel_speeds(&self, sp: Setpoint) -> Result<(f32, f32), Reject> {
        let (l, r) = match sp {
            Setpoint::Wheels { left, right } => (left, right),
            Setpoint::Twist { v, omega } => {
                let half = omega * self.cfg.track_width * 0.5;
                (v - half, v + half)
            }
        };
        let hard = self.cfg.reject_wheel_speed;
        if !l.is_finite() || !r.is_finite() || l.abs() > hard || r.abs() > hard {
            return Err(Reject::OutOfRange);
        }
        Ok((l, r))
    }

    /// Zeroes the outputs at once (no slew: this is the safety path).
    fn stop(&mut self, state: MotorState) {
        self.state = state;
        self.target = (0.0, 0.0);
        self.applied = (0.0, 0.0);
        self.pending_since_us = None;
    }

    /// One control tick at `now_us`: expiry check, slew, outputs.
    pub fn tick(&mut self, now_us: u64) -> Output {
        if self.state == MotorState::Running && now_us >= self.expires_us {
            self.stop(MotorState::TimedOut);
            self.counters.timeouts = self.counters.timeouts.saturating_add(1);
            self.last_timeout_stop_us = sat_u32(now_us - self.accepted_us);
        }
        let dt_s = match self.last_tick_us {
            Some(t) => now_us.saturating_sub(t) as f32 * 1e-6,
            None => 0.0,
        };
        self.last_tick_us = Some(now_us);
        if self.state == MotorState::Running {
            let step = self.cfg.max_accel * dt_s;
            self.applied.0 = slew(self.applied.0, self.target.0, step);
            self.applied.1 = slew(self.applied.1, self.target.1, step);
            if let Some(since) = self.pending_since_us.take() {
                self.last_apply_latency_us = sat_u32(now_us.saturating_sub(since));
            }
        }
        self.output()
    }

    /// Current outputs without advancing time.
    pub fn output(&self) -> Output {
        let max = self.cfg.max_wheel_speed;
        Output {
            left: self.applied.0,
            right: self.applied.1,
            duty_left: duty(self.applied.0, max),
            duty_right: duty(self.applied.1, max),
            state: self.state,
        }
    }

    /// A telemetry report of the current state.
    pub fn telemetry(&self, now_us: u64, report_seq: u32, reset_cause: ResetCause) -> Telemetry {
        let out = self.output();
        Telemetry {
            uptime_us: now_us,
            report_seq,
            last_seq: self.last_seq,
            last_exit: self.last_exit,
            applied_left: out.left,
            applied_right: out.right,
            duty_left: out.duty_left,
            duty_right: out.duty_right,
            state: self.state,
            counters: self.counters,
            reset_cause,
            last_apply_latency_us: self.last_apply_latency_us,
            last_timeout_stop_us: self.last_timeout_stop_us,
        }
    }
}

fn slew(from: f32, to: f32, step: f32) -> f32 {
    if to > from {
        (from + step).min(to)
    } else {
        (from - step).max(to)
    }
}

fn sat_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Holds a pair of wheel speeds within ±`max` (m/s) by scaling both by one
/// factor, so the path's curvature (the turn per metre) is kept and the
/// robot only slows along it. Clamping each wheel on its own changes the
/// turn: v 1.5 m/s, ω −3 rad/s on a 0.3 m track asks for 1.95 and 1.05 m/s,
/// which per-wheel clamping makes 1.0 and 1.0, straight ahead. Returns the
/// speeds and whether they were scaled. The simulator applies the same limit.
pub fn limit_wheels(left: f32, right: f32, max: f32) -> ((f32, f32), bool) {
    let larger = left.abs().max(right.abs());
    if larger <= max {
        return ((left, right), false);
    }
    let k = max / larger;
    // The clamp only absorbs rounding: |left × k| ≤ max up to an ulp.
    (
        ((left * k).clamp(-max, max), (right * k).clamp(-max, max)),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use offramp_protocol::Drive;

    const MS: u64 = 1_000;

    fn drive(seq: u32, now: u64, left: f32, right: f32) -> HostMsg {
        HostMsg::Drive(Drive {
            seq,
            valid_until_us: now + 200 * MS,
            setpoint: Setpoint::Wheels { left, right },
            exit_index: 2,
        })
    }

    /// Armed, with a slew limit steep enough to reach any target in a few
    /// ticks (for tests of where the outputs settle).
    fn armed_fast() -> Controller {
        let mut c = Controller::new(Config {
            max_accel: 40.0,
            ..Config::DEFAULT
        });
        c.handle(HostMsg::Arm { seq: 1 }, 0).unwrap();
        c
    }

    fn armed() -> Controller {
        let mut c = Controller::new(Config::DEFAULT);
        c.tick(0);
        c.handle(HostMsg::Arm { seq: 1 }, 0).unwrap();
        c
    }

    /// Ticks every millisecond from `from` to `to` inclusive.
    fn run(c: &mut Controller, from: u64, to: u64) -> Output {
        let mut out = c.output();
        let mut t = from;
        while t <= to {
            out = c.tick(t);
            t += MS;
        }
        out
    }

    #[test]
    fn boots_disarmed_and_refuses_to_drive() {
        let mut c = Controller::new(Config::DEFAULT);
        assert_eq!(c.state(), MotorState::Disarmed);
        assert_eq!(c.handle(drive(1, 0, 0.5, 0.5), 0), Err(Reject::NotArmed));
        let out = run(&mut c, 0, 100 * MS);
        assert_eq!((out.left, out.right), (0.0, 0.0));
        assert_eq!(c.counters().not_armed, 1);
    }

    #[test]
    fn drive_is_applied_with_slew_limit() {
        let mut c = armed();
        c.handle(drive(2, 0, 0.8, -0.4), 0).unwrap();
        // 4 m/s² → 4 mm/s per 1 ms tick.
        let out = c.tick(MS);
        assert!((out.left - 0.004).abs() < 1e-6, "{out:?}");
        assert!((out.right + 0.004).abs() < 1e-6, "{out:?}");
        let mut t = MS;
        let mut seq = 3;
        while t < 300 * MS {
            t += MS;
            if t % (50 * MS) == 0 {
                c.handle(drive(seq, t, 0.8, -0.4), t).unwrap();
                seq += 1;
            }
            c.tick(t);
        }
        let out = c.output();
        assert_eq!((out.left, out.right), (0.8, -0.4));
        assert_eq!(out.duty_left, 8000);
        assert_eq!(out.duty_right, -4000);
        assert_eq!(
            c.telemetry(t, 0, ResetCause::PowerOn).last_apply_latency_us,
            0
        );
    }

    #[test]
    fn twist_becomes_wheel_speeds() {
        let mut c = armed();
        let cmd = HostMsg::Drive(Drive {
            seq: 2,
            valid_until_us: 300 * MS,
            setpoint: Setpoint::Twist { v: 0.5, omega: 2.0 },
            exit_index: 0,
        });
        c.handle(cmd, 0).unwrap();
        // 0.8 m/s at 4 m/s² takes 200 ms; the command expires at 250 ms.
        let mut t = 0;
        while t < 240 * MS {
            t += MS;
            c.tick(t);
        }
        let out = c.output();
        // track 0.3 m: 0.5 ∓ 0.3 m/s
        assert!(
            (out.left - 0.2).abs() < 1e-6 && (out.right - 0.8).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn stale_replayed_and_far_future_are_rejected() {
        let mut c = armed();
        let t = 1_000 * MS;
        c.tick(t);
        c.handle(drive(5, t, 0.1, 0.1), t).unwrap();
        assert_eq!(c.handle(drive(5, t, 0.2, 0.2), t), Err(Reject::Replay));
        assert_eq!(c.handle(drive(4, t, 0.2, 0.2), t), Err(Reject::Replay));
        let stale = HostMsg::Drive(Drive {
            seq: 6,
            valid_until_us: t,
            setpoint: Setpoint::Wheels {
                left: 0.2,
                right: 0.2,
            },
            exit_index: 0,
        });
        assert_eq!(c.handle(stale, t), Err(Reject::Stale));
        let far = HostMsg::Drive(Drive {
            seq: 7,
            valid_until_us: t + 10_000 * MS,
            setpoint: Setpoint::Wheels {
                left: 0.2,
                right: 0.2,
            },
            exit_index: 0,
        });
        assert_eq!(c.handle(far, t), Err(Reject::DeadlineTooFar));
        let n = c.counters();
        assert_eq!((n.replay, n.stale, n.deadline_too_far), (2, 1, 1));
        // A rejected seq does not consume the sequence space: 6 still works.
        c.handle(drive(6, t, 0.3, 0.3), t).unwrap();
    }

    /// A twist past the soft limit is slowed along its path, not turned:
    /// clamping each wheel on its own drove v 1.5, ω −3 straight ahead.
    #[test]
    fn a_twist_past_the_limit_keeps_its_turn() {
        let mut c = armed_fast();
        let twist = HostMsg::Drive(Drive {
            seq: 2,
            valid_until_us: 200 * MS,
            setpoint: Setpoint::Twist {
                v: 1.5,
                omega: -3.0,
            },
            exit_index: 0,
        });
        c.handle(twist, 0).unwrap();
        assert_eq!(c.counters().clamped, 1);
        let out = run(&mut c, MS, 100 * MS);
        // Asked: 1.95 and 1.05 m/s; held: the faster wheel at 1 m/s, the
        // ratio of the two (the curvature) unchanged.
        assert!((out.left - 1.0).abs() < 1e-6, "{out:?}");
        assert!((out.right - 1.05 / 1.95).abs() < 1e-6, "{out:?}");
        assert_eq!(limit_wheels(0.4, -0.9, 1.0), ((0.4, -0.9), false));
        assert_eq!(limit_wheels(-3.0, 1.5, 1.0), ((-1.0, 0.5), true));
    }

    #[test]
    fn out_of_range_rejected_and_near_limit_clamped() {
        let mut c = armed_fast();
        assert_eq!(
            c.handle(drive(2, 0, f32::NAN, 0.0), 0),
            Err(Reject::OutOfRange)
        );
        assert_eq!(
            c.handle(drive(3, 0, 0.0, f32::INFINITY), 0),
            Err(Reject::OutOfRange)
        );
        assert_eq!(c.handle(drive(4, 0, 2.5, 0.0), 0), Err(Reject::OutOfRange));
        c.handle(drive(5, 0, 1.5, -1.5), 0).unwrap();
        assert_eq!(c.counters().out_of_range, 3);
        assert_eq!(c.counters().clamped, 1);
        let out = run(&mut c, MS, 190 * MS);
        assert_eq!((out.left, out.right), (1.0, -1.0));
    }

    #[test]
    fn timeout_stops_motors_exactly_once_per_silence() {
        let mut c = armed();
        let cmd = HostMsg::Drive(Drive {
            seq: 2,
            valid_until_us: 400 * MS,
            setpoint: Setpoint::Wheels {
                left: 0.5,
                right: 0.5,
            },
            exit_index: 0,
        });
        c.handle(cmd, 0).unwrap();
        let out = run(&mut c, MS, 249 * MS);
        assert_eq!(out.state, MotorState::Running);
        assert!(out.left > 0.4);
        let out = c.tick(250 * MS);
        assert_eq!(out.state, MotorState::TimedOut);
        assert_eq!((out.left, out.right, out.duty_left), (0.0, 0.0, 0));
        run(&mut c, 251 * MS, 600 * MS);
        assert_eq!(c.counters().timeouts, 1);
        let tel = c.telemetry(600 * MS, 9, ResetCause::PowerOn);
        assert_eq!(tel.last_timeout_stop_us, 250_000);
        // A fresh command resumes.
        c.handle(drive(3, 600 * MS, 0.2, 0.2), 600 * MS).unwrap();
        assert_eq!(c.tick(601 * MS).state, MotorState::Running);
    }

    #[test]
    fn command_deadline_ends_it_before_the_timeout() {
        let mut c = armed();
        let cmd = HostMsg::Drive(Drive {
            seq: 2,
            valid_until_us: 40 * MS,
            setpoint: Setpoint::Wheels {
                left: 0.5,
                right: 0.5,
            },
            exit_index: 0,
        });
        c.handle(cmd, 0).unwrap();
        assert_eq!(run(&mut c, MS, 39 * MS).state, MotorState::Running);
        assert_eq!(c.tick(40 * MS).state, MotorState::TimedOut);
    }

    #[test]
    fn stop_is_always_honoured_and_disarms() {
        let mut c = armed();
        c.handle(drive(2, 0, 0.5, 0.5), 0).unwrap();
        run(&mut c, MS, 100 * MS);
        c.handle(HostMsg::Stop, 100 * MS).unwrap();
        let out = c.tick(101 * MS);
        assert_eq!((out.left, out.state), (0.0, MotorState::Disarmed));
        assert_eq!(
            c.handle(drive(3, 101 * MS, 0.5, 0.5), 101 * MS),
            Err(Reject::NotArmed)
        );
        // Re-arming must still respect the sequence.
        assert_eq!(
            c.handle(HostMsg::Arm { seq: 2 }, 102 * MS),
            Err(Reject::Replay)
        );
        c.handle(HostMsg::Arm { seq: 3 }, 102 * MS).unwrap();
    }

    /// An operator's stop holds against everything the runtime sends (its
    /// own stop, arms, fresh drives) until a release; after the release
    /// the firmware is disarmed, and an arm then a drive move it again.
    #[test]
    fn an_operators_stop_latches_until_released() {
        let mut c = armed_fast();
        c.handle(drive(2, 0, 0.5, 0.5), 0).unwrap();
        assert!(run(&mut c, MS, 50 * MS).left > 0.0);
        c.handle(HostMsg::Latch, 50 * MS).unwrap();
        let out = c.tick(51 * MS);
        assert_eq!((out.left, out.state), (0.0, MotorState::Latched));
        assert_eq!(
            c.handle(HostMsg::Arm { seq: 3 }, 52 * MS),
            Err(Reject::Latched)
        );
        assert_eq!(
            c.handle(drive(4, 52 * MS, 0.5, 0.5), 52 * MS),
            Err(Reject::Latched)
        );
        c.handle(HostMsg::Stop, 53 * MS).unwrap();
        assert_eq!(c.tick(54 * MS).state, MotorState::Latched, "a plain stop");
        assert_eq!(c.counters().latched, 2);
        assert_eq!(run(&mut c, 55 * MS, 500 * MS).left, 0.0);
        // A release must be newer than anything accepted (a replayed one
        // does nothing).
        assert_eq!(
            c.handle(HostMsg::Release { seq: 2 }, 500 * MS),
            Err(Reject::Replay)
        );
        assert_eq!(c.state(), MotorState::Latched);
        c.handle(HostMsg::Release { seq: 5 }, 500 * MS).unwrap();
        assert_eq!(c.state(), MotorState::Disarmed);
        assert_eq!(
            c.handle(drive(6, 500 * MS, 0.5, 0.5), 500 * MS),
            Err(Reject::NotArmed)
        );
        c.handle(HostMsg::Arm { seq: 7 }, 501 * MS).unwrap();
        c.handle(drive(8, 501 * MS, 0.5, 0.5), 501 * MS).unwrap();
        assert!(run(&mut c, 502 * MS, 550 * MS).left > 0.0);
    }

    #[test]
    fn arm_while_running_never_extends_a_drive_past_its_deadline() {
        let mut c = armed();
        // Valid for 200 ms, well inside the 250 ms command timeout.
        c.handle(drive(2, 0, 0.5, 0.5), 0).unwrap();
        run(&mut c, MS, 150 * MS);
        // A reconnecting bridge arms again just before the deadline.
        c.handle(HostMsg::Arm { seq: 3 }, 150 * MS).unwrap();
        let out = run(&mut c, 151 * MS, 199 * MS);
        assert_eq!(out.state, MotorState::Running);
        assert!(out.left > 0.0, "still driving inside the deadline: {out:?}");
        // At the drive's own deadline the motors stop, Arm or not.
        let out = c.tick(200 * MS);
        assert_eq!(
            (out.state, out.left, out.right),
            (MotorState::TimedOut, 0.0, 0.0)
        );
        assert_eq!(c.counters().timeouts, 1);
        // The Arm was accepted (sequence moved on), not refused.
        assert_eq!(
            c.telemetry(200 * MS, 0, ResetCause::PowerOn).last_seq,
            Some(3)
        );
    }

    #[test]
    fn arm_after_a_timeout_rearms_at_zero() {
        let mut c = armed();
        c.handle(drive(2, 0, 0.5, 0.5), 0).unwrap();
        let out = run(&mut c, MS, 300 * MS);
        assert_eq!(out.state, MotorState::TimedOut);
        c.handle(HostMsg::Arm { seq: 3 }, 300 * MS).unwrap();
        let out = run(&mut c, 301 * MS, 400 * MS);
        assert_eq!(
            (out.state, out.left, out.right),
            (MotorState::Running, 0.0, 0.0)
        );
        // The arming window itself times out like a command.
        let out = run(&mut c, 401 * MS, 600 * MS);
        assert_eq!(out.state, MotorState::TimedOut);
    }

    #[test]
    fn apply_latency_is_time_to_next_tick() {
        let mut c = armed();
        c.tick(10 * MS);
        c.handle(drive(2, 10 * MS + 300, 0.5, 0.5), 10 * MS + 300)
            .unwrap();
        c.tick(11 * MS);
        let tel = c.telemetry(11 * MS, 0, ResetCause::PowerOn);
        assert_eq!(tel.last_apply_latency_us, 700);
        assert_eq!(tel.last_seq, Some(2));
        assert_eq!(tel.last_exit, 2);
    }

    proptest::proptest! {
        /// Whatever arrives, outputs stay finite, within the soft limit, and
        /// change by at most the slew step per tick unless they drop to zero.
        #[test]
        fn outputs_always_within_limits(
            cmds in proptest::collection::vec((0u8..7, -5.0f32..5.0, -5.0f32..5.0, 0u64..600_000, 0u32..40), 1..200)
        ) {
            let cfg = Config::DEFAULT;
            let mut c = Controller::new(cfg);
            let mut t = 0u64;
            let mut prev = c.tick(0);
            let mut latched = false;
            for (kind, a, b, validity, seq) in cmds {
                let msg = match kind {
                    0 => HostMsg::Arm { seq },
                    1 => HostMsg::Stop,
                    4 => HostMsg::Latch,
                    5 => HostMsg::Release { seq },
                    2 => HostMsg::Drive(Drive { seq, valid_until_us: t + validity, setpoint: Setpoint::Twist { v: a, omega: b }, exit_index: 1 }),
                    _ => HostMsg::Drive(Drive { seq, valid_until_us: t + validity, setpoint: Setpoint::Wheels { left: a, right: b }, exit_index: 1 }),
                };
                let accepted = c.handle(msg, t).is_ok();
                match msg {
                    HostMsg::Latch => latched = true,
                    HostMsg::Release { .. } if accepted => latched = false,
                    _ => {}
                }
                t += MS;
                let out = c.tick(t);
                // Only a release lifts an operator's stop.
                if latched {
                    proptest::prop_assert_eq!(
                        (out.state, out.left, out.right),
                        (MotorState::Latched, 0.0, 0.0)
                    );
                }
                for (p, o) in [(prev.left, out.left), (prev.right, out.right)] {
                    proptest::prop_assert!(o.is_finite() && o.abs() <= cfg.max_wheel_speed);
                    proptest::prop_assert!(o == 0.0 || (o - p).abs() <= cfg.max_accel * 1e-3 + 1e-6);
                }
                if out.state != MotorState::Running {
                    proptest::prop_assert_eq!((out.left, out.right), (0.0, 0.0));
                }
                prev = out;
            }
        }
    }
}
