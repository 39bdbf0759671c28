//! Frames held in memory, for the benches and the profile: no capture thread
//! competes with the engines they measure.

use anyhow::Context;
use offramp_runtime::camera::{self, load_replay, CameraSpec, Replay, Views};
use offramp_runtime::exit_chain::{ExitPolicy, FrameOutcome};
use offramp_runtime::pipeline::Pipeline;
use std::time::{Duration, Instant};

/// A frame held in memory.
#[derive(Debug, Clone)]
pub struct Frame {
    /// HWC RGB, the views end to end.
    pub pixels: Vec<u8>,
    /// Index into the model's instructions.
    pub instruction: usize,
    /// The first frame of an episode.
    pub new_episode: bool,
}

/// Frames of closed-loop episodes with the expert driving.
#[cfg(feature = "sim")]
pub fn stream(cfg: &offramp_sim::SimConfig, n: usize) -> Vec<Frame> {
    use offramp_sim::Sim;
    let mut out = Vec::with_capacity(n);
    let mut seed = 0;
    let mut sim = Sim::new(cfg, seed);
    let mut new = true;
    while out.len() < n {
        let mut f = vec![0u8; sim.frame_len()];
        sim.render(&mut f);
        out.push(Frame {
            pixels: f,
            instruction: sim.instruction() as usize,
            new_episode: new,
        });
        new = false;
        if sim.step(sim.expert().to_wheels(cfg.track_width)).done {
            seed += 1;
            sim = Sim::new(cfg, seed);
            new = true;
        }
    }
    out
}

/// The first `n` frames of a recording (all, if it has fewer).
pub fn from_replay(r: &Replay, n: usize) -> Vec<Frame> {
    let len = r.frame_len();
    let count = (r.frames.len() / len).min(n);
    (0..count)
        .map(|i| Frame {
            pixels: r.frames[i * len..(i + 1) * len].to_vec(),
            instruction: r.instructions[i],
            new_episode: i == 0 || r.episodes[i] != r.episodes[i - 1],
        })
        .collect()
}

/// `n` frames of `spec` held in memory, and their views: the simulator's
/// expert episodes, a recording's first frames, or frames captured from
/// live cameras before anything is timed (so no capture thread competes
/// with the engines while they are).
pub fn held(spec: &CameraSpec, n: usize) -> anyhow::Result<(Vec<Frame>, Views)> {
    match spec {
        #[cfg(feature = "sim")]
        CameraSpec::Sim => {
            let cfg = offramp_sim::SimConfig::default();
            Ok((stream(&cfg, n), (cfg.image_width, cfg.image_height).into()))
        }
        #[cfg(not(feature = "sim"))]
        CameraSpec::Sim => anyhow::bail!(
            "--camera sim: this offramp was built without the simulator; \
             use a replay:DIR or v4l: camera, or rebuild with `--features sim`"
        ),
        CameraSpec::Replay(dir) => {
            let r = load_replay(dir)?;
            let v = from_replay(&r, n);
            anyhow::ensure!(!v.is_empty(), "{}: no frames", dir.display());
            Ok((v, r.views))
        }
        live => captured(live, n),
    }
}

/// The most a live camera's held frames take.
const HELD_BYTES: usize = 256 << 20;

/// How long a live camera may go without a frame while frames are held.
const CAPTURE_WAIT: Duration = Duration::from_secs(5);

/// `n` frames captured from live cameras (instruction 0, one episode).
fn captured(spec: &CameraSpec, n: usize) -> anyhow::Result<(Vec<Frame>, Views)> {
    let named = || format!("--camera {spec}");
    let source = camera::open(spec).with_context(named)?;
    let cap = camera::start(source, 30.0).with_context(named)?;
    // Held frames are cycled: a live camera's are captured up to 256 MiB
    // (a 1080p camera: 43 frames), not the thousands a recording may give.
    let n = n.min((HELD_BYTES / cap.views.frame_len().max(1)).max(1));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let first = out.is_empty();
        let got = cap.latest.take(CAPTURE_WAIT, |pixels, _| Frame {
            pixels: pixels.to_vec(),
            instruction: 0,
            new_episode: first,
        });
        match got {
            Some(f) => out.push(f),
            None => {
                let why = cap.latest.fault().unwrap_or_else(|| {
                    if cap.latest.closed.load(std::sync::atomic::Ordering::Acquire) {
                        "the camera ended".into()
                    } else {
                        format!("no frame in {} s", CAPTURE_WAIT.as_secs())
                    }
                });
                return Err(anyhow::anyhow!("{why}"))
                    .with_context(|| format!("--camera {spec}: after {} frames", out.len()));
            }
        }
    }
    Ok((out, cap.views.clone()))
}

/// The pipeline on one held frame (a new episode starts where it says so).
pub fn run_frame(
    p: &mut Pipeline,
    f: &Frame,
    policy: ExitPolicy,
    deadline: Option<Instant>,
) -> anyhow::Result<FrameOutcome> {
    if f.new_episode {
        p.begin_episode(f.instruction)?;
    }
    Ok(p.infer(&f.pixels, policy, deadline)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_held_starts_episodes_where_it_does() {
        // Four 1×1 frames in episodes 0, 0, 1, 1.
        let r = Replay {
            frames: (0..12).collect(),
            instructions: vec![3, 3, 5, 5],
            episodes: vec![0, 0, 1, 1],
            views: (1, 1).into(),
        };
        let held = from_replay(&r, 3);
        assert_eq!(held.len(), 3, "at most as many as asked");
        assert_eq!(held[2].pixels, [6, 7, 8]);
        assert_eq!(
            held.iter()
                .map(|f| (f.instruction, f.new_episode))
                .collect::<Vec<_>>(),
            [(3, true), (3, false), (5, true)]
        );
        assert_eq!(from_replay(&r, 10).len(), 4, "all, if fewer");
    }

    /// A recording of `n` 2×1 frames whose pixels count up, one episode.
    fn recording(dir: &std::path::Path, n: usize) {
        let views: Views = (2, 1).into();
        let mut w = camera::ReplayWriter::create(dir, &views, None).unwrap();
        for i in 0..n {
            w.push(&[i as u8; 6], 0, 0, i as i64 * 1_000_000, None)
                .unwrap();
        }
    }

    #[test]
    fn live_cameras_are_captured_into_memory_before_anything_is_timed() {
        let dir = tempfile::tempdir().unwrap();
        recording(dir.path(), 60);
        let one = CameraSpec::Replay(dir.path().to_path_buf());
        // Two cameras through their capture threads, as v4l ones would run.
        let two = CameraSpec::Several(vec![one.clone(), one.clone()]);
        let (frames, views) = held(&two, 5).unwrap();
        assert_eq!(views, Views::new(vec![(2, 1), (2, 1)]));
        assert_eq!(frames.len(), 5);
        assert!(frames.iter().all(|f| f.pixels.len() == 12));
        assert_eq!(
            frames.iter().map(|f| f.new_episode).collect::<Vec<_>>(),
            [true, false, false, false, false]
        );
        // A recording is read as it is, without a capture thread.
        let (frames, _) = held(&one, 3).unwrap();
        assert_eq!(frames[2].pixels, [2; 6]);
        // A camera that runs dry names itself and how many frames it gave.
        let e = format!("{:#}", held(&two, 500).unwrap_err());
        assert!(e.contains("--camera") && e.contains("after"), "{e}");
    }
}
