//! The exit chain against fake engines: the walk, the criteria, the
//! deadline, offload and residency.

use super::criteria::rms;
use super::offload::client::REPARTITION_EVERY;
use super::offload::{Offload, OffloadReply, OffloadRequest};
use super::*;
use offramp_engines::manifest::{BuildInfo, Cost, Criterion, Head, Segment};
use offramp_engines::{Engine, Manifest, Precision, Role, TensorSpec};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn rms_over_selected_dims() {
    assert_eq!(
        rms(&[1.0, 5.0, 9.0], &[0.0, 5.0, 0.0], &[0, 1]),
        (0.5f32).sqrt()
    );
    assert_eq!(rms(&[3.0, 4.0], &[0.0, 0.0], &[]), (12.5f32).sqrt());
}

/// What the fake engines produce this frame.
#[derive(Clone)]
struct Script {
    /// The head's action at each exit (2 dims).
    actions: Vec<[f32; 2]>,
    /// The head's action on exit 0's reference feature.
    reference: [f32; 2],
    /// Each exit's learned confidence (a third, one-value output).
    confidence: Vec<f32>,
    /// How long each segment takes.
    sleep: Vec<Duration>,
}

const EXITS: usize = 4;
/// Feature tag of the reference output.
const REF: f32 = -1.0;

/// Segment i: `hidden` carried on, `feature` = [i, 0], and on segment 0
/// a reference feature [-1, 0]; sleeps as scripted.
struct FakeSegment {
    index: usize,
    script: Arc<Mutex<Script>>,
    /// As on a GPU backend: device buffers, and a log of what the
    /// chain asked of them.
    device: Option<Log>,
}

type Log = Arc<Mutex<Vec<String>>>;

impl Engine for FakeSegment {
    fn run(
        &mut self,
        _inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> offramp_engines::Result<()> {
        let sleep = self.script.lock().unwrap().sleep[self.index];
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
        outputs[0].fill(0.0);
        outputs[1].copy_from_slice(&[self.index as f32, 0.0]);
        match outputs.get_mut(2) {
            Some(c) if c.len() == 1 => c[0] = self.script.lock().unwrap().confidence[self.index],
            Some(r) => r.copy_from_slice(&[REF, 0.0]),
            None => {}
        }
        if let Some(log) = &self.device {
            log.lock().unwrap().push(format!("run s{}", self.index));
        }
        Ok(())
    }

    fn device_output(&self, k: usize) -> Option<offramp_engines::DeviceTensor> {
        self.device.as_ref()?;
        Some(offramp_engines::DeviceTensor {
            address: (100 * self.index + k) as u64,
            bytes: 4,
        })
    }

    unsafe fn read_input_from(&mut self, k: usize, src: offramp_engines::DeviceTensor) -> bool {
        let Some(log) = &self.device else {
            return false;
        };
        log.lock()
            .unwrap()
            .push(format!("s{} input {k} <- {}", self.index, src.address));
        true
    }

    fn keep_output_on_device(&mut self, k: usize) -> bool {
        let Some(log) = &self.device else {
            return false;
        };
        log.lock()
            .unwrap()
            .push(format!("s{} output {k} kept", self.index));
        true
    }
}

/// The head: the scripted action for the exit its feature is tagged
/// with; next state = state + tag + 1, so the committed state tells
/// which exit's head state was kept.
struct FakeHead {
    script: Arc<Mutex<Script>>,
}

impl Engine for FakeHead {
    fn run(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> offramp_engines::Result<()> {
        let (feature, state) = (inputs[0], inputs[1]);
        let s = self.script.lock().unwrap();
        let tag = feature[0];
        let a = if tag == REF {
            s.reference
        } else {
            s.actions[tag as usize]
        };
        outputs[0].copy_from_slice(&a);
        outputs[1][0] = state[0] + tag + 1.0;
        Ok(())
    }
}

fn spec(name: &str, n: usize) -> TensorSpec {
    TensorSpec::f32(name, &[1, n])
}

fn manifest(kind: CriterionKind, reference: bool, thresholds: &[f32]) -> Manifest {
    let cost = Cost {
        macs: 1000,
        params: 10,
        peak_activation_bytes: 8,
    };
    Manifest {
        format_version: 1,
        model: "fake".into(),
        build: BuildInfo {
            backend: BackendKind::Cpu,
            precision: Precision::Fp32,
            offramp_version: "test".into(),
            tools: Default::default(),
            target_device: "test".into(),
            tensorrt_version: None,
        },
        inputs: vec![spec("x", 1)],
        exits: (0..EXITS)
            .map(|i| {
                let mut outputs = vec![spec("hidden", 1), spec("feature", 2)];
                if i == 0 && reference {
                    outputs.push(spec("ref", 2));
                }
                Segment {
                    name: format!("s{i}"),
                    artifact: format!("s{i}"),
                    sha256: String::new(),
                    inputs: vec![if i == 0 {
                        spec("x", 1)
                    } else {
                        spec("hidden", 1)
                    }],
                    outputs,
                    feature: Some("feature".into()),
                    action: None,
                    confidence: None,
                    cost,
                }
            })
            .collect(),
        head: Some(Head {
            artifact: "head".into(),
            sha256: String::new(),
            inputs: vec![spec("feature", 2), spec("h_in", 1)],
            outputs: vec![spec("action", 2), spec("h_out", 1)],
            feature_input: "feature".into(),
            state_input: Some("h_in".into()),
            state_output: Some("h_out".into()),
            action_output: "action".into(),
            cache: None,
            cost: Cost { macs: 0, ..cost },
        }),
        action: Default::default(),
        criterion: Criterion {
            kind,
            thresholds: thresholds.to_vec(),
            continuous_dims: vec![0, 1],
            fixed_exit: None,
            deepest_exit: None,
            exit0_reference: reference.then(|| "ref".to_string()),
        },
        preprocess: None,
        offload: None,
    }
}

struct Fixture {
    chain: ExitChain,
    script: Arc<Mutex<Script>>,
}

impl Fixture {
    fn new(m: Manifest) -> Self {
        Self::with_device(m, None)
    }

