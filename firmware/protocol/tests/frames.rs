//! Property tests of the wire contract: every message survives a round trip,
//! any byte string decodes to a message or an error (never a panic), and
//! corruption is detected.

use offramp_protocol::*;
use proptest::prelude::*;

fn finite() -> impl Strategy<Value = f32> {
    prop_oneof![-1e6f32..1e6f32, Just(0.0), Just(f32::MAX), Just(f32::MIN)]
}

fn setpoint() -> impl Strategy<Value = Setpoint> {
    prop_oneof![
        (finite(), finite()).prop_map(|(left, right)| Setpoint::Wheels { left, right }),
        (finite(), finite()).prop_map(|(v, omega)| Setpoint::Twist { v, omega }),
    ]
}

fn host_msg() -> impl Strategy<Value = HostMsg> {
    prop_oneof![
        any::<u32>().prop_map(|seq| HostMsg::Arm { seq }),
        (any::<u32>(), any::<u64>(), setpoint(), any::<u8>()).prop_map(
            |(seq, valid_until_us, setpoint, exit_index)| HostMsg::Drive(Drive {
                seq,
                valid_until_us,
                setpoint,
                exit_index
            })
        ),
        Just(HostMsg::Stop),
        any::<u32>().prop_map(|nonce| HostMsg::Ping { nonce }),
        prop_oneof![
            Just(Fault::HangMainLoop),
            Just(Fault::Panic),
            Just(Fault::StopControlTick)
        ]
        .prop_map(HostMsg::InjectFault),
        Just(HostMsg::Latch),
        any::<u32>().prop_map(|seq| HostMsg::Release { seq }),
    ]
}

fn reset_cause() -> impl Strategy<Value = ResetCause> {
    prop_oneof![
        Just(ResetCause::PowerOn),
        Just(ResetCause::Watchdog),
        Just(ResetCause::Software),
        Just(ResetCause::Panic),
        Just(ResetCause::Pin),
        Just(ResetCause::BrownOut),
        Just(ResetCause::Unknown),
    ]
}

fn counters() -> impl Strategy<Value = Counters> {
    proptest::array::uniform17(any::<u32>()).prop_map(|c| Counters {
        frames_ok: c[0],
        overflow: c[1],
        cobs: c[2],
        too_short: c[3],
        crc: c[4],
        version: c[5],
        decode: c[6],
        stale: c[7],
        deadline_too_far: c[8],
        replay: c[9],
        out_of_range: c[10],
        not_armed: c[11],
        unsupported: c[12],
        clamped: c[13],
        timeouts: c[14],
        rx_dropped: c[15],
        latched: c[16],
    })
}

