//! INA3221 power monitors through hwmon (Jetson Orin and Xavier on JetPack 5/6).
//!
//! Layout: `/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon<N>/` with
//! `in<K>_label`, `in<K>_input` (bus voltage, mV) and `curr<K>_input` (mA)
//! for channels 1..=3. The hwmon index changes between boots, so it is
//! globbed; AGX Orin has a second chip (1-0041). Channel 7 is the chip's
//! shunt-voltage sum and "NC" marks an unconnected channel: both skipped.

use super::{glob_dirs, read_int, read_label, PowerError, PowerSource};
use std::path::{Path, PathBuf};

struct Channel {
    volts: PathBuf,
    amps: PathBuf,
}

pub struct Ina3221 {
    dirs: Vec<PathBuf>,
    names: Vec<String>,
    channels: Vec<Channel>,
}

impl Ina3221 {
    pub const PATTERN: &'static str = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*";

    pub fn open(root: &Path) -> Result<Self, PowerError> {
        let dirs = glob_dirs(root, Self::PATTERN);
        let not_found = |why: String| PowerError::NotFound {
            kind: "ina3221",
            root: root.join(Self::PATTERN),
            why,
        };
        if dirs.is_empty() {
            return Err(not_found("no hwmon directory".into()));
        }
        let (mut names, mut channels, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        for d in &dirs {
            for k in 1..=8 {
                if k == 7 {
                    continue;
                }
                let label_path = d.join(format!("in{k}_label"));
                if !label_path.exists() {
                    continue;
                }
                let label = read_label(&label_path)?;
                if label.is_empty() || label == "NC" {
                    continue;
                }
                let (volts, amps) = (
                    d.join(format!("in{k}_input")),
                    d.join(format!("curr{k}_input")),
                );
                if !volts.exists() || !amps.exists() {
                    skipped.push(format!("{label} (no in{k}_input/curr{k}_input)"));
                    continue;
                }
                names.push(label);
                channels.push(Channel { volts, amps });
            }
        }
        if channels.is_empty() {
            return Err(not_found(format!(
                "no labelled channels with readings in {} director{} (skipped: {})",
                dirs.len(),
                if dirs.len() == 1 { "y" } else { "ies" },
                if skipped.is_empty() {
                    "none".to_string()
                } else {
                    skipped.join(", ")
                }
            )));
        }
        Ok(Self {
            dirs,
            names,
            channels,
        })
    }
}

impl PowerSource for Ina3221 {
    fn describe(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!("ina3221 hwmon: {}", dirs.join(", "))
    }

    fn rails(&self) -> &[String] {
        &self.names
    }

    fn read(&mut self, mw: &mut [f64]) -> Result<Option<f64>, PowerError> {
        for (c, out) in self.channels.iter().zip(mw.iter_mut()) {
            let mv = read_int(&c.volts)? as f64;
            let ma = read_int(&c.amps)? as f64;
            *out = mv * ma / 1000.0;
        }
        Ok(Some(super::board_total(&self.names, mw)))
    }
}
