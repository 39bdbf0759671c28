//! Power sources for `offramp profile`: what each exit costs in millijoules.
//!
//! Every source reads one sample per call; the [`sampler`] thread calls it at
//! a fixed rate and timestamps the result on the profile's clock, and
//! [`energy`] integrates the trace over any window (a frame, an exit segment,
//! a block of frames). Sources:
//!
//! * [`hwmon`]: the Jetson INA3221 monitors through hwmon (JetPack 5/6).
//! * [`iio`]: the older iio layout of the same chip (Xavier, JetPack 4).
//! * [`tegrastats`]: the rail figures of a running `tegrastats`.
//! * [`rapl`]: Intel RAPL energy counters, for a laptop or workstation.
//!
//! Each takes the filesystem root (normally `/`) so tests and `--sysfs-root`
//! can point it at a copy of a device's `/sys`.

pub mod energy;
pub mod hwmon;
pub mod iio;
pub mod rapl;
pub mod sampler;
pub mod tegrastats;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: expected a whole number, found {content:?}", path.display())]
    Parse { path: PathBuf, content: String },
    #[error("{kind}: no power rails under {}: {why}", root.display())]
    NotFound {
        kind: &'static str,
        root: PathBuf,
        why: String,
    },
    #[error("tegrastats line has no power rails: {0:?}")]
    TegrastatsLine(String),
    #[error("tegrastats: {0}")]
    Tegrastats(String),
    #[error("unknown power source {0:?}: expected auto, ina3221, iio, tegrastats, rapl or none")]
    UnknownChoice(String),
}

/// One power source. `read` may block for up to one sampling period
/// (tegrastats paces itself); the others return at once.
pub trait PowerSource: Send {
    /// What was opened, for the report ("ina3221 hwmon: /sys/...").
    fn describe(&self) -> String;
    /// Rail names, in the order `read` fills them.
    fn rails(&self) -> &[String];
    /// Fills `rails_mw` (one per rail) and returns the board total in mW,
    /// or `None` when no value is ready yet (a counter's first read).
    fn read(&mut self, rails_mw: &mut [f64]) -> Result<Option<f64>, PowerError>;
}

/// `--power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerChoice {
    Auto,
    Ina3221,
    Iio,
    Tegrastats,
    Rapl,
    None,
}

impl FromStr for PowerChoice {
    type Err = PowerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Self::Auto,
            "ina3221" => Self::Ina3221,
            "iio" => Self::Iio,
            "tegrastats" => Self::Tegrastats,
            "rapl" => Self::Rapl,
            "none" => Self::None,
            other => return Err(PowerError::UnknownChoice(other.to_string())),
        })
    }
}

/// The board's total from its rails: the input rail where the board has one
/// (it already includes every other rail), else the sum.
pub fn board_total(rails: &[String], mw: &[f64]) -> f64 {
    const INPUT_RAILS: [&str; 3] = ["VDD_IN", "POM_5V_IN", "VIN"];
    match rails.iter().position(|r| INPUT_RAILS.contains(&r.as_str())) {
        Some(i) => mw[i],
        None => mw.iter().sum(),
    }
}

/// A source (or none) and notes on what was tried.
pub type Opened = (Option<Box<dyn PowerSource>>, Vec<String>);

/// Opens the chosen source. `Auto` tries INA3221 (hwmon), iio, tegrastats
/// and RAPL in that order; `Ok(None)` means no power is measured (`none`, or
/// `auto` found nothing) and the second value says why, for the report.
pub fn open(choice: PowerChoice, root: &Path, period: Duration) -> Result<Opened, PowerError> {
    let one = |c: PowerChoice| -> Result<Box<dyn PowerSource>, PowerError> {
        Ok(match c {
            PowerChoice::Ina3221 => Box::new(hwmon::Ina3221::open(root)?),
            PowerChoice::Iio => Box::new(iio::Ina3221Iio::open(root)?),
            PowerChoice::Tegrastats => Box::new(tegrastats::Tegrastats::spawn(period)?),
            PowerChoice::Rapl => Box::new(rapl::Rapl::open(root)?),
            PowerChoice::Auto | PowerChoice::None => unreachable!("not a single source"),
        })
    };
    match choice {
        PowerChoice::None => Ok((None, vec!["--power none: energy not measured".into()])),
        PowerChoice::Auto => {
            let mut notes = Vec::new();
            for c in [
                PowerChoice::Ina3221,
                PowerChoice::Iio,
                PowerChoice::Tegrastats,
                PowerChoice::Rapl,
            ] {
                match one(c) {
                    Ok(s) => return Ok((Some(s), notes)),
                    Err(e) => notes.push(e.to_string()),
                }
            }
            notes.push("--power auto found no power source: energy not measured".into());
            Ok((None, notes))
        }
        c => Ok((Some(one(c)?), Vec::new())),
    }
}

/// Reads a sysfs file holding one integer.
pub(crate) fn read_int(path: &Path) -> Result<i64, PowerError> {
    let s = std::fs::read_to_string(path).map_err(|source| PowerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    s.trim().parse().map_err(|_| PowerError::Parse {
        path: path.to_path_buf(),
        content: s.trim().chars().take(40).collect(),
    })
}

/// Reads a sysfs label (trimmed).
pub(crate) fn read_label(path: &Path) -> Result<String, PowerError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| PowerError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Sorted matches of a glob pattern under `root`.
pub(crate) fn glob_dirs(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = root.join(pattern);
    let mut v: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
        .map(|paths| paths.filter_map(Result::ok).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_total_prefers_the_input_rail() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            board_total(&r(&["VDD_IN", "VDD_SOC"]), &[5000.0, 1600.0]),
            5000.0
        );
        assert_eq!(
            board_total(&r(&["VDD_GPU_SOC", "VDD_CPU_CV"]), &[2000.0, 400.0]),
            2400.0
        );
        assert!(matches!(
            "watts".parse::<PowerChoice>(),
            Err(PowerError::UnknownChoice(_))
        ));
    }
}
