//! `offramp operator stop|release`: an operator's stop, which latches in
//! the bridge and the firmware until released ([`offramp_link::operator`]).
//! Fails (non-zero) when nothing confirms it within `--timeout`: then stop
//! the robot by other means.

use crate::args::ZenohArgs;
use offramp_link::operator;
use offramp_link::zenoh_link::{open_session, Keys, OperatorCommand};
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Stop the motors and keep them stopped, whatever the runtime sends,
    /// until `offramp operator release`.
    Stop(Target),
    /// Lift an operator's stop: the runtime's next action arms the motors
    /// and moves them.
    Release(Target),
}

#[derive(clap::Args)]
struct Target {
    /// How long to wait for the robot's telemetry to confirm, seconds.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    #[command(flatten)]
    zenoh: ZenohArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let (command, a) = match a.command {
        Command::Stop(t) => (OperatorCommand::Stop, t),
        Command::Release(t) => (OperatorCommand::Release, t),
    };
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 3600.0) {
        anyhow::bail!("--timeout {}: expected 0 < seconds ≤ 3600", a.timeout);
    }
    let keys = Keys::new(&a.zenoh.robot)?;
    let session = open_session(&a.zenoh.options())?;
    let m = operator::command(&session, &keys, command, Duration::from_secs_f64(a.timeout))?;
    println!(
        "{}: {} (firmware {:?}, bridge operator stops {}, releases {})",
        a.zenoh.robot,
        operator::describe(command),
        m.firmware.state,
        m.bridge.operator_stops,
        m.bridge.releases
    );
    Ok(())
}
