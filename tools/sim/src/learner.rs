//! The runtime as a DAgger learner ([`crate::record::Learner`]): per
//! episode either the calibrated criterion or a random fixed exit, so the
//! data covers the states every exit (and the deployed mix of exits) leads
//! to. The run loop decides each frame, as on the robot.

use crate::{Rng, Sim, Twist, LIMITS};
use offramp_runtime::camera::FrameMeta;
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{RunError, RunLoop};
use offramp_runtime::twist::TwistCommand;

pub struct ChainLearner {
    rl: RunLoop,
    command: TwistCommand,
    /// Whether the episode's first frame is next.
    new_episode: bool,
    criterion_share: f32,
    rng: Rng,
    /// The first frame that failed: the recording is then not to be used.
    error: Option<RunError>,
}

impl ChainLearner {
    /// `p` drives; `criterion_share` of the episodes use its calibrated
    /// criterion (its thresholds must be set), the rest a random fixed
    /// exit, drawn from `seed`.
    pub fn new(p: Pipeline, criterion_share: f32, seed: u64) -> Self {
        Self {
            rl: RunLoop::new(p, ExitPolicy::Fixed(0), None, None),
            command: TwistCommand::new(LIMITS),
            new_episode: true,
            criterion_share,
            rng: Rng::new(seed ^ 0xDA66E4),
            error: None,
        }
    }

    /// Why a frame failed, if one did (the learner then commanded a stop).
    pub fn into_error(self) -> Option<RunError> {
        self.error
    }
}

impl crate::record::Learner for ChainLearner {
    fn start(&mut self, _sim: &Sim) {
        self.new_episode = true;
        // The coin is drawn only when the criterion may drive, so recordings
        // without it keep the exact exit sequence of earlier rounds
        // (reproduce_demo.sh replays them).
        let criterion = self.criterion_share > 0.0 && self.rng.unit() < self.criterion_share;
        let exit = self.rng.below(self.rl.pipeline.chain.exits());
        self.rl.policy = if criterion {
            ExitPolicy::Criterion
        } else {
            ExitPolicy::Fixed(exit)
        };
    }

    fn act(&mut self, frame: &[u8], instruction: usize) -> Twist {
        let meta = FrameMeta {
            seq: 0,
            captured: None,
            instruction,
            new_episode: std::mem::take(&mut self.new_episode),
        };
        if let Err(e) = self.rl.frame(frame, meta, &mut self.command) {
            self.error.get_or_insert(e);
            return Twist::default();
        }
        self.command.twist
    }
}
