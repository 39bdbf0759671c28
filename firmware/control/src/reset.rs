//! Reset bookkeeping shared by the boards.
//!
//! Each board keeps three words in RAM that a warm reset leaves alone
//! (`.uninit`): a magic word (valid ⇒ this boot is a warm reset), a reset
//! counter, and a mark that a deliberate reset writes just before resetting.
//! Boards only read and write the words (volatile); the decisions are here.

use offramp_protocol::ResetCause;

/// Layout of the record: `[magic, count, mark]`.
pub type Record = [u32; 3];

const MAGIC: u32 = 0x0FF2_A3B5;
const MARK_NONE: u32 = 0;
const MARK_PANIC: u32 = 1;
const MARK_SOFTWARE: u32 = 2;

/// Decides the reset cause at boot from the record found in RAM and what the
/// chip's own reset flags say (`None` where the chip cannot tell, as QEMU's
/// lm3s6965 for a watchdog reset). Returns the cause, resets since power-on,
/// and the record to write back.
pub fn on_boot(found: Record, chip: Option<ResetCause>) -> (ResetCause, u32, Record) {
    let [magic, count, mark] = found;
    let warm = magic == MAGIC && chip != Some(ResetCause::PowerOn);
    let (cause, count) = if !warm {
        (chip.unwrap_or(ResetCause::PowerOn), 0)
    } else {
        let cause = match mark {
            // Our own marks beat the chip's "software reset" flag: they say why.
            MARK_PANIC => ResetCause::Panic,
            MARK_SOFTWARE => ResetCause::Software,
            // A warm reset nobody asked for: trust the chip, else the watchdog,
            // the only other source of a warm reset on a board without a pin.
            _ => chip.unwrap_or(ResetCause::Watchdog),
        };
        (cause, count.wrapping_add(1))
    };
    (cause, count, [MAGIC, count, MARK_NONE])
}

/// The mark a deliberate reset for `cause` writes into the record's last word.
pub fn mark(cause: ResetCause) -> u32 {
    match cause {
        ResetCause::Panic => MARK_PANIC,
        _ => MARK_SOFTWARE,
    }
}

/// The record itself, in RAM that a warm reset leaves untouched. Only for
/// firmware images, whose linker script (cortex-m-rt) has an `.uninit` section.
#[cfg(feature = "ram-record")]
#[allow(unsafe_code)]
pub mod ram {
    use super::Record;
    use core::mem::MaybeUninit;
    use core::ptr::addr_of_mut;
    use offramp_protocol::ResetCause;

    #[link_section = ".uninit.OFFRAMP_RESET_RECORD"]
    static mut RECORD: MaybeUninit<Record> = MaybeUninit::uninit();

    /// Pointer to one word of the record. All accesses are volatile: the
    /// record's initial value is undefined to the compiler, and with LTO it
    /// otherwise folds every load to the only value ever stored (the magic),
    /// so that a cold boot looks warm.
    fn word(index: usize) -> *mut u32 {
        addr_of_mut!(RECORD).cast::<u32>().wrapping_add(index % 3)
    }

    /// Reads and re-arms the record; see [`super::on_boot`]. Call once at
    /// boot, before interrupts are enabled.
    pub fn take_cause(chip: Option<ResetCause>) -> (ResetCause, u32) {
        // SAFETY: the three words lie inside RECORD, are aligned, and every
        // bit pattern is a valid u32; nothing else runs this early in boot.
        unsafe {
            let found = [0, 1, 2].map(|i| word(i).read_volatile());
            let (cause, count, new) = super::on_boot(found, chip);
            for (i, w) in new.into_iter().enumerate() {
                word(i).write_volatile(w);
            }
            (cause, count)
        }
    }

    /// Records why the firmware is about to reset itself. The caller then
    /// requests the reset.
    pub fn mark_before_reset(cause: ResetCause) {
        // SAFETY: an aligned word inside RECORD; a single store.
        unsafe { word(2).write_volatile(super::mark(cause)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_boot_then_watchdog_then_panic() {
        let (c, n, rec) = on_boot([0, 0, 0], None);
        assert_eq!((c, n), (ResetCause::PowerOn, 0));
        let (c, n, mut rec) = on_boot(rec, None);
        assert_eq!((c, n), (ResetCause::Watchdog, 1));
        rec[2] = mark(ResetCause::Panic);
        let (c, n, rec) = on_boot(rec, Some(ResetCause::Software));
        assert_eq!((c, n), (ResetCause::Panic, 2));
        assert_eq!(rec[2], 0, "mark consumed");
    }

    #[test]
    fn chip_flags_win_where_they_exist() {
        let (_, _, rec) = on_boot([1, 2, 3], None);
        let (c, n, _) = on_boot(rec, Some(ResetCause::Watchdog));
        assert_eq!((c, n), (ResetCause::Watchdog, 1));
        // A power-on flag means RAM content is garbage even if it looks valid.
        let (c, n, _) = on_boot(rec, Some(ResetCause::PowerOn));
        assert_eq!((c, n), (ResetCause::PowerOn, 0));
        let (c, _, _) = on_boot(rec, Some(ResetCause::Pin));
        assert_eq!(c, ResetCause::Pin);
    }
}
