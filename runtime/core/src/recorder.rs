//! The flight recorder: one fixed-size binary record per frame, appended in
//! batches of [`BATCH`] records. Each full batch goes to the OS in one
//! `write` and is flushed, so a killed process loses at most the batch in
//! progress; the file is always a header plus whole records.
//!
//! Layout (little-endian): the 16-byte header `OFFRAMP-REC` `\0`, u16 format
//! version, u16 record size; then records of [`RECORD_BYTES`]:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | frame index (u64) |
//! | 8 | frame time, ns since the recorder started (u64) |
//! | 1 | exit taken (u8) |
//! | 1 | exits run (u8) |
//! | 1 | flags: 1 non-finite, 2 stopped, 4 deadline cut, 8 deadline missed, 16 action from a server (offload), 32 offload fell back to the robot |
//! | 1 | reserved |
//! | 4 | frame latency, µs (f32) |
//! | 4 × 16 | per-exit delta (f32, NaN when not computed) |
//! | 4 × 16 | per-exit latency, µs (f32) |
//! | 4 × 4 | action (f32; unused dims 0) |
//! | 2 | a cache head's entries after the frame (u16; 0 without a cache) |
//! | 2 | entries the frame's commit evicted (u16) |
//!
//! Version 1 files (without the last two fields) are read too, with 0 there.

use crate::exit_chain::{FrameOutcome, MAX_EXITS};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 12] = b"OFFRAMP-REC\0";
pub const VERSION: u16 = 2;
pub const ACTION_DIMS: usize = 4;
/// A version 1 record: the same without the cache fields.
const V1_BYTES: usize = 8 + 8 + 4 + 4 + 4 * MAX_EXITS * 2 + 4 * ACTION_DIMS;
pub const RECORD_BYTES: usize = V1_BYTES + 4;
pub const BATCH: usize = 64;

pub const FLAG_NONFINITE: u8 = 1;
pub const FLAG_STOPPED: u8 = 2;
pub const FLAG_DEADLINE_CUT: u8 = 4;
pub const FLAG_DEADLINE_MISSED: u8 = 8;
pub const FLAG_REMOTE: u8 = 16;
pub const FLAG_FALLBACK: u8 = 32;

/// One frame, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Record {
    pub frame: u64,
    pub time_ns: u64,
    pub exit: u8,
    pub ran: u8,
    pub flags: u8,
    pub latency_us: f32,
    #[serde(serialize_with = "ser_slice")]
    pub deltas: [f32; MAX_EXITS],
    #[serde(serialize_with = "ser_slice")]
    pub exit_latency_us: [f32; MAX_EXITS],
    pub action: [f32; ACTION_DIMS],
    /// A cache head's entries after the frame, and those its commit evicted.
    pub cache_entries: u16,
    pub cache_evicted: u16,
}

fn ser_slice<S: serde::Serializer>(v: &[f32; MAX_EXITS], s: S) -> Result<S::Ok, S::Error> {
    // NaN is not JSON: write null for "not computed".
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for x in v {
        if x.is_finite() {
            seq.serialize_element(x)?;
        } else {
            seq.serialize_element(&Option::<f32>::None)?;
        }
    }
    seq.end()
}

impl Record {
    pub fn from_outcome(
        frame: u64,
        time_ns: u64,
        o: &FrameOutcome,
        latency_us: f32,
        missed: bool,
        action: &[f32],
    ) -> Self {
        let mut flags = 0;
        if o.nonfinite {
            flags |= FLAG_NONFINITE;
        }
        if o.stopped {
            flags |= FLAG_STOPPED;
        }
        if o.deadline_cut {
            flags |= FLAG_DEADLINE_CUT;
        }
        if missed {
            flags |= FLAG_DEADLINE_MISSED;
        }
        if o.remote {
            flags |= FLAG_REMOTE;
        }
        if o.fallback {
            flags |= FLAG_FALLBACK;
        }
        let mut a = [0.0; ACTION_DIMS];
        for (d, s) in a.iter_mut().zip(action) {
            *d = *s;
        }
        Self {
            frame,
            time_ns,
            exit: o.exit as u8,
            ran: o.ran as u8,
            flags,
            latency_us,
            deltas: o.deltas,
            exit_latency_us: std::array::from_fn(|i| o.exit_seconds[i] * 1e6),
            action: a,
            cache_entries: o.cache_entries.min(u16::MAX as u32) as u16,
            cache_evicted: o.cache_evicted.min(u16::MAX as u32) as u16,
        }
    }

