//! Shared by the runtime's integration tests.
#![allow(dead_code)]

use offramp_engines::EngineSet;
use std::path::PathBuf;
use std::process::{Child, Command};

/// Runs the `offramp` binary: (success, stdout, stderr).
pub fn offramp(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run offramp");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `offramp operator CMD ARGS…` in `cwd`, which must succeed (the robot's
/// telemetry confirmed it).
pub fn operator(cmd: &str, args: &[&str], cwd: &std::path::Path) {
    let out = Command::new(bin())
        .args(["--log", "warn", "operator", cmd])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run offramp");
    assert!(
        out.status.success(),
        "operator {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The committed demo engine set.
pub fn demo_dir() -> PathBuf {
    repo().join("engines/models/demo")
}

pub fn demo_set() -> EngineSet {
    EngineSet::open(demo_dir()).expect("engines/models/demo is committed")
}

/// Path of the `offramp` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_offramp")
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
