//! One module per `offramp` subcommand, each with its own clap `Args` and a
//! `main` that runs it.

pub mod bench;
pub mod bench_engines;
pub mod bench_runtime;
pub mod bench_zenoh;
pub mod bridge;
pub mod build_set;
pub mod bundle;
pub mod calibrate;
pub mod demo;
pub mod firmware;
pub mod firmware_bench;
pub mod profile;
pub mod recording;
pub mod run;
pub mod sim;
pub mod sweep;
