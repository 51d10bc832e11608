//! Runtime tensors: a logical ONNX dtype over one of three storage classes (f32, i64, bool).
//!
//! Every float type (f16, bf16, f64, f32) is computed in f32; every integer type is held in i64
//! and wrapped to its width where ONNX defines the result (Cast). The logical dtype is kept, so a
//! folded constant is written back with the dtype the graph declares.

use crate::dtype::DType;
use crate::tensor::Tensor;
use bytes::Bytes;
use ndarray::{ArrayD, IxDyn};

/// Storage of a runtime tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// A runtime tensor: its ONNX dtype and its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    dtype: DType,
    data: Data,
}

/// The storage class of a dtype, `None` for types the interpreter does not compute with.
fn storage(dtype: DType) -> Option<u8> {
    match dtype {
        DType::F32 | DType::F16 | DType::Bf16 | DType::F64 => Some(0),
        DType::Bool => Some(2),
        d if d.is_int() && d.bits().is_some_and(|b| b >= 8) => Some(1),
        _ => None,
    }
}

impl Value {
    pub fn f32(a: ArrayD<f32>) -> Value {
        Value {
            dtype: DType::F32,
            data: Data::F32(a),
        }
    }

    pub fn i64(a: ArrayD<i64>) -> Value {
        Value {
            dtype: DType::I64,
            data: Data::I64(a),
        }
    }

    pub fn bool(a: ArrayD<bool>) -> Value {
        Value {
            dtype: DType::Bool,
            data: Data::Bool(a),
        }
    }

    /// An f32 tensor from a shape and row-major elements.
    pub fn from_shape_f32(shape: &[usize], data: Vec<f32>) -> Result<Value, String> {
        Ok(Value::f32(to_array(shape, data)?))
    }

    /// An i64 tensor from a shape and row-major elements.
    pub fn from_shape_i64(shape: &[usize], data: Vec<i64>) -> Result<Value, String> {
        Ok(Value::i64(to_array(shape, data)?))
    }

    /// A value of a given logical dtype; fails when the storage does not fit the dtype.
    pub fn with_dtype(dtype: DType, data: Data) -> Result<Value, String> {
        let want = storage(dtype).ok_or_else(|| format!("dtype {dtype} is not supported"))?;
        let have = match &data {
            Data::F32(_) => 0,
            Data::I64(_) => 1,
            Data::Bool(_) => 2,
        };
        if want != have {
            return Err(format!("dtype {dtype} cannot be stored as {}", data.kind()));
        }
        Ok(Value { dtype, data })
    }