    fn with_device(m: Manifest, device: Option<Log>) -> Self {
        Self::with_head(m, device, |script| Box::new(FakeHead { script }))
    }

    /// The fake segments and the head `head` makes (given the script).
    fn with_head(
        m: Manifest,
        device: Option<Log>,
        head: impl Fn(Arc<Mutex<Script>>) -> Box<dyn Engine>,
    ) -> Self {
        let script = Arc::new(Mutex::new(Script {
            actions: vec![[0.0; 2]; EXITS],
            reference: [0.0; 2],
            confidence: vec![0.0; EXITS],
            sleep: vec![Duration::ZERO; EXITS],
        }));
        let set = EngineSet {
            dir: "fake".into(),
            manifest_path: "fake/manifest.toml".into(),
            manifest: m,
        };
        let sc = script.clone();
        let chain = Chain::with_engines(&set, |role, _, _, _| {
            Ok(match role {
                Role::Segment(index) => Box::new(FakeSegment {
                    index,
                    script: sc.clone(),
                    device: device.clone(),
                }) as Box<dyn Engine>,
                Role::Head => head(sc.clone()),
            })
        })
        .unwrap();
        Self {
            chain: ExitChain::with_chain(&set, chain).unwrap(),
            script,
        }
    }

    fn actions(&self, actions: &[[f32; 2]]) {
        self.script.lock().unwrap().actions = actions.to_vec();
    }

    fn state(&self) -> f32 {
        self.chain.state[0]
    }
}

/// Actions whose consecutive RMS deltas are `d[i]` (exit 0 vs the
/// reference at 0): a_i = Σ_{k≤i} d_k on both dims.
fn with_deltas(d: [f32; EXITS]) -> Vec<[f32; 2]> {
    let mut acc = 0.0;
    d.iter()
        .map(|x| {
            acc += x;
            [acc, acc]
        })
        .collect()
}

#[test]
fn token_actions_decode_to_bin_centres_and_score_the_least_confident_dimension() {
    // Two dimensions of three bins: centres [-1, 0, 1] and [10, 20, 30].
    let bins = [-1.0, 0.0, 1.0, 10.0, 20.0, 30.0];
    let (mut p, mut a) = ([0.0; 6], [0.0; 2]);
    // Logits: dimension 0 sure of bin 2, dimension 1 torn between 0 and 1.
    let raw = [0.0, 0.0, 9.0, 2.0, 2.0, -5.0];
    Tokens::decode(&bins, 3, true, &raw, &mut p, &mut a);
    assert_eq!(a[0], 1.0);
    assert!(a[1] == 10.0 || a[1] == 20.0, "{a:?}");
    assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(p[2] > 0.99 && (p[3] - p[4]).abs() < 1e-6, "{p:?}");
    // The torn dimension decides: its margin score is ~1 (a tie).
    let m = Tokens::score(CriterionKind::Margin, 3, &p);
    assert!(m > 0.99, "{m}");
    let sure = Tokens::score(CriterionKind::Margin, 3, &p[..3]);
    assert!(sure < 0.01, "{sure}");
    // Probabilities are taken as they are.
    let probs = [0.1, 0.8, 0.1, 0.6, 0.3, 0.1];
    Tokens::decode(&bins, 3, false, &probs, &mut p, &mut a);
    assert_eq!(a, [0.0, 10.0]);
    assert_eq!(p, probs);
    let c = Tokens::score(CriterionKind::MaxConfidence, 3, &p);
    assert!((c - 0.4).abs() < 1e-6, "{c}");
    // A non-finite score makes that dimension's action NaN (never used).
    let bad = [0.0, f32::NAN, 1.0, 0.0, 1.0, 2.0];
    Tokens::decode(&bins, 3, true, &bad, &mut p, &mut a);
    assert!(a[0].is_nan() && a[1] == 30.0, "{a:?}");
    assert!(Tokens::score(CriterionKind::Entropy, 3, &p).is_nan());
}

#[test]
fn an_instruction_the_model_does_not_know_is_refused() {
    use offramp_engines::manifest::Preprocess;
    let mut m = manifest(CriterionKind::ActionConsistency, false, &[]);
    m.preprocess = Some(Preprocess {
        mean: Some([0.0; 3]),
        std: Some([1.0; 3]),
        images: Vec::new(),
        instruction: Some("x".into()),
        tokenizer: None,
        instruction_texts: Vec::new(),
        instruction_ids: Vec::new(),
    });
    // One-hot: the input "x" is [1, 1], so only instruction 0 exists.
    let mut f = Fixture::new(m.clone());
    f.chain.set_instruction(0).unwrap();
    assert_eq!(f.chain.chain.inputs_mut()[0], [1.0]);
    let e = f.chain.set_instruction(1).unwrap_err().to_string();
    assert!(
        e.contains("instruction 1: the model knows instructions 0..1"),
        "{e}"
    );
    assert_eq!(f.chain.chain.inputs_mut()[0], [0.0], "no stale instruction");
    // A frame without an instruction (a memory task after its cue): blank.
    f.chain.set_instruction(0).unwrap();
    f.chain.set_instruction(NO_INSTRUCTION).unwrap();
    assert_eq!(f.chain.chain.inputs_mut()[0], [0.0]);
    assert_eq!(f.chain.current_instruction(), Some(NO_INSTRUCTION));
    // Token ids: instruction k is its ids; past the list is refused.
    if let Some(p) = m.preprocess.as_mut() {
        p.instruction_ids = vec![vec![7], vec![9]];
    }
    let mut f = Fixture::new(m);
    f.chain.set_instruction(1).unwrap();
    assert_eq!(f.chain.chain.inputs_mut()[0], [9.0]);
    assert!(f.chain.set_instruction(2).is_err());
    f.chain.set_instruction(NO_INSTRUCTION).unwrap();
    assert_eq!(f.chain.chain.inputs_mut()[0], [0.0], "every id 0");
}

/// The fake set without a head: segment i's second output, [i, 0], is
/// its own action.
fn headless(thresholds: &[f32]) -> Manifest {
    let mut m = manifest(CriterionKind::ActionConsistency, false, thresholds);
    m.head = None;
    for s in &mut m.exits {
        s.outputs[1].name = "action".into();
        s.feature = None;
        s.action = Some("action".into());
    }
    m
}

#[test]
fn a_set_without_a_head_stops_on_its_exits_own_actions_and_keeps_no_state() {
    // Consecutive exits differ by 1 in dimension 0: RMS 0.707.
    let mut f = Fixture::new(headless(&[0.8, 0.8, 0.8]));
    assert!(f.chain.state.is_empty() && f.chain.head_macs == 0);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    // Exit 0 has no reference to compare with, so exit 1 is the first
    // that can stop.
    assert_eq!((o.exit, o.ran), (1, 2));
    assert!((o.scores[1] - 0.5f32.sqrt()).abs() < 1e-6, "{:?}", o.scores);
    assert_eq!(f.chain.action(), [1.0, 0.0]);
    // Tighter thresholds: nothing stops early, the deepest decides.
    let mut f = Fixture::new(headless(&[0.5, 0.5, 0.5]));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (3, 4));
    assert_eq!(f.chain.action(), [3.0, 0.0]);
    assert_eq!(f.chain.frame_macs(&o), 4000);
}

#[test]
fn the_first_passing_exit_stops_the_chain_and_only_its_state_is_committed() {
    let mut f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    // Exit 0 differs from the reference by 1.0, exit 1 from exit 0 by
    // 0.05 (passes), exit 2 by 0.01 (would pass too: must not run).
    f.actions(&with_deltas([1.0, 0.05, 0.01, 0.0]));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran, o.heads), (1, 2, 3));
    assert!((o.scores[1] - 0.05).abs() < 1e-6, "{:?}", o.scores);
    assert!(o.scores[2].is_nan(), "exit 2 must not have run");
    assert_eq!(f.chain.action(), &[1.05, 1.05]);
    // Head state of exit 1: 0 + 1 + 1.
    assert_eq!(f.state(), 2.0);

    // Every exit run (calibration): the same exit is chosen and only
    // its state kept, not the deepest one's.
    let o = f.chain.step(ExitPolicy::All).unwrap();
    assert_eq!((o.exit, o.ran), (1, EXITS));
    assert_eq!(f.state(), 4.0);
}

