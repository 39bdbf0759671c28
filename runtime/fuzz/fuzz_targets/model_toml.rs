//! A user's `model.toml` as `offramp build` checks it before reading any
//! graph (names that must stay beside it included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = offramp_build::builder::check_model_toml(Path::new("/nonexistent/model"), text);
});
