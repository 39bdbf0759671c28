//! Why the chip last reset. The LM3S6965 in QEMU does not report a watchdog
//! reset in RESC, so the firmware keeps its own record in `.uninit` RAM, which
//! a warm reset leaves untouched: a magic word (valid ⇒ this is a warm reset),
//! a reset counter, and the cause a deliberate reset wrote just before it.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;
use offramp_protocol::ResetCause;

const MAGIC: u32 = 0x0FF2_A3B5;
const MARK_NONE: u32 = 0;
const MARK_PANIC: u32 = 1;
const MARK_SOFTWARE: u32 = 2;

/// magic, reset count, mark.
#[link_section = ".uninit.RESET_RECORD"]
static mut RECORD: MaybeUninit<[u32; 3]> = MaybeUninit::uninit();

/// Pointer to one word of the record. All accesses are volatile: the record's
/// initial value is undefined to the compiler, and with LTO it otherwise folds
/// every load to the only value ever stored (the magic), so a cold boot would
/// look warm.
fn word(index: usize) -> *mut u32 {
    addr_of_mut!(RECORD).cast::<u32>().wrapping_add(index)
}

const MAGIC_WORD: usize = 0;
const COUNT_WORD: usize = 1;
const MARK_WORD: usize = 2;

/// Reads and re-arms the record. Called once at boot, before interrupts.
pub fn take_cause() -> (ResetCause, u32) {
    // SAFETY: the three words lie inside RECORD, are aligned, and every bit
    // pattern is a valid u32; called once at boot before any interrupt.
    unsafe {
        let (cause, count) = if word(MAGIC_WORD).read_volatile() != MAGIC {
            (ResetCause::PowerOn, 0)
        } else {
            let cause = match word(MARK_WORD).read_volatile() {
                MARK_PANIC => ResetCause::Panic,
                MARK_SOFTWARE => ResetCause::Software,
                // A warm reset nobody asked for: the watchdog.
                _ => ResetCause::Watchdog,
            };
            (cause, word(COUNT_WORD).read_volatile().wrapping_add(1))
        };
        word(MAGIC_WORD).write_volatile(MAGIC);
        word(COUNT_WORD).write_volatile(count);
        word(MARK_WORD).write_volatile(MARK_NONE);
        (cause, count)
    }
}

/// Records `cause` and requests a system reset.
pub fn software_reset(cause: ResetCause) -> ! {
    let mark = match cause {
        ResetCause::Panic => MARK_PANIC,
        _ => MARK_SOFTWARE,
    };
    // SAFETY: an aligned word inside RECORD.
    unsafe { word(MARK_WORD).write_volatile(mark) };
    cortex_m::peripheral::SCB::sys_reset()
}

/// Unrecoverable start-up error: log and reset.
pub fn fatal(what: &str) -> ! {
    defmt::error!("fatal: {=str}", what);
    software_reset(ResetCause::Software)
}
