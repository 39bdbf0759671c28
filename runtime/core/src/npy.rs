//! Writes NumPy `.npy` files (format 1.0), which Python reads with
//! `numpy.load` and nothing else installed: whole ([`write`]) or row by row
//! as a recording goes ([`Appender`]), readable at every moment.

use std::io::{self, Write};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;

/// Element types the recorder writes and reads.
pub trait Element: Copy {
    const DESCR: &'static str;
    const SIZE: usize;
    fn write_le(self, out: &mut Vec<u8>);
    fn read_le(b: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $d:literal) => {
        impl Element for $t {
            const DESCR: &'static str = $d;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
        }
    };
}
element!(u8, "|u1");
element!(i32, "<i4");
element!(i64, "<i8");
element!(f32, "<f4");

/// The header (magic, version, length, dict, padding, newline) for
/// `shape`, padded to a multiple of 64 bytes and to at least `min_len`.
fn header<T: Element>(shape: &[usize], min_len: usize) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_txt
    );
    // Magic (6) + version (2) + length (2) + dict + '\n', padded to 64.
    let mut total = 10 + dict.len() + 1;
    total = total.max(min_len);
    total += (64 - total % 64) % 64;
    let pad = total - 10 - dict.len() - 1;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Encodes `data` with `shape` (C order) as a complete `.npy` file.
pub fn encode<T: Element>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy shape");
    let mut out = header::<T>(shape, 0);
    out.reserve_exact(data.len() * T::SIZE);
    for &x in data {
        x.write_le(&mut out);
    }
    out
}

/// An `.npy` file written one row (the first axis) at a time. After every
/// row the header is rewritten with the row count, so the file holds every
/// whole row written so far whenever it is read: after Ctrl-C, a crash or a
/// camera fault nothing recorded is lost. A row being appended when the
/// writer stopped may trail the rows the header counts; [`decode`] ignores
/// up to one such row.
pub struct Appender<T: Element> {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// The shape of one row (the axes after the first).
    row_shape: Vec<usize>,
    row_len: usize,
    rows: usize,
    header_len: usize,
    /// One row encoded, reused.
    scratch: Vec<u8>,
    _t: PhantomData<T>,
}

impl<T: Element> Appender<T> {
    /// Creates `path` (which must not exist) holding no rows of
    /// `row_shape`.
    pub fn create(path: &std::path::Path, row_shape: &[usize]) -> io::Result<Self> {
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let row_len = row_shape.iter().product::<usize>();
        // Room for the largest row count, so the header never grows.
        let widest: Vec<usize> = std::iter::once(usize::MAX)
            .chain(row_shape.iter().copied())
            .collect();
        let header_len = header::<T>(&widest, 0).len();
        let mut a = Self {
            file,
            path: path.to_path_buf(),
            row_shape: row_shape.to_vec(),
            row_len,
            rows: 0,
            header_len,
            scratch: Vec::with_capacity(row_len * T::SIZE),
            _t: PhantomData,
        };
        a.commit()?;
        Ok(a)
    }

    /// Appends one row (`row_len` elements) and counts it in the header.
    pub fn push(&mut self, row: &[T]) -> io::Result<()> {
        if row.len() != self.row_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a row of {:?} is {} values, got {}",
                    self.path.display(),
                    self.row_shape,
                    self.row_len,
                    row.len()
                ),
            ));
        }
        self.scratch.clear();
        for &x in row {
            x.write_le(&mut self.scratch);
        }
        let at = self.header_len + self.rows * self.row_len * T::SIZE;
        self.file
            .write_all_at(&self.scratch, at as u64)
            .map_err(|e| self.error(e))?;
        self.rows += 1;
        self.commit()
    }

    /// Rows written.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the header for the rows written so far.
    fn commit(&mut self) -> io::Result<()> {
        let shape: Vec<usize> = std::iter::once(self.rows)
            .chain(self.row_shape.iter().copied())
            .collect();
        let h = header::<T>(&shape, self.header_len);
        debug_assert_eq!(h.len(), self.header_len);
        self.file.write_all_at(&h, 0).map_err(|e| self.error(e))
    }

    /// Flushes everything to the disk.
    pub fn finish(self) -> io::Result<()> {
        self.file.sync_all().map_err(|e| self.error(e))
    }

    fn error(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }
}

