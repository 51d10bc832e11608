//! A reader for NumPy's `.npy` format (versions 1 to 3): little-endian or byte-sized numeric and
//! bool arrays in C order. Floats become `f32`, integers and bools `i64`.

use super::CalibError;

/// An array read from a `.npy` file (or one member of a `.npz`).
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    /// The NumPy type string as written (`<f4`, `<i8`, `|b1`, ...).
    pub descr: String,
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl NdArray {
    pub fn len(&self) -> usize {
        match &self.data {
            ArrayData::Float(v) => v.len(),
            ArrayData::Int(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, ArrayData::Float(_))
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parse a whole `.npy` file. `what` names the array in errors (the file or the `.npz` member).
pub fn parse_npy(bytes: &[u8], what: &str) -> Result<NdArray, CalibError> {
    let bad = |message: String| CalibError::BadArray {
        what: what.to_string(),
        message,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy array (bad magic)".into()));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| bad("truncated header".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| bad("truncated header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let descr = dict_str(header, "descr").ok_or_else(|| bad("header has no 'descr'".into()))?;
    match dict_raw(header, "fortran_order") {
        Some(v) if v.starts_with("False") => {}
        Some(v) if v.starts_with("True") => {
            return Err(bad(
                "Fortran-order arrays are not supported (save a C-order array)".into(),
            ))
        }
        _ => return Err(bad("header has no 'fortran_order'".into())),
    }
    let shape = dict_shape(header).ok_or_else(|| bad("header has no valid 'shape'".into()))?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("shape overflows".into()))?;
    let body = &bytes[start + header_len..];
    let (order, kind, size) = split_descr(&descr).ok_or_else(|| {
        bad(format!(
            "unsupported dtype '{descr}' (expected float, integer or bool)"
        ))
    })?;
    if order == '>' && size > 1 {
        return Err(bad(format!(
            "big-endian dtype '{descr}' is not supported (save little-endian)"
        )));
    }
    let need = count
        .checked_mul(size)
        .ok_or_else(|| bad("shape overflows".into()))?;
    if body.len() < need {
        return Err(bad(format!(
            "data is truncated: shape {shape:?} of '{descr}' needs {need} bytes, file has {}",
            body.len()
        )));
    }
    let body = &body[..need];
    let data = match (kind, size) {
        ('f', 4) => ArrayData::Float(
            body.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        ('f', 8) => ArrayData::Float(
            body.chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
        ),
        ('f', 2) => ArrayData::Float(
            body.chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        ('i', _) | ('u', _) | ('b', 1) => {
            let signed = kind == 'i';
            ArrayData::Int(
                body.chunks_exact(size)
                    .map(|b| {
                        let mut v = [0u8; 8];
                        v[..size].copy_from_slice(b);
                        let fill = if signed && b[size - 1] & 0x80 != 0 {
                            0xff
                        } else {
                            0
                        };
                        v[size..].iter_mut().for_each(|x| *x = fill);
                        i64::from_le_bytes(v)
                    })
                    .collect(),
            )
        }
        _ => {
            return Err(bad(format!(
                "unsupported dtype '{descr}' (expected float, integer or bool)"
            )))
        }
    };
    Ok(NdArray { descr, shape, data })
}

/// `<f4` -> ('<', 'f', 4). Unsigned 64-bit integers are refused (they may not fit in i64).
fn split_descr(d: &str) -> Option<(char, char, usize)> {
    let mut it = d.chars();
    let order = it.next()?;
    let kind = it.next()?;
    let size: usize = it.as_str().parse().ok()?;
    if !matches!(order, '<' | '>' | '|' | '=') {
        return None;
    }
    let ok = match kind {
        'f' => matches!(size, 2 | 4 | 8),
        'i' => matches!(size, 1 | 2 | 4 | 8),
        'u' => matches!(size, 1 | 2 | 4),
        'b' => size == 1,
        _ => false,
    };
    ok.then_some((order, kind, size))
}

/// The text after `'key':` in a Python dict literal.
fn dict_raw<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}'");
    let at = header.find(&pat)? + pat.len();
    let rest = header[at..].trim_start().strip_prefix(':')?;
    Some(rest.trim_start())
}

fn dict_str(header: &str, key: &str) -> Option<String> {
    let rest = dict_raw(header, key)?;
    let q = rest.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let rest = &rest[1..];
    Some(rest[..rest.find(q)?].to_string())
}

fn dict_shape(header: &str) -> Option<Vec<usize>> {
    let rest = dict_raw(header, "shape")?.strip_prefix('(')?;
    let inner = &rest[..rest.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalize.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Serialize an `f32` array as a version-1 `.npy` file (tests and tools).
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    write_npy(shape, "<f4", data.iter().flat_map(|v| v.to_le_bytes()))
}

/// Serialize an `i64` array as a version-1 `.npy` file.
pub fn write_npy_i64(shape: &[usize], data: &[i64]) -> Vec<u8> {
    write_npy(shape, "<i8", data.iter().flat_map(|v| v.to_le_bytes()))
}

fn write_npy(shape: &[usize], descr: &str, body: impl Iterator<Item = u8>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32_and_i64() {
        let a = parse_npy(&write_npy_f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]), "a").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, ArrayData::Float(vec![1., 2., 3., 4., 5., 6.]));
        let b = parse_npy(&write_npy_i64(&[3], &[-1, 0, 7]), "b").unwrap();
        assert_eq!(b.shape, vec![3]);
        assert_eq!(b.data, ArrayData::Int(vec![-1, 0, 7]));
    }

    #[test]
    fn numpy_written_header() {
        // Exactly what numpy 1.x/2.x writes for np.save(f, np.array([[1, -2]], dtype=np.int16)).
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&[1, 0]);
        let mut h = "{'descr': '<i2', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        f.extend_from_slice(&(h.len() as u16).to_le_bytes());
        f.extend_from_slice(h.as_bytes());
        f.extend_from_slice(&1i16.to_le_bytes());
        f.extend_from_slice(&(-2i16).to_le_bytes());
        let a = parse_npy(&f, "x.npy").unwrap();
        assert_eq!(a.data, ArrayData::Int(vec![1, -2]));
        assert_eq!(a.shape, vec![1, 2]);
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn errors_name_the_array() {
        let e = parse_npy(b"hello world", "calib.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("calib.npy") && e.contains("magic"), "{e}");
        let mut f = write_npy_f32(&[4], &[1., 2., 3., 4.]);
        f.truncate(f.len() - 4);
        let e = parse_npy(&f, "x").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let f = write_npy(&[1], "<c8", [0u8; 8].into_iter());
        let e = parse_npy(&f, "x").unwrap_err().to_string();
        assert!(e.contains("unsupported dtype '<c8'"), "{e}");
        let f = write_npy(&[1], ">f4", [0u8; 4].into_iter());
        let e = parse_npy(&f, "x").unwrap_err().to_string();
        assert!(e.contains("big-endian"), "{e}");
    }
}
