//! System clock (PLL to 50 MHz) and the SysTick time base: a 1 kHz control tick
//! and a microsecond clock read from the tick count plus SysTick's down-counter.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::exception;

use crate::SYSCLK_HZ;

const SYSCTL_RCC: *mut u32 = 0x400F_E060 as *mut u32;
const RCC_SYSDIV_SHIFT: u32 = 23;
const RCC_SYSDIV_MASK: u32 = 0xF << RCC_SYSDIV_SHIFT;
const RCC_USESYSDIV: u32 = 1 << 22;
const RCC_BYPASS: u32 = 1 << 11;

const RELOAD: u32 = SYSCLK_HZ / 1_000 - 1;
const CYCLES_PER_US: u32 = SYSCLK_HZ / 1_000_000;

static TICKS: AtomicU32 = AtomicU32::new(0);

/// 200 MHz PLL / (SYSDIV + 1) = 50 MHz, the part's rated maximum.
pub fn init(syst: &mut SYST) {
    // SAFETY: SYSCTL RCC is a valid, always-mapped register of this part; only
    // the boot path writes it, before interrupts are enabled.
    unsafe {
        let rcc = SYSCTL_RCC.read_volatile();
        let rcc = (rcc & !RCC_SYSDIV_MASK & !RCC_BYPASS) | RCC_USESYSDIV | (3 << RCC_SYSDIV_SHIFT);
        SYSCTL_RCC.write_volatile(rcc);
    }
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_counter();
    syst.enable_interrupt();
}

/// Control ticks (ms) since boot, wrapping.
pub fn ticks() -> u32 {
    TICKS.load(Ordering::Acquire)
}

/// Microseconds since boot. Main-thread only: SysTick must be able to preempt
/// the caller, which is how a wrap between the two reads is detected.
pub fn now_us() -> u64 {
    static HIGH: AtomicU32 = AtomicU32::new(0);
    static LAST: AtomicU32 = AtomicU32::new(0);
    loop {
        let t1 = TICKS.load(Ordering::Acquire);
        let cycles = RELOAD - SYST::get_current();
        let t2 = TICKS.load(Ordering::Acquire);
        if t1 == t2 {
            // Extend the 32-bit ms count to 64 bits (wraps after 49.7 days).
            if t1 < LAST.load(Ordering::Relaxed) {
                HIGH.fetch_add(1, Ordering::Relaxed);
            }
            LAST.store(t1, Ordering::Relaxed);
            let ms = ((HIGH.load(Ordering::Relaxed) as u64) << 32) | t1 as u64;
            return ms * 1_000 + (cycles / CYCLES_PER_US) as u64;
        }
    }
}

/// Best-effort timestamp for log lines from any context (32-bit ms only).
pub fn now_us_any_context() -> u64 {
    let ms = TICKS.load(Ordering::Relaxed) as u64;
    ms * 1_000 + ((RELOAD - SYST::get_current()) / CYCLES_PER_US) as u64
}

/// Switches the control tick off (fault injection): the SysTick interrupt
/// stops, so [`ticks`] freezes and no control tick runs again until reset.
pub fn stop_tick() {
    // SAFETY: clearing TICKINT in SYST_CSR only stops the interrupt; nothing
    // else owns SysTick after boot.
    unsafe {
        let syst = &*SYST::PTR;
        syst.csr.modify(|v| v & !0b10);
    }
    defmt::warn!("control tick stopped (fault injection)");
}

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Release);
}
