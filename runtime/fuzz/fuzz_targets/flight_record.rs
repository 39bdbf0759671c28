//! Flight records (`offramp run --record`) read back by `offramp report`,
//! `replay` and the MCAP export.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = offramp_runtime::recorder::read_from(data, Path::new("fuzz.rec"));
});