#[test]
fn exit_0_stops_on_its_reference_and_cannot_without_one() {
    let same = with_deltas([0.0, 0.5, 0.5, 0.5]);
    let mut f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    f.actions(&same);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran, o.heads), (0, 1, 2));
    assert_eq!(f.state(), 1.0);

    let mut f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        false,
        &[0.1, 0.1, 0.1],
    ));
    f.actions(&same);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(o.scores[0].is_nan());
    // No exit passes: the last always stops.
    assert_eq!((o.exit, o.ran, o.heads), (3, 4, 4));
}

/// Learned exits: the score is 1 − the exit's own confidence output,
/// from exit 0 on (no reference needed); a confidence that is not a
/// probability never stops an exit.
#[test]
fn learned_exits_stop_where_their_confidence_passes() {
    let mut m = manifest(CriterionKind::Learned, false, &[0.2, 0.2, 0.2]);
    for s in &mut m.exits[..EXITS - 1] {
        s.outputs.push(spec("conf", 1));
        s.confidence = Some("conf".into());
    }
    let mut f = Fixture::new(m);
    f.script.lock().unwrap().confidence = vec![0.5, 0.9, 0.95, 0.0];
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (1, 2));
    assert!((o.scores[0] - 0.5).abs() < 1e-6, "{:?}", o.scores);
    assert!((o.scores[1] - 0.1).abs() < 1e-6, "{:?}", o.scores);
    f.script.lock().unwrap().confidence = vec![0.85, 0.7, 0.6, 0.0];
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (0, 1));
    f.script.lock().unwrap().confidence = vec![1.5, f32::NAN, -0.2, 0.0];
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (3, 4));
    assert!(o.scores[..3].iter().all(|s| s.is_nan()), "{:?}", o.scores);
    // Every exit scored under ExitPolicy::All, for calibration.
    f.script.lock().unwrap().confidence = vec![0.1, 0.2, 0.3, 0.0];
    let o = f.chain.step(ExitPolicy::All).unwrap();
    let want = [0.9, 0.8, 0.7];
    for (s, w) in o.scores.iter().zip(want) {
        assert!((s - w).abs() < 1e-6, "{:?}", o.scores);
    }
    assert!(o.scores[3].is_nan());
}

#[test]
fn max_confidence_scores_every_exit_including_exit_0() {
    // Thresholds bound 1 − p_max: stop once p_max > 0.9.
    let mut f = Fixture::new(manifest(
        CriterionKind::MaxConfidence,
        false,
        &[0.1, 0.1, 0.1],
    ));
    f.actions(&[[0.95, 0.05], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (0, 1));
    assert!((o.scores[0] - 0.05).abs() < 1e-6);
    f.actions(&[[0.6, 0.4], [0.8, 0.2], [0.92, 0.08], [0.5, 0.5]]);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (2, 3));
}

