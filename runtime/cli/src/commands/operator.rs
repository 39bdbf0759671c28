//! `offramp operator stop|release`: an operator's stop, which latches in
//! the bridge and the firmware until released (see
//! [`offramp_link::bridge`]). Returns once the robot's telemetry confirms
//! it, and fails (non-zero) when nothing confirms within `--timeout`: then
//! stop the robot by other means.

use crate::args::ZenohArgs;
use anyhow::bail;
use offramp_link::zenoh_link::{
    open_session, telemetry_subscriber, Keys, OperatorCommand, OperatorMsg,
};
use offramp_protocol::MotorState;
use std::time::{Duration, Instant};
use zenoh::Wait;

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
        bail!("--timeout {}: expected 0 < seconds ≤ 3600", a.timeout);
    }
    let keys = Keys::new(&a.zenoh.robot)?;
    let session = open_session(&a.zenoh.options())?;
    let (_sub, telemetry) = telemetry_subscriber(&session, &keys.telemetry)?;
    let publisher = session
        .declare_publisher(keys.operator.clone())
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring {}: {e}", keys.operator))?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let mut buf = [0u8; OperatorMsg::MAX_LEN];
    // Sent again until confirmed: the first put may go out before zenoh has
    // matched the bridge's subscriber. Stops are idempotent; a release is
    // only taken while the stop holds, and each carries a newer stamp.
    let mut last_put: Option<Instant> = None;
    loop {
        if last_put.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
            let bytes = OperatorMsg::new(command).encode(&mut buf).to_vec();
            publisher
                .put(bytes)
                .wait()
                .map_err(|e| anyhow::anyhow!("publishing on {}: {e}", keys.operator))?;
            last_put = Some(Instant::now());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "{}: no telemetry confirmed the {} within {} s (is `offramp bridge` running \
                 and reachable with these zenoh settings?){}",
                keys.operator,
                what(command),
                a.timeout,
                if matches!(command, OperatorCommand::Stop) {
                    "; stop the robot by other means"
                } else {
                    ""
                }
            );
        }
        let Ok((m, _)) = telemetry.recv_timeout(left.min(Duration::from_millis(50))) else {
            continue;
        };
        let fw_latched = m.firmware.state == MotorState::Latched;
        let done = match command {
            OperatorCommand::Stop => m.bridge.latched && fw_latched,
            OperatorCommand::Release => !m.bridge.latched && !fw_latched,
        };
        if done {
            println!(
                "{}: {} (firmware {:?}, bridge operator stops {}, releases {})",
                a.zenoh.robot,
                what(command),
                m.firmware.state,
                m.bridge.operator_stops,
                m.bridge.releases
            );
            return Ok(());
        }
        if m.bridge.operator_refused > 0 && matches!(command, OperatorCommand::Release) {
            tracing::debug!(
                refused = m.bridge.operator_refused,
                "the bridge refused operator messages (see its log)"
            );
        }
    }
}

fn what(c: OperatorCommand) -> &'static str {
    match c {
        OperatorCommand::Stop => "operator stop (latched)",
        OperatorCommand::Release => "release (motors follow the runtime again)",
    }
}
