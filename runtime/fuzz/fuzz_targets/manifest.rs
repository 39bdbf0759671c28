//! An engine set's `manifest.toml`: every check `EngineSet::open` makes
//! but the artifacts' checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ =
        offramp_engines::EngineSet::check_text(Path::new("/nonexistent/set/manifest.toml"), text);
});
