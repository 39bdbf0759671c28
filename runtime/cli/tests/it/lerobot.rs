//! `offramp import-lerobot` on small datasets this test writes in LeRobot's
//! v2.1 and v3.0 layouts (parquet rows written with the parquet crate, mp4
//! videos encoded losslessly by ffmpeg, two cameras of different sizes),
//! then calibration on the import.

use crate::common::*;
use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const W: usize = 32;
const H: usize = 24;
const FPS: usize = 10;
const KEY: &str = "observation.images.front";
/// The cameras: (feature, width, height).
const CAMERAS: [(&str, usize, usize); 2] = [(KEY, W, H), ("observation.images.wrist", 16, 12)];

/// Frame `k` of episode `e` of camera `c`: a colour ramp whose shades say
/// which it is.
fn image(c: usize, e: usize, k: usize) -> Vec<u8> {
    let (_, w, h) = CAMERAS[c];
    let mut f = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            f.extend_from_slice(&[
                (e * 60 + x * 4) as u8,
                (k * 20 + y * 4) as u8,
                ((x + y) * 3 + c * 100) as u8,
            ]);
        }
    }
    f
}

/// Encodes camera `c`'s RGB frames losslessly into an mp4.
fn mp4(path: &Path, c: usize, frames: &[Vec<u8>]) {
    let (_, w, h) = CAMERAS[c];
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut p = Command::new("ffmpeg")
        .args([
            "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
        ])
        .arg(format!("{w}x{h}"))
        .args([
            "-r",
            &FPS.to_string(),
            "-i",
            "pipe:0",
            "-c:v",
            "libx264rgb",
            "-qp",
            "0",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("ffmpeg (scripts/test.sh installs it)");
    let mut stdin = p.stdin.take().unwrap();
    for f in frames {
        stdin.write_all(f).unwrap();
    }
    drop(stdin);
    assert!(p.wait().unwrap().success());
}

enum Col {
    I64(Vec<i64>),
    F64(Vec<f64>),
    /// A list<float> per row.
    List(Vec<Vec<f32>>),
    Str(Vec<String>),
}

fn leaf(name: &str, t: Physical) -> Type {
    Type::primitive_type_builder(name, t)
        .with_repetition(Repetition::REQUIRED)
        .build()
        .unwrap()
}

/// Writes one row group of the given columns.
fn parquet_file(path: &Path, cols: Vec<(&str, Col)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let fields = cols
        .iter()
        .map(|(name, c)| {
            Arc::new(match c {
                Col::I64(_) => leaf(name, Physical::INT64),
                Col::F64(_) => leaf(name, Physical::DOUBLE),
                Col::Str(_) => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                    .with_repetition(Repetition::REQUIRED)
                    .with_logical_type(Some(LogicalType::String))
                    .build()
                    .unwrap(),
                Col::List(_) => {
                    let element = Arc::new(leaf("element", Physical::FLOAT));
                    let list = Type::group_type_builder("list")
                        .with_repetition(Repetition::REPEATED)
                        .with_fields(vec![element])
                        .build()
                        .unwrap();
                    Type::group_type_builder(name)
                        .with_repetition(Repetition::OPTIONAL)
                        .with_logical_type(Some(LogicalType::List))
                        .with_fields(vec![Arc::new(list)])
                        .build()
                        .unwrap()
                }
            })
        })
        .collect();
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = Arc::new(WriterProperties::builder().build());
    let mut w = SerializedFileWriter::new(file, Arc::new(schema), props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    for (_, c) in &cols {
        let mut col = rg.next_column().unwrap().unwrap();
        match c {
            Col::I64(v) => {
                col.typed::<Int64Type>().write_batch(v, None, None).unwrap();
            }
            Col::F64(v) => {
                col.typed::<DoubleType>()
                    .write_batch(v, None, None)
                    .unwrap();
            }
            Col::Str(v) => {
                let b: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&b, None, None)
                    .unwrap();
            }
            Col::List(rows) => {
                let values: Vec<f32> = rows.iter().flatten().copied().collect();
                let def: Vec<i16> = rows.iter().flat_map(|r| vec![2; r.len()]).collect();
                let rep: Vec<i16> = rows
                    .iter()
                    .flat_map(|r| (0..r.len()).map(|i| (i > 0) as i16))
                    .collect();
                col.typed::<FloatType>()
                    .write_batch(&values, Some(&def), Some(&rep))
                    .unwrap();
            }
        }
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

const LENGTHS: [usize; 3] = [5, 7, 4];
const TASKS: [&str; 2] = ["go to the red landmark", "go to the blue landmark"];

fn task_of(e: usize) -> i64 {
    (e % 2) as i64
}

fn action(e: usize, k: usize) -> Vec<f32> {
    vec![e as f32 * 0.1, k as f32 * 0.01]
}

fn info(version: &str, data: &str, video: &str) -> String {
    serde_json::json!({
        "codebase_version": version,
        "robot_type": "test",
        "fps": FPS,
        "total_episodes": LENGTHS.len(),
        "total_frames": LENGTHS.iter().sum::<usize>(),
        "chunks_size": 1000,
        "data_path": data,
        "video_path": video,
        "features": {
            CAMERAS[0].0: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]},
            CAMERAS[1].0: {"dtype": "video", "shape": [CAMERAS[1].2, CAMERAS[1].1, 3], "names": ["height", "width", "channels"]},
            "action": {"dtype": "float32", "shape": [2]},
            "timestamp": {"dtype": "float32", "shape": [1]},
        }
    })
    .to_string()
}

fn frame_cols(eps: &[usize], first_index: usize) -> Vec<(&'static str, Col)> {
    let mut cols = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut index = first_index as i64;
    for &e in eps {
        for k in 0..LENGTHS[e] {
            cols.0.push(e as i64);
            cols.1.push(k as i64);
            cols.2.push(k as f64 / FPS as f64);
            cols.3.push(task_of(e));
            cols.4.push(index);
            cols.5.push(action(e, k));
            index += 1;
        }
    }
    vec![
        ("episode_index", Col::I64(cols.0)),
        ("frame_index", Col::I64(cols.1)),
        ("timestamp", Col::F64(cols.2)),
        ("task_index", Col::I64(cols.3)),
        ("index", Col::I64(cols.4)),
        ("action", Col::List(cols.5)),
    ]
}

fn write_v2(root: &Path) {
    let data = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet";
    let video = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4";
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::write(root.join("meta/info.json"), info("v2.1", data, video)).unwrap();
    let tasks: String = TASKS
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{{\"task_index\": {i}, \"task\": \"{t}\"}}\n"))
        .collect();
    std::fs::write(root.join("meta/tasks.jsonl"), tasks).unwrap();
    let mut index = 0;
    for (e, &len) in LENGTHS.iter().enumerate() {
        parquet_file(
            &root.join(format!("data/chunk-000/episode_{e:06}.parquet")),
            frame_cols(&[e], index),
        );
        index += len;
        for (c, (key, _, _)) in CAMERAS.iter().enumerate() {
            let frames: Vec<Vec<u8>> = (0..len).map(|k| image(c, e, k)).collect();
            mp4(
                &root.join(format!("videos/chunk-000/{key}/episode_{e:06}.mp4")),
                c,
                &frames,
            );
        }
    }
}

/// v3.0: episodes 0 and 1 share data file 0 and video file 0; episode 2 is
/// in file 1 of each.
fn write_v3(root: &Path) {
    let data = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
    let video = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::write(root.join("meta/info.json"), info("v3.0", data, video)).unwrap();
    parquet_file(
        &root.join("meta/tasks.parquet"),
        vec![
            ("task_index", Col::I64(vec![0, 1])),
            (
                "task",
                Col::Str(TASKS.iter().map(|t| t.to_string()).collect()),
            ),
        ],
    );
    parquet_file(
        &root.join("data/chunk-000/file-000.parquet"),
        frame_cols(&[0, 1], 0),
    );
    parquet_file(
        &root.join("data/chunk-000/file-001.parquet"),
        frame_cols(&[2], LENGTHS[0] + LENGTHS[1]),
    );
    let from = |frames: usize| frames as f64 / FPS as f64;
    let mut cols = vec![("episode_index".to_string(), Col::I64(vec![0, 1, 2]))];
    for (c, (key, _, _)) in CAMERAS.iter().enumerate() {
        let frames01: Vec<Vec<u8>> = (0..2)
            .flat_map(|e| (0..LENGTHS[e]).map(move |k| image(c, e, k)))
            .collect();
        mp4(
            &root.join(format!("videos/{key}/chunk-000/file-000.mp4")),
            c,
            &frames01,
        );
        let frames2: Vec<Vec<u8>> = (0..LENGTHS[2]).map(|k| image(c, 2, k)).collect();
        mp4(
            &root.join(format!("videos/{key}/chunk-000/file-001.mp4")),
            c,
            &frames2,
        );
        let col = |what: &str| format!("videos/{key}/{what}");
        cols.extend([
            (col("chunk_index"), Col::I64(vec![0, 0, 0])),
            (col("file_index"), Col::I64(vec![0, 0, 1])),
            (
                col("from_timestamp"),
                Col::F64(vec![0.0, from(LENGTHS[0]), 0.0]),
            ),
            (
                col("to_timestamp"),
                Col::F64(vec![
                    from(LENGTHS[0]),
                    from(LENGTHS[0] + LENGTHS[1]),
                    from(LENGTHS[2]),
                ]),
            ),
        ]);
    }
    let (names, values): (Vec<String>, Vec<Col>) = cols.into_iter().unzip();
    parquet_file(
        &root.join("meta/episodes/chunk-000/file-000.parquet"),
        names.iter().map(String::as_str).zip(values).collect(),
    );
}

#[test]
#[ignore = "needs ffmpeg (scripts/test.sh installs it)"]
fn lerobot_v2_and_v3_datasets_import_into_the_replay_format() {
    let dir = tempfile::tempdir().unwrap();
    for (version, write) in [("v2.1", write_v2 as fn(&Path)), ("v3.0", write_v3)] {
        let root = dir.path().join(version);
        write(&root);
        let out = dir.path().join(format!("{version}-rec"));
        let (ok, stdout, err) = offramp(&[
            "import-lerobot",
            "--dataset",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--camera",
            &format!("{},{}", CAMERAS[0].0, CAMERAS[1].0),
            "--json",
        ]);
        assert!(ok, "{version}: {err}");
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let n: usize = LENGTHS.iter().sum();
        assert_eq!(r["frames"], n, "{r}");
        assert_eq!(r["episodes"], 3, "{r}");
        assert_eq!(r["tasks"], serde_json::json!(TASKS), "{r}");
        let read_u8 = |f: &str| offramp_runtime::npy::read::<u8>(&out.join(f)).unwrap();
        let (shape, frames) = read_u8("frames.npy");
        assert_eq!(shape, [n, H, W, 3]);
        let (shape, wrist) = read_u8("frames.1.npy");
        let (_, ww, wh) = CAMERAS[1];
        assert_eq!(shape, [n, wh, ww, 3]);
        assert_eq!(r["views"], serde_json::json!([[W, H], [ww, wh]]), "{r}");
        let (_, episodes) = offramp_runtime::npy::read::<i32>(&out.join("episodes.npy")).unwrap();
        let (_, tasks) = offramp_runtime::npy::read::<i64>(&out.join("instructions.npy")).unwrap();
        let (_, stamps) =
            offramp_runtime::npy::read::<i64>(&out.join("timestamps_ns.npy")).unwrap();
        let (ashape, actions) =
            offramp_runtime::npy::read::<f32>(&out.join("actions.npy")).unwrap();
        assert_eq!(ashape, [n, 2]);
        let mut i = 0;
        for (e, &len) in LENGTHS.iter().enumerate() {
            for k in 0..len {
                // Lossless video: every pixel of the right frame.
                assert!(
                    frames[i * W * H * 3..(i + 1) * W * H * 3] == image(0, e, k)[..],
                    "{version}: frame {k} of episode {e}"
                );
                let len = ww * wh * 3;
                assert!(
                    wrist[i * len..(i + 1) * len] == image(1, e, k)[..],
                    "{version}: wrist frame {k} of episode {e}"
                );
                assert_eq!(episodes[i], e as i32);
                assert_eq!(tasks[i], task_of(e));
                assert_eq!(actions[2 * i..2 * i + 2], action(e, k)[..]);
                if i > 0 {
                    assert!(stamps[i] > stamps[i - 1], "{version}: {stamps:?}");
                }
                i += 1;
            }
        }
    }
    // One camera's import replays as a camera and calibrates a one-camera
    // model; the two-camera import is refused by it, naming the views.
    let rec = dir.path().join("v3.0-front");
    let (ok, _, err) = offramp(&[
        "import-lerobot",
        "--dataset",
        dir.path().join("v3.0").to_str().unwrap(),
        "--out",
        rec.to_str().unwrap(),
        "--camera",
        KEY,
    ]);
    assert!(ok, "{err}");
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    for e in std::fs::read_dir(demo_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), set.join(e.file_name())).unwrap();
    }
    let (ok, _, err) = offramp(&[
        "calibrate",
        "--engines",
        set.to_str().unwrap(),
        "--episodes",
        rec.to_str().unwrap(),
        "--budget-ratio",
        "0.5",
    ]);
    assert!(ok, "{err}");
    // The offline curve on the import: solved on its first episode,
    // evaluated on the other two against the dataset's actions.
    let report = dir.path().join("sweep");
    let (ok, out, err) = offramp(&[
        "calibrate-sweep",
        "--engines",
        set.to_str().unwrap(),
        "--episodes",
        rec.to_str().unwrap(),
        "--budgets",
        "0.3,0.6",
        "--tolerance",
        "0.5",
        "--report",
        report.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["calibration_episodes"], 1, "{s}");
    assert_eq!(s["evaluation_episodes"], 2, "{s}");
    assert_eq!(s["evaluation_frames"], LENGTHS[1] + LENGTHS[2], "{s}");
    assert_eq!(s["reference"], "actions.npy", "{s}");
    let fixed = s["fixed_exits"].as_array().unwrap();
    assert_eq!(fixed.len(), 4, "{s}");
    // The full model agrees with itself on every frame.
    let full = &fixed[3]["vs_full_model"];
    assert_eq!(full["mean_abs_error"], 0.0, "{s}");
    assert_eq!(full["within_tolerance"], 1.0, "{s}");
    for b in s["budgets"].as_array().unwrap() {
        let c = b["compute_ratio"].as_f64().unwrap();
        assert!(c > 0.0 && c <= 1.0, "{b}");
        let r = &b["vs_recorded"];
        assert!(r["mean_abs_error"].as_f64().unwrap().is_finite(), "{b}");
        // Paired with the full model over the two evaluation episodes.
        assert_eq!(r["minus_full_model"]["episodes"], 2, "{b}");
    }
    assert!(report.join("agreement_vs_compute.svg").is_file());
    assert!(report.join("sweep.json").is_file());
    let (ok, _, err) = offramp(&[
        "calibrate",
        "--engines",
        set.to_str().unwrap(),
        "--episodes",
        dir.path().join("v3.0-rec").to_str().unwrap(),
        "--budget-ratio",
        "0.5",
    ]);
    assert!(!ok, "two views for one image input must be refused");
    assert!(
        err.contains("the camera gives 2 view(s) (32x24 + 16x12)"),
        "{err}"
    );
    // A second import into the same place, a missing camera, and a dataset
    // of several cameras without --camera are refused.
    let v2 = dir.path().join("v2.1");
    let x = dir.path().join("x");
    for (out, camera, want) in [
        (&rec, None, "already holds a recording"),
        (
            &x,
            Some("observation.images.side"),
            "no camera \"observation.images.side\"",
        ),
        (&x, None, "several cameras"),
    ] {
        let mut args = vec![
            "import-lerobot",
            "--dataset",
            v2.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(camera.iter().flat_map(|c| ["--camera", c]));
        let (ok, _, err) = offramp(&args);
        assert!(!ok && err.contains(want), "{want}: {err}");
    }
}
