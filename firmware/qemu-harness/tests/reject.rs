//! Stale, replayed, out-of-range and garbage input is rejected, counted, and
//! the firmware keeps driving afterwards.

mod common;
use common::*;
use offramp_protocol::{encode, HostMsg, McuMsg, MotorState, Reject, MAX_FRAME};
use offramp_qemu_harness::{Clock, Firmware};

fn expect_reject(fw: &mut Firmware, what: &str, bytes: &[u8], want: Reject) {
    fw.send_raw(bytes).unwrap();
    let got = fw
        .wait_for(what, 2 * SECOND, |r| match r.msg {
            McuMsg::Rejected { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap();
    assert_eq!(got, want, "{what}");
}

fn frame(msg: &HostMsg) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
#[ignore = "needs QEMU and the firmware image (scripts/test.sh builds both)"]
fn bad_input_is_rejected_counted_and_survived() {
    let mut fw = boot(Clock::RealTime);
    let clock = fw_clock(&mut fw);
    fw.send(&HostMsg::Arm { seq: 10 }).unwrap();
    fw.send(&drive(11, clock.now_us() + VALIDITY_US, 0.2, 0.2))
        .unwrap();

    let soon = clock.now_us() + VALIDITY_US;
    expect_reject(
        &mut fw,
        "replay",
        &frame(&drive(11, soon, 0.3, 0.3)),
        Reject::Replay,
    );
    expect_reject(
        &mut fw,
        "older seq",
        &frame(&drive(3, soon, 0.3, 0.3)),
        Reject::Replay,
    );
    let past = clock.now_us().saturating_sub(50_000);
    expect_reject(
        &mut fw,
        "stale",
        &frame(&drive(12, past, 0.3, 0.3)),
        Reject::Stale,
    );
    let far = clock.now_us() + 5_000_000;
    expect_reject(
        &mut fw,
        "far deadline",
        &frame(&drive(12, far, 0.3, 0.3)),
        Reject::DeadlineTooFar,
    );
    expect_reject(
        &mut fw,
        "NaN",
        &frame(&drive(12, soon, f32::NAN, 0.3)),
        Reject::OutOfRange,
    );
    expect_reject(
        &mut fw,
        "too fast",
        &frame(&drive(12, soon, 9.0, 0.3)),
        Reject::OutOfRange,
    );

    let mut corrupt = frame(&drive(12, soon, 0.3, 0.3));
    corrupt[3] ^= 0x40;
    expect_reject(&mut fw, "bit flip", &corrupt, Reject::Crc);
    expect_reject(&mut fw, "not COBS", &[0x05, 0x01, 0x00], Reject::Cobs);
    expect_reject(&mut fw, "runt", &[0x02, 0x01, 0x00], Reject::TooShort);
    let mut long = vec![0x55u8; 600];
    long.push(0);
    expect_reject(&mut fw, "overlong", &long, Reject::Overflow);
    // A frame from a peer speaking protocol version 9 (valid CRC).
    let crc = crc32(&[9, 3, 1]);
    let mut raw = vec![9u8, 3, 1];
    raw.extend_from_slice(&crc.to_le_bytes());
    let mut v9 = cobs_encode(&raw);
    v9.push(0);
    expect_reject(&mut fw, "version", &v9, Reject::Version);

    // The link and the controller still work: the next valid command drives.
    let clock = fw_clock(&mut fw);
    for seq in 12..40 {
        fw.send(&drive(seq, clock.now_us() + 150_000, 0.3, 0.3))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let t = telemetry_where(&fw, "telemetry after recovery", 2 * SECOND, |t| {
        t.last_seq == Some(39)
    });
    assert_eq!(t.state, MotorState::Running);
    assert_eq!(t.applied_left, 0.3);
    let c = t.counters;
    assert_eq!(
        (
            c.replay,
            c.stale,
            c.deadline_too_far,
            c.out_of_range,
            c.crc,
            c.cobs,
            c.too_short,
            c.overflow,
            c.version
        ),
        (2, 1, 1, 2, 1, 1, 1, 1, 1),
        "{c:?}"
    );
    assert_eq!(c.rejected(), 11);
}

fn crc32(data: &[u8]) -> u32 {
    // CRC-32/ISO-HDLC, bitwise: an independent implementation of the one the
    // protocol crate uses.
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn cobs_encode(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let mut code_at = 0;
    let mut code = 1u8;
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
        }
    }
    out[code_at] = code;
    out
}
