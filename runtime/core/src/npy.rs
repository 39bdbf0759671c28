//! Writes NumPy `.npy` files (format 1.0), which Python reads with
//! `numpy.load` and nothing else installed.

use std::io::{self, Write};

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

/// Encodes `data` with `shape` (C order) as a complete `.npy` file.
pub fn encode<T: Element>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy shape");
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_txt
    );
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &x in data {
        x.write_le(&mut out);
    }
    out
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
    if data.len() != need {
        return Err(format!(
            "shape {shape:?} needs {need} bytes of data, the file has {}",
            data.len()
        ));
    }
    Ok((shape, data.chunks_exact(T::SIZE).map(T::read_le).collect()))
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
        let one = encode(&[3], &[1u8, 2, 3]);
        assert!(
            std::str::from_utf8(&one[10..])
                .unwrap_or("")
                .contains("(3,)")
                || one.windows(4).any(|w| w == b"(3,)")
        );
    }
}
