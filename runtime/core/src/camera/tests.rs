//! The newest-frame handoff, replay loading, several cameras, specs.

use super::*;
use crate::npy;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn the_reader_gets_the_newest_and_drops_are_counted() {
    let l = Latest::new(4);
    for k in 0..5u8 {
        l.publish(
            FrameMeta {
                seq: k as u64,
                ..Default::default()
            },
            |b| b.fill(k),
        );
    }
    let got = l
        .take(Duration::from_millis(10), |b, m| (b[0], m.seq))
        .unwrap();
    assert_eq!(got, (4, 4));
    assert_eq!(l.dropped.load(Ordering::Relaxed), 4);
    // Nothing new: the reader times out rather than re-reading.
    assert!(l.take(Duration::from_millis(10), |_, _| ()).is_none());
    l.publish(FrameMeta::default(), |b| b.fill(9));
    assert_eq!(l.take(Duration::from_millis(10), |b, _| b[0]), Some(9));
}

#[test]
fn an_episode_start_on_a_dropped_frame_passes_to_the_next() {
    let l = Latest::new(4);
    let start = FrameMeta {
        seq: 1,
        new_episode: true,
        ..Default::default()
    };
    l.publish(start, |b| b.fill(1));
    l.publish(
        FrameMeta {
            seq: 2,
            ..Default::default()
        },
        |b| b.fill(2),
    );
    let got = l.take(Duration::from_millis(10), |b, m| {
        (b[0], m.seq, m.new_episode)
    });
    assert_eq!(got, Some((2, 2, true)));
    // Once read, the flag does not stick to later frames.
    l.publish(
        FrameMeta {
            seq: 3,
            ..Default::default()
        },
        |b| b.fill(3),
    );
    let got = l.take(Duration::from_millis(10), |_, m| m.new_episode);
    assert_eq!(got, Some(false));
}

fn replay(views: &[(usize, usize)], frames: usize, first: u8) -> Replay {
    let views = Views::new(views.to_vec());
    let mut data = Vec::new();
    for k in 0..frames {
        for (v, (w, h)) in views.sizes().iter().enumerate() {
            data.extend(std::iter::repeat_n(first + (k * 2 + v) as u8, w * h * 3));
        }
    }
    Replay {
        frames: data,
        instructions: vec![1; frames],
        episodes: (0..frames as i32).map(|k| k / 4).collect(),
        views,
    }
}

/// Every published frame holds the first camera's frame and the second
/// camera's newest image, end to end.
#[test]
fn several_cameras_make_frames_of_several_views() {
    let src = Several {
        sources: vec![
            Box::new(replay(&[(4, 2)], 30, 0)),
            Box::new(replay(&[(2, 2)], 40, 100)),
        ],
    };
    assert_eq!(src.views(), Views::new(vec![(4, 2), (2, 2)]));
    let cap = start(Box::new(src), 100.0).unwrap();
    assert_eq!(cap.latest.frame_len(), 4 * 2 * 3 + 2 * 2 * 3);
    let mut got = 0;
    let mut episodes = 0;
    while let Some(ok) = cap.latest.take(Duration::from_secs(2), |f, meta| {
        let (a, b) = f.split_at(24);
        episodes += meta.new_episode as usize;
        // View 0 is the first camera's frame meta.seq; view 1 some
        // image of the second camera.
        a.iter().all(|&x| x as u64 == meta.seq * 2)
            && b.iter().all(|&x| x == b[0])
            && b[0] >= 100
            && (b[0] - 100) % 2 == 0
    }) {
        assert!(ok);
        got += 1;
    }
    assert!(cap.latest.closed.load(Ordering::Relaxed));
    assert!(got >= 10, "{got} frames");
    // Frames 0..30 hold 8 episodes; each start is seen (held-back
    // frames pass their start on), at most as often as there are.
    assert!((1..=8).contains(&episodes), "{episodes} episode starts");
}

/// A second camera whose capture thread panics fails the frames with
/// its reason, naming the camera: a panic in a nested capture thread
/// would otherwise close the frames as if the recording had ended.
#[test]
fn a_panicking_second_camera_fails_the_frames_with_its_reason() {
    struct Breaks;
    impl Source for Breaks {
        fn views(&self) -> Views {
            (1, 1).into()
        }
        fn run(self: Box<Self>, _: &Latest, _: &AtomicBool, _: Duration) {
            panic!("corrupt JPEG");
        }
    }
    // The first camera outlasts the wait (a minute at 100 fps): printing
    // the panic's backtrace can take seconds on a loaded machine, and a
    // first camera that ended meanwhile would close the frames first, as a
    // recording's end, with no fault.
    let src = Several {
        sources: vec![Box::new(replay(&[(2, 1)], 6000, 0)), Box::new(Breaks)],
    };
    let cap = start(Box::new(src), 100.0).unwrap();
    let t0 = std::time::Instant::now();
    while !cap.latest.closed.load(Ordering::Acquire) {
        assert!(t0.elapsed() < Duration::from_secs(60), "never closed");
        assert!(cap
            .latest
            .take(Duration::from_millis(50), |_, _| ())
            .is_none());
    }
    let why = cap.latest.fault().expect("a failed camera is a fault");
    assert!(why.contains("camera 1"), "{why}");
    assert!(why.contains("corrupt JPEG"), "{why}");
}

/// A second camera that stops stops the frames: nothing is published
/// with its last image once it is stale, and the source ends.
#[test]
fn a_vanished_second_camera_stops_frames() {
    let src = Several {
        sources: vec![
            Box::new(replay(&[(2, 1)], 200, 0)),
            Box::new(replay(&[(1, 1)], 3, 100)),
        ],
    };
    let cap = start(Box::new(src), 100.0).unwrap();
    let mut got = 0;
    while cap.latest.take(Duration::from_secs(2), |_, _| ()).is_some() {
        got += 1;
    }
    assert!(cap.latest.closed.load(Ordering::Relaxed));
    assert!(got <= 5, "{got} frames after the second camera's 3");
}

