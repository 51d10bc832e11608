//! Shape-changing ops that keep the data: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand,
//! Tile; and ops that make shapes or constants: Shape, Size, ConstantOfShape, Constant, Range.
//! Small integer values propagate through all of them.

use super::elementwise::broadcast;
use super::{axis, int_value, known, InferCtx, InferResult, Inferred};
use crate::attr::AttrValue;
use crate::tensor::Tensor;
use crate::types::Dim;
use crate::DType;

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    Some(match op {
        "Reshape" => reshape(cx),
        "Flatten" => flatten(cx),
        "Squeeze" => squeeze(cx),
        "Unsqueeze" => unsqueeze(cx),
        "Transpose" => transpose(cx),
        "Expand" => expand(cx),
        "Tile" => tile(cx),
        "Shape" => shape(cx),
        "Size" => {
            let n = cx
                .dims(0)
                .and_then(|d| d.iter().map(|x| x.known()).product::<Option<i64>>());
            let v = n.and_then(|n| int_value(Some(DType::I64), vec![], &[n]));
            Ok(vec![
                Inferred::tensor(Some(DType::I64), Some(vec![])).with_value(v)
            ])
        }
        "ConstantOfShape" => constant_of_shape(cx),
        "Constant" => constant(cx),
        "Range" => range(cx),
        "EyeLike" => Ok(vec![Inferred::tensor(
            cx.node
                .attr_int("dtype")
                .and_then(|c| DType::from_onnx_code(c as i32))
                .or(cx.dtype(0)),
            cx.dims(0),
        )]),
        _ => return None,
    })
}

/// Same contents, new dims.
fn reshaped(cx: &InferCtx<'_>, dims: &[Dim]) -> Option<Tensor> {
    let t = cx.value(0)?;
    let d: Vec<i64> = dims.iter().map(|x| x.known()).collect::<Option<_>>()?;
    int_value(Some(t.dtype), d, &t.to_i64().ok()?)
}

fn reshape(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(shape) = cx.ints(1) else {
        // Rank is still known from the shape input's length.
        let rank = cx.dims(1).and_then(|d| d.first().and_then(|x| x.known()));
        let dims = rank.map(|r| vec![Dim::Unknown; r.max(0) as usize]);
        return Ok(vec![Inferred::tensor(dtype, dims)]);
    };
    let allowzero = cx.attr_int("allowzero", 0) != 0;
    let input = cx.dims(0);
    let mut out: Vec<Dim> = Vec::with_capacity(shape.len());
    let mut infer_at = None;
    for (k, &s) in shape.iter().enumerate() {
        match s {
            -1 => {
                if infer_at.replace(k).is_some() {
                    return Err("Reshape shape has more than one -1".into());
                }
                out.push(Dim::Unknown);
            }
            0 if !allowzero => match input.as_ref().and_then(|d| d.get(k)) {
                Some(d) => out.push(d.clone()),
                None => {
                    return Err(format!(
                        "Reshape copies axis {k} that the input does not have"
                    ))
                }
            },
            s if s < 0 => return Err(format!("invalid Reshape size {s}")),
            s => out.push(Dim::Known(s)),
        }
    }
    if let Some(input) = &input {
        let total: Option<i64> = input.iter().map(|d| d.known()).product();
        let rest: Option<i64> = out
            .iter()
            .enumerate()
            .filter(|(k, _)| Some(*k) != infer_at)
            .map(|(_, d)| d.known())
            .product();
        match (total, rest, infer_at) {
            (Some(t), Some(r), Some(k)) => {
                if r == 0 || t % r != 0 {
                    return Err(format!("cannot reshape {t} elements into {shape:?}"));
                }
                out[k] = Dim::Known(t / r);
            }
            (Some(t), Some(r), None) if t != r => {
                return Err(format!("cannot reshape {t} elements into {shape:?}"));
            }
            _ => {
                // A symbolic dim moved whole keeps its name when the rest matches.
                if let Some(k) = infer_at {
                    let syms_in: Vec<&Dim> = input.iter().filter(|d| d.known().is_none()).collect();
                    let syms_out = out
                        .iter()
                        .enumerate()
                        .filter(|(j, d)| *j != k && d.known().is_none())
                        .count();
                    let kin: Option<i64> = input
                        .iter()
                        .filter_map(|d| d.known())
                        .try_fold(1i64, |a, b| a.checked_mul(b));
                    let kout: Option<i64> = out
                        .iter()
                        .filter_map(|d| d.known())
                        .try_fold(1i64, |a, b| a.checked_mul(b));
                    if syms_in.len() == 1 && syms_out == 0 && kin == kout {
                        out[k] = syms_in[0].clone();
                    }
                }
            }
        }
    }
    let v = reshaped(cx, &out);
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(v)])
}

