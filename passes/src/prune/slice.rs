//! Slicing and masking tensors along an axis, on their raw bytes (any dtype of whole bytes).

use spa_ir::{ExternalData, IrError, Tensor, TensorData};

fn elem_bytes(t: &Tensor) -> Result<usize, IrError> {
    match t.dtype.bits() {
        Some(b) if b % 8 == 0 => Ok((b / 8) as usize),
        _ => Err(IrError::BadTensor {
            name: t.name.clone(),
            reason: format!("cannot slice {} elements", t.dtype),
        }),
    }
}

/// Shape as `[outer, axis, inner-bytes]`.
fn split_dims(t: &Tensor, axis: usize) -> Result<(usize, usize, usize), IrError> {
    let e = elem_bytes(t)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    if axis >= dims.len() {
        return Err(IrError::BadTensor {
            name: t.name.clone(),
            reason: format!("no axis {axis} to slice"),
        });
    }
    Ok((
        dims[..axis].iter().product(),
        dims[axis],
        dims[axis + 1..].iter().product::<usize>() * e,
    ))
}

/// Keep the storage kind: external tensors stay external (the backend recomputes offsets).
fn with_bytes(t: &Tensor, dims: Vec<i64>, bytes: Vec<u8>) -> Tensor {
    let data = match &t.data {
        TensorData::External(e) => TensorData::External(ExternalData {
            entries: e
                .entries
                .iter()
                .filter(|(k, _)| k == "location")
                .cloned()
                .collect(),
            bytes: bytes.into(),
        }),
        _ => TensorData::Raw(bytes.into()),
    };
    Tensor {
        name: t.name.clone(),
        dtype: t.dtype,
        dims,
        data,
        doc_string: t.doc_string.clone(),
        metadata_props: t.metadata_props.clone(),
    }
}

/// The tensor with only positions `keep` (ascending) along `axis`.
pub fn take(t: &Tensor, axis: usize, keep: &[u64]) -> Result<Tensor, IrError> {
    let (outer, len, inner) = split_dims(t, axis)?;
    let raw = t.raw_bytes()?;
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &p in keep {
            let p = p as usize;
            if p >= len {
                return Err(IrError::BadTensor {
                    name: t.name.clone(),
                    reason: format!("index {p} out of range {len} on axis {axis}"),
                });
            }
            let start = (o * len + p) * inner;
            out.extend_from_slice(raw.get(start..start + inner).ok_or_else(|| {
                IrError::BadTensor {
                    name: t.name.clone(),
                    reason: "data shorter than its dims".into(),
                }
            })?);
        }
    }
    let mut dims = t.dims.clone();
    dims[axis] = keep.len() as i64;
    Ok(with_bytes(t, dims, out))
}

/// The tensor with positions not in `keep` zeroed along `axis` (same shape).
pub fn mask(t: &Tensor, axis: usize, keep: &[u64]) -> Result<Tensor, IrError> {
    let (outer, len, inner) = split_dims(t, axis)?;
    let mut out = t.raw_bytes()?.into_owned();
    let mut kept = vec![false; len];
    for &p in keep {
        if let Some(k) = kept.get_mut(p as usize) {
            *k = true;
        }
    }
    for o in 0..outer {
        for (p, &k) in kept.iter().enumerate() {
            if !k {
                let start = (o * len + p) * inner;
                if let Some(s) = out.get_mut(start..start + inner) {
                    s.fill(0);
                }
            }
        }
    }
    Ok(with_bytes(t, t.dims.clone(), out))
}
