//! The seed corpora of the runtime's fuzz targets (runtime/fuzz/seeds/):
//! inputs this build reads as valid, so that fuzzing starts past the
//! parsers' first checks. This test writes them with
//! `OFFRAMP_WRITE_SEEDS=1` and otherwise checks that the committed ones
//! are what this build makes (a changed message layout changes them).

use crate::common::repo;
use offramp_link::offload::{Answer, Carried, ReplyMsg, RequestMsg, OFFLOAD_VERSION};
use offramp_link::zenoh_link::{
    twist_cdr, unix_ns, ActionMsg, OperatorCommand, OperatorMsg, MESSAGE_VERSION,
};
use offramp_runtime::exit_chain::MAX_EXITS;
use offramp_runtime::recorder::{Record, Recorder};
use std::collections::BTreeMap;
use std::time::SystemTime;

fn action(stop: bool, sent_unix_ns: u64) -> Vec<u8> {
    let m = ActionMsg {
        version: MESSAGE_VERSION,
        seq: 7,
        sent_unix_ns,
        valid_for_us: 200_000,
        v: if stop { 0.0 } else { 0.3 },
        omega: if stop { 0.0 } else { -0.5 },
        exit: 2,
        stop,
    };
    m.encode(&mut [0u8; ActionMsg::MAX_LEN]).to_vec()
}

fn operator(command: OperatorCommand, sent_unix_ns: u64) -> Vec<u8> {
    let m = OperatorMsg {
        sent_unix_ns,
        ..OperatorMsg::new(command)
    };
    m.encode(&mut [0u8; OperatorMsg::MAX_LEN]).to_vec()
}

