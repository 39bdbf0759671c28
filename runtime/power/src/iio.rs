//! INA3221 monitors through the older iio driver (Xavier/TX2, JetPack 4):
//! `/sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<N>/rail_name_<K>` and
//! `in_power<K>_input` in mW, channels 0..=2.

use super::{glob_dirs, read_int, read_label, PowerError, PowerSource};
use std::path::{Path, PathBuf};

pub struct Ina3221Iio {
    dirs: Vec<PathBuf>,
    names: Vec<String>,
    power: Vec<PathBuf>,
}

impl Ina3221Iio {
    pub const PATTERN: &'static str = "sys/bus/i2c/drivers/ina3221x/*/iio:device*";

    pub fn open(root: &Path) -> Result<Self, PowerError> {
        let dirs = glob_dirs(root, Self::PATTERN);
        let not_found = |why: &str| PowerError::NotFound {
            kind: "iio",
            root: root.join(Self::PATTERN),
            why: why.to_string(),
        };
        if dirs.is_empty() {
            return Err(not_found("no iio device directory"));
        }
        let (mut names, mut power) = (Vec::new(), Vec::new());
        for d in &dirs {
            for k in 0..=2 {
                let label_path = d.join(format!("rail_name_{k}"));
                let p = d.join(format!("in_power{k}_input"));
                if !label_path.exists() || !p.exists() {
                    continue;
                }
                let label = read_label(&label_path)?;
                if label.is_empty() || label == "NC" {
                    continue;
                }
                names.push(label);
                power.push(p);
            }
        }
        if power.is_empty() {
            return Err(not_found("no rail_name_K with in_powerK_input"));
        }
        Ok(Self { dirs, names, power })
    }
}

impl PowerSource for Ina3221Iio {
    fn describe(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!("ina3221 iio: {}", dirs.join(", "))
    }

    fn rails(&self) -> &[String] {
        &self.names
    }

    fn read(&mut self, mw: &mut [f64]) -> Result<Option<f64>, PowerError> {
        for (p, out) in self.power.iter().zip(mw.iter_mut()) {
            *out = read_int(p)? as f64;
        }
        Ok(Some(super::board_total(&self.names, mw)))
    }
}
