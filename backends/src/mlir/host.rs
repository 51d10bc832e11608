//! Constants as host data: dtype, dims and little-endian bytes, with the layout changes the
//! emitter applies at emission time (weights are permuted to TOSA's layouts here, once, instead
//! of by transposes in the module).

use spa_ir::DType;
use std::borrow::Cow;

/// A constant tensor on the host. Bytes are borrowed from the model when untouched.
#[derive(Clone, Debug)]
pub(crate) struct HostTensor<'a> {
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub bytes: Cow<'a, [u8]>,
}

/// Size in bytes of one element, for the dtypes the emitter handles (whole bytes).
pub(crate) fn elem_size(dtype: DType) -> Option<usize> {
    match dtype.bits()? {
        b if b % 8 == 0 => Some(b as usize / 8),
        _ => None,
    }
}

fn numel(dims: &[i64]) -> usize {
    dims.iter().map(|&d| d.max(0) as usize).product()
}

impl<'a> HostTensor<'a> {
    pub fn numel(&self) -> usize {
        numel(&self.dims)
    }

    pub fn from_f32(dims: Vec<i64>, values: &[f32]) -> HostTensor<'static> {
        HostTensor {
            dtype: DType::F32,
            dims,
            bytes: Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    /// The same elements under other dims (a reshape: no data moves).
    pub fn reshaped(self, dims: Vec<i64>) -> HostTensor<'a> {
        HostTensor { dims, ..self }
    }

