//! The runtime's messages as they arrive over zenoh: actions, telemetry,
//! operator commands and ROS 2 `cmd_vel` Twists (CDR). Whatever decodes
//! re-encodes to a message that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_link::zenoh_link::{decode_twist_cdr, twist_cdr, ActionMsg, OperatorMsg, TelemetryMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ActionMsg::decode(data) {
        assert!(m.v.is_finite() && m.omega.is_finite(), "{m:?}");
        let mut buf = [0u8; ActionMsg::MAX_LEN];
        let again = ActionMsg::decode(m.encode(&mut buf)).expect("re-encoded action decodes");
        assert_eq!(again, m);
    }
    if let Ok(m) = TelemetryMsg::decode(data) {
        let mut buf = [0u8; TelemetryMsg::MAX_LEN];
        let bytes = m.encode(&mut buf).to_vec();
        let again = TelemetryMsg::decode(&bytes).expect("re-encoded telemetry decodes");
        let mut buf2 = [0u8; TelemetryMsg::MAX_LEN];
        assert_eq!(again.encode(&mut buf2), &bytes[..]);
    }
    if let Ok(m) = OperatorMsg::decode(data) {
        let mut buf = [0u8; OperatorMsg::MAX_LEN];
        let again =
            OperatorMsg::decode(m.encode(&mut buf)).expect("re-encoded operator msg decodes");
        assert_eq!(again, m);
    }
    if let Ok(t) = decode_twist_cdr(data) {
        let back = decode_twist_cdr(&twist_cdr(t[0], t[5])).expect("a Twist we write decodes");
        assert_eq!(
            (back[0].to_bits(), back[5].to_bits()),
            (t[0].to_bits(), t[5].to_bits())
        );
    }
});
