//! `offramp firmware session`: drives the motor controller over the wire
//! protocol with an S-curve of (v, omega) commands, then falls silent and
//! checks that the controller stops the motors on its own. A link check that
//! needs no model.

use crate::session::{self, FirmwareLink, SessionConfig, SessionReport};
use anyhow::Context;
use clap::ValueEnum;
use offramp_control::Config;
use offramp_protocol::link::Link;
use offramp_qemu_harness::{Clock, Firmware};
use offramp_runtime::{host_mcu, pty};
use std::io::Write;
use std::path::Path;

/// Which firmware closes the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
pub fn with_firmware<J: OnLink>(
    kind: FirmwareKind,
    elf: Option<&Path>,
    job: J,
) -> anyhow::Result<J::Out> {
    match kind {
        FirmwareKind::Host => {
            let pair = pty::open().context("opening a pty pair for the host firmware")?;
            tracing::info!(device = %pair.slave_path.display(), "host firmware on pty");
            let writer = pair.master.try_clone()?;
            let mut link: FirmwareLink<_> = Link::new(pair.master, writer)?;
            let mcu = host_mcu::HostMcu::spawn(pair.slave, Config::DEFAULT)?;
            let out = job.run(&mut link)?;
            // Cross-check telemetry against the outputs the motors actually got.
            match mcu.output() {
                Some(o) if o.left == 0.0 && o.right == 0.0 => Ok(out),
                o => anyhow::bail!("motor outputs after the timeout are {o:?}, expected zero"),
            }
        }
        FirmwareKind::Qemu => {
            let elf = match elf {
                Some(e) => e.to_path_buf(),
                None => offramp_qemu_harness::firmware_elf()?,
            };
            tracing::info!(elf = %elf.display(), "booting firmware in QEMU");
            let mut fw = Firmware::boot(&elf, Clock::RealTime)?;
            job.run(fw.link_mut())
        }
    }
}

struct Session<'a>(&'a SessionConfig);

impl OnLink for Session<'_> {
    type Out = SessionReport;
    fn run<W: Write>(self, link: &mut FirmwareLink<W>) -> anyhow::Result<SessionReport> {
        session::run(link, self.0)
    }
}

pub fn run(
    firmware: FirmwareKind,
    elf: Option<&Path>,
    cfg: &SessionConfig,
) -> anyhow::Result<SessionReport> {
    with_firmware(firmware, elf, Session(cfg))
}

/// One screen for a person.
pub fn print_human(r: &SessionReport) {
    println!("offramp firmware session: motor-controller loop over the wire protocol");
    println!("  firmware board         {}", r.board);
    println!(
        "  commands sent          {} (all accepted: {})",
        r.commands_sent, r.all_accepted
    );
    println!("  rejected               {}", r.rejected);
    if let Some(s) = r.apply_latency_us {
        println!(
            "  command -> applied     p50 {:.0} us, p99 {:.0} us, max {:.0} us (firmware clock, {} samples)",
            s.p50, s.p99, s.max, s.n
        );
    }
    if let Some(s) = r.link_rtt_us {
        println!(
            "  link round trip        p50 {:.0} us, p99 {:.0} us",
            s.p50, s.p99
        );
    }
    if let Some(t) = r.timeout_to_stop_us {
        println!(
            "  silence -> motors off  {:.1} ms (timeout {} ms; firmware clock)",
            t as f64 / 1e3,
            r.command_timeout_ms
        );
    }
    println!("  final state            {}", r.final_state);
}
