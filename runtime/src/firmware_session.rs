//! `offramp firmware session`: drives the motor controller over the wire
//! protocol with an S-curve of (v, omega) commands, then falls silent and
//! checks that the controller stops the motors on its own. A link check that
//! needs no model.

pub use crate::demo::FirmwareKind;
use crate::session::{self, FirmwareLink, SessionConfig, SessionReport};
use crate::{mcu_host, pty};
use anyhow::Context;
use offramp_control::Config;
use offramp_protocol::link::Link;
use offramp_qemu_harness::{Clock, Firmware};
use std::path::PathBuf;

pub fn run(
    firmware: FirmwareKind,
    elf: Option<PathBuf>,
    cfg: &SessionConfig,
) -> anyhow::Result<SessionReport> {
    match firmware {
        FirmwareKind::Host => {
            let pair = pty::open().context("opening a pty pair for the host firmware")?;
            tracing::info!(device = %pair.device_path.display(), "host firmware on pty");
            let writer = pair.host.try_clone()?;
            let mut link: FirmwareLink<_> = Link::new(pair.host, writer)?;
            let mcu = mcu_host::HostMcu::spawn(pair.device, Config::DEFAULT)?;
            let report = session::run(&mut link, cfg)?;
            // Cross-check telemetry against the outputs the motors actually got.
            match mcu.output() {
                Some(o) if o.left == 0.0 && o.right == 0.0 => Ok(report),
                o => anyhow::bail!("motor outputs after the timeout are {o:?}, expected zero"),
            }
        }
        FirmwareKind::Qemu => {
            let elf = match elf {
                Some(e) => e,
                None => offramp_qemu_harness::firmware_elf()?,
            };
            tracing::info!(elf = %elf.display(), "booting firmware in QEMU");
            let mut fw = Firmware::boot(&elf, Clock::RealTime)?;
            session::run(fw.link_mut(), cfg)
        }
    }
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
