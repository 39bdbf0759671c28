//! A pseudo-terminal pair in raw mode: a real serial device node (the slave,
//! `/dev/pts/N`) for code that opens a UART by path, with no hardware
//! behind it. Whoever holds the master plays the other end of the cable.

use nix::pty::{openpty, OpenptyResult};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::fs::File;
use std::path::PathBuf;

/// Both ends of a pty.
pub struct PtyPair {
    pub master: File,
    pub slave: File,
    pub slave_path: PathBuf,
}

/// Opens a pty pair with the slave in raw mode (no echo, no line editing,
/// all 256 byte values pass unchanged).
pub fn open() -> std::io::Result<PtyPair> {
    let OpenptyResult { master, slave } = openpty(None, None)?;
    let mut t = tcgetattr(&slave)?;
    cfmakeraw(&mut t);
    tcsetattr(&slave, SetArg::TCSANOW, &t)?;
    let slave_path = nix::unistd::ttyname(&slave)?;
    Ok(PtyPair {
        master: File::from(master),
        slave: File::from(slave),
        slave_path,
    })
}
