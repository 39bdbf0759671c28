//! The `offramp` binary's integration tests, in one test binary (each file a
//! module) so that zenoh and tract are linked once, not once per file.
//!
//! Tests that need QEMU, the Python test environment (onnxruntime, Pillow,
//! eclipse-zenoh) or a firmware build are `#[ignore]`d with the reason;
//! `scripts/test.sh` runs them with `--include-ignored`.

#[path = "../common/mod.rs"]
mod common;

mod bundle;
mod camera_loss;
mod cli;
mod closed_loop;
mod faults;
mod fuzz_seeds;
mod kv_cache;
mod lerobot;
mod offload;
mod profile;
mod recorded;
mod shapes;
mod sweep;
mod zenoh_interop;
