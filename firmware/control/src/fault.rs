//! Simulated faults for tests of the watchdog and panic paths on a real image.

use offramp_protocol::Fault;

/// Carries out a requested fault. Never returns: either the loop spins until
/// the watchdog resets the chip, or the panic handler stops the motors and
/// resets it.
pub fn simulate(fault: Fault) -> ! {
    #[cfg(feature = "defmt")]
    defmt::warn!("fault injected: {}", fault);
    match fault {
        // A board that cannot switch its control tick off on its own hangs
        // instead: the watchdog outcome is the same.
        Fault::HangMainLoop | Fault::StopControlTick => loop {
            core::hint::spin_loop();
        },
        Fault::Panic => panic!("injected panic"),
    }
}
