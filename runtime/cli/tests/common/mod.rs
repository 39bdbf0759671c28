//! Shared by the runtime's integration tests.
#![allow(dead_code)]

use offramp_engines::EngineSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
/// `offramp sim record --episodes N --first-seed SEED --out OUT`: expert
/// episodes recorded as a replay directory.
pub fn sim_record(out: &Path, episodes: u32, first_seed: u64) {
    let (episodes, seed) = (episodes.to_string(), first_seed.to_string());
    let (ok, _, err) = offramp(&[
        "sim",
        "record",
        "--episodes",
        &episodes,
        "--first-seed",
        &seed,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
}

pub fn operator(cmd: &str, args: &[&str], cwd: &Path) {
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

/// `offramp bridge` on serial `device` for `robot`, dialling `connect`.
pub fn bridge(device: &Path, robot: &str, connect: &str) -> Proc {
    Proc(
        Command::new(bin())
            .args(["--log", "warn", "bridge", "--serial"])
            .arg(device)
            .args(["--robot", robot, "--connect", connect])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `offramp run --zenoh` of the demo set on the simulator camera at
/// 20 Hz for `robot`, listening on `listen`.
pub fn runtime(robot: &str, listen: &str) -> Proc {
    Proc(
        Command::new(bin())
            .args(["--log", "warn", "run", "--engines"])
            .arg(demo_dir())
            .args(["--camera", "sim", "--fps", "20", "--zenoh"])
            .args(["--robot", robot, "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