/// A camera whose only image was captured long ago (a stall) holds
/// frames back, though the image was never read before: age is by
/// capture time, not by when the image was taken from its buffer.
#[test]
fn a_stale_image_of_another_camera_is_never_published() {
    struct Stalled;
    impl Source for Stalled {
        fn views(&self) -> Views {
            (1, 1).into()
        }
        fn run(self: Box<Self>, latest: &Latest, stop: &AtomicBool, _: Duration) {
            let meta = FrameMeta {
                captured: Instant::now().checked_sub(Duration::from_secs(10)),
                ..Default::default()
            };
            latest.publish(meta, |b| b.fill(7));
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            latest.closed.store(true, Ordering::Relaxed);
        }
    }
    let src = Several {
        sources: vec![Box::new(replay(&[(2, 1)], 100, 0)), Box::new(Stalled)],
    };
    let cap = start(Box::new(src), 100.0).unwrap();
    assert!(cap
        .latest
        .take(Duration::from_millis(400), |_, _| ())
        .is_none());
    assert!(cap.latest.dropped.load(Ordering::Relaxed) > 0);
}

/// A recording's views interleave into frames of several views.
#[test]
fn a_recording_of_two_cameras_loads_as_frames_of_two_views() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let a: Vec<u8> = (0..n * 2 * 2 * 3).map(|i| i as u8).collect();
    let b: Vec<u8> = (0..n * 3).map(|i| 200 + i as u8).collect();
    npy::write(&dir.path().join("frames.npy"), &[n, 2, 2, 3], &a).unwrap();
    npy::write(&dir.path().join("frames.1.npy"), &[n, 1, 1, 3], &b).unwrap();
    npy::write(&dir.path().join("instructions.npy"), &[n], &[0i64; 3]).unwrap();
    npy::write(&dir.path().join("episodes.npy"), &[n], &[0i32; 3]).unwrap();
    let r = load_replay(dir.path()).unwrap();
    assert_eq!(r.views, Views::new(vec![(2, 2), (1, 1)]));
    assert_eq!(r.frame_len(), 15);
    assert_eq!(&r.frames[15..27], &a[12..24]);
    assert_eq!(&r.frames[27..30], &b[3..6]);
    let views: Vec<&[u8]> = r.views.split(&r.frames[15..30]).collect();
    assert_eq!(views, [&a[12..24], &b[3..6]]);
    // A view with another frame count is refused, naming the file.
    npy::write(&dir.path().join("frames.1.npy"), &[2, 1, 1, 3], &b[..6]).unwrap();
    let e = load_replay(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("frames.1.npy is [2, 1, 1, 3]; expected [3, H, W, 3]"),
        "{e}"
    );
}

#[test]
fn a_negative_instruction_is_refused_naming_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    npy::write(&dir.path().join("frames.npy"), &[3, 1, 1, 3], &[0u8; 9]).unwrap();
    npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64, 2, 0]).unwrap();
    npy::write(&dir.path().join("episodes.npy"), &[3], &[0i32; 3]).unwrap();
    assert!(load_replay(dir.path()).is_ok());
    // -1 is a frame without an instruction (a memory task after its cue).
    npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64, -1, 0]).unwrap();
    let r = load_replay(dir.path()).unwrap();
    assert_eq!(r.instructions, [0, crate::exit_chain::NO_INSTRUCTION, 0]);
    // Any other negative value, an "unknown" marker, would run as
    // instruction 0.
    npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64, -2, 0]).unwrap();
    let e = load_replay(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("instructions.npy[1] is -2; an instruction is an index"),
        "{e}"
    );
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
}

/// Frames of no pixels are refused at load: replaying them panicked in
/// `chunks_exact(0)` on the capture thread.
#[test]
fn frames_without_pixels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    npy::write(&dir.path().join("frames.npy"), &[3, 0, 4, 3], &[0u8; 0]).unwrap();
    npy::write(&dir.path().join("instructions.npy"), &[3], &[0i64; 3]).unwrap();
    npy::write(&dir.path().join("episodes.npy"), &[3], &[0i32; 3]).unwrap();
    let e = load_replay(dir.path()).err().unwrap().to_string();
    assert!(e.contains("frames.npy is [3, 0, 4, 3]"), "{e}");
    assert!(e.contains("H and W at least 1"), "{e}");
}

#[test]
fn camera_specs_parse_or_say_what_is_expected() {
    assert!(matches!("sim".parse::<CameraSpec>(), Ok(CameraSpec::Sim)));
    assert!(matches!(
        "replay:/x".parse::<CameraSpec>(),
        Ok(CameraSpec::Replay(_))
    ));
    assert!(matches!(
        "v4l:/dev/video0".parse::<CameraSpec>(),
        Ok(CameraSpec::V4l(_))
    ));
    let two = "v4l:/dev/video0,replay:/r".parse::<CameraSpec>();
    assert!(
        matches!(&two, Ok(CameraSpec::Several(s)) if s.len() == 2),
        "{two:?}"
    );
    let e = "sim,v4l:/dev/video0".parse::<CameraSpec>().unwrap_err();
    assert!(e.to_string().contains("cannot be combined"), "{e}");
    let e = "usb".parse::<CameraSpec>().unwrap_err().to_string();
    assert!(
        e.contains("expected sim, replay:DIR or v4l:/dev/videoN"),
        "{e}"
    );
}
