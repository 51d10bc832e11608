//! Tensors keep their dtype and their exact bytes, in the storage form they came in (ONNX
//! `raw_data`, one of the typed repeated fields, or external data), so that a weight no pass touches
//! is written back byte-identical. Bytes are `bytes::Bytes`: slices of a memory-mapped file are
//! shared, never copied. An ndarray/`Vec` view is made only where math is done.

use crate::dtype::DType;
use crate::error::IrError;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Where a tensor's elements live, mirroring the fields of ONNX `TensorProto`.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `raw_data`: little-endian packed elements.
    Raw(Bytes),
    /// `float_data` (f32; complex64 as pairs).
    Floats(Vec<f32>),
    /// `int32_data` (i32 and every narrower type: i8/u8/i16/u16/bool, f16/bf16/f8 bit patterns,
    /// packed 4-bit pairs).
    Int32s(Vec<i32>),
    /// `int64_data`.
    Int64s(Vec<i64>),
    /// `double_data` (f64; complex128 as pairs).
    Doubles(Vec<f64>),
    /// `uint64_data` (u32, u64).
    Uint64s(Vec<u64>),
    /// `string_data`.
    Strings(Vec<Bytes>),
    /// `data_location = EXTERNAL`: the key/value entries as written, and the bytes they point at
    /// (a slice of a memory-mapped file).
    External(ExternalData),
}

/// Tensor data stored in a separate file.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalData {
    /// `external_data` entries in their original order (`location`, `offset`, `length`, `checksum`).
    pub entries: Vec<(String, String)>,
    pub bytes: Bytes,
}

impl ExternalData {
    pub fn location(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| v.as_str())
    }
}

/// A constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// `TensorProto.name` (for initializers this equals the value's name).
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub data: TensorData,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
}

impl Tensor {
    /// A tensor whose data is little-endian `raw_data`.
    pub fn from_raw(dtype: DType, dims: Vec<i64>, raw: Bytes) -> Tensor {
        Tensor {
            name: String::new(),
            dtype,
            dims,
            data: TensorData::Raw(raw),
            doc_string: String::new(),
            metadata_props: Vec::new(),
        }
    }

