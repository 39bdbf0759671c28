//! The bridge's handling of a sequence of actions and operator messages
//! (`offramp_link::bridge::fuzzing::feed`: every action counted once, the
//! frames written decode, nothing arms or drives between a latch and a
//! release). Input: chunks of [length][kind][message].
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::fs::File;

thread_local! {
    static SCRATCH: RefCell<File> = RefCell::new(
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(std::env::temp_dir().join(format!("offramp-fuzz-bridge-{}", std::process::id())))
            .expect("a scratch file in the temp directory"),
    );
}

fuzz_target!(|data: &[u8]| {
    let mut inputs = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        inputs.push(&tail[..n]);
        rest = &tail[n..];
    }
    SCRATCH.with(|f| offramp_link::bridge::fuzzing::feed(&mut f.borrow_mut(), &inputs));
});
