//! `offramp recording FILE`: a flight record (`offramp run --record`) as
//! JSON lines or CSV, or converted to MCAP for Foxglove and other robotics
//! tools.

use offramp_runtime::exit_chain::MAX_EXITS;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
    #[arg(long)]
    csv: bool,
    /// Exits shown in CSV columns.
    #[arg(long, default_value_t = 4, value_parser = exit_count)]
    exits: usize,
    /// Write the record to this MCAP file instead (one JSON message per
    /// frame on `/offramp/frame`, with its JSON schema).
    #[arg(long, conflicts_with = "csv")]
    mcap: Option<PathBuf>,
}

fn exit_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_EXITS).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n}: between 1 and {MAX_EXITS}")),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

pub fn main(a: Args) -> anyhow::Result<()> {
    if let Some(out) = &a.mcap {
        let records = offramp_runtime::recorder::read(&a.file)?;
        offramp_report::mcap::write(&records, out)?;
        eprintln!("wrote {} frames to {}", records.len(), out.display());
        return Ok(());
    }
    show_recording(&a.file, a.csv, a.exits)
}

/// Prints a flight record as JSON lines or CSV.
pub fn show_recording(path: &Path, csv: bool, exits: usize) -> anyhow::Result<()> {
    let records = offramp_runtime::recorder::read(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if csv {
        offramp_runtime::recorder::to_csv(&records, exits, &mut out)?;
    } else {
        use std::io::Write;
        for r in &records {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