#[test]
fn fixed_criterion_stops_at_its_fixed_exit() {
    let mut m = manifest(CriterionKind::Fixed, false, &[]);
    m.criterion.fixed_exit = Some(1);
    let mut f = Fixture::new(m);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran, o.heads), (1, 2, 1));
}

/// An offload link that hands each request to `answer` (a server
/// stand-in) and records what it was asked.
struct FakeLink {
    answer: Answer,
    asked: Asked,
}

/// A server stand-in: fills the reply, or says no answer came.
type Answer = Box<dyn FnMut(&OffloadRequest<'_>, Instant, &mut OffloadReply) -> bool + Send>;

impl Offload for FakeLink {
    fn run_remote(
        &mut self,
        req: &OffloadRequest<'_>,
        deadline: Instant,
        reply: &mut OffloadReply,
    ) -> Result<bool, super::offload::OffloadError> {
        self.asked
            .lock()
            .unwrap()
            .push((req.from, req.state[0], req.prev_ok));
        Ok((self.answer)(req, deadline, reply))
    }
}

type Asked = Arc<Mutex<Vec<(usize, f32, bool)>>>;

/// A fixture whose exits 2 and 3 are remote, answered by `answer`.
fn offloaded(
    timeout: Duration,
    answer: impl FnMut(&OffloadRequest<'_>, Instant, &mut OffloadReply) -> bool + Send + 'static,
) -> (Fixture, Asked) {
    let mut f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    let asked = Asked::default();
    f.chain
        .set_offload(
            2,
            Box::new(FakeLink {
                answer: Box::new(answer),
                asked: asked.clone(),
            }),
            timeout,
        )
        .unwrap();
    (f, asked)
}

/// A link whose server never answers.
fn silent() -> Box<dyn Offload> {
    Box::new(FakeLink {
        answer: Box::new(|_, _, _| false),
        asked: Asked::default(),
    })
}

#[test]
fn on_a_gpu_hidden_states_stay_on_the_device_from_the_first_frame() {
    let log = Log::default();
    let mut m = manifest(CriterionKind::ActionConsistency, true, &[0.1, 0.1, 0.1]);
    // Segment 1 also reads exit 0's reference, which the criterion
    // reads too; segment 2 reads `hidden` twice.
    m.exits[1].inputs.push(spec("ref", 2));
    m.exits[2].inputs.push(spec("hidden", 1));
    let mut f = Fixture::with_device(m, Some(log.clone()));
    assert!(log.lock().unwrap().is_empty(), "nothing before a frame");
    f.chain.step(ExitPolicy::All).unwrap();
    // A segment reads the previous one's `hidden` (output 0) in place,
    // linked before anything ran. The reference stays copied (the host
    // reads it), and so does a tensor two inputs read.
    let got = log.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            "s1 input 0 <- 0",
            "s0 output 0 kept",
            "s3 input 0 <- 200",
            "s2 output 0 kept",
            "run s0",
            "run s1",
            "run s2",
            "run s3",
        ]
    );
    f.chain.step(ExitPolicy::All).unwrap();
    assert_eq!(log.lock().unwrap().len(), got.len() + EXITS, "linked once");
    // The host can no longer carry those tensors to a server.
    let e = f
        .chain
        .set_offload(2, silent(), Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("keeps 2 tensor(s) between segments on the GPU"),
        "{e}"
    );
    assert!(e.contains("before the first frame"), "{e}");
}

#[test]
fn an_offloading_or_serving_chain_carries_its_tensors_through_the_host() {
    let log = Log::default();
    let m = manifest(CriterionKind::ActionConsistency, true, &[0.1, 0.1, 0.1]);
    let mut robot = Fixture::with_device(m.clone(), Some(log.clone()));
    robot
        .chain
        .set_offload(2, silent(), Duration::ZERO)
        .unwrap();
    robot.chain.step(ExitPolicy::Criterion).unwrap();
    let mut server = Fixture::with_device(m, Some(log.clone()));
    let carried = vec![vec![0.0f32], vec![0.0, 0.0]];
    let req = OffloadRequest {
        frame: 1,
        from: 2,
        carried: &carried,
        state: &[0.0],
        prev_action: &[0.0, 0.0],
        prev_ok: false,
    };
    let mut reply = server.chain.offload_reply();
    server.chain.serve(&req, &mut reply).unwrap();
    server.chain.step(ExitPolicy::All).unwrap();
    assert!(
        log.lock().unwrap().iter().all(|l| l.starts_with("run")),
        "{:?}",
        log.lock().unwrap()
    );
}

/// The server's answer: exit 3 with action [7, 7] and next state 40.
fn exit3(req: &OffloadRequest<'_>, reply: &mut OffloadReply) {
    reply.frame = req.frame;
    reply.exit = 3;
    reply.ran = 4;
    reply.action.copy_from_slice(&[7.0, 7.0]);
    reply.next_state[0] = 40.0;
    reply.scores[2] = 0.5;
    reply.heads = 2;
}

#[test]
fn a_frame_needing_remote_depth_uses_the_answer_and_commits_its_state() {
    let (mut f, asked) = offloaded(Duration::from_millis(50), |req, _, reply| {
        exit3(req, reply);
        true
    });
    f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(o.remote && !o.fallback && !o.stopped);
    assert_eq!((o.exit, o.ran, o.heads), (3, 4, 5));
    assert_eq!((o.remote_ran, o.remote_heads), (2, 2));
    // The robot computed segments 0 and 1 of the four.
    assert_eq!(f.chain.robot_macs(&o), 2000);
    assert_eq!(f.chain.frame_macs(&o), 4000);
    assert_eq!(o.scores[2], 0.5);
    assert_eq!(f.chain.action(), &[7.0, 7.0]);
    assert_eq!(f.state(), 40.0);
    // The request carried the committed state (0) and a finite exit 1.
    assert_eq!(*asked.lock().unwrap(), [(2, 0.0, true)]);
    let c = f.chain.offload_counters().unwrap();
    assert_eq!((c.requests, c.answered, c.fallbacks), (1, 1, 0));
    // The next frame sends the state the answer left.
    f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!(asked.lock().unwrap()[1], (2, 40.0, true));
}

