//! `offramp serve`: deep exits for a robot, on a second device.

use crate::args::{positive, EngineArgs, ZenohArgs};
use offramp_link::offload::{set_prefix, OffloadServer};
use offramp_link::zenoh_link::open_session;
use offramp_runtime::exit_chain::ExitChain;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
#[command(mut_arg("engines", |a| a.help(
    "The robot's engine set (the same build: its manifest digest is part \
     of the key, so a server with another build is never asked)."
)))]
pub struct Args {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// This server's name, unique among the robot's servers.
    #[arg(long, default_value = "edge")]
    pub name: String,
    /// The robot asks the live server of lowest rank; give standbys a
    /// higher one (they keep the segments loaded to take over at once).
    #[arg(long, default_value_t = 0)]
    pub rank: u32,
    /// Stop after this many seconds (default: until killed).
    #[arg(long, value_parser = positive)]
    pub seconds: Option<f64>,
    #[command(flatten)]
    pub zenoh_args: ZenohArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let set = a.engine.open()?;
    let chain = ExitChain::new(&set, set.manifest.build.backend)?;
    let prefix = set_prefix(&a.zenoh_args.robot, &set)?;
    let session = open_session(&a.zenoh_args.options())?;
    let mut server = OffloadServer::open(session, chain, &prefix, a.rank, &a.name)?;
    // One line on stdout once the server answers: scripts wait for it.
    println!("serving {}", server.key());
    tracing::info!(
        key = server.key(),
        exits = set.manifest.exits.len(),
        "offload server up"
    );
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(s) = a.seconds {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(s));
            stop.store(true, Ordering::Relaxed);
        });
    }
    server.run(&stop);
    let c = server.counters();
    tracing::info!(
        served = c.served,
        refused = c.refused,
        "offload server done"
    );
    Ok(())
}
