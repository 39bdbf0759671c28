//! A pseudo-terminal pair in raw mode: a real serial device node for code that
//! expects one, with no hardware behind it.

use nix::pty::{openpty, OpenptyResult};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::fs::File;
use std::path::PathBuf;

/// Both ends of a pty. `device` behaves like the microcontroller's side of a
/// UART (its path is a `/dev/pts/N` node); `host` is the runtime's side.
pub struct PtyPair {
    pub host: File,
    pub device: File,
    pub device_path: PathBuf,
}

/// Opens a pty pair with the device side in raw mode (no echo, no line
/// editing, all 256 byte values pass unchanged).
pub fn open() -> anyhow::Result<PtyPair> {
    let OpenptyResult { master, slave } = openpty(None, None)?;
    let mut t = tcgetattr(&slave)?;
    cfmakeraw(&mut t);
    tcsetattr(&slave, SetArg::TCSANOW, &t)?;
    let device_path = nix::unistd::ttyname(&slave)?;
    Ok(PtyPair {
        host: File::from(master),
        device: File::from(slave),
        device_path,
    })
}
