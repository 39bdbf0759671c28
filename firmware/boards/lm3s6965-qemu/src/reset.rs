//! Why the chip last reset. The LM3S6965 in QEMU does not report a watchdog
//! reset in RESC, so the cause comes from the record in `.uninit` RAM alone
//! (see `offramp_control::reset`).

use offramp_control::reset::ram;
use offramp_protocol::ResetCause;

/// Reads and re-arms the reset record. Called once at boot.
pub fn take_cause() -> (ResetCause, u32) {
    ram::take_cause(None)
}

/// Records `cause` and requests a system reset.
pub fn software_reset(cause: ResetCause) -> ! {
    ram::mark_before_reset(cause);
    cortex_m::peripheral::SCB::sys_reset()
}

/// Unrecoverable start-up error: log and reset.
pub fn fatal(what: &str) -> ! {
    defmt::error!("fatal: {=str}", what);
    software_reset(ResetCause::Software)
}