fn telemetry() -> impl Strategy<Value = Telemetry> {
    (
        (
            any::<u64>(),
            any::<u32>(),
            any::<Option<u32>>(),
            any::<u8>(),
        ),
        (finite(), finite(), any::<i16>(), any::<i16>()),
        prop_oneof![
            Just(MotorState::Disarmed),
            Just(MotorState::Running),
            Just(MotorState::TimedOut),
            Just(MotorState::Latched)
        ],
        counters(),
        reset_cause(),
        (any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(
                (uptime_us, report_seq, last_seq, last_exit),
                (al, ar, dl, dr),
                state,
                counters,
                reset_cause,
                (lat, tos),
            )| Telemetry {
                uptime_us,
                report_seq,
                last_seq,
                last_exit,
                applied_left: al,
                applied_right: ar,
                duty_left: dl,
                duty_right: dr,
                state,
                counters,
                reset_cause,
                last_apply_latency_us: lat,
                last_timeout_stop_us: tos,
            },
        )
}

fn mcu_msg() -> impl Strategy<Value = McuMsg> {
    prop_oneof![
        (reset_cause(), any::<u32>(), any::<[u8; 12]>(), any::<u32>()).prop_map(
            |(reset_cause, reset_count, board, command_timeout_ms)| McuMsg::Boot(Boot {
                protocol: PROTOCOL_VERSION,
                reset_cause,
                reset_count,
                board,
                command_timeout_ms
            })
        ),
        (any::<u32>(), any::<u64>())
            .prop_map(|(nonce, uptime_us)| McuMsg::Pong(Pong { nonce, uptime_us })),
        telemetry().prop_map(McuMsg::Telemetry),
        (0u8..12, any::<Option<u32>>()).prop_map(|(r, seq)| McuMsg::Rejected {
            reason: [
                Reject::Overflow,
                Reject::Cobs,
                Reject::TooShort,
                Reject::Crc,
                Reject::Version,
                Reject::Decode,
                Reject::Stale,
                Reject::DeadlineTooFar,
                Reject::Replay,
                Reject::OutOfRange,
                Reject::NotArmed,
                Reject::Unsupported
            ][r as usize],
            seq
        }),
    ]
}

/// Runs an encoded stream through the accumulator and decodes every frame.
fn decode_stream<M: serde::de::DeserializeOwned>(bytes: &[u8]) -> Vec<Result<M, FrameError>> {
    let mut acc = Accumulator::<MAX_FRAME>::new();
    let mut out = Vec::new();
    for &b in bytes {
        match acc.feed(b) {
            Feed::Pending => {}
            Feed::Frame(f) => out.push(decode::<M>(f)),
            Feed::Error(e) => out.push(Err(e)),
        }
    }
    out
}

proptest! {
    #[test]
    fn host_messages_round_trip(msg in host_msg()) {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&msg, &mut buf).unwrap();
        prop_assert!(n <= MAX_FRAME);
        prop_assert_eq!(buf[n - 1], 0);
        prop_assert!(!buf[..n - 1].contains(&0), "COBS body must not contain the delimiter");
        let got = decode_stream::<HostMsg>(&buf[..n]);
        prop_assert_eq!(got, vec![Ok(msg)]);
    }

    #[test]
    fn mcu_messages_round_trip(msg in mcu_msg()) {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&msg, &mut buf).unwrap();
        let got = decode_stream::<McuMsg>(&buf[..n]);
        prop_assert_eq!(got, vec![Ok(msg)]);
    }

    #[test]
    fn any_bytes_decode_to_message_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        // Both directions' decoders, straight and through the accumulator.
        let mut a = bytes.clone();
        let _ = decode::<HostMsg>(&mut a);
        let mut b = bytes.clone();
        let _ = decode::<McuMsg>(&mut b);
        let _ = decode_stream::<HostMsg>(&bytes);
        let _ = decode_stream::<McuMsg>(&bytes);
    }

    #[test]
    fn corruption_is_detected(msg in host_msg(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&msg, &mut buf).unwrap();
        let i = pos.index(n - 1); // never the delimiter itself
        buf[i] ^= flip;
        // A corrupted byte may become a delimiter and split the frame; no part of
        // the stream may decode back into the original message.
        for r in decode_stream::<HostMsg>(&buf[..n]) {
            prop_assert!(r != Ok(msg), "corrupted frame decoded as the original");
        }
    }

    #[test]
    fn stream_resynchronises_after_garbage(garbage in proptest::collection::vec(any::<u8>(), 0..300), msg in host_msg()) {
        let mut stream = garbage.clone();
        stream.push(0); // the receiver re-syncs at the next delimiter
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&msg, &mut buf).unwrap();
        stream.extend_from_slice(&buf[..n]);
        let got = decode_stream::<HostMsg>(&stream);
        prop_assert_eq!(got.last().cloned(), Some(Ok(msg)));
    }
}

