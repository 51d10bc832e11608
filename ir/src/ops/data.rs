//! Contents of small tensors, for shape data propagation: inference computes what a shape
//! computation (`Shape`, `Gather`, `Concat`, arithmetic, ...) produces when its inputs are known,
//! so that a `Reshape` target or a `Resize` size built from shapes becomes static. Elements are
//! held as `i64` (integer and bool dtypes) or `f64` (float dtypes); everything is bounded by the
//! caller's element limit and uses checked arithmetic, so a hostile model cannot make it panic or
//! allocate much.

use crate::dtype::DType;
use crate::tensor::Tensor;
use bytes::Bytes;

/// Element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Elems {
    Int(Vec<i64>),
    Float(Vec<f64>),
}

/// One element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    I(i64),
    F(f64),
}

impl Scalar {
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::I(v) => v as f64,
            Scalar::F(v) => v,
        }
    }

    /// Integer value; floats truncate toward zero, NaN and out-of-range values have none.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Scalar::I(v) => Some(v),
            Scalar::F(v) if v.is_finite() && v.abs() < 9.2e18 => Some(v.trunc() as i64),
            Scalar::F(_) => None,
        }
    }

    pub fn truthy(self) -> bool {
        match self {
            Scalar::I(v) => v != 0,
            Scalar::F(v) => v != 0.0,
        }
    }
}

/// Known contents of a small tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub elems: Elems,
}

/// Integer dtypes whose contents can be read (packed sub-byte types cannot).
pub fn is_int_like(d: DType) -> bool {
    matches!(
        d,
        DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I32
            | DType::U32
            | DType::I64
            | DType::U64
            | DType::Bool
    )
}

pub fn is_float_like(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::Bf16)
}