fn flatten(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(
            dtype,
            Some(vec![Dim::Unknown, Dim::Unknown]),
        )]);
    };
    let r = d.len() as i64;
    let a = cx.attr_int("axis", 1);
    let a = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&a) {
        return Err(format!("Flatten axis {a} out of range for rank {r}"));
    }
    let prod = |s: &[Dim]| -> Dim {
        match s.iter().map(|x| x.known()).product::<Option<i64>>() {
            Some(n) => Dim::Known(n),
            None if s.len() == 1 => s[0].clone(),
            None => Dim::Unknown,
        }
    };
    let out = vec![prod(&d[..a as usize]), prod(&d[a as usize..])];
    let v = reshaped(cx, &out);
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(v)])
}

fn squeeze(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let axes = match cx.ints_attr_or_input("axes", 1) {
        Some(a) => a
            .iter()
            .map(|&a| axis(a, d.len()))
            .collect::<Result<Vec<_>, _>>()?,
        None if cx.has(1) => return Ok(vec![Inferred::tensor(dtype, None)]),
        None => (0..d.len()).filter(|&k| d[k] == Dim::Known(1)).collect(),
    };
    for &a in &axes {
        if let Dim::Known(n) = d[a] {
            if n != 1 {
                return Err(format!("cannot squeeze axis {a} of size {n}"));
            }
        }
    }
    let out: Vec<Dim> = d
        .iter()
        .enumerate()
        .filter(|(k, _)| !axes.contains(k))
        .map(|(_, x)| x.clone())
        .collect();
    let v = reshaped(cx, &out);
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(v)])
}

fn unsqueeze(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(d), Some(axes)) = (cx.dims(0), cx.ints_attr_or_input("axes", 1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let r = d.len() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?;
    axes.sort_unstable();
    let mut out = Vec::with_capacity(r);
    let mut it = d.into_iter();
    for k in 0..r {
        if axes.contains(&k) {
            out.push(Dim::Known(1));
        } else {
            out.push(it.next().ok_or("Unsqueeze axes repeat")?);
        }
    }
    let v = reshaped(cx, &out);
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(v)])
}

fn transpose(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let perm: Vec<usize> = match cx.node.attr_ints("perm") {
        Some(p) => p
            .iter()
            .map(|&a| axis(a, d.len()))
            .collect::<Result<_, _>>()?,
        None => (0..d.len()).rev().collect(),
    };
    if perm.len() != d.len() {
        return Err(format!(
            "perm has {} entries for rank {}",
            perm.len(),
            d.len()
        ));
    }
    let out: Vec<Dim> = perm.iter().map(|&p| d[p].clone()).collect();
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

fn expand(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(d), Some(shape)) = (cx.dims(0), cx.ints(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let out = broadcast(&[d, known(&shape)])?;
    let v = cx.value(0).and_then(|t| {
        let vals = t.to_i64().ok()?;
        (vals.len() == 1).then_some(())?;
        let n: i64 = out.iter().map(|x| x.known()).product::<Option<i64>>()?;
        let dims: Vec<i64> = out.iter().map(|x| x.known()).collect::<Option<_>>()?;
        int_value(Some(t.dtype), dims, &vec![vals[0]; n.max(0) as usize])
    });
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(v)])
}

fn tile(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(d), Some(reps)) = (cx.dims(0), cx.ints(1)) else {
        return Ok(vec![Inferred::tensor(
            dtype,
            cx.rank(0).map(|r| vec![Dim::Unknown; r]),
        )]);
    };
    if reps.len() != d.len() {
        return Err(format!(
            "Tile repeats has {} entries for rank {}",
            reps.len(),
            d.len()
        ));
    }
    let out = d
        .iter()
        .zip(&reps)
        .map(|(x, &r)| match x {
            Dim::Known(n) => Dim::Known(n * r),
            other if r == 1 => other.clone(),
            _ => Dim::Unknown,
        })
        .collect();
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

