//! PWM model. QEMU's lm3s6965evb does not emulate the PWM block, so the
//! compare values a real timer would receive are kept here, where the panic
//! handler and the watchdog interrupt can zero them from any context.

use core::sync::atomic::{AtomicI32, Ordering};

static DUTY: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];

/// Sets both wheels' duty, in 1/10000 of full scale.
pub fn set(left: i16, right: i16) {
    DUTY[0].store(left as i32, Ordering::Relaxed);
    DUTY[1].store(right as i32, Ordering::Relaxed);
}

/// Zeroes both outputs (safe from any context).
pub fn stop() {
    set(0, 0);
}
