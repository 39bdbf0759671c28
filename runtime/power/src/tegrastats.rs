//! Power rails from `tegrastats` output, for boards where sysfs is not
//! readable (containers) or to match what NVIDIA's tools report.
//!
//! Two line forms exist: JetPack 5/6 print `VDD_IN 5704mW/5704mW` (current /
//! running average), older releases `GPU 1155/1155` or `POM_5V_IN 1828/1828`
//! (mW without the unit). Memory figures look alike (`RAM 2461/7620MB`) but
//! carry a unit, which is how they are told apart.

use super::{PowerError, PowerSource};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The rails of one tegrastats line as (name, current mW), in line order.
pub fn parse_line(line: &str) -> Result<Vec<(String, f64)>, PowerError> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut rails = Vec::new();
    for w in tokens.windows(2) {
        let (name, value) = (w[0], w[1]);
        let is_name = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !is_name {
            continue;
        }
        if let Some(mw) = rail_value(value) {
            rails.push((name.to_string(), mw));
        }
    }
    if rails.is_empty() {
        return Err(PowerError::TegrastatsLine(
            line.chars().take(120).collect::<String>(),
        ));
    }
    Ok(rails)
}

/// `5704mW/5704mW` or `1155/1155` → the current value.
fn rail_value(v: &str) -> Option<f64> {
    let (cur, avg) = v.split_once('/')?;
    let unit = |s: &str| -> Option<(u64, bool)> {
        match s.strip_suffix("mW") {
            Some(n) => Some((n.parse().ok()?, true)),
            None => Some((s.parse().ok()?, false)),
        }
    };
    let ((c, cu), (_, au)) = (unit(cur)?, unit(avg)?);
    (cu == au).then_some(c as f64)
}

/// A `tegrastats` process (or any reader of its lines).
pub struct Tegrastats {
    child: Option<Child>,
    lines: Box<dyn BufRead + Send>,
    names: Vec<String>,
    /// The first line, parsed at open and returned by the first read.
    pending: Option<Vec<(String, f64)>>,
    line: String,
    what: String,
}

impl Tegrastats {
    /// Starts `tegrastats --interval <period>` and reads its first line.
    pub fn spawn(period: Duration) -> Result<Self, PowerError> {
        let ms = period.as_millis().max(1).to_string();
        let mut child = Command::new("tegrastats")
            .args(["--interval", &ms])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| PowerError::Tegrastats(format!("cannot start tegrastats: {e}")))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| PowerError::Tegrastats("no stdout".into()))?;
        let mut t = Self::from_reader(BufReader::new(out), format!("tegrastats --interval {ms}"))?;
        t.child = Some(child);
        Ok(t)
    }

    /// Reads lines from any source (a log of tegrastats output, a pipe).
    pub fn from_reader(
        lines: impl BufRead + Send + 'static,
        what: String,
    ) -> Result<Self, PowerError> {
        let mut t = Self {
            child: None,
            lines: Box::new(lines),
            names: Vec::new(),
            pending: None,
            line: String::new(),
            what,
        };
        let first = t.next_rails()?;
        t.names = first.iter().map(|(n, _)| n.clone()).collect();
        t.pending = Some(first);
        Ok(t)
    }

    fn next_rails(&mut self) -> Result<Vec<(String, f64)>, PowerError> {
        self.line.clear();
        let n = self
            .lines
            .read_line(&mut self.line)
            .map_err(|e| PowerError::Tegrastats(format!("reading {}: {e}", self.what)))?;
        if n == 0 {
            return Err(PowerError::Tegrastats(format!(
                "{} ended (no more lines)",
                self.what
            )));
        }
        parse_line(&self.line)
    }
}

impl Drop for Tegrastats {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl PowerSource for Tegrastats {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn rails(&self) -> &[String] {
        &self.names
    }

    fn read(&mut self, mw: &mut [f64]) -> Result<Option<f64>, PowerError> {
        let rails = match self.pending.take() {
            Some(r) => r,
            None => self.next_rails()?,
        };
        for (name, out) in self.names.iter().zip(mw.iter_mut()) {
            *out = match rails.iter().find(|(n, _)| n == name) {
                Some(r) => r.1,
                None => {
                    return Err(PowerError::Tegrastats(format!(
                        "{}: a line lacks rail {name}: {:?}",
                        self.what,
                        self.line.trim()
                    )))
                }
            };
        }
        Ok(Some(super::board_total(&self.names, mw)))
    }
}
