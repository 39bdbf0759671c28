//! SIGINT and SIGTERM as a flag, so that a long-running command (the
//! bridge, a recording) finishes what it holds and exits cleanly instead
//! of dying mid-write.

use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the handlers and returns the flag they set.
pub fn stop_flag() -> anyhow::Result<&'static AtomicBool> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(s, &act) }.context("installing a signal handler")?;
    }
    Ok(&STOP)
}
