//! Any byte string: each decoder returns a message or an error, never panics,
//! and whatever decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_protocol::{decode, encode, Accumulator, Feed, HostMsg, McuMsg, MAX_FRAME};

fn check<M>(frame: &mut [u8])
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug,
{
    if let Ok(msg) = decode::<M>(frame) {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&msg, &mut buf).expect("a decoded message re-encodes");
        // `decode` undoes COBS in place: keep the encoding to compare.
        let first = buf;
        let again = decode::<M>(&mut buf[..n - 1]).expect("and decodes again");
        // NaN setpoints are legal on the wire (the controller rejects them)
        // but never compare equal; compare their encodings instead.
        let mut buf2 = [0u8; MAX_FRAME];
        let m = encode(&again, &mut buf2).expect("re-encodes");
        assert_eq!(&first[..n], &buf2[..m]);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<HostMsg>(&mut data.to_vec());
    check::<McuMsg>(&mut data.to_vec());
    let mut acc: Accumulator<MAX_FRAME> = Accumulator::new();
    for &b in data {
        if let Feed::Frame(f) = acc.feed(b) {
            check::<HostMsg>(f);
        }
    }
});
