//! The motor controller's link check on a firmware end (`offramp firmware
//! session`): [`offramp_link::link_check`]'s S-curve of commands, then
//! silence until the controller stops the motors on its own; no model
//! needed.

use crate::{with_firmware, FirmwareKind, OnLink};
use offramp_link::firmware::FirmwareLink;
use offramp_link::link_check::{self, SessionConfig, SessionReport};
use std::io::Write;
use std::path::Path;

struct Session<'a>(&'a SessionConfig);

impl OnLink for Session<'_> {
    type Out = SessionReport;
    fn run<W: Write>(self, link: &mut FirmwareLink<W>) -> anyhow::Result<SessionReport> {
        link_check::run(link, self.0)
    }
}

/// Boots `firmware` (`elf`: the QEMU image, default: the build's) and runs
/// the link check on it.
pub fn run(
    firmware: FirmwareKind,
    elf: Option<&Path>,
    cfg: &SessionConfig,
) -> anyhow::Result<SessionReport> {
    with_firmware(firmware, elf, Session(cfg))
}
