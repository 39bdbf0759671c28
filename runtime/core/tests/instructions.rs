//! The instruction reaches the model on every frame: one that changes in
//! the middle of an episode applies from that frame on (it used to be set
//! only at the episode's first frame, so later frames silently ran with
//! the first one's).

use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::camera::FrameMeta;
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use offramp_runtime::run_loop::{Actuator, RunLoop};

/// Keeps every action it is given.
#[derive(Default)]
struct Actions(Vec<Vec<f32>>);

impl Actuator for Actions {
    fn act(&mut self, action: &[f32], _: &FrameOutcome) {
        self.0.push(action.to_vec());
    }
    fn stop(&mut self) {}
}

/// The demo set's actions for one episode of the same frame under
/// `instructions`, one per frame.
fn actions(set: &EngineSet, instructions: &[usize]) -> Vec<Vec<f32>> {
    let frame: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 37 % 251) as u8).collect();
    let p = Pipeline::open(set, BackendKind::Cpu, (32, 32)).unwrap();
    let mut rl = RunLoop::new(p, ExitPolicy::Fixed(3), None, None);
    let mut out = Actions::default();
    for (k, &instruction) in instructions.iter().enumerate() {
        let meta = FrameMeta {
            seq: k as u64,
            captured: None,
            instruction,
            new_episode: k == 0,
        };
        rl.frame(&frame, meta, &mut out).unwrap();
    }
    out.0
}

#[test]
fn an_instruction_given_mid_episode_applies_from_that_frame() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../engines/models/demo");
    let set = EngineSet::open(dir).unwrap();
    let same = actions(&set, &[0, 0, 0, 0]);
    let changed = actions(&set, &[0, 0, 1, 1]);
    assert_eq!(same[..2], changed[..2]);
    for k in 2..4 {
        assert_ne!(
            same[k], changed[k],
            "frame {k} ran with the first instruction"
        );
    }
    // A fresh episode with instruction 1 from the start differs from the
    // switch (the recurrent state carried the first frames).
    let from_start = actions(&set, &[1, 1, 1, 1]);
    assert_ne!(from_start[2], changed[2]);
    // An instruction the model does not know, mid-episode, is refused.
    let p = Pipeline::open(&set, BackendKind::Cpu, (32, 32)).unwrap();
    let mut rl = RunLoop::new(p, ExitPolicy::Fixed(0), None, None);
    let frame = vec![0u8; 32 * 32 * 3];
    let meta = |seq, instruction| FrameMeta {
        seq,
        captured: None,
        instruction,
        new_episode: seq == 0,
    };
    rl.frame(&frame, meta(0, 0), &mut Actions::default())
        .unwrap();
    let e = rl
        .frame(&frame, meta(1, 99), &mut Actions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("instruction 99"), "{e}");
}
