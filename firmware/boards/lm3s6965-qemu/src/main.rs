//! offramp motor-controller firmware on QEMU's lm3s6965evb (Cortex-M3, 50 MHz).
//!
//! Everything that decides anything lives in `offramp-control`; this crate only
//! moves bytes and time between it and the chip:
//!
//! * UART0 RX interrupt → byte queue → [`Node::on_byte`] (COBS, CRC, decode,
//!   validate) in the main loop;
//! * SysTick at 1 kHz → [`Node::tick`] (timeout, slew) → PWM model;
//! * the chip watchdog, fed only while control ticks keep coming; its first
//!   expiry (bark) zeroes the PWM, its second resets the chip;
//! * the reset cause, kept in RAM that survives a warm reset;
//! * defmt logs over semihosting.
#![no_std]
#![no_main]

mod clock;
mod pwm;
mod reset;
mod uart;
mod watchdog;

use cortex_m_rt::entry;
use defmt_semihosting as _;
use offramp_control::{Config, Node};
use offramp_protocol::{Fault, MAX_FRAME};

/// Core clock after [`clock::init`].
pub const SYSCLK_HZ: u32 = 50_000_000;

defmt::timestamp!("{=u64:us}", clock::now_us_any_context());

#[entry]
fn main() -> ! {
    let mut cp = match cortex_m::Peripherals::take() {
        Some(cp) => cp,
        None => reset::fatal("core peripherals taken twice"),
    };
    pwm::stop();
    let (cause, count) = reset::take_cause();
    clock::init(&mut cp.SYST);
    uart::init();
    watchdog::init();
    defmt::info!(
        "offramp-fw-qemu booted: reset cause {}, resets since power-on {}",
        cause,
        count
    );

    let mut node = Node::new(
        Config::DEFAULT,
        "lm3s6965",
        cause,
        count,
        cfg!(feature = "fault-injection"),
    );
    let mut tx = [0u8; MAX_FRAME];
    let mut rx = [0u8; 64];
    let mut last_tick = clock::ticks();
    let mut last_state = node.controller().state();

    loop {
        // Sleep until SysTick (1 kHz) or a UART byte wakes the core.
        cortex_m::asm::wfi();
        let now = clock::now_us();

        loop {
            let n = uart::take_rx(&mut rx);
            for &b in &rx[..n] {
                match node.on_byte(b, now) {
                    Some(Fault::StopControlTick) => clock::stop_tick(),
                    Some(fault) => offramp_control::fault::simulate(fault),
                    None => {}
                }
            }
            if n < rx.len() {
                break;
            }
        }
        let dropped = uart::take_dropped();
        if dropped > 0 {
            node.count_rx_dropped(dropped);
        }

        let tick = clock::ticks();
        if tick != last_tick {
            last_tick = tick;
            let out = node.tick(now);
            pwm::set(out.duty_left, out.duty_right);
            if out.state != last_state {
                defmt::info!("motor state {} -> {}", last_state, out.state);
                last_state = out.state;
            }
            // Fed only here, after a control tick ran: a loop that still
            // wakes for UART bytes while SysTick is dead must not keep the
            // chip alive, since nothing would time commands out.
            watchdog::feed();
        }

        while let Some(n) = node.next_frame(&mut tx) {
            uart::write(&tx[..n]);
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // Motors first, then the report, then a clean restart.
    pwm::stop();
    if let Some(loc) = info.location() {
        defmt::error!("panic at {=str}:{=u32}", loc.file(), loc.line());
    } else {
        defmt::error!("panic");
    }
    reset::software_reset(offramp_protocol::ResetCause::Panic)
}
