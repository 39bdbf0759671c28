//! Each criterion kind is calibrated from its own scores: the thresholds a
//! calibration writes make the exit chain stop exactly where the solve
//! predicted, and meet the compute budget. Closed loop in the simulator on
//! a DeeR (action-consistency) model, on a discrete-action model
//! (max-confidence, entropy, top-2 margin) and on a model with learned exit
//! heads.

use offramp_build::builder::{build, BuildOptions};
use offramp_calibrate::calibrate::{calibrate, collect, Budget, Frames};
use offramp_calibrate::solve::predict;
use offramp_engines::manifest::CriterionKind;
use offramp_engines::{BackendKind, EngineSet, Precision};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_sim::{Sim, SimConfig, Twist};
use std::path::{Path, PathBuf};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../engines/models")
}

const SEED: u64 = 200_000;
const EPISODES: usize = 4;

/// Exit shares when the chain runs under its criterion, closed loop.
fn realized_shares(p: &mut Pipeline, cfg: &SimConfig) -> Vec<f64> {
    let n = p.chain.exits();
    let mut counts = vec![0usize; n];
    let mut buf = Vec::new();
    for e in 0..EPISODES {
        let mut sim = Sim::new(cfg, SEED + e as u64);
        buf.resize(sim.frame_len(), 0);
        p.begin_episode(sim.instruction() as usize).unwrap();
        loop {
            sim.render(&mut buf);
            let o = p.infer(&buf, ExitPolicy::Criterion, None).unwrap();
            counts[o.exit] += 1;
            let t = Twist::from_action(p.action(), offramp_sim::LIMITS);
            if sim.step(t.to_wheels(cfg.track_width)).done {
                break;
            }
        }
    }
    let total: usize = counts.iter().sum();
    counts.iter().map(|c| *c as f64 / total as f64).collect()
}

fn check(set: &EngineSet, kind: CriterionKind, ratio: f64) {
    assert_eq!(set.manifest.criterion.kind, kind);
    let cfg = SimConfig::default();
    let mut p = Pipeline::open(set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap();
    let full = p.chain.full_macs() as f64;
    let frames = Frames::ClosedLoop {
        task: &cfg,
        first_seed: SEED,
        episodes: EPISODES,
    };
    let budget = Budget {
        macs: ratio * full,
        cap: None,
        latency_cap_ms: None,
        iterations: 3,
        offload: None,
    };
    let c = calibrate(&mut p, &frames, budget, &mut || {}).unwrap();
    p.chain.set_thresholds(&c.thresholds);
    // What the solve's stopping rule predicts on scores collected with the
    // final thresholds ...
    let (scores, _) = collect(&mut p, &frames, &mut || {}).unwrap();
    let costs = c.exit_costs_f64();
    let want = predict(&scores, &c.thresholds, &costs);
    // ... is where the chain stops.
    let got = realized_shares(&mut p, &cfg);
    eprintln!(
        "{kind:?}: thresholds {:?}, predicted shares {:?}, realized {got:?}",
        c.thresholds, want.exit_shares
    );
    for (g, w) in got.iter().zip(&want.exit_shares) {
        assert!((g - w).abs() < 1e-9, "{got:?} vs {:?}", want.exit_shares);
    }
    // Early exit happens, and the compute lands near the budget.
    let mean: f64 = got.iter().zip(&costs).map(|(s, c)| s * c).sum();
    assert!(
        got[costs.len() - 1] < 0.9,
        "hardly any frame exits early: {got:?}"
    );
    assert!(
        (mean / full - ratio).abs() < 0.1,
        "compute {:.3} of the full model for a {ratio} budget",
        mean / full
    );
}

/// Builds the ONNX segments in `src` into a CPU engine set in `out`.
fn build_cpu(src: &Path, out: &Path) {
    build(
        &BuildOptions {
            onnx_dir: src.to_path_buf(),
            out_dir: out.to_path_buf(),
            backend: BackendKind::Cpu,
            precision: Precision::Fp32,
            int8_calibration_cache: None,
            offramp_version: "test".into(),
        },
        &mut |_| {},
    )
    .unwrap();
}

/// The tiny discrete-action model, built into a temporary directory.
fn tiny_discrete() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build_cpu(&models().join("testdata/tiny-discrete"), dir.path());
    dir
}

#[test]
fn action_consistency_is_calibrated_from_action_deltas() {
    let set = EngineSet::open(models().join("demo")).unwrap();
    check(&set, CriterionKind::ActionConsistency, 0.5);
}

