//! The firmware's receive path past COBS and CRC: the input is a sequence of
//! records `[ms to advance][length][postcard bytes]`; whatever postcard
//! reads as a `HostMsg` is framed properly (version, CRC) and fed byte by
//! byte to the node the boards run, so the fuzzer works on the controller's
//! decisions rather than on checksums. Outputs stay finite and within the
//! limits, and from an operator's `Latch` until a `Release` is sent they
//! stay zero, whatever else arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_control::{Config, Node};
use offramp_protocol::{encode, HostMsg, MotorState, ResetCause, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let cfg = Config::DEFAULT;
    let mut node = Node::new(cfg, "fuzz", ResetCause::PowerOn, 0, false);
    let mut now = 0u64;
    let mut frame = [0u8; MAX_FRAME];
    let mut out = [0u8; MAX_FRAME];
    let mut latched = false;
    let mut rest = data;
    while let [advance, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        if let Ok(msg) = postcard::from_bytes::<HostMsg>(body) {
            match msg {
                HostMsg::Latch => latched = true,
                HostMsg::Release { .. } => latched = false,
                _ => {}
            }
            if let Ok(k) = encode(&msg, &mut frame) {
                for &b in &frame[..k] {
                    let _ = node.on_byte(b, now);
                }
            }
        }
        for _ in 0..(*advance).min(50) {
            now += 1_000;
            let o = node.tick(now);
            assert!(o.left.is_finite() && o.left.abs() <= cfg.max_wheel_speed);
            assert!(o.right.is_finite() && o.right.abs() <= cfg.max_wheel_speed);
            if latched {
                assert_eq!((o.state, o.left, o.right), (MotorState::Latched, 0.0, 0.0));
            }
            while node.next_frame(&mut out).is_some() {}
        }
    }
});
