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
    take_axes(t, &[(axis, keep)])
}

/// The tensor with only the positions `keep` (ascending) along each listed axis, in one pass:
/// trailing axes that are not sliced are copied as whole blocks.
pub fn take_axes(t: &Tensor, axes: &[(usize, &[u64])]) -> Result<Tensor, IrError> {
    let e = elem_bytes(t)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let bad = |reason: String| IrError::BadTensor {
        name: t.name.clone(),
        reason,
    };
    let mut kept: Vec<Vec<usize>> = dims.iter().map(|&d| (0..d).collect()).collect();
    let mut last_sliced = None;
    for &(k, p) in axes {
        let d = *dims
            .get(k)
            .ok_or_else(|| bad(format!("no axis {k} to slice")))?;
        if p.iter().any(|&i| i as usize >= d) {
            return Err(bad(format!("index out of range {d} on axis {k}")));
        }
        kept[k] = p.iter().map(|&i| i as usize).collect();
        last_sliced = Some(last_sliced.map_or(k, |l: usize| l.max(k)));
    }
    let Some(j) = last_sliced else {
        return Ok(t.clone());
    };
    let block = dims[j + 1..].iter().product::<usize>() * e;
    let raw = t.raw_bytes()?;
    let total: usize = dims.iter().product::<usize>() * e;
    if raw.len() < total {
        return Err(bad("data shorter than its dims".into()));
    }
    // Strides (in bytes) of the axes up to the last sliced one.
    let mut strides = vec![0usize; j + 1];
    let mut s = block;
    for k in (0..=j).rev() {
        strides[k] = s;
        s *= dims[k];
    }
    let out_len: usize = kept[..=j].iter().map(|k| k.len()).product::<usize>() * block;
    let mut out = vec![0u8; out_len];
    if out_len > 0 {
        // Odometer over the axes before `j`; the innermost sliced axis copies its kept blocks.
        let mut idx = vec![0usize; j];
        let mut w = 0usize;
        'rows: loop {
            let base: usize = (0..j).map(|k| kept[k][idx[k]] * strides[k]).sum();
            for &i in &kept[j] {
                let off = base + i * strides[j];
                out[w..w + block].copy_from_slice(&raw[off..off + block]);
                w += block;
            }
            let mut k = j;
            loop {
                if k == 0 {
                    break 'rows;
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < kept[k].len() {
                    continue 'rows;
                }
                idx[k] = 0;
            }
        }
    }
    let mut new_dims = t.dims.clone();
    for &(k, p) in axes {
        new_dims[k] = p.len() as i64;
    }
    Ok(with_bytes(t, new_dims, out))
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
