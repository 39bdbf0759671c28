//! Offload requests (what a server reads) and replies (what the robot
//! reads), with their carried tensors. Whatever decodes re-encodes to the
//! same bytes' meaning: decode(encode(m)) encodes as encode(m).
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_link::offload::{ReplyMsg, RequestMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = RequestMsg::decode(data) {
        let mut carried = Vec::new();
        m.carried.decode_into(&mut carried);
        let bytes = m.encode();
        let again = RequestMsg::decode(&bytes).expect("re-encoded request decodes");
        assert_eq!(again.encode(), bytes);
    }
    if let Ok(m) = ReplyMsg::decode(data) {
        let bytes = m.encode();
        let again = ReplyMsg::decode(&bytes).expect("re-encoded reply decodes");
        assert_eq!(again.encode(), bytes);
    }
});