#[test]
fn a_frame_the_local_exits_settle_asks_no_server() {
    let (mut f, asked) = offloaded(Duration::from_millis(50), |_, _, _| {
        panic!("no request expected")
    });
    f.actions(&with_deltas([1.0, 0.05, 0.0, 0.0]));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(!o.remote && !o.fallback);
    assert_eq!((o.exit, o.ran), (1, 2));
    assert!(asked.lock().unwrap().is_empty());
    // Fixed exits and calibration's run-everything stay local.
    let o = f.chain.step(ExitPolicy::Fixed(3)).unwrap();
    assert_eq!((o.exit, o.remote), (3, false));
    let o = f.chain.step(ExitPolicy::All).unwrap();
    assert_eq!((o.ran, o.remote), (EXITS, false));
    assert!(asked.lock().unwrap().is_empty());
}

#[test]
fn without_an_answer_the_deepest_local_exit_is_used_and_the_state_stays_local() {
    let (mut f, _) = offloaded(Duration::from_millis(50), |_, _, _| false);
    f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(o.fallback && !o.remote && !o.stopped);
    assert_eq!((o.exit, o.ran), (1, 2));
    assert_eq!(f.chain.action(), &[1.5, 1.5]);
    // Exit 1's head state: 0 + 1 + 1.
    assert_eq!(f.state(), 2.0);
    let c = f.chain.offload_counters().unwrap();
    assert_eq!((c.requests, c.answered, c.fallbacks), (1, 0, 1));
}

#[test]
fn an_answer_for_another_frame_not_finite_or_out_of_bounds_is_rejected() {
    let mut n = 0;
    let (mut f, _) = offloaded(Duration::from_millis(50), move |req, _, reply| {
        exit3(req, reply);
        n += 1;
        match n {
            1 => reply.frame = req.frame - 1,
            2 => reply.action[0] = f32::NAN,
            3 => reply.next_state[0] = f32::INFINITY,
            4 => reply.exit = 1,
            // Finite but past the manifest's bounds (the default, 1000).
            5 => reply.next_state[0] = 1e30,
            6 => reply.action[1] = -1000.5,
            _ => {}
        }
        true
    });
    f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
    let mut state = 0.0;
    for _ in 0..6 {
        let o = f.chain.step(ExitPolicy::Criterion).unwrap();
        assert!(o.fallback && !o.remote);
        assert_eq!(o.exit, 1);
        state += 2.0;
        assert_eq!(f.state(), state, "the rejected answer's state was kept");
    }
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(o.remote);
    let c = f.chain.offload_counters().unwrap();
    assert_eq!((c.rejected, c.fallbacks, c.answered), (6, 6, 1));
}

#[test]
fn the_wait_for_a_server_ends_at_the_frame_deadline() {
    // The link is handed the frame's deadline (not its own 400 ms
    // timeout) and the step returns once it gives up.
    let (mut f, _) = offloaded(Duration::from_millis(400), |_, deadline, _| {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        false
    });
    f.actions(&with_deltas([1.0, 0.5, 0.0, 0.0]));
    let t0 = Instant::now();
    let o = f
        .chain
        .step_until(ExitPolicy::Criterion, Some(t0 + Duration::from_millis(20)))
        .unwrap();
    let took = t0.elapsed();
    assert!(o.fallback && o.exit == 1, "{o:?}");
    assert!(took >= Duration::from_millis(20), "{took:?}");
    assert!(
        took < Duration::from_millis(300),
        "waited past the deadline: {took:?}"
    );
    // Without a deadline the offload's own timeout bounds the wait.
    let t0 = Instant::now();
    f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(400));
}

#[test]
fn the_measured_partition_moves_the_cut_with_the_link() {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Robot: 4 ms per segment. Server: 0.5 ms per exit. Every frame
    // wants the last exit.
    let link_ms = Arc::new(AtomicU64::new(1));
    let delay = link_ms.clone();
    let (mut f, _) = offloaded(Duration::from_secs(1), move |req, _, reply| {
        std::thread::sleep(Duration::from_millis(delay.load(Ordering::Relaxed)));
        exit3(req, reply);
        reply.heads = EXITS - req.from;
        reply.exit_seconds = [f32::NAN; MAX_EXITS];
        for s in &mut reply.exit_seconds[req.from..EXITS] {
            *s = 0.0005;
        }
        true
    });
    f.script.lock().unwrap().sleep = vec![Duration::from_millis(4); EXITS];
    f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
    f.chain.set_offload_auto(1e9);
    let step = |f: &mut Fixture, frames: u64| {
        for _ in 0..frames {
            f.chain.step(ExitPolicy::Criterion).unwrap();
        }
    };
    // The cut starts after exit 2 (of 4); a fast server and link take
    // every exit but the first.
    step(&mut f, REPARTITION_EVERY);
    assert_eq!(f.chain.local_exits(), Some(1));
    // The link slows to 30 ms: running everything on the robot (16 ms)
    // is faster now.
    link_ms.store(30, Ordering::Relaxed);
    step(&mut f, 2 * REPARTITION_EVERY);
    assert_eq!(f.chain.local_exits(), Some(EXITS));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(!o.remote && !o.fallback && o.exit == EXITS - 1);
    assert_eq!(f.chain.offload_counters().unwrap().cut_changes, 2);
}