fn shape(cx: &InferCtx<'_>) -> InferResult {
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(
            Some(DType::I64),
            Some(vec![Dim::Unknown]),
        )]);
    };
    let r = d.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.attr_int("start", 0));
    let end = clamp(cx.attr_int("end", r));
    let part = if start < end {
        &d[start..end]
    } else {
        &d[0..0]
    };
    let v = part
        .iter()
        .map(|x| x.known())
        .collect::<Option<Vec<i64>>>()
        .and_then(|vals| int_value(Some(DType::I64), vec![vals.len() as i64], &vals));
    Ok(vec![Inferred::tensor(
        Some(DType::I64),
        Some(vec![Dim::Known(part.len() as i64)]),
    )
    .with_value(v)])
}

fn constant_of_shape(cx: &InferCtx<'_>) -> InferResult {
    let fill = cx.node.attr_tensor("value");
    let dtype = fill.map(|t| t.dtype).or(Some(DType::F32));
    let Some(shape) = cx.ints(0) else {
        let rank = cx.dims(0).and_then(|d| d.first().and_then(|x| x.known()));
        return Ok(vec![Inferred::tensor(
            dtype,
            rank.map(|r| vec![Dim::Unknown; r.max(0) as usize]),
        )]);
    };
    let n: i64 = shape.iter().product();
    let v = fill
        .and_then(|t| t.to_i64().ok())
        .and_then(|f| f.first().copied())
        .or(if fill.is_none() { None } else { Some(0) })
        .and_then(|f| int_value(dtype, shape.clone(), &vec![f; n.max(0) as usize]));
    Ok(vec![
        Inferred::tensor(dtype, Some(known(&shape))).with_value(v)
    ])
}

fn constant(cx: &InferCtx<'_>) -> InferResult {
    let attr = cx
        .node
        .attrs
        .first()
        .ok_or("Constant has no value attribute")?;
    let (dtype, dims, value) = match &attr.value {
        AttrValue::Tensor(t) => {
            let small =
                t.num_elements().is_some_and(|n| n <= super::MAX_PROPAGATED) && t.dtype.is_int();
            (t.dtype, t.dims.clone(), small.then(|| t.clone()))
        }
        AttrValue::Float(_) => (DType::F32, vec![], None),
        AttrValue::Floats(v) => (DType::F32, vec![v.len() as i64], None),
        AttrValue::Int(i) => (DType::I64, vec![], Some(Tensor::from_i64(vec![], &[*i]))),
        AttrValue::Ints(v) => (
            DType::I64,
            vec![v.len() as i64],
            int_value(Some(DType::I64), vec![v.len() as i64], v),
        ),
        AttrValue::String(_) => (DType::Str, vec![], None),
        AttrValue::Strings(v) => (DType::Str, vec![v.len() as i64], None),
        AttrValue::SparseTensor(s) => (s.values.dtype, s.dims.clone(), None),
        _ => return Err(format!("unsupported Constant attribute '{}'", attr.name)),
    };
    Ok(vec![
        Inferred::tensor(Some(dtype), Some(known(&dims))).with_value(value)
    ])
}

fn range(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let get = |i: usize| {
        cx.value(i)
            .and_then(|t| t.to_f32().ok())
            .and_then(|v| v.first().copied())
    };
    let (Some(s), Some(l), Some(d)) = (get(0), get(1), get(2)) else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown]))]);
    };
    if d == 0.0 {
        return Err("Range delta is 0".into());
    }
    let n = (((l - s) / d).ceil()).max(0.0) as i64;
    let v = if dtype.is_some_and(|t| t.is_int()) {
        let (si, di) = (s as i64, d as i64);
        let vals: Vec<i64> = (0..n).map(|k| si + k * di).collect();
        int_value(dtype, vec![n], &vals)
    } else {
        None
    };
    Ok(vec![
        Inferred::tensor(dtype, Some(vec![Dim::Known(n)])).with_value(v)
    ])
}
