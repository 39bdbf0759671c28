//! The firmware's whole receive path: arbitrary bytes, interleaved with control
//! ticks, into the node the boards run. It must never panic, and the outputs
//! must stay within the configured limits whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_control::{Config, Node};
use offramp_protocol::{ResetCause, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let cfg = Config::DEFAULT;
    let mut node = Node::new(cfg, "fuzz", ResetCause::PowerOn, 0, false);
    let mut now = 0u64;
    let mut out = [0u8; MAX_FRAME];
    for (i, &b) in data.iter().enumerate() {
        let _ = node.on_byte(b, now);
        if i % 7 == 0 {
            now += 1_000;
            let o = node.tick(now);
            assert!(o.left.is_finite() && o.left.abs() <= cfg.max_wheel_speed);
            assert!(o.right.is_finite() && o.right.abs() <= cfg.max_wheel_speed);
            while node.next_frame(&mut out).is_some() {}
        }
    }
});