    /// Axes permuted: output axis `i` is input axis `perm[i]`. `None` when perm does not fit.
    pub fn permuted(&self, perm: &[usize]) -> Option<HostTensor<'static>> {
        let rank = self.dims.len();
        if perm.len() != rank || perm.iter().any(|&p| p >= rank) {
            return None;
        }
        let es = elem_size(self.dtype)?;
        let dims: Vec<usize> = self.dims.iter().map(|&d| d.max(0) as usize).collect();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * dims[i + 1];
        }
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let n = numel(&self.dims);
        if self.bytes.len() != n * es {
            return None;
        }
        let mut out = Vec::with_capacity(n * es);
        if rank == 0 || n == 0 {
            out.extend_from_slice(&self.bytes);
        } else {
            // Odometer over the output with the source offset kept incrementally; the innermost
            // output axis is a strided copy.
            let inner = out_dims[rank - 1];
            let inner_stride = strides[rank - 1] * es;
            let mut idx = vec![0usize; rank - 1];
            let mut base = 0usize;
            for _ in 0..n / inner.max(1) {
                let mut off = base * es;
                for _ in 0..inner {
                    out.extend_from_slice(&self.bytes[off..off + es]);
                    off += inner_stride;
                }
                for ax in (0..rank - 1).rev() {
                    idx[ax] += 1;
                    base += strides[ax];
                    if idx[ax] < out_dims[ax] {
                        break;
                    }
                    base -= strides[ax] * out_dims[ax];
                    idx[ax] = 0;
                }
            }
        }
        Some(HostTensor {
            dtype: self.dtype,
            dims: out_dims.iter().map(|&d| d as i64).collect(),
            bytes: Cow::Owned(out),
        })
    }

    /// `len` entries from `start` along `axis`.
    pub fn sliced(&self, axis: usize, start: usize, len: usize) -> Option<HostTensor<'static>> {
        let es = elem_size(self.dtype)?;
        let dims: Vec<usize> = self.dims.iter().map(|&d| d.max(0) as usize).collect();
        let d = *dims.get(axis)?;
        if start + len > d {
            return None;
        }
        let outer: usize = dims[..axis].iter().product();
        let inner: usize = dims[axis + 1..].iter().product::<usize>() * es;
        if self.bytes.len() != outer * d * inner {
            return None;
        }
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = (o * d + start) * inner;
            out.extend_from_slice(&self.bytes[base..base + len * inner]);
        }
        let mut new_dims = self.dims.clone();
        new_dims[axis] = len as i64;
        Some(HostTensor {
            dtype: self.dtype,
            dims: new_dims,
            bytes: Cow::Owned(out),
        })
    }

    /// Elements as f32 (floats and integers).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let b = &self.bytes;
        Some(match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::Bf16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => self.to_i64()?.into_iter().map(|v| v as f32).collect(),
        })
    }

    /// Elements as i64 (integers and bools).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        let b = &self.bytes;
        Some(match self.dtype {
            DType::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            DType::U64 => b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i64)
                .collect(),
            DType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            DType::U32 => b
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            DType::I16 => b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            DType::U16 => b
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Converted to another dtype (f32, f16, f64, bf16, i8..i64, bool), as a cast would.
    pub fn cast(&self, to: DType) -> Option<HostTensor<'static>> {
        let bytes: Vec<u8> = if to.is_float() {
            let v = self.to_f32_exact()?;
            match to {
                DType::F32 => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
                DType::F64 => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
                DType::F16 => v
                    .iter()
                    .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
                    .collect(),
                DType::Bf16 => v
                    .iter()
                    .flat_map(|&x| half::bf16::from_f64(x).to_le_bytes())
                    .collect(),
                _ => return None,
            }
        } else {
            let v: Vec<i64> = if self.dtype.is_float() {
                self.to_f32_exact()?.iter().map(|&x| x as i64).collect()
            } else {
                self.to_i64()?
            };
            match to {
                DType::I64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                DType::I32 => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
                DType::I16 => v.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect(),
                DType::I8 => v.iter().map(|&x| x as i8 as u8).collect(),
                DType::Bool => v.iter().map(|&x| u8::from(x != 0)).collect(),
                _ => return None,
            }
        };
        Some(HostTensor {
            dtype: to,
            dims: self.dims.clone(),
            bytes: Cow::Owned(bytes),
        })
    }

    /// Elements as f64 without going through f32 (so i64 and f64 constants keep precision).
    fn to_f32_exact(&self) -> Option<Vec<f64>> {
        match self.dtype {
            DType::F64 => Some(
                self.bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            d if d.is_float() => Some(self.to_f32()?.into_iter().map(f64::from).collect()),
            DType::U64 => Some(
                self.bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64)
                    .collect(),
            ),
            _ => Some(self.to_i64()?.into_iter().map(|x| x as f64).collect()),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Append `bytes` as upper-case hex.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut buf = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        buf.push(HEX[(b >> 4) as usize]);
        buf.push(HEX[(b & 15) as usize]);
    }
    // Hex digits are ASCII.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// A float literal MLIR parses back to the same value: always with a '.', never `inf`/`nan`
/// (those are the caller's to write as hex).
pub(crate) fn float_literal(v: f64) -> String {
    with_point(format!("{v:?}"))
}

/// [`float_literal`] for an f32 (its own shortest form, not that of the widened f64).
pub(crate) fn f32_literal(v: f32) -> String {
    with_point(format!("{v:?}"))
}

fn with_point(s: String) -> String {
    if s.contains('.') || s.contains("inf") || s.contains("NaN") {
        return s;
    }
    match s.find('e') {
        Some(i) => format!("{}.0{}", &s[..i], &s[i..]),
        None => format!("{s}.0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_and_slice_move_the_right_elements() {
        let t = HostTensor::from_f32(vec![2, 3], &[0., 1., 2., 3., 4., 5.]);
        let p = t.permuted(&[1, 0]).unwrap();
        assert_eq!(p.dims, vec![3, 2]);
        assert_eq!(p.to_f32().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
        let s = t.sliced(1, 1, 2).unwrap();
        assert_eq!(s.to_f32().unwrap(), vec![1., 2., 4., 5.]);
    }

    #[test]
    fn float_literals_always_have_a_point() {
        assert_eq!(float_literal(1.0), "1.0");
        assert_eq!(float_literal(1e-5), "1.0e-5");
        assert_eq!(float_literal(0.25), "0.25");
        assert_eq!(float_literal(1e20), "1.0e20");
    }
}
