//! UART0 (PL011-compatible) at 115200 8N1: an RX interrupt fills a bounded byte
//! queue that the main loop drains; TX is polled (frames are short and the main
//! loop has nothing better to do meanwhile).

use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering};
use critical_section::Mutex;
use heapless::Deque;
use lm3s6965::{interrupt, Interrupt};

const BASE: usize = 0x4000_C000;
const DR: *mut u32 = BASE as *mut u32;
const FR: *const u32 = (BASE + 0x018) as *const u32;
const IBRD: *mut u32 = (BASE + 0x024) as *mut u32;
const FBRD: *mut u32 = (BASE + 0x028) as *mut u32;
const LCRH: *mut u32 = (BASE + 0x02C) as *mut u32;
const CTL: *mut u32 = (BASE + 0x030) as *mut u32;
const IM: *mut u32 = (BASE + 0x038) as *mut u32;
const ICR: *mut u32 = (BASE + 0x044) as *mut u32;
const RCGC1: *mut u32 = 0x400F_E104 as *mut u32;

const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const IM_RX: u32 = 1 << 4;
const IM_RT: u32 = 1 << 6;

static RX: Mutex<RefCell<Deque<u8, 512>>> = Mutex::new(RefCell::new(Deque::new()));
static DROPPED: AtomicU32 = AtomicU32::new(0);

pub fn init() {
    // SAFETY: UART0 and SYSCTL registers of this part, configured once at boot
    // before its interrupt is unmasked.
    unsafe {
        RCGC1.write_volatile(RCGC1.read_volatile() | 1);
        CTL.write_volatile(0);
        // 50 MHz / (16 × 115200) = 27.13 → IBRD 27, FBRD round(0.13 × 64) = 8.
        IBRD.write_volatile(27);
        FBRD.write_volatile(8);
        // 8 data bits, FIFO off: one interrupt per byte, nothing sits in a FIFO.
        LCRH.write_volatile(0b11 << 5);
        IM.write_volatile(IM_RX | IM_RT);
        CTL.write_volatile(1 | (1 << 8) | (1 << 9));
        cortex_m::peripheral::NVIC::unmask(Interrupt::UART0);
    }
}

/// Moves up to `out.len()` received bytes into `out`.
pub fn take_rx(out: &mut [u8]) -> usize {
    critical_section::with(|cs| {
        let mut q = RX.borrow_ref_mut(cs);
        let mut n = 0;
        while n < out.len() {
            match q.pop_front() {
                Some(b) => {
                    out[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        n
    })
}

/// Bytes dropped because the queue was full, since the last call.
pub fn take_dropped() -> u32 {
    DROPPED.swap(0, Ordering::Relaxed)
}

pub fn write(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: UART0 registers; TX is only used from the main loop.
        unsafe {
            while FR.read_volatile() & FR_TXFF != 0 {}
            DR.write_volatile(b as u32);
        }
    }
}

#[interrupt]
fn UART0() {
    critical_section::with(|cs| {
        let mut q = RX.borrow_ref_mut(cs);
        // SAFETY: UART0 registers, read in its own interrupt.
        unsafe {
            while FR.read_volatile() & FR_RXFE == 0 {
                let b = (DR.read_volatile() & 0xFF) as u8;
                if q.push_back(b).is_err() {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
            ICR.write_volatile(IM_RX | IM_RT);
        }
    });
}