/// Number of elements of static dims, as usize (`None` on a negative dim or overflow).
pub fn count(dims: &[i64]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

impl Data {
    pub fn ints(dtype: DType, dims: Vec<i64>, values: Vec<i64>) -> Data {
        Data {
            dtype,
            dims,
            elems: Elems::Int(values),
        }
    }

    /// A rank-1 i64 tensor.
    pub fn vec_i64(values: Vec<i64>) -> Data {
        Data::ints(DType::I64, vec![values.len() as i64], values)
    }

    /// Read a tensor of at most `limit` elements.
    pub fn from_tensor(t: &Tensor, limit: usize) -> Option<Data> {
        let n = count(&t.dims)?;
        if n > limit {
            return None;
        }
        t.validate().ok()?;
        let elems = if is_int_like(t.dtype) {
            Elems::Int(t.to_i64().ok()?)
        } else if t.dtype == DType::F64 {
            let raw = t.raw_bytes().ok()?;
            Elems::Float(
                raw.chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        f64::from_le_bytes(b)
                    })
                    .collect(),
            )
        } else if is_float_like(t.dtype) {
            Elems::Float(t.to_f32().ok()?.into_iter().map(f64::from).collect())
        } else {
            return None;
        };
        let data = Data {
            dtype: t.dtype,
            dims: t.dims.clone(),
            elems,
        };
        (data.len() == n).then_some(data)
    }

    pub fn len(&self) -> usize {
        match &self.elems {
            Elems::Int(v) => v.len(),
            Elems::Float(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<Scalar> {
        match &self.elems {
            Elems::Int(v) => v.get(i).copied().map(Scalar::I),
            Elems::Float(v) => v.get(i).copied().map(Scalar::F),
        }
    }

    /// Integer elements, when the dtype is an integer one.
    pub fn as_ints(&self) -> Option<&[i64]> {
        match &self.elems {
            Elems::Int(v) => Some(v),
            Elems::Float(_) => None,
        }
    }

    pub fn to_f64(&self) -> Vec<f64> {
        match &self.elems {
            Elems::Int(v) => v.iter().map(|&x| x as f64).collect(),
            Elems::Float(v) => v.clone(),
        }
    }

    /// The same elements with other dims (Reshape, Squeeze, ...); `None` if the count differs.
    pub fn reshaped(&self, dims: Vec<i64>) -> Option<Data> {
        (count(&dims)? == self.len()).then(|| Data {
            dtype: self.dtype,
            dims,
            elems: self.elems.clone(),
        })
    }

    /// Elements picked by flat index, with new dims.
    pub fn pick(&self, dims: Vec<i64>, idx: &[usize]) -> Option<Data> {
        let elems = match &self.elems {
            Elems::Int(v) => Elems::Int(
                idx.iter()
                    .map(|&i| v.get(i).copied())
                    .collect::<Option<_>>()?,
            ),
            Elems::Float(v) => Elems::Float(
                idx.iter()
                    .map(|&i| v.get(i).copied())
                    .collect::<Option<_>>()?,
            ),
        };
        let d = Data {
            dtype: self.dtype,
            dims,
            elems,
        };
        (count(&d.dims)? == d.len()).then_some(d)
    }

    /// Build from scalars in the representation the dtype wants.
    pub fn from_scalars(dtype: DType, dims: Vec<i64>, values: &[Scalar]) -> Option<Data> {
        let elems = if is_float_like(dtype) {
            Elems::Float(values.iter().map(|s| s.as_f64()).collect())
        } else if dtype == DType::Bool {
            Elems::Int(values.iter().map(|s| s.truthy() as i64).collect())
        } else if is_int_like(dtype) {
            Elems::Int(
                values
                    .iter()
                    .map(|s| s.as_i64().map(|v| wrap_int(dtype, v)))
                    .collect::<Option<_>>()?,
            )
        } else {
            return None;
        };
        let d = Data { dtype, dims, elems };
        (count(&d.dims)? == d.len()).then_some(d)
    }

    /// Cast to another dtype (ONNX `Cast`: floats truncate toward zero, ints wrap).
    pub fn cast(&self, to: DType) -> Option<Data> {
        let scalars: Vec<Scalar> = (0..self.len()).filter_map(|i| self.get(i)).collect();
        Data::from_scalars(to, self.dims.clone(), &scalars)
    }

    /// Encode as a tensor with raw little-endian data.
    pub fn to_tensor(&self) -> Option<Tensor> {
        if count(&self.dims)? != self.len() {
            return None;
        }
        let mut raw: Vec<u8> = Vec::new();
        for i in 0..self.len() {
            let s = self.get(i)?;
            match self.dtype {
                DType::I64 => raw.extend_from_slice(&s.as_i64()?.to_le_bytes()),
                DType::U64 => raw.extend_from_slice(&(s.as_i64()? as u64).to_le_bytes()),
                DType::I32 => raw.extend_from_slice(&(s.as_i64()? as i32).to_le_bytes()),
                DType::U32 => raw.extend_from_slice(&(s.as_i64()? as u32).to_le_bytes()),
                DType::I16 => raw.extend_from_slice(&(s.as_i64()? as i16).to_le_bytes()),
                DType::U16 => raw.extend_from_slice(&(s.as_i64()? as u16).to_le_bytes()),
                DType::I8 => raw.push(s.as_i64()? as i8 as u8),
                DType::U8 => raw.push(s.as_i64()? as u8),
                DType::Bool => raw.push(s.truthy() as u8),
                DType::F32 => raw.extend_from_slice(&(s.as_f64() as f32).to_le_bytes()),
                DType::F64 => raw.extend_from_slice(&s.as_f64().to_le_bytes()),
                DType::F16 => raw.extend_from_slice(&half::f16::from_f64(s.as_f64()).to_le_bytes()),
                DType::Bf16 => {
                    raw.extend_from_slice(&half::bf16::from_f64(s.as_f64()).to_le_bytes())
                }
                _ => return None,
            }
        }
        Some(Tensor::from_raw(
            self.dtype,
            self.dims.clone(),
            Bytes::from(raw),
        ))
    }
}

/// Wrap an integer to a dtype's range, as a C cast does.
fn wrap_int(dtype: DType, v: i64) -> i64 {
    match dtype {
        DType::I32 => v as i32 as i64,
        DType::U32 => v as u32 as i64,
        DType::I16 => v as i16 as i64,
        DType::U16 => v as u16 as i64,
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        _ => v,
    }
}

/// Row-major strides of static dims.
pub fn strides(dims: &[i64]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        let next = usize::try_from(dims[i + 1]).unwrap_or(0);
        s[i] = s[i + 1].saturating_mul(next);
    }
    s
}

/// Static numpy broadcast of shapes; `None` when they do not broadcast.
pub fn broadcast_static(shapes: &[&[i64]]) -> Option<Vec<i64>> {
    let n = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1i64; n];
    for s in shapes {
        let off = n - s.len();
        for (k, &d) in s.iter().enumerate() {
            let o = &mut out[off + k];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// For each element of `out` (row-major), the flat index of the element of a tensor with `dims`
/// broadcast to `out`.
pub fn broadcast_index(dims: &[i64], out: &[i64], limit: usize) -> Option<Vec<usize>> {
    let total = count(out)?;
    if total > limit || dims.len() > out.len() {
        return None;
    }
    let off = out.len() - dims.len();
    let in_strides = strides(dims);
    let out_strides = strides(out);
    let mut idx = Vec::with_capacity(total);
    for flat in 0..total {
        let mut src = 0usize;
        for (k, &d) in dims.iter().enumerate() {
            let os = out_strides.get(off + k).copied().unwrap_or(1).max(1);
            let od = usize::try_from(*out.get(off + k)?).ok()?.max(1);
            let coord = (flat / os) % od;
            let c = if d == 1 { 0 } else { coord };
            src += c * in_strides.get(k).copied().unwrap_or(0);
        }
        idx.push(src);
    }
    Some(idx)
}

/// Apply `f` elementwise over broadcast inputs; the result has `dtype`.
pub fn map_broadcast(
    inputs: &[&Data],
    dtype: DType,
    limit: usize,
    f: impl Fn(&[Scalar]) -> Option<Scalar>,
) -> Option<Data> {
    let shapes: Vec<&[i64]> = inputs.iter().map(|d| d.dims.as_slice()).collect();
    let out = broadcast_static(&shapes)?;
    let maps: Vec<Vec<usize>> = inputs
        .iter()
        .map(|d| broadcast_index(&d.dims, &out, limit))
        .collect::<Option<_>>()?;
    let total = count(&out)?;
    let mut args = vec![Scalar::I(0); inputs.len()];
    let mut values = Vec::with_capacity(total);
    for flat in 0..total {
        for (k, d) in inputs.iter().enumerate() {
            args[k] = d.get(*maps.get(k)?.get(flat)?)?;
        }
        values.push(f(&args)?);
    }
    Data::from_scalars(dtype, out, &values)
}

/// Elementwise arithmetic on two scalars: integer math is checked, anything with a float is
/// float math in f64, which rounds to the same f32/f16 result as the runtime's single operation.
pub fn arith(op: &str, a: Scalar, b: Scalar, fmod: bool) -> Option<Scalar> {
    use Scalar::{F, I};
    Some(match (a, b) {
        (I(x), I(y)) => I(match op {
            "Add" | "Sum" => x.checked_add(y)?,
            "Sub" => x.checked_sub(y)?,
            "Mul" => x.checked_mul(y)?,
            // ONNX integer division truncates (C semantics).
            "Div" => x.checked_div(y)?,
            "Mod" if fmod => x.checked_rem(y)?,
            "Mod" => {
                // The result takes the divisor's sign (Python semantics).
                let r = x.checked_rem(y)?;
                if r != 0 && ((r < 0) != (y < 0)) {
                    r.checked_add(y)?
                } else {
                    r
                }
            }
            "Max" => x.max(y),
            "Min" => x.min(y),
            "Pow" => x.checked_pow(u32::try_from(y).ok()?)?,
            _ => return None,
        }),
        _ => {
            let (x, y) = (a.as_f64(), b.as_f64());
            F(match op {
                "Add" | "Sum" => x + y,
                "Sub" => x - y,
                "Mul" => x * y,
                "Div" => x / y,
                "Mod" => x % y,
                "Max" => x.max(y),
                "Min" => x.min(y),
                // Pow is not correctly rounded: a folded value could differ from the runtime's.
                _ => return None,
            })
        }
    })
}

/// Comparison and logic ops, as 0/1.
pub fn compare(op: &str, a: Scalar, b: Scalar) -> Option<Scalar> {
    use Scalar::I;
    let r = match (a, b) {
        (I(x), I(y)) => match op {
            "Equal" => x == y,
            "Less" => x < y,
            "Greater" => x > y,
            "LessOrEqual" => x <= y,
            "GreaterOrEqual" => x >= y,
            "And" => x != 0 && y != 0,
            "Or" => x != 0 || y != 0,
            "Xor" => (x != 0) != (y != 0),
            _ => return None,
        },
        _ => {
            let (x, y) = (a.as_f64(), b.as_f64());
            match op {
                "Equal" => x == y,
                "Less" => x < y,
                "Greater" => x > y,
                "LessOrEqual" => x <= y,
                "GreaterOrEqual" => x >= y,
                _ => return None,
            }
        }
    };
    Some(I(r as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_and_map() {
        let a = Data::ints(DType::I64, vec![2, 1], vec![1, 2]);
        let b = Data::ints(DType::I64, vec![3], vec![10, 20, 30]);
        let c = map_broadcast(&[&a, &b], DType::I64, 64, |s| {
            arith("Add", s[0], s[1], false)
        })
        .unwrap();
        assert_eq!(c.dims, vec![2, 3]);
        assert_eq!(c.as_ints().unwrap(), &[11, 21, 31, 12, 22, 32]);
    }

    #[test]
    fn mod_follows_divisor_sign() {
        let r = arith("Mod", Scalar::I(-7), Scalar::I(3), false);
        assert_eq!(r, Some(Scalar::I(2)));
        let r = arith("Mod", Scalar::I(-7), Scalar::I(3), true);
        assert_eq!(r, Some(Scalar::I(-1)));
        assert_eq!(arith("Div", Scalar::I(1), Scalar::I(0), false), None);
        assert_eq!(arith("Mul", Scalar::I(i64::MAX), Scalar::I(2), false), None);
    }

    #[test]
    fn round_trips_through_tensors() {
        let d = Data::ints(DType::I32, vec![3], vec![1, -2, 3]);
        let t = d.to_tensor().unwrap();
        assert_eq!(Data::from_tensor(&t, 64).unwrap(), d);
        let f = d.cast(DType::F32).unwrap();
        assert_eq!(f.to_f64(), vec![1.0, -2.0, 3.0]);
        let h = f.cast(DType::F16).unwrap().to_tensor().unwrap();
        assert_eq!(h.to_f32().unwrap(), vec![1.0, -2.0, 3.0]);
    }
}