    fn encode(&self, out: &mut [u8]) {
        let mut w = 0;
        let mut put = |b: &[u8]| {
            out[w..w + b.len()].copy_from_slice(b);
            w += b.len();
        };
        put(&self.frame.to_le_bytes());
        put(&self.time_ns.to_le_bytes());
        put(&[self.exit, self.ran, self.flags, 0]);
        put(&self.latency_us.to_le_bytes());
        for x in self
            .deltas
            .iter()
            .chain(&self.exit_latency_us)
            .chain(&self.action)
        {
            put(&x.to_le_bytes());
        }
        put(&self.cache_entries.to_le_bytes());
        put(&self.cache_evicted.to_le_bytes());
    }

    /// A record of `b.len()` bytes: [`RECORD_BYTES`], or [`V1_BYTES`]
    /// (no cache fields).
    fn decode(b: &[u8]) -> Self {
        let u16_at = |o: usize| {
            b.get(o..o + 2)
                .map_or(0, |x| u16::from_le_bytes([x[0], x[1]]))
        };
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let f32_at = |o: usize| f32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let base = 24;
        Self {
            frame: u64_at(0),
            time_ns: u64_at(8),
            exit: b[16],
            ran: b[17],
            flags: b[18],
            latency_us: f32_at(20),
            deltas: std::array::from_fn(|i| f32_at(base + 4 * i)),
            exit_latency_us: std::array::from_fn(|i| f32_at(base + 4 * (MAX_EXITS + i))),
            action: std::array::from_fn(|i| f32_at(base + 4 * (2 * MAX_EXITS + i))),
            cache_entries: u16_at(V1_BYTES),
            cache_evicted: u16_at(V1_BYTES + 2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not an offramp flight record ({why})")]
    Format { path: PathBuf, why: String },
}

/// Appends records; the batch buffer is allocated once.
pub struct Recorder {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    pending: usize,
    pub written: u64,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Self, RecorderError> {
        let io = |source| RecorderError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::create(path).map_err(io)?;
        let mut header = [0u8; 16];
        header[..12].copy_from_slice(MAGIC);
        header[12..14].copy_from_slice(&VERSION.to_le_bytes());
        header[14..16].copy_from_slice(&(RECORD_BYTES as u16).to_le_bytes());
        file.write_all(&header).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            buf: vec![0; RECORD_BYTES * BATCH],
            pending: 0,
            written: 0,
        })
    }

    /// Adds a record; writes the batch when it is full.
    pub fn push(&mut self, r: &Record) -> Result<(), RecorderError> {
        let at = self.pending * RECORD_BYTES;
        r.encode(&mut self.buf[at..at + RECORD_BYTES]);
        self.pending += 1;
        if self.pending == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the records in progress (also on drop).
    pub fn flush(&mut self) -> Result<(), RecorderError> {
        if self.pending == 0 {
            return Ok(());
        }
        let n = self.pending * RECORD_BYTES;
        self.file
            .write_all(&self.buf[..n])
            .and_then(|_| self.file.flush())
            .map_err(|source| RecorderError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.written += self.pending as u64;
        self.pending = 0;
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!("flight recorder: {e}");
        }
    }
}

/// Reads every whole record of a flight-record file. A torn last record
/// (impossible with whole-batch writes, but a copied file may be cut) is
/// reported and skipped.
pub fn read(path: &Path) -> Result<Vec<Record>, RecorderError> {
    let f = File::open(path).map_err(|source| RecorderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_from(io::BufReader::new(f), path)
}

/// [`read`] from any reader; `path` names it in errors.
pub fn read_from(mut f: impl BufRead, path: &Path) -> Result<Vec<Record>, RecorderError> {
    let io = |source| RecorderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = [0u8; 16];
    f.read_exact(&mut header)
        .map_err(|_| RecorderError::Format {
            path: path.to_path_buf(),
            why: "shorter than its header".into(),
        })?;
    if &header[..12] != MAGIC {
        return Err(RecorderError::Format {
            path: path.to_path_buf(),
            why: "bad magic".into(),
        });
    }
    let version = u16::from_le_bytes([header[12], header[13]]);
    let size = u16::from_le_bytes([header[14], header[15]]) as usize;
    if (version, size) != (VERSION, RECORD_BYTES) && (version, size) != (1, V1_BYTES) {
        return Err(RecorderError::Format {
            path: path.to_path_buf(),
            why: format!(
                "format version {version} with {size}-byte records; this offramp reads version {VERSION} ({RECORD_BYTES} bytes) and 1 ({V1_BYTES})"
            ),
        });
    }
    let mut out = Vec::new();
    let mut rec = vec![0u8; size];
    loop {
        let got = read_full(&mut f, &mut rec).map_err(io)?;
        if got == 0 {
            break;
        }
        if got < size {
            tracing::warn!(
                "{}: last record is torn ({got} of {size} bytes), skipped",
                path.display()
            );
            break;
        }
        out.push(Record::decode(&rec));
    }
    Ok(out)
}

fn read_full(f: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// CSV with one row per frame (deltas and latencies of exits 1..=exits).
pub fn to_csv(records: &[Record], exits: usize, out: &mut impl Write) -> io::Result<()> {
    write!(
        out,
        "frame,time_ns,exit,ran,nonfinite,stopped,deadline_cut,deadline_missed,latency_us"
    )?;
    for i in 0..exits {
        write!(out, ",delta{},latency{}_us", i + 1, i + 1)?;
    }
    writeln!(out, ",v,omega,cache_entries,cache_evicted")?;
    for r in records {
        write!(
            out,
            "{},{},{},{},{},{},{},{},{:.1}",
            r.frame,
            r.time_ns,
            r.exit + 1,
            r.ran,
            (r.flags & FLAG_NONFINITE != 0) as u8,
            (r.flags & FLAG_STOPPED != 0) as u8,
            (r.flags & FLAG_DEADLINE_CUT != 0) as u8,
            (r.flags & FLAG_DEADLINE_MISSED != 0) as u8,
            r.latency_us
        )?;
        for i in 0..exits {
            let d = r.deltas[i];
            if d.is_finite() {
                write!(out, ",{d:.6}")?;
            } else {
                write!(out, ",")?;
            }
            write!(out, ",{:.1}", r.exit_latency_us[i])?;
        }
        writeln!(
            out,
            ",{:.5},{:.5},{},{}",
            r.action[0], r.action[1], r.cache_entries, r.cache_evicted
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(i: usize) -> FrameOutcome {
        let mut deltas = [f32::NAN; MAX_EXITS];
        deltas[0] = i as f32 * 0.01;
        FrameOutcome {
            exit: i % 4,
            ran: i % 4 + 1,
            deltas,
            scores: deltas,
            exit_seconds: [1e-4; MAX_EXITS],
            device_seconds: [f32::NAN; MAX_EXITS],
            nonfinite: i % 7 == 0,
            stopped: false,
            heads: 2,
            deadline_cut: i % 5 == 0,
            remote: false,
            remote_ran: 0,
            remote_heads: 0,
            fallback: false,
            cache_entries: (i % 10) as u32,
            cache_evicted: (i % 2) as u32,
        }
    }

    #[test]
    fn round_trip_and_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.rec");
        let mut r = Recorder::create(&p).unwrap();
        for i in 0..100u64 {
            let rec = Record::from_outcome(
                i,
                i * 1000,
                &outcome(i as usize),
                250.0,
                false,
                &[0.1, -0.2],
            );
            r.push(&rec).unwrap();
        }
        // Before the second batch is flushed, the file holds exactly one.
        assert_eq!(read(&p).unwrap().len(), BATCH);
        drop(r);
        let all = read(&p).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all[42].frame, 42);
        assert_eq!(all[42].exit as usize, 42 % 4);
        assert_eq!(all[40].flags & FLAG_DEADLINE_CUT, FLAG_DEADLINE_CUT);
        assert!((all[42].deltas[0] - 0.42).abs() < 1e-6);
        assert!(all[42].deltas[1].is_nan());
        assert_eq!(all[3].action[1], -0.2);
        assert_eq!((all[43].cache_entries, all[43].cache_evicted), (3, 1));
        let mut csv = Vec::new();
        to_csv(&all, 4, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(text.lines().count(), 101);
        assert!(text
            .lines()
            .next()
            .unwrap()
            .starts_with("frame,time_ns,exit"));
    }

    #[test]
    fn foreign_and_torn_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.rec");
        std::fs::write(&p, b"hello").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.rec") && e.contains("shorter than its header"),
            "{e}"
        );
        std::fs::write(&p, [0u8; 40]).unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("bad magic"));
        let mut r = Recorder::create(&p).unwrap();
        r.push(&Record::from_outcome(0, 0, &outcome(1), 1.0, false, &[]))
            .unwrap();
        drop(r);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read(&p).unwrap().len(), 0);
    }

    /// A version 1 file (records without the cache fields) still reads,
    /// its cache fields 0; another version is refused naming both.
    #[test]
    fn version_1_records_read_without_cache_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.rec");
        let rec = Record::from_outcome(7, 9, &outcome(3), 1.5, true, &[0.25, 0.5]);
        let mut bytes = [0u8; RECORD_BYTES];
        rec.encode(&mut bytes);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&(V1_BYTES as u16).to_le_bytes());
        file.extend_from_slice(&bytes[..V1_BYTES]);
        file.extend_from_slice(&bytes[..V1_BYTES]);
        std::fs::write(&p, &file).unwrap();
        let all = read(&p).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[1].frame, all[1].action[1]), (7, 0.5));
        assert_eq!((all[1].cache_entries, all[1].cache_evicted), (0, 0));
        file[12] = 3;
        std::fs::write(&p, &file).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("version 3") && e.contains("reads version 2"),
            "{e}"
        );
    }
}