#[test]
fn offload_needs_a_local_and_a_remote_exit() {
    let mut f = Fixture::new(manifest(CriterionKind::ActionConsistency, true, &[]));
    for local in [0, EXITS] {
        let link = FakeLink {
            answer: Box::new(|_, _, _| false),
            asked: Asked::default(),
        };
        let e = f
            .chain
            .set_offload(local, Box::new(link), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{local} local exits")), "{e}");
    }
}

#[test]
fn a_server_resumes_the_chain_from_the_carried_tensors_and_the_robots_state() {
    let mut robot = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    let mut server = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    // Exit 2 passes against exit 1.
    let actions = with_deltas([1.0, 0.5, 0.05, 0.0]);
    robot.actions(&actions);
    server.actions(&actions);
    let o = robot.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!(o.exit, 2);
    let carried = robot.chain.chain.exit_outputs(1).to_vec();
    let mut reply = OffloadReply::new(2, 1);
    let req = OffloadRequest {
        frame: 9,
        from: 2,
        carried: &carried,
        state: &[5.0],
        prev_action: &actions[1],
        prev_ok: true,
    };
    server.chain.serve(&req, &mut reply).unwrap();
    assert_eq!(
        (reply.frame, reply.exit, reply.ran, reply.heads),
        (9, 2, 3, 1)
    );
    assert_eq!(reply.action, actions[2]);
    // The robot's state, not the server's own: 5 + 2 + 1.
    assert_eq!(reply.next_state, [8.0]);
    assert!((reply.scores[2] - 0.05).abs() < 1e-6);
    assert!(reply.scores[1].is_nan());
    // Without a finite previous action, exit 2 has no score and the
    // server runs on to the last exit.
    let req = OffloadRequest {
        prev_ok: false,
        ..req
    };
    server.chain.serve(&req, &mut reply).unwrap();
    assert_eq!(reply.exit, 3);
    // Wrong sizes are refused, naming them.
    let short = [vec![0.0f32]];
    let req = OffloadRequest {
        carried: &short,
        ..req
    };
    let e = server
        .chain
        .serve(&req, &mut reply)
        .unwrap_err()
        .to_string();
    assert!(e.contains("carried tensors [1]"), "{e}");
    let req = OffloadRequest { from: 0, ..req };
    let e = server
        .chain
        .serve(&req, &mut reply)
        .unwrap_err()
        .to_string();
    assert!(e.contains("from 0"), "{e}");
}

#[test]
fn a_nonfinite_middle_exit_never_stops_and_the_deepest_decides() {
    let mut f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    // Exit 1 is NaN; exit 2 would pass against exit 1 but has no valid
    // predecessor, so the chain runs on to the last exit.
    f.actions(&[[1.0, 1.0], [f32::NAN, 0.0], [1.0, 1.0], [1.0, 1.0]]);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(o.nonfinite && !o.stopped);
    assert_eq!((o.exit, o.ran), (3, 4));
    assert!(o.scores[1].is_nan() && o.scores[2].is_nan());
    assert_eq!(f.chain.action(), &[1.0, 1.0]);
    assert_eq!(f.state(), 4.0);
}

#[test]
fn a_nonfinite_deepest_exit_stops_the_motors_and_resets_the_state() {
    let mut f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.1, 0.1, 0.1],
    ));
    f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
    f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!(f.state(), 4.0);
    f.actions(&[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [f32::INFINITY, 0.0]]);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(o.nonfinite && o.stopped);
    assert_eq!(o.exit, 3);
    assert_eq!(f.chain.action(), &[0.0, 0.0], "the action is stop");
    assert_eq!(f.state(), 0.0, "the head state is reset");
    // The next good frame drives again from a fresh state.
    f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert!(!o.stopped);
    assert_eq!(f.state(), 4.0);
}