/// Every target's seeds: name → bytes.
fn seeds() -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut all = BTreeMap::new();
    // A fixed stamp: the bridge target re-stamps near its own clock.
    let t = 1_765_000_000_000_000_000u64;
    all.insert(
        "link_msgs",
        vec![
            ("drive".into(), action(false, t)),
            ("stop".into(), action(true, t)),
            ("operator-stop".into(), operator(OperatorCommand::Stop, t)),
            (
                "operator-release".into(),
                operator(OperatorCommand::Release, t),
            ),
            ("twist-cdr".into(), twist_cdr(0.3, -0.5).to_vec()),
        ],
    );
    let request = |carried| RequestMsg {
        version: OFFLOAD_VERSION,
        frame: 3,
        from: 1,
        carried,
        state: vec![0.25; 4],
        prev_action: vec![0.5, -0.5],
        prev_ok: true,
    };
    let reply = |result| ReplyMsg {
        version: OFFLOAD_VERSION,
        frame: 3,
        result,
    };
    let answer = Answer {
        exit: 3,
        ran: 4,
        heads: 2,
        action: vec![0.5, -0.5],
        next_state: vec![0.1; 4],
        deltas: vec![f32::NAN, 0.2, 0.1, f32::NAN],
        scores: vec![0.0; 4],
        exit_seconds: vec![0.001; 4],
    };
    all.insert(
        "offload_msgs",
        vec![
            (
                "request-fp32".into(),
                request(Carried::F32(vec![vec![1.0, -2.0], vec![3.0]])).encode(),
            ),
            (
                "request-fp16".into(),
                request(Carried::F16(vec![vec![0x00, 0x3c, 0x00, 0xc0]])).encode(),
            ),
            ("reply".into(), reply(Ok(answer)).encode()),
            (
                "reply-refused".into(),
                reply(Err("no such exit".into())).encode(),
            ),
        ],
    );
    // [length][kind][message]; kind bit 1: re-stamped near now.
    let chunk = |kind: u8, msg: Vec<u8>| {
        let mut c = vec![msg.len() as u8 + 1, kind];
        c.extend(msg);
        c
    };
    let sequence = |parts: Vec<Vec<u8>>| parts.concat();
    all.insert(
        "bridge",
        vec![
            (
                "drive-stop-drive".into(),
                sequence(vec![
                    chunk(2, action(false, t)),
                    chunk(2, action(true, t + 1)),
                    chunk(2, action(false, t + 2)),
                ]),
            ),
            (
                "latch-release".into(),
                sequence(vec![
                    chunk(2, action(false, t)),
                    chunk(3, operator(OperatorCommand::Stop, t + 1)),
                    chunk(2, action(false, t + 2)),
                    chunk(3, operator(OperatorCommand::Release, t + 3)),
                    chunk(2, action(false, t + 4)),
                ]),
            ),
            (
                "raw".into(),
                sequence(vec![
                    chunk(0, action(false, t)),
                    chunk(1, operator(OperatorCommand::Stop, t)),
                ]),
            ),
        ],
    );
    use offramp_runtime::npy::encode;
    all.insert(
        "npy",
        vec![
            ("u8-frames".into(), encode::<u8>(&[2, 2, 2, 3], &[7; 24])),
            (
                "f32-actions".into(),
                encode::<f32>(&[3, 2], &[0.5, -0.5, 1.0, 0.0, 2.5, -1.0]),
            ),
            (
                "i64-instructions".into(),
                encode::<i64>(&[2, 3], &[1, 2, 3, 4, 5, 6]),
            ),
            ("i32-episodes".into(), encode::<i32>(&[4], &[0, 0, 1, 1])),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("seed.rec");
    let mut r = Recorder::create(&rec).unwrap();
    for frame in 0..3u64 {
        r.push(&Record {
            frame,
            time_ns: 1_000_000 * frame,
            exit: frame as u8,
            ran: frame as u8 + 1,
            flags: 0,
            latency_us: 800.0,
            deltas: [0.1; MAX_EXITS],
            exit_latency_us: [200.0; MAX_EXITS],
            action: [0.3, -0.5, 0.0, 0.0],
            cache_entries: frame as u16,
            cache_evicted: 0,
        })
        .unwrap();
    }
    drop(r);
    all.insert(
        "flight_record",
        vec![("three-frames".into(), std::fs::read(&rec).unwrap())],
    );
    let info = |version: &str, data: &str, video: &str| {
        serde_json::json!({
            "codebase_version": version,
            "robot_type": "seed",
            "fps": 10,
            "total_episodes": 2,
            "total_frames": 20,
            "chunks_size": 1000,
            "data_path": data,
            "video_path": video,
            "features": {
                "observation.images.front": {"dtype": "video", "shape": [48, 64, 3], "names": ["height", "width", "channels"]},
                "action": {"dtype": "float32", "shape": [2]},
                "timestamp": {"dtype": "float32", "shape": [1]},
            }
        })
        .to_string()
        .into_bytes()
    };
    all.insert(
        "lerobot_info",
        vec![
            (
                "v2".into(),
                info(
                    "v2.1",
                    "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                    "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
                ),
            ),
            (
                "v3".into(),
                info(
                    "v3.0",
                    "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                    "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
                ),
            ),
        ],
    );
    let files = |name: &str, sets: &[&str]| -> Vec<(String, Vec<u8>)> {
        sets.iter()
            .map(|s| {
                let path = repo().join("engines/models").join(s).join(name);
                (s.replace('/', "-"), std::fs::read(&path).unwrap())
            })
            .collect()
    };
    all.insert("manifest", files("manifest.toml", &["demo", "demo-bumper"]));
    all.insert(
        "model_toml",
        files(
            "model.toml",
            &[
                "demo",
                "demo-bumper",
                "testdata/tiny",
                "testdata/tiny-discrete",
                "testdata/kv-cache",
            ],
        ),
    );
    all
}

#[test]
fn the_runtime_fuzz_seeds_are_inputs_of_this_build() {
    let root = repo().join("runtime/fuzz/seeds");
    let write = std::env::var_os("OFFRAMP_WRITE_SEEDS").is_some();
    for (target, seeds) in seeds() {
        let dir = root.join(target);
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut names: Vec<String> = Vec::new();
        for (name, bytes) in &seeds {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (OFFRAMP_WRITE_SEEDS=1 writes the seeds)",
                    path.display()
                )
            });
            assert!(
                committed == *bytes,
                "{} is not what this build makes: rerun with OFFRAMP_WRITE_SEEDS=1",
                path.display()
            );
            names.push(name.clone());
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        names.sort();
        assert_eq!(on_disk, names, "{}", dir.display());
    }
    // They are valid where they should be.
    let now = unix_ns(SystemTime::now());
    assert!(ActionMsg::decode(&action(false, now)).is_ok());
    assert!(offramp_engines::EngineSet::check_text(
        &repo().join("engines/models/demo/manifest.toml"),
        &std::fs::read_to_string(repo().join("engines/models/demo/manifest.toml")).unwrap(),
    )
    .is_ok());
    for s in ["demo", "testdata/tiny", "testdata/kv-cache"] {
        let dir = repo().join("engines/models").join(s);
        let text = std::fs::read_to_string(dir.join("model.toml")).unwrap();
        offramp_build::builder::check_model_toml(&dir, &text).unwrap();
    }
    let flight = std::fs::read(root.join("flight_record/three-frames")).unwrap();
    let records =
        offramp_runtime::recorder::read_from(&flight[..], std::path::Path::new("seed")).unwrap();
    assert_eq!(records.len(), 3);
    for (name, text) in &seeds()["lerobot_info"] {
        let text = std::str::from_utf8(text).unwrap();
        offramp_lerobot::Dataset::from_info(std::path::Path::new("/data"), text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