#[test]
fn max_confidence_is_calibrated_from_class_probabilities() {
    let dir = tiny_discrete();
    let set = EngineSet::open(dir.path()).unwrap();
    check(&set, CriterionKind::MaxConfidence, 0.6);
    // Exit 0 stops on its own confidence: no reference needed.
    let cfg = SimConfig::default();
    let mut p =
        Pipeline::open(&set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap();
    let full = p.chain.full_macs() as f64;
    let c = calibrate(
        &mut p,
        &Frames::ClosedLoop {
            task: &cfg,
            first_seed: SEED,
            episodes: EPISODES,
        },
        Budget {
            macs: 0.45 * full,
            cap: None,
            latency_cap_ms: None,
            iterations: 3,
            offload: None,
        },
        &mut || {},
    )
    .unwrap();
    p.chain.set_thresholds(&c.thresholds);
    let got = realized_shares(&mut p, &cfg);
    assert!(got[0] > 0.1, "exit 0 never stops: {got:?}");
}

/// Learned exits: the test shape with an exit head per exit (random
/// weights), split and built as a user would.
#[test]
fn learned_exits_are_calibrated_from_their_confidences() {
    use offramp_build::split::{split, SplitOptions};
    let shape = models().join("testdata/shapes/learned");
    let dir = tempfile::tempdir().unwrap();
    split(&SplitOptions {
        onnx: shape.join("full.onnx"),
        exit_outputs: ["a0", "a1", "a2", "a3"].map(String::from).to_vec(),
        confidence_outputs: ["c0", "c1", "c2"].map(String::from).to_vec(),
        cuts: ["hidden0", "hidden1", "hidden2"]
            .map(|c| vec![c.to_string()])
            .to_vec(),
        head: None,
        with: Some(shape.join("with.toml")),
        out: dir.path().join("src"),
        tolerance: 1e-5,
    })
    .unwrap();
    build_cpu(&dir.path().join("src"), &dir.path().join("set"));
    let set = EngineSet::open(dir.path().join("set")).unwrap();
    check(&set, CriterionKind::Learned, 0.5);
}

/// With deep exits on a server, a budget that counts the robot's compute
/// only lets frames go deeper than one that counts both devices', and the
/// report shows both.
#[test]
fn an_offload_budget_counts_the_robot_or_both_devices() {
    use offramp_calibrate::calibrate::{robot_costs, OffloadBudget};
    assert_eq!(robot_costs(&[10, 20, 30, 40], 2), [10, 20, 20, 20]);
    let set = EngineSet::open(models().join("demo")).unwrap();
    let cfg = SimConfig::default();
    let mut p =
        Pipeline::open(&set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap();
    let costs = p.chain.criterion_costs();
    let n = costs.len();
    // A budget between the cut's cost and the next exit's.
    let budget = 0.5 * (costs[1] + costs[2]) as f64;
    let frames = Frames::ClosedLoop {
        task: &cfg,
        first_seed: SEED,
        episodes: EPISODES,
    };
    let mut run = |robot_only: bool| {
        calibrate(
            &mut p,
            &frames,
            Budget {
                macs: budget,
                cap: None,
                latency_cap_ms: None,
                iterations: 2,
                offload: Some(OffloadBudget {
                    local_exits: 2,
                    robot_only,
                }),
            },
            &mut || {},
        )
        .unwrap()
    };
    let robot = run(true);
    let both = run(false);
    for c in [&robot, &both] {
        let o = c.offload.as_ref().unwrap();
        assert_eq!(o.robot_exit_costs, robot_costs(&costs, 2));
        assert!(o.predicted_robot.mean_cost <= c.predicted.mean_cost);
        // The robot's latency to a served exit is the cut's.
        let l = &o.robot_exit_latency_p99_ms;
        assert_eq!((l[2], l[3]), (l[1], l[1]), "{l:?}");
    }
    // Counting both devices, the mean lands near the budget; counting the
    // robot only, the robot never computes more than the cut (under the
    // budget), so nearly every frame may use the deepest exit.
    assert!(
        (both.predicted.mean_cost / budget - 1.0).abs() < 0.15,
        "{:?}",
        both.predicted
    );
    let ro = robot.offload.as_ref().unwrap();
    assert!(ro.predicted_robot.mean_cost <= budget);
    assert!(
        robot.predicted.exit_shares[n - 1] > both.predicted.exit_shares[n - 1] + 0.2,
        "robot-only {:?} vs both {:?}",
        robot.predicted.exit_shares,
        both.predicted.exit_shares
    );
}

/// Entropy and top-2 margin, the other scores of a discrete head, are
/// calibrated from their own scores the same way.
#[test]
fn entropy_and_margin_are_calibrated_from_their_own_scores() {
    let dir = tiny_discrete();
    for kind in [CriterionKind::Entropy, CriterionKind::Margin] {
        let set = EngineSet::open(dir.path()).unwrap();
        let mut m = set.manifest.clone();
        m.criterion.kind = kind;
        m.criterion.thresholds.clear();
        EngineSet::write_manifest(dir.path(), &m).unwrap();
        let set = EngineSet::open(dir.path()).unwrap();
        check(&set, kind, 0.6);
    }
}

/// The offline curve on recordings whose parts do not line up (fewer
/// instructions than frames) is an error naming the counts, not a panic.
#[test]
fn the_offline_curve_refuses_recordings_that_do_not_line_up() {
    use offramp_calibrate::offline::{sweep, OfflineConfig, Recorded};
    let set = EngineSet::open(models().join("demo")).unwrap();
    let (w, h) = (32, 32);
    let mut p = Pipeline::open(&set, BackendKind::Cpu, (w, h)).unwrap();
    let frames = vec![128u8; 4 * w * h * 3];
    let episodes = [0, 0, 1, 1];
    let whole = Recorded {
        frames: &frames,
        frame_len: w * h * 3,
        instructions: &[0, 0, 0, 0],
        episodes: &episodes,
        actions: None,
    };
    let short = Recorded {
        instructions: &[0, 0],
        ..whole
    };
    let cfg = OfflineConfig {
        budgets: &[0.5],
        iterations: 1,
        tolerance: 0.1,
        reference: None,
    };
    let e = sweep(&mut p, &whole, &short, &cfg, &mut || {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 frames, 2 instructions"), "{e}");
}
