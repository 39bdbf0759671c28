//! `offramp firmware`: the motor controller's link check (`session`: an
//! S-curve of commands over the wire protocol, then silence until the
//! controller stops the motors on its own; no model needed) and the firmware
//! image's timing in QEMU (`bench`).

use crate::args::{positive, print_report};
use offramp_link::link_check::{SessionConfig, SessionReport};
use offramp_rig::FirmwareKind;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: FirmwareCommand,
}

#[derive(clap::Subcommand)]
enum FirmwareCommand {
    /// Drive the controller with an S-curve over the wire protocol, then
    /// check that it stops the motors on its own when commands stop.
    Session {
        #[arg(long, value_enum, default_value = "host")]
        firmware: FirmwareKind,
        #[arg(long)]
        elf: Option<PathBuf>,
        /// Seconds of driving before the commands stop.
        #[arg(long, default_value_t = 2.0, value_parser = positive)]
        seconds: f64,
        #[arg(long)]
        json: bool,
    },
    /// Measure command→applied latency and timeout→stop time of the real
    /// firmware image in QEMU, in its own clock. Prints JSON.
    #[cfg(feature = "qemu")]
    Bench {
        /// Firmware image (default: build it).
        #[arg(long)]
        elf: Option<PathBuf>,
        /// Commands whose latency is measured.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        commands: u32,
        /// Command-timeout trials.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        trials: u32,
    },
}

pub fn main(a: Args) -> anyhow::Result<()> {
    match a.command {
        FirmwareCommand::Session {
            firmware,
            elf,
            seconds,
            json,
        } => {
            let cfg = SessionConfig {
                drive_for: Duration::from_secs_f64(seconds),
                ..Default::default()
            };
            let report = offramp_rig::session::run(firmware, elf.as_deref(), &cfg)?;
            print_report(json, &report, print_human)?;
            if !report.all_accepted || report.rejected > 0 {
                anyhow::bail!("the firmware did not accept every command");
            }
            Ok(())
        }
        #[cfg(feature = "qemu")]
        FirmwareCommand::Bench {
            elf,
            commands,
            trials,
        } => {
            let elf = offramp_rig::qemu_elf(elf.as_deref())?;
            let report = offramp_rig::firmware_bench::run(&elf, commands, trials)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
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
