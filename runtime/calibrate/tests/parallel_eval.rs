//! Closed-loop evaluation spread over several pipelines (`--jobs`) gives the
//! report one pipeline gives, episode for episode: each episode starts the
//! chain afresh, and the episodes are merged back in seed order.

use offramp_calibrate::eval::{evaluate, evaluate_on, rollout, EvalReport};
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_sim::SimConfig;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

const SEED: u64 = 700_000;
const EPISODES: usize = 7;

fn demo() -> EngineSet {
    EngineSet::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../engines/models/demo"))
        .unwrap()
}

fn open(set: &EngineSet, cfg: &SimConfig, n: usize) -> Vec<Pipeline> {
    (0..n)
        .map(|_| {
            Pipeline::open(set, BackendKind::Cpu, (cfg.image_width, cfg.image_height)).unwrap()
        })
        .collect()
}

/// Everything but the wall-clock latency.
fn same(a: &EvalReport, b: &EvalReport) {
    assert_eq!(a.per_episode, b.per_episode);
    let key = |r: &EvalReport| {
        (
            r.successes,
            r.frames,
            r.exit_shares.clone(),
            r.mean_macs,
            r.collisions,
            r.right_share,
            r.mean_abs_domega,
            r.failures.episodes,
            r.failures.mean_final_distance_m,
            r.by_difficulty
                .iter()
                .map(|b| (b.episodes, b.frames_right))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(key(a), key(b));
}

#[test]
fn three_pipelines_give_the_report_of_one() {
    let set = demo();
    let cfg = SimConfig::default();
    let ticks = AtomicUsize::new(0);
    let tick = || {
        ticks.fetch_add(1, Ordering::Relaxed);
    };
    let mut one = open(&set, &cfg, 1);
    let mut three = open(&set, &cfg, 3);
    for policy in [ExitPolicy::Fixed(0), ExitPolicy::Criterion] {
        let a = evaluate(&mut one[0], &cfg, SEED, EPISODES, policy, &tick).unwrap();
        let b = evaluate_on(&mut three, &cfg, SEED, EPISODES, policy, &tick).unwrap();
        let seeds: Vec<u64> = b.per_episode.iter().map(|e| e.seed).collect();
        assert_eq!(seeds, (SEED..SEED + EPISODES as u64).collect::<Vec<_>>());
        same(&a, &b);
    }
    assert_eq!(
        ticks.load(Ordering::Relaxed),
        4 * EPISODES,
        "one tick per episode"
    );
    // A rollout sets its thresholds on every pipeline: thresholds that stop
    // every frame at exit 1 do so on all of them.
    let stop_first = vec![f32::INFINITY; set.manifest.exits.len() - 1];
    let t = rollout(&mut three, &cfg, &stop_first, SEED, EPISODES, &|| {}).unwrap();
    one[0].chain.set_thresholds(&stop_first);
    let a = evaluate(
        &mut one[0],
        &cfg,
        SEED,
        EPISODES,
        ExitPolicy::Criterion,
        &|| {},
    )
    .unwrap();
    assert_eq!(a.exit_shares[0], 1.0);
    assert_eq!((t.successes, t.frames), (a.successes, a.frames));
    assert_eq!(t.compute_ratio(), a.compute_ratio);
}

#[test]
fn more_pipelines_than_episodes_and_none() {
    let set = demo();
    let cfg = SimConfig::default();
    let mut four = open(&set, &cfg, 4);
    let r = evaluate_on(&mut four, &cfg, SEED, 2, ExitPolicy::Fixed(1), &|| {}).unwrap();
    assert_eq!(r.per_episode.len(), 2);
    let e = evaluate_on(&mut [], &cfg, SEED, 2, ExitPolicy::Fixed(1), &|| {}).unwrap_err();
    assert!(e.to_string().contains("no pipeline"), "{e}");
}
