//! What a differential-drive robot is commanded: a twist (linear speed,
//! yaw rate) held inside the robot's limits, and the wheel speeds it
//! becomes. One definition for the robot's publisher (`offramp run
//! --zenoh`), the simulated robot and every closed-loop evaluation.

use crate::exit_chain::FrameOutcome;
use crate::run_loop::Actuator;

/// Linear speed (m/s) and yaw rate (rad/s): what the model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Twist {
    pub v: f32,
    pub omega: f32,
}

/// Per-wheel surface speeds, m/s: what the firmware drives.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Wheels {
    pub left: f32,
    pub right: f32,
}

/// The largest |v| (m/s) and |ω| (rad/s) a robot is commanded: positive,
/// finite numbers (checked flags or constants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub v: f32,
    pub omega: f32,
}

impl Twist {
    /// (v, ω) of a model's `[v, ω, ...]` action held inside `limits`, a
    /// missing value taken as 0. A `cmd_vel` base has no firmware that
    /// validates what it gets, and a regression head overshoots its
    /// training range by a little: every command goes through here.
    pub fn from_action(action: &[f32], limits: Limits) -> Self {
        let get = |k: usize| action.get(k).copied().unwrap_or(0.0);
        Self {
            v: get(0).clamp(-limits.v, limits.v),
            omega: get(1).clamp(-limits.omega, limits.omega),
        }
    }

    /// The wheel speeds of this twist on a robot whose wheels are `track`
    /// metres apart.
    pub fn to_wheels(self, track: f32) -> Wheels {
        Wheels {
            left: self.v - self.omega * track / 2.0,
            right: self.v + self.omega * track / 2.0,
        }
    }
}

/// The actuator of a world stepped in lockstep with the run loop (the
/// simulator): it holds the last command, held inside `limits`, for the
/// caller to advance the world by; a stop holds zero.
#[derive(Debug, Clone, Copy)]
pub struct TwistCommand {
    pub limits: Limits,
    pub twist: Twist,
}

impl TwistCommand {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            twist: Twist::default(),
        }
    }
}

impl Actuator for TwistCommand {
    fn act(&mut self, action: &[f32], _: &FrameOutcome) {
        self.twist = Twist::from_action(action, self.limits);
    }
    fn stop(&mut self) {
        self.twist = Twist::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_held_inside_the_limits_and_missing_values_are_zero() {
        let l = Limits { v: 0.5, omega: 2.0 };
        assert_eq!(
            Twist::from_action(&[1.5, -3.0, 9.0], l),
            Twist {
                v: 0.5,
                omega: -2.0
            }
        );
        assert_eq!(Twist::from_action(&[0.2], l), Twist { v: 0.2, omega: 0.0 });
        assert_eq!(Twist::from_action(&[], l), Twist::default());
        // A slower robot's limits, not the demo robot's.
        let slow = Limits { v: 0.2, omega: 0.5 };
        assert_eq!(
            Twist::from_action(&[0.3, -1.0], slow),
            Twist {
                v: 0.2,
                omega: -0.5
            }
        );
    }

    #[test]
    fn a_turn_in_place_drives_the_wheels_apart() {
        let w = Twist { v: 0.0, omega: 1.0 }.to_wheels(0.3);
        assert_eq!(
            w,
            Wheels {
                left: -0.15,
                right: 0.15
            }
        );
    }
}
