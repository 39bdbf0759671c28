//! A temporal attention head's key/value cache, end to end: the set built
//! by `offramp build`, run by the runtime (tract) with its own cache and
//! eviction, against onnxruntime with the cache kept by a reference written
//! apart (tools/reference/kv_cache_loop.py), over frames that commit
//! different exits and evict.

use crate::common::{offramp, repo};
use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use std::io::Write;
use std::process::Command;

const FRAMES: usize = 1000;
/// A new episode starts before this frame.
const RESET_AT: usize = 600;

fn built(dir: &std::path::Path) -> EngineSet {
    let src = repo().join("engines/models/testdata/kv-cache");
    let out = dir.join("set");
    let (ok, _, err) = offramp(&[
        "build",
        "--onnx",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    EngineSet::open(&out).unwrap()
}

/// Deterministic inputs in [-1, 1), different per frame and input.
fn fill(buf: &mut [f32], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for v in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    }
}

/// The exit frame `t` commits: every exit, in no simple cycle.
fn exit_of(t: usize) -> usize {
    (t * 7 + t / 5) % 3
}

#[test]
#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
fn the_runtime_cache_matches_onnxruntime_with_the_same_eviction() {
    let tmp = tempfile::tempdir().unwrap();
    let set = built(tmp.path());
    let mut chain = ExitChain::new(&set, BackendKind::Cpu).unwrap();
    let slots = chain.cache().unwrap().layout().slots;
    assert_eq!(slots, 9);
    let addresses: Vec<usize> = chain.cache().unwrap().addresses().collect();

    let mut inputs = Vec::new();
    let mut schedule = String::new();
    let mut ours = Vec::new();
    let mut stats = Vec::new();
    for t in 0..FRAMES {
        if t == RESET_AT {
            chain.reset();
            schedule += "reset\n";
        }
        for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
            fill(buf, (t * 31 + k) as u64);
            inputs.extend_from_slice(buf);
        }
        let e = exit_of(t);
        let o = chain.step(ExitPolicy::Fixed(e)).unwrap();
        assert_eq!((o.exit, o.ran, o.stopped), (e, e + 1, false));
        schedule += &format!("{e}\n");
        ours.extend_from_slice(chain.action());
        let c = chain.cache().unwrap();
        assert_eq!(o.cache_entries as usize, c.occupancy());
        stats.push((c.occupancy(), c.evicted_total()));
    }
    // The cache fills, stays full and evicts once a frame after that; a
    // reset empties it; its buffers never move.
    assert_eq!(stats[0], (1, 0));
    assert_eq!(stats[slots - 1], (slots, 0));
    assert_eq!(stats[RESET_AT - 1], (slots, (RESET_AT - slots) as u64));
    assert_eq!(stats[RESET_AT].0, 1);
    assert_eq!(
        stats[FRAMES - 1].1,
        (RESET_AT - slots + FRAMES - RESET_AT - slots) as u64
    );
    let now: Vec<usize> = chain.cache().unwrap().addresses().collect();
    assert_eq!(addresses, now);
    // The saddles hold entries older than the ring's: attention kept them.
    let made: Vec<Option<u64>> = chain.cache().unwrap().made().collect();
    let ring_oldest = made[5..].iter().flatten().min().unwrap();
    assert!(
        made[2..5].iter().flatten().all(|m| m < ring_oldest),
        "{made:?}"
    );
    assert_eq!(made[..2], [Some(0), Some(1)], "the sinks are the first two");

    let input = tmp.path().join("in.f32");
    let exits = tmp.path().join("exits.txt");
    let output = tmp.path().join("out.f32");
    let bytes: Vec<u8> = inputs.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    std::fs::File::create(&exits)
        .unwrap()
        .write_all(schedule.as_bytes())
        .unwrap();
    let python = std::env::var("OFFRAMP_PYTHON").unwrap_or_else(|_| "python3".into());
    let run = Command::new(python)
        .arg(repo().join("tools/reference/kv_cache_loop.py"))
        .args(["--set", set.dir.to_str().unwrap()])
        .args(["--input", input.to_str().unwrap()])
        .args(["--exits", exits.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()])
        .output()
        .expect("start python (set OFFRAMP_PYTHON, or run scripts/test.sh)");
    assert!(
        run.status.success(),
        "the onnxruntime reference failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let theirs: Vec<f32> = std::fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (actions, ref_stats) = theirs.split_at(ours.len());
    let ref_stats: Vec<(usize, u64)> = ref_stats
        .chunks_exact(2)
        .map(|p| (p[0] as usize, p[1] as u64))
        .collect();
    assert_eq!(stats, ref_stats, "occupancy and evictions, frame by frame");
    let worst = ours
        .iter()
        .zip(actions)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "max |runtime - onnxruntime| over {} actions of {FRAMES} frames: {worst:e}",
        ours.len()
    );
    assert!(worst <= 1e-5, "max |runtime - onnxruntime| = {worst:e}");
    // Not vacuous: the cache changes the action. The same frame with an
    // empty cache acts otherwise.
    let last = ours[ours.len() - 3..].to_vec();
    chain.reset();
    for (k, buf) in chain.inputs_mut().iter_mut().enumerate() {
        fill(buf, ((FRAMES - 1) * 31 + k) as u64);
    }
    chain.step(ExitPolicy::Fixed(exit_of(FRAMES - 1))).unwrap();
    let alone = chain.action().to_vec();
    let moved = last
        .iter()
        .zip(&alone)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(moved > 1e-3, "{last:?} vs {alone:?}");
}

