//! Finds the firmware ELF, building it with cargo when it is not given.

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BOARD: &str = "lm3s6965-qemu";
const BIN: &str = "offramp-fw-qemu";
const TARGET: &str = "thumbv7m-none-eabi";

/// The QEMU firmware image: `$OFFRAMP_FW_ELF` if set, else a release build of
/// `firmware/boards/lm3s6965-qemu` made now (a no-op when up to date).
///
/// The build uses its own target directory (`$OFFRAMP_FW_TARGET_DIR`, else
/// `$CARGO_TARGET_DIR/firmware`, else the board's `target/`) so that it never
/// waits on the lock of a cargo that is running these tests.
pub fn firmware_elf() -> Result<PathBuf, Error> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = std::env::var_os("OFFRAMP_FW_ELF") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::NoImage(p))
        };
    }
    let board = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../boards")
        .join(BOARD);
    BUILT
        .get_or_init(|| build(&board).map_err(|e| e.to_string()))
        .clone()
        .map_err(|msg| Error::Build {
            command: format!("cargo build --release in {}", board.display()),
            status: msg,
        })
}

fn build(board: &Path) -> Result<PathBuf, Error> {
    let target_dir = match (
        std::env::var_os("OFFRAMP_FW_TARGET_DIR"),
        std::env::var_os("CARGO_TARGET_DIR"),
    ) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(d)) => PathBuf::from(d).join("firmware"),
        (None, None) => board.join("target"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--quiet"])
        .current_dir(board)
        .env("CARGO_TARGET_DIR", &target_dir)
        // The outer build's flags are for the host, not for the thumb target.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|source| Error::Spawn {
            what: "cargo",
            source,
        })?;
    if !status.success() {
        return Err(Error::Build {
            command: format!("cargo build --release in {}", board.display()),
            status: status.to_string(),
        });
    }
    let elf = target_dir.join(TARGET).join("release").join(BIN);
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(Error::NoImage(elf))
    }
}
