//! offramp's test rig: the far end of the serial cable for the commands and
//! tests that have no motor controller attached. A firmware end is the
//! control logic built for the host behind a pty, or the real firmware image
//! in QEMU (with the `qemu` feature); a bridge (`offramp bridge`, as a
//! process or on a thread) stands in front of it for the demo.
//!
//! * [`with_firmware`]: boot a firmware and run a job on its link directly
//!   (no bridge): [`session`], the model-free link check.
//! * [`end::FirmwareEnd`]: a firmware behind a serial device node, for a
//!   bridge to open; [`bridge::Bridge`]: that bridge.
//! * [`firmware_bench`]: the firmware image's latency and timeout, in QEMU's
//!   guest clock.
//! * [`demo`]: the main job end to end, the simulator's robot driven through
//!   the runtime, zenoh, a bridge and a firmware (`offramp demo`).
//!
//! A crate of its own because the demo, the benches, the tests and
//! `offramp firmware` share it, and because none of it runs on the robot:
//! the QEMU harness stays behind the `qemu` feature, which the robot's build
//! leaves out.

pub mod bridge;
#[cfg(feature = "demo")]
pub mod demo;
pub mod end;
#[cfg(feature = "qemu")]
pub mod firmware_bench;
pub mod session;

pub use bridge::{Bridge, BridgeMode};
pub use end::FirmwareEnd;

use anyhow::Context;
use offramp_control::Config;
use offramp_host::HostBoard;
use offramp_link::firmware::FirmwareLink;
use offramp_protocol::link::Link;
use std::io::Write;
use std::path::Path;

/// Which firmware closes the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FirmwareKind {
    /// The control logic built for the host, behind a pty pair.
    Host,
    /// The real firmware image in QEMU (lm3s6965evb), behind its UART.
    Qemu,
}

/// Work done on a freshly booted firmware's link (the link's writer type
/// differs between the pty and QEMU, hence a trait, not a closure).
pub trait OnLink {
    type Out;
    fn run<W: Write>(self, link: &mut FirmwareLink<W>) -> anyhow::Result<Self::Out>;
}

/// Boots the chosen firmware, runs `job` on its link, and for the host
/// build cross-checks that the motor outputs ended at zero.
#[cfg_attr(not(feature = "qemu"), allow(unused_variables))]
pub fn with_firmware<J: OnLink>(
    kind: FirmwareKind,
    elf: Option<&Path>,
    job: J,
) -> anyhow::Result<J::Out> {
    match kind {
        FirmwareKind::Host => {
            let (board, port) = HostBoard::start_connected(Config::DEFAULT)
                .context("starting the host firmware behind a pty")?;
            tracing::info!(device = %board.device.display(), "host firmware on pty");
            let mut link: FirmwareLink<_> = Link::new(port.try_clone()?, port)?;
            let out = job.run(&mut link)?;
            // Cross-check telemetry against the outputs the motors actually got.
            match board.output() {
                Some(o) if o.left == 0.0 && o.right == 0.0 => Ok(out),
                o => anyhow::bail!("motor outputs after the timeout are {o:?}, expected zero"),
            }
        }
        #[cfg(not(feature = "qemu"))]
        FirmwareKind::Qemu => Err(no_qemu()),
        #[cfg(feature = "qemu")]
        FirmwareKind::Qemu => {
            let elf = qemu_elf(elf)?;
            tracing::info!(elf = %elf.display(), "booting firmware in QEMU");
            let mut fw =
                offramp_qemu_harness::Firmware::boot(&elf, offramp_qemu_harness::Clock::RealTime)?;
            job.run(fw.link_mut())
        }
    }
}

/// The firmware image for QEMU: the one given, or the build's.
#[cfg(feature = "qemu")]
pub fn qemu_elf(elf: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    Ok(match elf {
        Some(e) => e.to_path_buf(),
        None => offramp_qemu_harness::firmware_elf()?,
    })
}

/// Without the `qemu` feature there is no QEMU firmware to boot.
#[cfg(not(feature = "qemu"))]
pub fn no_qemu() -> anyhow::Error {
    anyhow::anyhow!(
        "--firmware qemu: this offramp was built without the `qemu` feature (rebuild with `--features qemu`)"
    )
}
