//! The chip watchdog (WDT0). It counts down from LOAD; the first time it reaches
//! zero it interrupts (bark) and reloads, the second time, if nobody fed it, it
//! resets the chip. The main loop feeds it only while control ticks run.

use lm3s6965::{interrupt, Interrupt};

use crate::SYSCLK_HZ;

const BASE: usize = 0x4000_0000;
const LOAD: *mut u32 = BASE as *mut u32;
const CTL: *mut u32 = (BASE + 0x008) as *mut u32;
const ICR: *mut u32 = (BASE + 0x00C) as *mut u32;
const LOCK: *mut u32 = (BASE + 0xC00) as *mut u32;
const RCGC0: *mut u32 = 0x400F_E100 as *mut u32;
const UNLOCK: u32 = 0x1ACC_E551;

/// Bark after 100 ms without feeding; reset 100 ms later.
pub const PERIOD_MS: u32 = 100;

pub fn init() {
    // SAFETY: WDT0 and SYSCTL registers of this part, configured once at boot.
    unsafe {
        RCGC0.write_volatile(RCGC0.read_volatile() | (1 << 3));
        LOCK.write_volatile(UNLOCK);
        LOAD.write_volatile(SYSCLK_HZ / 1_000 * PERIOD_MS);
        // INTEN | RESEN. INTEN cannot be cleared again until reset.
        CTL.write_volatile(0b11);
        LOCK.write_volatile(0);
        cortex_m::peripheral::NVIC::unmask(Interrupt::WATCHDOG_TIMER_0);
    }
}

/// Restarts the countdown and clears a pending bark (re-enabling the bark
/// interrupt, which a previous bark masked).
pub fn feed() {
    // SAFETY: WDT0 registers; only the main loop feeds.
    unsafe {
        LOCK.write_volatile(UNLOCK);
        ICR.write_volatile(1);
        LOCK.write_volatile(0);
        cortex_m::peripheral::NVIC::unmask(Interrupt::WATCHDOG_TIMER_0);
    }
}

/// Bark: the main loop missed its deadline. Stop the motors now; the reset
/// follows at the next expiry. The interrupt stays masked so that it does not
/// refire until then.
#[interrupt]
fn WATCHDOG_TIMER_0() {
    crate::pwm::stop();
    cortex_m::peripheral::NVIC::mask(Interrupt::WATCHDOG_TIMER_0);
    defmt::error!("watchdog bark: main loop stalled, motors stopped, reset follows");
}