    /// Same dtype as `self`, new data of the same storage class (falls back to the storage's
    /// canonical dtype when the class differs).
    pub(crate) fn like(&self, data: Data) -> Value {
        let dtype = if std::mem::discriminant(&data) == std::mem::discriminant(&self.data) {
            self.dtype
        } else {
            data.canonical_dtype()
        };
        Value { dtype, data }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    pub fn shape(&self) -> &[usize] {
        match &self.data {
            Data::F32(a) => a.shape(),
            Data::I64(a) => a.shape(),
            Data::Bool(a) => a.shape(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match &self.data {
            Data::F32(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match &self.data {
            Data::I64(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<&ArrayD<bool>> {
        match &self.data {
            Data::Bool(a) => Some(a),
            _ => None,
        }
    }

    pub fn into_f32(self) -> Option<ArrayD<f32>> {
        match self.data {
            Data::F32(a) => Some(a),
            _ => None,
        }
    }

    /// Elements as i64 (integers, bools; floats truncated), for shapes, axes, indices.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(a) => a.iter().map(|&x| x as i64).collect(),
            Data::I64(a) => a.iter().copied().collect(),
            Data::Bool(a) => a.iter().map(|&x| x as i64).collect(),
        }
    }

    /// Elements as f32.
    pub fn to_f32_array(&self) -> ArrayD<f32> {
        match &self.data {
            Data::F32(a) => a.clone(),
            Data::I64(a) => a.mapv(|x| x as f32),
            Data::Bool(a) => a.mapv(|x| x as u8 as f32),
        }
    }

    /// Read a constant. Floats are converted to f32 and integers to i64 (one pass over the bytes).
    pub fn from_tensor(t: &Tensor) -> Result<Value, String> {
        t.validate().map_err(|e| e.to_string())?;
        let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let kind = storage(t.dtype)
            .ok_or_else(|| format!("constants of dtype {} are not supported", t.dtype))?;
        let data = match kind {
            0 => Data::F32(to_array(&shape, t.to_f32().map_err(|e| e.to_string())?)?),
            1 => Data::I64(to_array(&shape, t.to_i64().map_err(|e| e.to_string())?)?),
            _ => {
                let v = t.to_i64().map_err(|e| e.to_string())?;
                Data::Bool(to_array(&shape, v.into_iter().map(|x| x != 0).collect())?)
            }
        };
        Ok(Value {
            dtype: t.dtype,
            data,
        })
    }

    /// Write as a constant tensor of this value's dtype (little-endian `raw_data`).
    pub fn to_tensor(&self) -> Result<Tensor, String> {
        let dims = self.shape().iter().map(|&d| d as i64).collect();
        let mut raw: Vec<u8> = Vec::new();
        match &self.data {
            Data::F32(a) => {
                for &x in a.iter() {
                    match self.dtype {
                        DType::F32 => raw.extend_from_slice(&x.to_le_bytes()),
                        DType::F64 => raw.extend_from_slice(&(x as f64).to_le_bytes()),
                        DType::F16 => raw.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                        DType::Bf16 => {
                            raw.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes())
                        }
                        d => return Err(format!("cannot write {d} from f32 storage")),
                    }
                }
            }
            Data::I64(a) => {
                let bytes = self
                    .dtype
                    .bits()
                    .filter(|b| b % 8 == 0)
                    .ok_or_else(|| format!("cannot write {}", self.dtype))?
                    as usize
                    / 8;
                for &x in a.iter() {
                    raw.extend_from_slice(&x.to_le_bytes()[..bytes]);
                }
            }
            Data::Bool(a) => raw.extend(a.iter().map(|&b| b as u8)),
        }
        Ok(Tensor::from_raw(self.dtype, dims, Bytes::from(raw)))
    }

    /// ONNX Cast.
    pub fn cast(&self, to: DType) -> Result<Value, String> {
        let kind = storage(to).ok_or_else(|| format!("Cast to {to} is not supported"))?;
        let data = match (kind, &self.data) {
            (0, Data::F32(a)) => Data::F32(a.mapv(|x| round_float(to, x))),
            // u64 above i64::MAX is held as its two's-complement bits.
            (0, Data::I64(a)) if self.dtype == DType::U64 => {
                Data::F32(a.mapv(|x| round_float(to, x as u64 as f32)))
            }
            (0, Data::I64(a)) => Data::F32(a.mapv(|x| round_float(to, x as f32))),
            (0, Data::Bool(a)) => Data::F32(a.mapv(|x| x as u8 as f32)),
            (1, Data::F32(a)) => Data::I64(a.mapv(|x| wrap_int(to, float_to_int(x)))),
            (1, Data::I64(a)) => Data::I64(a.mapv(|x| wrap_int(to, x))),
            (1, Data::Bool(a)) => Data::I64(a.mapv(|x| x as i64)),
            (_, Data::F32(a)) => Data::Bool(a.mapv(|x| x != 0.0)),
            (_, Data::I64(a)) => Data::Bool(a.mapv(|x| x != 0)),
            (_, Data::Bool(a)) => Data::Bool(a.clone()),
        };
        Ok(Value { dtype: to, data })
    }
}

fn float_to_int(x: f32) -> i64 {
    // `as` saturates and maps NaN to 0: defined, never a panic.
    x as i64
}

/// Round an f32 to the precision of a narrower float type.
fn round_float(to: DType, x: f32) -> f32 {
    match to {
        DType::F16 => half::f16::from_f32(x).to_f32(),
        DType::Bf16 => half::bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// Wrap an i64 to the range of an integer dtype (two's complement, as C casts do).
pub(crate) fn wrap_int(to: DType, x: i64) -> i64 {
    match to {
        DType::I8 => x as i8 as i64,
        DType::U8 => x as u8 as i64,
        DType::I16 => x as i16 as i64,
        DType::U16 => x as u16 as i64,
        DType::I32 => x as i32 as i64,
        DType::U32 => x as u32 as i64,
        _ => x,
    }
}

impl Data {
    pub fn kind(&self) -> &'static str {
        match self {
            Data::F32(_) => "f32",
            Data::I64(_) => "i64",
            Data::Bool(_) => "bool",
        }
    }

    pub fn canonical_dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
        }
    }
}

/// The elements of `a` in row-major (logical) order: one copy of the buffer when `a` is already in
/// standard layout (iterating an `IxDyn` array element by element is many times slower).
pub(crate) fn flat<T: Clone>(a: &ArrayD<T>) -> Vec<T> {
    if let Some(s) = a.as_slice() {
        return s.to_vec();
    }
    let c = a.as_standard_layout();
    match c.as_slice() {
        Some(s) => s.to_vec(),
        None => c.iter().cloned().collect(),
    }
}

pub(crate) fn to_array<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, String> {
    let n = v.len();
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .map_err(|_| format!("{n} elements do not fill shape {shape:?}"))
}

/// Apply one generic expression to whichever storage a value has, keeping the storage class.
macro_rules! map_data {
    ($data:expr, $a:ident => $body:expr) => {
        match $data {
            $crate::interp::value::Data::F32($a) => $crate::interp::value::Data::F32($body),
            $crate::interp::value::Data::I64($a) => $crate::interp::value::Data::I64($body),
            $crate::interp::value::Data::Bool($a) => $crate::interp::value::Data::Bool($body),
        }
    };
}
pub(crate) use map_data;

/// Like [`map_data`] for a fallible body (`Result<ArrayD<_>, String>`).
macro_rules! try_map_data {
    ($data:expr, $a:ident => $body:expr) => {
        match $data {
            $crate::interp::value::Data::F32($a) => $crate::interp::value::Data::F32($body?),
            $crate::interp::value::Data::I64($a) => $crate::interp::value::Data::I64($body?),
            $crate::interp::value::Data::Bool($a) => $crate::interp::value::Data::Bool($body?),
        }
    };
}
pub(crate) use try_map_data;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_with_their_dtype() {
        let t = Tensor::from_i64(vec![3], &[1, -2, 300]);
        let v = Value::from_tensor(&t).unwrap();
        assert_eq!(v.to_i64_vec(), vec![1, -2, 300]);
        let c = v.cast(DType::I8).unwrap();
        assert_eq!(c.to_i64_vec(), vec![1, -2, 44]);
        let back = c.to_tensor().unwrap();
        assert_eq!(back.dtype, DType::I8);
        assert_eq!(back.to_i64().unwrap(), vec![1, -2, 44]);
        let f = Value::from_tensor(&Tensor::from_f32(vec![2], &[1.5, -0.25])).unwrap();
        let h = f.cast(DType::F16).unwrap();
        assert_eq!(h.to_tensor().unwrap().to_f32().unwrap(), vec![1.5, -0.25]);
        assert_eq!(f.cast(DType::I64).unwrap().to_i64_vec(), vec![1, 0]);
        assert!(Value::with_dtype(DType::F32, Data::I64(ArrayD::zeros(IxDyn(&[1])))).is_err());
    }
}