#[test]
fn largest_messages_fit_the_declared_bounds() {
    let telemetry = McuMsg::Telemetry(Telemetry {
        uptime_us: u64::MAX,
        report_seq: u32::MAX,
        last_seq: Some(u32::MAX),
        last_exit: u8::MAX,
        applied_left: f32::MAX,
        applied_right: f32::MAX,
        duty_left: i16::MIN,
        duty_right: i16::MIN,
        state: MotorState::TimedOut,
        counters: Counters {
            frames_ok: u32::MAX,
            overflow: u32::MAX,
            cobs: u32::MAX,
            too_short: u32::MAX,
            crc: u32::MAX,
            version: u32::MAX,
            decode: u32::MAX,
            stale: u32::MAX,
            deadline_too_far: u32::MAX,
            replay: u32::MAX,
            out_of_range: u32::MAX,
            not_armed: u32::MAX,
            unsupported: u32::MAX,
            clamped: u32::MAX,
            timeouts: u32::MAX,
            rx_dropped: u32::MAX,
            latched: u32::MAX,
        },
        reset_cause: ResetCause::Unknown,
        last_apply_latency_us: u32::MAX,
        last_timeout_stop_us: u32::MAX,
    });
    let mut buf = [0u8; MAX_FRAME];
    encode(&telemetry, &mut buf).expect("largest telemetry fits MAX_FRAME");
    let drive = HostMsg::Drive(Drive {
        seq: u32::MAX,
        valid_until_us: u64::MAX,
        setpoint: Setpoint::Twist {
            v: f32::MIN,
            omega: f32::MIN,
        },
        exit_index: u8::MAX,
    });
    encode(&drive, &mut buf).expect("largest drive fits MAX_FRAME");
}

#[test]
fn errors_name_the_problem() {
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(&HostMsg::Ping { nonce: 7 }, &mut buf).unwrap();

    // Wrong version: re-encode a raw frame with version 99 and a valid CRC.
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut raw = vec![99u8, 3, 7];
    raw.extend_from_slice(&crc.checksum(&raw).to_le_bytes());
    let mut enc = vec![0u8; 32];
    let m = cobs::encode(&raw, &mut enc);
    let err = decode::<HostMsg>(&mut enc[..m]).unwrap_err();
    assert_eq!(err, FrameError::Version { got: 99 });
    assert_eq!(
        err.to_string(),
        format!("protocol version 99, this build speaks {PROTOCOL_VERSION}")
    );

    // Bit flip in the payload: CRC.
    let mut bad = buf[..n - 1].to_vec();
    bad[2] ^= 0x01;
    let err = decode::<HostMsg>(&mut bad).unwrap_err();
    assert!(matches!(err, FrameError::Crc { .. }), "{err:?}");
    assert!(err.to_string().starts_with("CRC mismatch"));

    // Truncated.
    let mut short = [1u8, 1, 1];
    assert_eq!(decode::<HostMsg>(&mut short), Err(FrameError::TooShort));

    // Overflow through the accumulator, then recovery.
    let mut acc = Accumulator::<16>::new();
    for _ in 0..40 {
        assert_eq!(acc.feed(0x55), Feed::Pending);
    }
    assert_eq!(acc.feed(0), Feed::Error(FrameError::Overflow));
    let mut small = [0u8; MAX_FRAME];
    let k = encode(&HostMsg::Stop, &mut small).unwrap();
    let mut got = None;
    for &b in &small[..k] {
        if let Feed::Frame(f) = acc.feed(b) {
            got = Some(decode::<HostMsg>(f));
        }
    }
    assert_eq!(got, Some(Ok(HostMsg::Stop)));
}

#[test]
fn trailing_bytes_are_a_decode_error() {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    // Ping{nonce: 7} is variant 3, varint 7; append one stray byte.
    let mut raw = vec![PROTOCOL_VERSION, 3, 7, 0x42];
    raw.extend_from_slice(&crc.checksum(&raw).to_le_bytes());
    let mut enc = vec![0u8; 32];
    let m = cobs::encode(&raw, &mut enc);
    assert_eq!(decode::<HostMsg>(&mut enc[..m]), Err(FrameError::Decode));
}

/// The fuzz seeds are frames of this contract, so fuzzing starts past COBS,
/// CRC and the version (tools/fuzz/make_seeds.py writes them: rerun it when
/// the contract changes).
#[test]
fn the_fuzz_seeds_are_frames_of_this_contract() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.pop(), Some(0), "{}", path.display());
        decode::<HostMsg>(&mut bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 10, "{n} seeds in {}", dir.display());
}
