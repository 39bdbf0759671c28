//! An operator's stop and release (`offramp operator stop|release`): sent
//! on `<robot>/operator` until the robot's telemetry confirms it. The
//! bridge latches the stop in itself and in the firmware
//! ([`crate::bridge`]); this is the console's side.

use crate::zenoh_link::{
    telemetry_subscriber, Keys, OperatorCommand, OperatorMsg, Session, TelemetryMsg, ZenohError,
};
use offramp_protocol::MotorState;
use std::time::{Duration, Instant};
use zenoh::Wait;

/// How often the command is sent again until confirmed: the first put may
/// go out before zenoh has matched the bridge's subscriber.
const RESEND_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Zenoh(#[from] ZenohError),
    #[error("publishing on {key}: {why}")]
    Publish { key: String, why: String },
    #[error(
        "{key}: no telemetry confirmed the {what} within {timeout:?} (is `offramp bridge` \
         running and reachable with these zenoh settings?){hint}"
    )]
    Unconfirmed {
        key: String,
        what: &'static str,
        timeout: Duration,
        hint: &'static str,
    },
}

/// What `command` is, for people.
pub fn describe(command: OperatorCommand) -> &'static str {
    match command {
        OperatorCommand::Stop => "operator stop (latched)",
        OperatorCommand::Release => "release (the motors follow the runtime again)",
    }
}

/// Sends `command` to the robot of `keys` until its telemetry shows it done
/// (a stop held in the bridge and the firmware; a release lifted in both),
/// or `timeout` passes. Returns the report that confirmed it. Stops are
/// idempotent; a release is only taken while a stop holds, and each one
/// sent carries a newer stamp.
pub fn command(
    session: &Session,
    keys: &Keys,
    command: OperatorCommand,
    timeout: Duration,
) -> Result<TelemetryMsg, OperatorError> {
    let (_sub, telemetry) = telemetry_subscriber(session, &keys.telemetry)?;
    let publish_err = |e: zenoh::Error| OperatorError::Publish {
        key: keys.operator.clone(),
        why: e.to_string(),
    };
    let publisher = session
        .declare_publisher(keys.operator.clone())
        .wait()
        .map_err(publish_err)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; OperatorMsg::MAX_LEN];
    let mut last_put: Option<Instant> = None;
    loop {
        if last_put.is_none_or(|t| t.elapsed() >= RESEND_EVERY) {
            let bytes = OperatorMsg::new(command).encode(&mut buf).to_vec();
            publisher.put(bytes).wait().map_err(publish_err)?;
            last_put = Some(Instant::now());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OperatorError::Unconfirmed {
                key: keys.operator.clone(),
                what: describe(command),
                timeout,
                hint: match command {
                    OperatorCommand::Stop => "; stop the robot by other means",
                    OperatorCommand::Release => "",
                },
            });
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
            return Ok(m);
        }
    }
}
