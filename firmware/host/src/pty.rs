//! A pseudo-terminal pair in raw mode: a real serial device node (the slave,
//! `/dev/pts/N`) for code that opens a UART by path, with no hardware
//! behind it. Whoever holds the master plays the other end of the cable.

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
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
    // openpty(3) does not set close-on-exec: without it every child process
    // (the bridge, a runtime) would hold both ends open, and closing one end
    // here would no longer hang up the other.
    for fd in [&master, &slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
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