#[test]
fn a_cache_that_does_not_fit_its_head_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let set = built(tmp.path());
    let text = std::fs::read_to_string(set.dir.join("manifest.toml")).unwrap();
    for (from, to, field, says) in [
        ("recent = 4", "recent = 5", "head.cache.past_keys", "10"),
        (
            "recent = 4",
            "recent = 0",
            "head.cache.recent",
            "at least one",
        ),
        (
            "mask = \"cache_mask\"",
            "mask = \"nope\"",
            "head.cache.mask",
            "\"nope\"",
        ),
        (
            "saddle_decay = 0.9",
            "saddle_decay = 1.5",
            "head.cache.saddle_decay",
            "1.5",
        ),
        (
            "sinks = 2\nsaddles = 3",
            "sinks = 9223372036854775807\nsaddles = 9223372036854775807",
            "head.cache.sinks",
            "does not fit",
        ),
        (
            "mask = \"cache_mask\"",
            "mask = \"cache_positions\"",
            "head.cache.positions",
            "also named by mask",
        ),
        (
            "saddle_decay = 0.9",
            "saddle_decay = 0.9\nrecency_bias = 1000.0",
            "head.cache.recency_bias",
            "below 5000",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let bad = text.replace(from, to);
        std::fs::write(set.dir.join("manifest.toml"), &bad).unwrap();
        let err = EngineSet::open(&set.dir).err().unwrap().to_string();
        assert!(err.contains(field) && err.contains(says), "{to}: {err}");
        std::fs::write(set.dir.join("manifest.toml"), &text).unwrap();
    }
    // Its exits cannot be served by another device: the cache is the robot's.
    std::fs::write(
        set.dir.join("manifest.toml"),
        format!("{text}\n[offload]\ncarried = \"fp16\"\n"),
    )
    .unwrap();
    let err = EngineSet::open(&set.dir).err().unwrap().to_string();
    assert!(err.contains("offload") && err.contains("cache"), "{err}");
    // A head whose cache feeds no input is not a cache head.
    let bad = text.replace("positions = \"cache_positions\"\n", "");
    std::fs::write(set.dir.join("manifest.toml"), &bad).unwrap();
    let err = EngineSet::open(&set.dir).err().unwrap().to_string();
    assert!(err.contains("head.inputs"), "{err}");
}

/// The tools with a cache model: `run` on the simulator's camera records
/// the cache's occupancy and evictions per frame (flight record and MCAP),
/// each new episode empties the cache, and `calibrate` solves thresholds
/// over recorded episodes and `run` replays them.
#[test]
fn run_records_and_calibrate_work_with_a_cache_model() {
    let tmp = tempfile::tempdir().unwrap();
    let set = built(tmp.path());
    let rec = tmp.path().join("flight.rec");
    let (ok, out, err) = offramp(&[
        "run",
        "--engines",
        set.dir.to_str().unwrap(),
        "--camera",
        "sim",
        "--fps",
        "200",
        "--frames",
        "60",
        "--record",
        rec.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["frames"], 60);
    let records = offramp_runtime::recorder::read(&rec).unwrap();
    assert_eq!(records.len(), 60);
    // Within an episode the cache fills to its 9 slots, then evicts one
    // entry a frame; a new episode starts it again from one entry.
    let mut k = 0usize;
    for r in &records {
        k = if r.cache_entries == 1 { 0 } else { k + 1 };
        assert_eq!(
            r.cache_entries as usize,
            (k + 1).min(9),
            "frame {}",
            r.frame
        );
        assert_eq!(r.cache_evicted, u16::from(k >= 9), "frame {}", r.frame);
    }
    assert!(records.iter().any(|r| r.cache_evicted == 1));
    let (ok, csv, err) = offramp(&["recording", rec.to_str().unwrap(), "--csv"]);
    assert!(ok, "{err}");
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .ends_with("cache_entries,cache_evicted"));

    let episodes = tmp.path().join("episodes");
    crate::common::sim_record(&episodes, 3, 200_000);
    let (ok, out, err) = offramp(&[
        "calibrate",
        "--engines",
        set.dir.to_str().unwrap(),
        "--episodes",
        episodes.to_str().unwrap(),
        "--budget-ratio",
        // Exit 0 has no reference, so exit 1 (70 % of the compute) is the
        // cheapest a frame can stop at.
        "0.85",
        "--json",
    ]);
    assert!(ok, "{err}");
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(c["over_budget"].is_null(), "{c}");
    let cost = c["predicted"]["mean_cost"].as_f64().unwrap();
    // Within a frame's worth of the budget (312 frames: 0.3 %).
    let frames = c["frames"].as_f64().unwrap();
    assert!(
        cost <= c["budget_macs"].as_f64().unwrap() * (1.0 + 1.0 / frames),
        "{c}"
    );
    let m = EngineSet::open(&set.dir).unwrap().manifest;
    assert_eq!(
        m.criterion.thresholds.len(),
        2,
        "calibrate wrote the thresholds"
    );
    assert!(m.head.unwrap().cache.is_some(), "and kept the cache");
    let (ok, out, err) = offramp(&[
        "run",
        "--engines",
        set.dir.to_str().unwrap(),
        "--camera",
        &format!("replay:{}", episodes.display()),
        "--fps",
        "500",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["frames"].as_u64().unwrap() > 20, "{v}");
}
