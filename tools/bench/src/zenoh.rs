//! `offramp bench zenoh`: what offramp's action path costs on top of zenoh
//! itself, measured side by side in one run: the runtime's publish (message
//! encoding, QoS RealTime/Drop/express) → the bridge's decode in its
//! subscriber callback, against a bare `put` of the same bytes with default
//! QoS → a bare subscriber. Two sessions on loopback TCP, one message in
//! flight at a time, the two paths interleaved. The end-to-end figure (a
//! short `offramp demo`: camera frame → applied by the firmware) is the
//! caller's to add, the demo being the command's.

use crate::Bars;
use ::zenoh::Wait;
use offramp_link::zenoh_link::{
    free_loopback_endpoint, open_session, ActionMsg, Keys, RuntimeLink, ZenohOptions,
    MESSAGE_VERSION,
};
use offramp_link::COMMAND_VALIDITY;
use offramp_runtime::stats::Summary;
use serde::Serialize;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Serialize)]
pub struct ZenohBench {
    pub transport: String,
    pub payload_bytes: usize,
    pub iterations: usize,
    /// Runtime publish → bridge callback decoded, µs.
    pub offramp_us: Option<Summary>,
    /// Bare put → bare subscriber callback, µs.
    pub bare_zenoh_us: Option<Summary>,
    /// offramp / bare, on medians and on means (goal: within 1.10).
    pub ratio_p50: f64,
    pub ratio_mean: f64,
    pub lost: usize,
    /// The end-to-end figures of a short demo, filled in by the caller
    /// (0 and none: skipped).
    pub demo_episodes: usize,
    pub frame_to_applied_ms: Option<Summary>,
    pub frame_to_sent_ms: Option<Summary>,
}

/// `iters` actions down each path (after 100 of warm-up).
pub fn run(iters: usize, bars: Bars) -> anyhow::Result<ZenohBench> {
    let ep = free_loopback_endpoint()?;
    let a = open_session(&ZenohOptions {
        listen: vec![ep.clone()],
        ..Default::default()
    })?;
    let b = open_session(&ZenohOptions {
        connect: vec![ep.clone()],
        ..Default::default()
    })?;
    let keys = Keys::new("bench")?;
    let (tx, rx) = mpsc::sync_channel::<(u8, Instant)>(16);
    let t1 = tx.clone();
    let _offramp_sub = b
        .declare_subscriber(keys.action.clone())
        .callback(move |s| {
            // What the bridge does first with every action.
            if ActionMsg::decode(&s.payload().to_bytes()).is_ok() {
                let _ = t1.try_send((0, Instant::now()));
            }
        })
        .wait()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bare_key = "bench/bare";
    let _bare_sub = b
        .declare_subscriber(bare_key)
        .callback(move |s| {
            let _ = s.payload().len();
            let _ = tx.try_send((1, Instant::now()));
        })
        .wait()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bare = a
        .declare_publisher(bare_key)
        .wait()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut link = RuntimeLink::open(a.clone(), keys, COMMAND_VALIDITY, false)?;
    // The same bytes an action has on the wire.
    let sample = ActionMsg {
        version: MESSAGE_VERSION,
        seq: 1_000_000,
        sent_unix_ns: 1_763_900_000_000_000_000,
        valid_for_us: COMMAND_VALIDITY.as_micros() as u32,
        v: 0.3,
        omega: -0.7,
        exit: 1,
        stop: false,
    };
    let mut buf = [0u8; ActionMsg::MAX_LEN];
    let payload = sample.encode(&mut buf).to_vec();
    // Routes take a moment to settle after the sessions meet.
    std::thread::sleep(Duration::from_millis(500));
    let wait = |which: u8| -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok((w, at)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if w == which {
                return Some(at);
            }
        }
        None
    };
    let (mut ours, mut theirs, mut lost) = (Vec::new(), Vec::new(), 0);
    let tick = bars((iters + 100) as u64, "zenoh");
    for i in 0..iters + 100 {
        let t = Instant::now();
        link.publish(0.3, -0.7, 1, false)?;
        let r1 = wait(0);
        let u = Instant::now();
        bare.put(payload.clone())
            .wait()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let r2 = wait(1);
        tick();
        if i < 100 {
            continue; // warm-up
        }
        match (r1, r2) {
            (Some(r1), Some(r2)) => {
                ours.push((r1 - t).as_secs_f64() * 1e6);
                theirs.push((r2 - u).as_secs_f64() * 1e6);
            }
            _ => lost += 1,
        }
    }
    drop(tick);
    drop(link);
    let (o, t) = (Summary::of(&ours), Summary::of(&theirs));
    let (ratio_p50, ratio_mean) = match (o, t) {
        (Some(o), Some(t)) => (o.p50 / t.p50, o.mean / t.mean),
        _ => (f64::NAN, f64::NAN),
    };
    Ok(ZenohBench {
        transport: format!("peer to peer, {ep}"),
        payload_bytes: payload.len(),
        iterations: iters,
        offramp_us: o,
        bare_zenoh_us: t,
        ratio_p50,
        ratio_mean,
        lost,
        demo_episodes: 0,
        frame_to_applied_ms: None,
        frame_to_sent_ms: None,
    })
}
