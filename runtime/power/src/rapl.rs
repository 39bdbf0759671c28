//! Intel (and AMD, same interface) RAPL energy counters through powercap:
//! `/sys/class/powercap/intel-rapl:<N>/{name,energy_uj,max_energy_range_uj}`.
//!
//! Only the top-level zones (packages, and psys where present) are read:
//! sub-zones (core, uncore) are already inside their package. The counters
//! are cumulative microjoules that wrap at `max_energy_range_uj`; power is the
//! difference between two reads over the time between them, so the first
//! read yields no value. Since Linux 5.10 `energy_uj` is readable by root
//! only, which `open` reports as such.

use super::{glob_dirs, read_int, read_label, PowerError, PowerSource};
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Zone {
    energy: PathBuf,
    range_uj: i64,
    last_uj: Option<i64>,
}

pub struct Rapl {
    dirs: Vec<PathBuf>,
    names: Vec<String>,
    zones: Vec<Zone>,
    last: Option<Instant>,
}

impl Rapl {
    pub const PATTERN: &'static str = "sys/class/powercap/intel-rapl:*";

    pub fn open(root: &Path) -> Result<Self, PowerError> {
        let dirs: Vec<PathBuf> = glob_dirs(root, Self::PATTERN)
            .into_iter()
            .filter(|d| {
                // intel-rapl:0 is a zone, intel-rapl:0:1 a sub-zone.
                d.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.matches(':').count() == 1)
            })
            .collect();
        if dirs.is_empty() {
            return Err(PowerError::NotFound {
                kind: "rapl",
                root: root.join(Self::PATTERN),
                why: "no powercap zone".into(),
            });
        }
        let (mut names, mut zones) = (Vec::new(), Vec::new());
        for d in &dirs {
            let energy = d.join("energy_uj");
            // Read once now: a permission error belongs at start-up.
            read_int(&energy)?;
            names.push(read_label(&d.join("name"))?);
            zones.push(Zone {
                energy,
                range_uj: read_int(&d.join("max_energy_range_uj"))?,
                last_uj: None,
            });
        }
        Ok(Self {
            dirs,
            names,
            zones,
            last: None,
        })
    }
}

/// Microjoules from `last` to `now` on a counter that wraps at `range`.
pub fn counter_delta(last: i64, now: i64, range: i64) -> i64 {
    if now >= last {
        now - last
    } else {
        range - last + now
    }
}

impl PowerSource for Rapl {
    fn describe(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!("rapl: {}", dirs.join(", "))
    }

    fn rails(&self) -> &[String] {
        &self.names
    }

    fn read(&mut self, mw: &mut [f64]) -> Result<Option<f64>, PowerError> {
        let now = Instant::now();
        let dt = self.last.map(|l| (now - l).as_secs_f64());
        let mut ready = true;
        for (z, out) in self.zones.iter_mut().zip(mw.iter_mut()) {
            let uj = read_int(&z.energy)?;
            match (z.last_uj, dt) {
                (Some(last), Some(dt)) if dt > 0.0 => {
                    // µJ / s = µW; / 1000 = mW.
                    *out = counter_delta(last, uj, z.range_uj) as f64 / dt / 1000.0;
                }
                _ => ready = false,
            }
            z.last_uj = Some(uj);
        }
        self.last = Some(now);
        Ok(ready.then(|| mw.iter().sum()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_wraps() {
        assert_eq!(super::counter_delta(100, 250, 1000), 150);
        assert_eq!(super::counter_delta(900, 50, 1000), 150);
    }
}
