//! `offramp bridge`: the zenoh ⇄ serial service (see
//! [`offramp_link::bridge`]).

use crate::args::ZenohArgs;
use offramp_link::bridge::{self, BridgeArgs};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Serial device (e.g. /dev/ttyACM0, /dev/serial/by-id/...).
    #[arg(long)]
    serial: PathBuf,
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    #[command(flatten)]
    zenoh: ZenohArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    bridge::run(&BridgeArgs {
        serial: a.serial,
        baud: a.baud,
        robot: a.zenoh.robot.clone(),
        zenoh: a.zenoh.options(),
    })
}
