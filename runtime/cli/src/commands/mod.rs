//! One module per `offramp` subcommand, each with its own clap `Args` and a
//! `main` that runs it.

pub mod bench;
pub mod bridge;
pub mod build_set;
#[cfg(feature = "tensorrt")]
pub mod build_shim;
#[cfg(feature = "bundle")]
pub mod bundle;
pub mod calibrate;
#[cfg(feature = "sim")]
pub mod demo;
pub mod firmware;
#[cfg(feature = "lerobot")]
pub mod import_lerobot;
pub mod operator;
pub mod profile;
pub mod record;
pub mod recording;
pub mod run;
pub mod serve;
#[cfg(feature = "sim")]
pub mod sim;
pub mod split;
#[cfg(feature = "sim")]
pub mod sweep;