#[test]
fn exits_past_a_stored_cap_are_not_loaded_and_a_nan_at_the_cap_stops() {
    let mut m = manifest(CriterionKind::ActionConsistency, true, &[0.0, 0.0, 0.0]);
    m.criterion.deepest_exit = Some(1);
    let mut f = Fixture::new(m);
    assert_eq!(f.chain.exits(), 2);
    f.actions(&[[1.0, 1.0], [f32::NAN, 0.0], [1.0, 1.0], [1.0, 1.0]]);
    let o = f.chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!((o.exit, o.ran), (1, 2));
    assert!(
        o.stopped,
        "a NaN at the cap exit stops; nothing runs past it"
    );
    // Compute ratios stay against the whole model.
    assert_eq!(f.chain.full_macs(), 4 * 1000);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sleeps(f: &Fixture, each: [u64; EXITS]) {
    f.script.lock().unwrap().sleep = each.iter().map(|m| ms(*m)).collect();
}

/// Thresholds at 0: every frame wants the deepest exit.
fn wants_the_deepest() -> Fixture {
    let f = Fixture::new(manifest(
        CriterionKind::ActionConsistency,
        true,
        &[0.0, 0.0, 0.0],
    ));
    f.actions(&with_deltas([1.0, 1.0, 1.0, 1.0]));
    f
}

#[test]
fn the_deadline_cuts_before_an_exit_that_cannot_finish() {
    let mut f = wants_the_deepest();
    sleeps(&f, [2, 2, 60, 2]);
    // Measured once without a deadline, three times for the ratios.
    for _ in 0..3 {
        f.chain.step(ExitPolicy::Criterion).unwrap();
    }
    let o = f
        .chain
        .step_until(ExitPolicy::Criterion, Some(Instant::now() + ms(30)))
        .unwrap();
    assert!(o.deadline_cut);
    assert_eq!((o.exit, o.ran), (1, 2));
    assert!(!o.stopped);
    // The state committed is exit 1's (tag 1, + 1) on top of three
    // frames that stopped at exit 3 (+ 4 each).
    assert_eq!(f.state(), 12.0 + 2.0);
}

#[test]
fn a_spike_in_a_deep_exit_does_not_disable_it() {
    let mut f = wants_the_deepest();
    // The first frame runs everything; exit 2's first run is slow (a
    // warm-up), the others are not.
    sleeps(&f, [2, 2, 100, 2]);
    f.chain.step(ExitPolicy::Criterion).unwrap();
    sleeps(&f, [2, 2, 2, 2]);
    let mut deepest = 0;
    for _ in 0..20 {
        let o = f
            .chain
            .step_until(ExitPolicy::Criterion, Some(Instant::now() + ms(40)))
            .unwrap();
        deepest += (o.ran == EXITS) as usize;
    }
    assert!(
        deepest >= 15,
        "{deepest} of 20 frames reached the deepest exit"
    );
}

#[test]
fn the_deep_exits_come_back_after_contention_ends() {
    let mut f = wants_the_deepest();
    let deadline = ms(30);
    let frame = |f: &mut Fixture| {
        f.chain
            .step_until(ExitPolicy::Criterion, Some(Instant::now() + deadline))
            .unwrap()
    };
    sleeps(&f, [2, 2, 2, 2]);
    for _ in 0..5 {
        assert_eq!(frame(&mut f).ran, EXITS);
    }
    // Contention: every segment takes 25 ms, so a deep exit measured now
    // looks too slow for the deadline.
    sleeps(&f, [25, 25, 25, 25]);
    for _ in 0..5 {
        frame(&mut f);
    }
    // Over: within the speed window the deep exits run again.
    sleeps(&f, [2, 2, 2, 2]);
    for _ in 0..LatencyModel::WINDOW {
        frame(&mut f);
    }
    let deepest = (0..20).filter(|_| frame(&mut f).ran == EXITS).count();
    assert!(
        deepest >= 15,
        "{deepest} of 20 frames reached the deepest exit"
    );
}

#[test]
fn latency_model_follows_exit_0_and_medians_out_a_spike() {
    let mut m = LatencyModel::with_costs(&[100, 200, 400]);
    assert_eq!(m.predict(1), None);
    m.record_frame(&[0.001]);
    // Unmeasured exit 2: prior ratio 4.
    assert!((m.predict(2).unwrap() - 0.001 * 4.0 * 1.3).abs() < 1e-7);
    // One spiky measurement does not outvote the prior …
    m.record_frame(&[0.001, 0.002, 0.1]);
    assert!((m.ratio(2) - 4.0).abs() < 1e-6);
    // … three consistent ones do.
    for _ in 0..3 {
        m.record_frame(&[0.001, 0.002, 0.003]);
    }
    assert!((m.ratio(2) - 3.0).abs() < 1e-5);
    // A slow exit 0 raises every prediction until it leaves the window.
    m.record_frame(&[0.01]);
    assert!(m.predict(1).unwrap() > 0.01 * 2.0);
    for _ in 0..LatencyModel::WINDOW {
        m.record_frame(&[0.001]);
    }
    assert!((m.predict(1).unwrap() - 0.001 * 2.0 * 1.3).abs() < 1e-6);
}

/// The sum of the keys (one element each) of the slots the mask holds.
fn held_keys(keys: &[f32], mask: &[f32]) -> f32 {
    keys.iter()
        .zip(mask)
        .filter(|(_, m)| **m == 0.0)
        .map(|(k, _)| k)
        .sum()
}

/// A cache head: the scripted action of its exit; its entry's key and
/// value are 10 × (exit + 1) (which exit committed it); it logs the sum of
/// the held keys it read, and pays equal attention to every held slot.
struct FakeCacheHead {
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<f32>>>,
}

impl Engine for FakeCacheHead {
    fn run(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> offramp_engines::Result<()> {
        let (feature, keys, mask) = (inputs[0], inputs[1], inputs[3]);
        let tag = feature[0];
        let held = held_keys(keys, mask);
        self.seen.lock().unwrap().push(held);
        outputs[0].copy_from_slice(&self.script.lock().unwrap().actions[tag as usize]);
        outputs[1][0] = 10.0 * (tag + 1.0);
        outputs[2][0] = 10.0 * (tag + 1.0);
        let n = mask.iter().filter(|m| **m == 0.0).count().max(1) as f32;
        for (a, m) in outputs[3].iter_mut().zip(mask) {
            *a = if *m == 0.0 { 1.0 / n } else { 0.0 };
        }
        Ok(())
    }
}

#[test]
fn candidate_exits_read_the_cache_and_only_the_committed_exit_writes_it() {
    let mut m = manifest(CriterionKind::ActionConsistency, false, &[0.1, 0.1, 0.1]);
    let slots = 3;
    let h = m.head.as_mut().unwrap();
    h.inputs = vec![
        spec("feature", 2),
        TensorSpec::f32("k", &[1, slots, 1]),
        TensorSpec::f32("v", &[1, slots, 1]),
        spec("mask", slots),
    ];
    h.outputs = vec![
        spec("action", 2),
        TensorSpec::f32("k1", &[1, 1, 1]),
        TensorSpec::f32("v1", &[1, 1, 1]),
        spec("att", slots),
    ];
    (h.state_input, h.state_output) = (None, None);
    h.cache = Some(one_layer_cache(1, 0, 2));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let se = seen.clone();
    let f = Fixture::with_head(m, None, move |script| {
        Box::new(FakeCacheHead {
            script,
            seen: se.clone(),
        })
    });
    f.actions(&with_deltas([1.0, 0.05, 0.01, 0.0]));
    let (script, mut chain) = (f.script, f.chain);

    // Frame 0: exits 0 and 1 run (1 passes); the empty cache is read
    // twice; exit 1's entry (key 20) is committed, not exit 0's (10).
    let o = chain.step(ExitPolicy::Criterion).unwrap();
    assert_eq!(
        (o.exit, o.ran, o.cache_entries, o.cache_evicted),
        (1, 2, 1, 0)
    );
    assert_eq!(*seen.lock().unwrap(), [0.0, 0.0]);
    // Frame 1, every exit run (calibration): all four read the same cache,
    // holding exit 1's entry; the chosen exit (1) commits again.
    let o = chain.step(ExitPolicy::All).unwrap();
    assert_eq!((o.exit, o.ran, o.cache_entries), (1, EXITS, 2));
    assert_eq!(seen.lock().unwrap()[2..], [20.0; EXITS]);
    // A fixed exit commits its own entry: exit 3 (key 40).
    let o = chain.step(ExitPolicy::Fixed(3)).unwrap();
    assert_eq!((o.cache_entries, o.cache_evicted), (3, 0));
    chain.step(ExitPolicy::Fixed(0)).unwrap();
    // The ring (2 slots) dropped frame 1's entry; the sink keeps frame 0's.
    let made: Vec<_> = chain.cache().unwrap().made().collect();
    assert_eq!(made, [Some(0), Some(3), Some(2)]);
    seen.lock().unwrap().clear();
    chain.step(ExitPolicy::Fixed(0)).unwrap();
    assert_eq!(*seen.lock().unwrap(), [20.0 + 10.0 + 40.0]);

    // A non-finite action at the deepest exit run stops the robot and
    // empties the cache, as it resets a recurrent state.
    script.lock().unwrap().actions[0] = [f32::NAN, 0.0];
    let o = chain.step(ExitPolicy::Fixed(0)).unwrap();
    assert!(o.stopped && o.nonfinite);
    assert_eq!(chain.cache().unwrap().occupancy(), 0);
    assert!(chain.action().iter().all(|a| *a == 0.0));
    // Offloading a cache head's exits is refused: the server has no cache.
    let err = chain
        .set_offload(1, Box::new(NoServer), Duration::from_millis(1))
        .err()
        .unwrap();
    assert!(err.to_string().contains("key/value cache"), "{err}");
}

/// One layer (k, v in; k1, v1 out), a mask, attention `att`.
fn one_layer_cache(
    sinks: usize,
    saddles: usize,
    recent: usize,
) -> offramp_engines::cache::CacheSpec {
    offramp_engines::cache::CacheSpec {
        past_keys: vec!["k".into()],
        past_values: vec!["v".into()],
        present_keys: vec!["k1".into()],
        present_values: vec!["v1".into()],
        mask: "mask".into(),
        positions: None,
        attention: "att".into(),
        sinks,
        saddles,
        recent,
        saddle_decay: 0.9,
        recency_bias: 0.0,
    }
}

/// An offload link that never answers.
struct NoServer;

impl Offload for NoServer {
    fn run_remote(
        &mut self,
        _: &OffloadRequest<'_>,
        _: Instant,
        _: &mut OffloadReply,
    ) -> Result<bool, super::offload::OffloadError> {
        Ok(false)
    }
}

/// A head with a recurrent state and a cache, its feature not its first
/// input: inputs [h_in, k, feature, v, mask], outputs [h_out, action, k1,
/// v1, att]. Its action is [tag, sum of held keys]; h_out = h_in + tag + 1;
/// its entry's key and value are 10 × (tag + 1).
struct FakeMixedHead;

impl Engine for FakeMixedHead {
    fn run(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> offramp_engines::Result<()> {
        let (state, keys, feature, mask) = (inputs[0], inputs[1], inputs[2], inputs[4]);
        let tag = feature[0];
        let held = held_keys(keys, mask);
        outputs[0][0] = state[0] + tag + 1.0;
        outputs[1].copy_from_slice(&[tag, held]);
        outputs[2][0] = 10.0 * (tag + 1.0);
        outputs[3][0] = 10.0 * (tag + 1.0);
        outputs[4].fill(0.0);
        Ok(())
    }
}

#[test]
fn a_head_with_a_state_and_a_cache_gets_each_input_where_it_takes_it() {
    let mut m = manifest(CriterionKind::ActionConsistency, false, &[]);
    let slots = 2;
    let h = m.head.as_mut().unwrap();
    h.inputs = vec![
        spec("h_in", 1),
        TensorSpec::f32("k", &[1, slots, 1]),
        spec("feature", 2),
        TensorSpec::f32("v", &[1, slots, 1]),
        spec("mask", slots),
    ];
    h.outputs = vec![
        spec("h_out", 1),
        spec("action", 2),
        TensorSpec::f32("k1", &[1, 1, 1]),
        TensorSpec::f32("v1", &[1, 1, 1]),
        spec("att", slots),
    ];
    h.cache = Some(one_layer_cache(0, 0, slots));
    let mut chain = Fixture::with_head(m, None, |_| Box::new(FakeMixedHead)).chain;
    // Exit 2, then exit 1: the state adds 3 then 2; the cache holds 30,
    // and the second frame's head read it.
    chain.step(ExitPolicy::Fixed(2)).unwrap();
    assert_eq!(chain.action(), [2.0, 0.0]);
    chain.step(ExitPolicy::Fixed(1)).unwrap();
    assert_eq!(chain.action(), [1.0, 30.0]);
    assert_eq!(chain.state, [5.0]);
    assert_eq!(chain.cache().unwrap().occupancy(), 2);
    // The plain head call (benches, a server) reads an empty cache and the
    // state it is given.
    chain.chain.run_exit(0).unwrap();
    let (a, next) = chain.chain.run_head(0, &[7.0]).unwrap();
    assert_eq!((a, next), (&[0.0, 0.0][..], &[8.0][..]));
}