/// Decodes a `.npy` file of element type `T` (C order); returns the shape
/// and the data, or what is wrong with it.
pub fn decode<T: Element>(bytes: &[u8]) -> Result<(Vec<usize>, Vec<T>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated header")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").ok_or("header has no descr")?;
    if !descr.starts_with(&format!("'{}'", T::DESCR)) {
        return Err(format!(
            "element type is {}, expected '{}'",
            descr.split(',').next().unwrap_or(""),
            T::DESCR
        ));
    }
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("Fortran order is not supported".into());
    }
    let shape_txt = field("shape").ok_or("header has no shape")?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .map(|(inner, _)| inner)
        .ok_or_else(|| {
            let head: String = shape_txt.chars().take(24).collect();
            format!("malformed shape {head:?}")
        })?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("malformed shape {s:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Checked: a crafted shape must not wrap around to a small size.
    let need = shape
        .iter()
        .try_fold(T::SIZE, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let data = &bytes[start + hlen..];
    // Up to one row past the count: the row an [`Appender`] was writing
    // when it stopped.
    // Checked too: with a zero first dimension `need` is 0 whatever the
    // others are, and their product may not fit.
    let row = shape
        .get(1..)
        .unwrap_or_default()
        .iter()
        .try_fold(T::SIZE, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if data.len() < need || data.len() - need > row {
        return Err(format!(
            "shape {shape:?} needs {need} bytes of data, the file has {}",
            data.len()
        ));
    }
    Ok((
        shape,
        data[..need].chunks_exact(T::SIZE).map(T::read_le).collect(),
    ))
}

/// Reads a `.npy` file; errors name the file.
pub fn read<T: Element>(path: &std::path::Path) -> io::Result<(Vec<usize>, Vec<T>)> {
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    decode(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

pub fn write<T: Element>(path: &std::path::Path, shape: &[usize], data: &[T]) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&encode(shape, data))?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parsable() {
        let b = encode(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let h = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(h.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        let (shape, back) = decode::<f32>(&b).unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(back, vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(decode::<i64>(&b).unwrap_err().contains("expected '<i8'"));
        assert!(decode::<f32>(&b[..b.len() - 1])
            .unwrap_err()
            .contains("needs 24 bytes"));
        assert!(decode::<f32>(b"garbage!!!!").unwrap_err().contains("magic"));
        // Malformed or crafted headers are errors, never panics or a shape
        // whose byte count wraps around.
        let raw = |header: &str, data: &[u8]| {
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(data);
            b
        };
        let e = decode::<u8>(&raw("{'descr': '|u1', 'shape': ), }", &[])).unwrap_err();
        assert!(e.contains("malformed shape"), "{e}");
        let e = decode::<u8>(&raw("{'descr': '|u1', 'shape': é), }", &[])).unwrap_err();
        assert!(e.contains("malformed shape"), "{e}");
        let big = format!("{{'descr': '<f4', 'shape': ({}, 4), }}", 1usize << 62);
        let e = decode::<f32>(&raw(&big, &[])).unwrap_err();
        assert!(e.contains("is too large"), "{e}");
        // No rows, but rows too large to count (found by fuzzing: the row
        // size overflowed while the total was 0).
        let empty = format!(
            "{{'descr': '|u1', 'shape': (0, {}, {}), }}",
            1usize << 40,
            1usize << 40
        );
        let e = decode::<u8>(&raw(&empty, &[])).unwrap_err();
        assert!(e.contains("is too large"), "{e}");
        // More than a row past the count is not a file an appender left.
        let mut long = b.clone();
        long.extend_from_slice(&[0u8; 13]);
        assert!(decode::<f32>(&long).unwrap_err().contains("needs 24 bytes"));
        let one = encode(&[3], &[1u8, 2, 3]);
        assert!(
            std::str::from_utf8(&one[10..])
                .unwrap_or("")
                .contains("(3,)")
                || one.windows(4).any(|w| w == b"(3,)")
        );
    }

    /// Written row by row, the file reads back whole at every moment, and
    /// a row half written when the writer stopped is ignored.
    #[test]
    fn an_appended_file_is_readable_after_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.npy");
        let mut a = Appender::<u8>::create(&path, &[2, 3]).unwrap();
        assert_eq!(read::<u8>(&path).unwrap(), (vec![0, 2, 3], vec![]));
        for k in 0..3u8 {
            a.push(&[k; 6]).unwrap();
            let (shape, data) = read::<u8>(&path).unwrap();
            assert_eq!(shape, vec![k as usize + 1, 2, 3]);
            assert_eq!(data.len(), 6 * (k as usize + 1));
        }
        assert!(a
            .push(&[0; 5])
            .unwrap_err()
            .to_string()
            .contains("6 values, got 5"));
        // A crash while the fourth row was written: half of it on disk.
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        let end = std::fs::metadata(&path).unwrap().len();
        f.write_all_at(&[9; 3], end).unwrap();
        let (shape, data) = read::<u8>(&path).unwrap();
        assert_eq!((shape, data.len()), (vec![3, 2, 3], 18));
        assert!(
            Appender::<u8>::create(&path, &[2, 3]).is_err(),
            "never overwrites"
        );
        let ints = dir.path().join("i.npy");
        let mut a = Appender::<i64>::create(&ints, &[]).unwrap();
        a.push(&[-5]).unwrap();
        a.finish().unwrap();
        assert_eq!(read::<i64>(&ints).unwrap(), (vec![1], vec![-5]));
    }
}