    pub fn from_f32(dims: Vec<i64>, values: &[f32]) -> Tensor {
        let mut raw = Vec::with_capacity(values.len() * 4);
        for v in values {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        Tensor::from_raw(DType::F32, dims, Bytes::from(raw))
    }

    pub fn from_i64(dims: Vec<i64>, values: &[i64]) -> Tensor {
        let mut raw = Vec::with_capacity(values.len() * 8);
        for v in values {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        Tensor::from_raw(DType::I64, dims, Bytes::from(raw))
    }

    /// Number of elements (product of dims; 1 for a scalar). `None` on a negative dim or overflow.
    pub fn num_elements(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |acc, &d| {
            u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
    }

    /// Is the data in an external file?
    pub fn is_external(&self) -> bool {
        matches!(self.data, TensorData::External(_))
    }

    /// Size in bytes of the little-endian packed data (what `raw_data` would hold).
    pub fn byte_len(&self) -> u64 {
        match &self.data {
            TensorData::Raw(b) => b.len() as u64,
            TensorData::External(e) => e.bytes.len() as u64,
            TensorData::Strings(s) => s.iter().map(|b| b.len() as u64).sum(),
            _ => self
                .num_elements()
                .and_then(|n| self.dtype.raw_len(n))
                .unwrap_or(0),
        }
    }

    /// Check that the stored data holds exactly as many elements as the dims say.
    pub fn validate(&self) -> Result<(), IrError> {
        let n = self.num_elements().ok_or_else(|| IrError::BadTensor {
            name: self.name.clone(),
            reason: format!("invalid dims {:?}", self.dims),
        })?;
        let bad = |reason: String| {
            Err(IrError::BadTensor {
                name: self.name.clone(),
                reason,
            })
        };
        let expect_bytes = self.dtype.raw_len(n);
        match &self.data {
            TensorData::Raw(b) | TensorData::External(ExternalData { bytes: b, .. }) => {
                if self.dtype == DType::Str {
                    return bad("string tensors cannot use raw_data".into());
                }
                if Some(b.len() as u64) != expect_bytes {
                    return bad(format!(
                        "{} data bytes for {} elements of {} (expected {})",
                        b.len(),
                        n,
                        self.dtype,
                        expect_bytes.unwrap_or(0)
                    ));
                }
            }
            TensorData::Strings(s) => {
                if s.len() as u64 != n {
                    return bad(format!("{} strings for {} elements", s.len(), n));
                }
            }
            other => {
                let (len, per) = typed_len(other, self.dtype);
                if Some(len) != typed_count(self.dtype, n).checked_mul(per) {
                    return bad(format!(
                        "{} typed values for {} elements of {}",
                        len, n, self.dtype
                    ));
                }
            }
        }
        Ok(())
    }

    /// The little-endian packed bytes of the data, borrowed when stored raw or external.
    pub fn raw_bytes(&self) -> Result<Cow<'_, [u8]>, IrError> {
        let wrong = || IrError::BadTensor {
            name: self.name.clone(),
            reason: format!("storage field does not fit dtype {}", self.dtype),
        };
        Ok(match &self.data {
            TensorData::Raw(b) => Cow::Borrowed(&b[..]),
            TensorData::External(e) => Cow::Borrowed(&e.bytes[..]),
            TensorData::Floats(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::Doubles(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::Int64s(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::Uint64s(v) => match self.dtype {
                DType::U32 => {
                    Cow::Owned(v.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect())
                }
                _ => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            },
            TensorData::Int32s(v) => match self.dtype.bits() {
                Some(32) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                Some(16) => Cow::Owned(v.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect()),
                // 8-bit types hold one element per i32; packed 4/2-bit types one byte per i32.
                Some(_) => Cow::Owned(v.iter().map(|&x| x as u8).collect()),
                None => return Err(wrong()),
            },
            TensorData::Strings(_) => return Err(wrong()),
        })
    }

    /// Elements converted to f32 (for math on weights). Fails on strings and complex types.
    pub fn to_f32(&self) -> Result<Vec<f32>, IrError> {
        let raw = self.raw_bytes()?;
        let unsupported = || IrError::BadTensor {
            name: self.name.clone(),
            reason: format!("cannot read {} elements as numbers", self.dtype),
        };
        Ok(match self.dtype {
            DType::F32 => chunks::<4>(&raw).map(f32::from_le_bytes).collect(),
            DType::F64 => chunks::<8>(&raw)
                .map(|b| f64::from_le_bytes(b) as f32)
                .collect(),
            DType::F16 => chunks::<2>(&raw)
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect(),
            DType::Bf16 => chunks::<2>(&raw)
                .map(|b| half::bf16::from_le_bytes(b).to_f32())
                .collect(),
            _ => self
                .to_i64()
                .map_err(|_| unsupported())?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        })
    }

    /// Elements converted to i64 (for shapes, indices, axes). Fails on floats and strings.
    pub fn to_i64(&self) -> Result<Vec<i64>, IrError> {
        let raw = self.raw_bytes()?;
        Ok(match self.dtype {
            DType::I64 => chunks::<8>(&raw).map(i64::from_le_bytes).collect(),
            DType::I32 => chunks::<4>(&raw)
                .map(|b| i32::from_le_bytes(b) as i64)
                .collect(),
            DType::I16 => chunks::<2>(&raw)
                .map(|b| i16::from_le_bytes(b) as i64)
                .collect(),
            DType::U16 => chunks::<2>(&raw)
                .map(|b| u16::from_le_bytes(b) as i64)
                .collect(),
            DType::I8 => raw.iter().map(|&b| b as i8 as i64).collect(),
            DType::U8 | DType::Bool => raw.iter().map(|&b| b as i64).collect(),
            DType::U32 => chunks::<4>(&raw)
                .map(|b| u32::from_le_bytes(b) as i64)
                .collect(),
            DType::U64 => chunks::<8>(&raw)
                .map(|b| u64::from_le_bytes(b) as i64)
                .collect(),
            _ => {
                return Err(IrError::BadTensor {
                    name: self.name.clone(),
                    reason: format!("cannot read {} elements as integers", self.dtype),
                })
            }
        })
    }

    /// Short content digest (first 8 bytes of SHA-256 over dtype, dims and packed data), printed for
    /// elided constants so that snapshots change when weights change.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.dtype.onnx_code().to_le_bytes());
        for d in &self.dims {
            h.update(d.to_le_bytes());
        }
        match &self.data {
            TensorData::Strings(s) => {
                for b in s {
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
            }
            _ => match self.raw_bytes() {
                Ok(raw) => h.update(&raw),
                Err(_) => h.update(b"?"),
            },
        }
        let out = h.finalize();
        out[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// (number of stored values, values per element) for a typed field.
fn typed_len(data: &TensorData, dtype: DType) -> (u64, u64) {
    let per = if matches!(dtype, DType::C64 | DType::C128) {
        2
    } else {
        1
    };
    let len = match data {
        TensorData::Floats(v) => v.len(),
        TensorData::Int32s(v) => v.len(),
        TensorData::Int64s(v) => v.len(),
        TensorData::Doubles(v) => v.len(),
        TensorData::Uint64s(v) => v.len(),
        _ => 0,
    };
    (len as u64, per)
}

/// How many typed values `n` elements take (packed 4-bit types hold two per value, 2-bit four).
fn typed_count(dtype: DType, n: u64) -> u64 {
    match dtype.bits() {
        Some(4) => n.div_ceil(2),
        Some(2) => n.div_ceil(4),
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_become_raw() {
        let t = Tensor {
            name: "w".into(),
            dtype: DType::F16,
            dims: vec![2],
            data: TensorData::Int32s(vec![0x3c00, 0x4000]),
            doc_string: String::new(),
            metadata_props: vec![],
        };
        t.validate().unwrap();
        assert_eq!(&*t.raw_bytes().unwrap(), &[0x00, 0x3c, 0x00, 0x40]);
        assert_eq!(t.to_f32().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn validate_rejects_short_raw() {
        let t = Tensor::from_raw(DType::F32, vec![3], Bytes::from_static(&[0; 8]));
        assert!(t.validate().is_err());
        let t = Tensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
        t.validate().unwrap();
        assert_eq!(t.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t.digest().len(), 16);
    }
}
