//! The firmware's serial link as the runtime sees it: wait for the boot
//! message, check the protocol version, sync the firmware clock (one best-of-N
//! sync, [`offramp_protocol::link::Link::sync_clock`], for every host).

use anyhow::{bail, Context};
use offramp_protocol::link::{ClockSync, Link};
use offramp_protocol::{Boot, HostMsg, McuMsg, COMMAND_VALIDITY_MS};
use std::io::Write;
use std::time::Duration;

/// The firmware link: host messages out, firmware messages in.
pub type FirmwareLink<W> = Link<HostMsg, McuMsg, W>;

/// How long a command stays valid after the runtime makes it.
pub const COMMAND_VALIDITY: Duration = Duration::from_millis(COMMAND_VALIDITY_MS as u64);

/// A firmware that announced itself and whose clock is synced.
pub struct Connected {
    pub board: String,
    pub boot: Boot,
    pub clock: ClockSync,
    /// Every sync round trip, µs.
    pub rtts: Vec<f64>,
}

/// Waits for the boot message, checks the protocol version and syncs the
/// clock on the ping with the shortest round trip out of `pings`.
pub fn connect<W: Write>(link: &mut FirmwareLink<W>, pings: u32) -> anyhow::Result<Connected> {
    let boot: Boot = link
        .wait_for(Duration::from_secs(10), |m, _| match m {
            McuMsg::Boot(b) => Some(*b),
            _ => None,
        })
        .context("waiting for the firmware's boot message")?;
    if boot.protocol != offramp_protocol::PROTOCOL_VERSION {
        bail!(
            "firmware speaks protocol {}, this runtime {}",
            boot.protocol,
            offramp_protocol::PROTOCOL_VERSION
        );
    }
    let board = String::from_utf8_lossy(&boot.board)
        .trim_end_matches('\0')
        .to_string();
    let (clock, rtts) = link.sync_clock(0, pings, Duration::from_secs(2))?;
    Ok(Connected {
        board,
        boot,
        clock,
        rtts: rtts.iter().map(|d| d.as_secs_f64() * 1e6).collect(),
    })
}
