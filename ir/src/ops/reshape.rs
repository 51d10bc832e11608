//! Shape-changing and shape-producing ops: `Reshape` (`0` copies, `-1` is inferred, `allowzero`),
//! `Flatten`, `Squeeze`/`Unsqueeze` (axes as an attribute before opset 13, an input from 13),
//! `Transpose`, `Expand`, `Tile`, `DepthToSpace`/`SpaceToDepth`, and the ops that make shape
//! data: `Shape`, `Size`, `Constant`, `ConstantOfShape`, `Range`, `EyeLike`, `Trilu`.

use super::data::{self, Data, Scalar};
use super::{
    broadcast, dim_mul, dims_product, known, len_1d, norm_axes, show, show_input, show_ints,
    InferCtx, Inferred, Op, Table, MAX_VALUE_ELEMENTS,
};
use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::tensor::Tensor;
use crate::types::Dim;

static RESHAPE: Op = Op::new(reshape);
static FLATTEN: Op = Op::new(flatten);
static SQUEEZE: Op = Op::new(squeeze);
static UNSQUEEZE: Op = Op::new(unsqueeze);
static TRANSPOSE: Op = Op::new(transpose);
static EXPAND: Op = Op::new(expand);
static TILE: Op = Op::new(tile);
static SHAPE: Op = Op::new(shape);
static SIZE: Op = Op::new(size);
static CONSTANT_OF_SHAPE: Op = Op::new(constant_of_shape);
static CONSTANT: Op = Op::new(constant);
static RANGE: Op = Op::new(range);
static TRILU: Op = Op::new(trilu);
static EYE_LIKE: Op = Op::new(eye_like);
static DEPTH_TO_SPACE: Op = Op::new(depth_to_space);
static SPACE_TO_DEPTH: Op = Op::new(space_to_depth);

pub(crate) static OPS: Table = &[
    ("Reshape", &RESHAPE),
    ("Flatten", &FLATTEN),
    ("Squeeze", &SQUEEZE),
    ("Unsqueeze", &UNSQUEEZE),
    ("Transpose", &TRANSPOSE),
    ("Expand", &EXPAND),
    ("Tile", &TILE),
    ("Shape", &SHAPE),
    ("Size", &SIZE),
    ("ConstantOfShape", &CONSTANT_OF_SHAPE),
    ("Constant", &CONSTANT),
    ("Range", &RANGE),
    ("Trilu", &TRILU),
    ("EyeLike", &EYE_LIKE),
    ("DepthToSpace", &DEPTH_TO_SPACE),
    ("SpaceToDepth", &SPACE_TO_DEPTH),
];

/// `n` unknown dims, when `n` is a plausible rank.
fn unknown_dims(n: Option<usize>) -> Option<Vec<Dim>> {
    n.map(|n| vec![Dim::Unknown; n])
}

/// Contents with new dims, when all of them are known.
fn reshaped(d: Option<Data>, dims: &[Dim]) -> Option<Data> {
    let dims: Vec<i64> = dims.iter().map(|d| d.known()).collect::<Option<_>>()?;
    d?.reshaped(dims)
}

fn reshape(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let target = if cx.opset < 5 {
        cx.attr_ints("shape").map(known)
    } else {
        cx.shape_data(1)
    };
    let Some(target) = target else {
        return Ok(vec![Inferred::tensor(dtype, unknown_dims(len_1d(cx, 1)))]);
    };
    let allowzero = cx.attr_int("allowzero", 0) != 0;
    let x = cx.dims(0);
    let out = reshape_dims(x.as_deref(), &target, allowzero, dtype)?;
    let value = reshaped(cx.data(0), &out);
    let rank = out.len();
    let data = (rank <= 1).then(|| cx.shape_data(0)).flatten();
    Ok(vec![Inferred::of(dtype, out)
        .with_data(value)
        .with_shape_data(data, rank == 0)])
}

/// A Reshape target for messages: `[B,-1]`.
fn show_target(target: &[Dim]) -> String {
    let parts: Vec<String> = target.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// The output dims of a Reshape to `target` (ONNX semantics for known entries; symbolic entries,
/// from shape data, are dims).
pub(crate) fn reshape_dims(
    x: Option<&[Dim]>,
    target: &[Dim],
    allowzero: bool,
    dtype: Option<DType>,
) -> Result<Vec<Dim>, String> {
    if target.len() > super::MAX_RANK {
        return Err(format!("shape has {} entries", target.len()));
    }
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        let Dim::Known(s) = *t else {
            out.push(t.clone());
            continue;
        };
        match s {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err(format!(
                        "shape {} has more than one -1",
                        show_target(target)
                    ));
                }
                out.push(Dim::Unknown);
            }
            0 if !allowzero => match x {
                Some(x) => out.push(x.get(i).cloned().ok_or_else(|| {
                    format!(
                        "shape {} copies dimension {i} with 0, but the input {} has rank {}",
                        show_target(target),
                        show(dtype, x),
                        x.len()
                    )
                })?),
                None => out.push(Dim::Unknown),
            },
            s if s >= 0 => out.push(Dim::Known(s)),
            _ => {
                return Err(format!(
                    "shape {} has an invalid entry {s}",
                    show_target(target)
                ))
            }
        }
    }
    if allowzero && infer_at.is_some() && target.contains(&Dim::Known(0)) {
        return Err(format!(
            "shape {} has both 0 and -1 with allowzero=1",
            show_target(target)
        ));
    }
    let Some(x) = x else {
        return Ok(out);
    };
    let mismatch = |n: i64| {
        format!(
            "cannot reshape {} ({n} elements) to {}",
            show(dtype, x),
            show_target(target)
        )
    };
    match infer_at {
        Some(at) => {
            let rest: Vec<Dim> = out
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != at)
                .map(|(_, d)| d.clone())
                .collect();
            if let Some(d) = solve_minus_one(x, &rest, mismatch)? {
                out[at] = d;
            }
        }
        None => {
            let (a, b) = (dims_product(x)?, dims_product(&out)?);
            if let (Dim::Known(a), Dim::Known(b)) = (a, b) {
                if a != b {
                    return Err(mismatch(a));
                }
            }
        }
    }
    Ok(out)
}

/// The `-1` of a Reshape: the input's elements over the other output dims, cancelling symbolic
/// dims that appear on both sides (`[batch, 3, 4] -> [0, -1]` gives 12).
fn solve_minus_one(
    x: &[Dim],
    rest: &[Dim],
    mismatch: impl Fn(i64) -> String,
) -> Result<Option<Dim>, String> {
    let mut num_syms: Vec<&str> = Vec::new();
    let mut num = 1i64;
    for d in x {
        match d {
            Dim::Known(n) => num = num.checked_mul(*n).ok_or("element count overflows")?,
            Dim::Sym(s) => num_syms.push(s),
            Dim::Unknown => return Ok(None),
        }
    }
    let mut den = 1i64;
    for d in rest {
        match d {
            Dim::Known(n) => den = den.checked_mul(*n).ok_or("element count overflows")?,
            Dim::Sym(s) => match num_syms.iter().position(|t| t == s) {
                Some(p) => {
                    num_syms.swap_remove(p);
                }
                None => return Ok(None),
            },
            Dim::Unknown => return Ok(None),
        }
    }
    if den == 0 {
        return Ok(None);
    }
    match num_syms.as_slice() {
        [] => {
            if num % den != 0 {
                return Err(mismatch(num));
            }
            Ok(Some(Dim::Known(num / den)))
        }
        [s] if num == den => Ok(Some(Dim::Sym(s.to_string()))),
        _ => Ok(None),
    }
}

fn flatten(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; 2]))]);
    };
    let r = x.len() as i64;
    let a = cx.attr_int("axis", 1);
    let a = if a < 0 { a.saturating_add(r) } else { a };
    if !(0..=r).contains(&a) {
        return Err(format!(
            "axis {} is out of range for rank {r}",
            cx.attr_int("axis", 1)
        ));
    }
    let (head, tail) = x.split_at(a as usize);
    let out = vec![dims_product(head)?, dims_product(tail)?];
    let value = reshaped(cx.data(0), &out);
    Ok(vec![Inferred::of(dtype, out).with_data(value)])
}

/// Axes from the `axes` attribute (before `since`) or input 1. `Err(())` when an input is given
/// but its contents are unknown.
fn axes_arg(cx: &InferCtx<'_>, since: i64) -> Result<Option<Vec<i64>>, ()> {
    if cx.opset < since {
        return Ok(cx.attr_ints("axes").map(|a| a.to_vec()));
    }
    if !cx.has_input(1) {
        return Ok(None);
    }
    cx.ints(1).map(Some).ok_or(())
}

fn squeeze(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let (Some(x), Ok(axes)) = (cx.dims(0), axes_arg(cx, 13)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let out: Vec<Dim> = match axes.filter(|a| !a.is_empty()) {
        None => {
            // Without axes every 1 goes; an unknown dim might be 1.
            if x.iter().any(|d| d.known().is_none()) {
                return Ok(vec![Inferred::tensor(dtype, None)]);
            }
            x.iter().filter(|d| **d != Dim::Known(1)).cloned().collect()
        }
        Some(axes) => {
            let axes = norm_axes(&axes, x.len())?;
            for &a in &axes {
                if let Dim::Known(n) = x[a] {
                    if n != 1 {
                        return Err(format!(
                            "cannot squeeze axis {a} of {}: its size is {n}",
                            show_input(cx, 0)
                        ));
                    }
                }
            }
            x.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, d)| d.clone())
                .collect()
        }
    };
    let value = reshaped(cx.data(0), &out);
    let scalar = out.is_empty();
    Ok(vec![Inferred::of(dtype, out)
        .with_data(value)
        .with_shape_data(
            cx.shape_data(0).filter(|_| scalar),
            true,
        )])
}

fn unsqueeze(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let x = cx.dims(0);
    let axes = match axes_arg(cx, 13) {
        Ok(Some(a)) => a,
        Ok(None) => return Err("Unsqueeze has no axes".into()),
        Err(()) => {
            let rank = x.as_ref().zip(len_1d(cx, 1)).map(|(x, n)| x.len() + n);
            return Ok(vec![Inferred::tensor(dtype, unknown_dims(rank))]);
        }
    };
    let Some(x) = x else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let rank = x.len() + axes.len();
    let axes = norm_axes(&axes, rank)?;
    let mut rest = x.iter();
    let out: Vec<Dim> = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Unknown)
            }
        })
        .collect();
    let value = reshaped(cx.data(0), &out);
    let vector = out.len() == 1;
    Ok(vec![Inferred::of(dtype, out)
        .with_data(value)
        .with_shape_data(
            cx.shape_data(0).filter(|_| vector),
            false,
        )])
}

fn transpose(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let perm: Vec<i64> = match cx.attr_ints("perm") {
        Some(p) => p.to_vec(),
        None => (0..x.len() as i64).rev().collect(),
    };
    let mut seen = vec![false; x.len()];
    let mut out = Vec::with_capacity(x.len());
    for &p in &perm {
        let slot = usize::try_from(p).ok().filter(|&p| p < x.len());
        match slot {
            Some(p) if !seen[p] => {
                seen[p] = true;
                out.push(x[p].clone());
            }
            _ => break,
        }
    }
    if out.len() != x.len() || perm.len() != x.len() {
        return Err(format!(
            "perm {} is not a permutation of {} axes",
            show_ints(&perm),
            x.len()
        ));
    }
    let value = cx.data(0).and_then(|d| transposed(&d, &perm));
    Ok(vec![Inferred::of(dtype, out).with_data(value)])
}

/// Small contents with axes permuted (`perm` already checked against the rank).
fn transposed(d: &Data, perm: &[i64]) -> Option<Data> {
    let perm: Vec<usize> = perm
        .iter()
        .map(|&p| usize::try_from(p).ok())
        .collect::<Option<_>>()?;
    let dims: Vec<i64> = perm
        .iter()
        .map(|&p| d.dims.get(p).copied())
        .collect::<Option<_>>()?;
    let in_strides = data::strides(&d.dims);
    let out_strides = data::strides(&dims);
    let mut idx = Vec::with_capacity(d.len());
    for flat in 0..d.len() {
        let mut src = 0usize;
        for (k, &p) in perm.iter().enumerate() {
            let extent = usize::try_from(*dims.get(k)?).ok()?.max(1);
            let coord = (flat / out_strides.get(k)?.max(&1)) % extent;
            src += coord * in_strides.get(p)?;
        }
        idx.push(src);
    }
    d.pick(dims, &idx)
}

fn expand(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(shape) = cx.shape_data(1) else {
        let rank = cx.dims(0).zip(len_1d(cx, 1)).map(|(x, n)| x.len().max(n));
        return Ok(vec![Inferred::tensor(dtype, unknown_dims(rank))]);
    };
    if shape.len() > super::MAX_RANK {
        return Err(format!("shape has {} entries", shape.len()));
    }
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let out = broadcast(&x, &shape).ok_or_else(|| {
        format!(
            "cannot expand {} to shape {}",
            show_input(cx, 0),
            show_target(&shape)
        )
    })?;
    let value = cx.data(0).and_then(|d| {
        let dims: Vec<i64> = out.iter().map(|d| d.known()).collect::<Option<_>>()?;
        let idx = data::broadcast_index(&d.dims, &dims, MAX_VALUE_ELEMENTS)?;
        d.pick(dims, &idx)
    });
    Ok(vec![Inferred::of(dtype, out).with_data(value)])
}

fn tile(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let Some(reps) = cx.ints(1) else {
        return Ok(vec![Inferred::of(dtype, vec![Dim::Unknown; x.len()])]);
    };
    if reps.len() != x.len() {
        return Err(format!(
            "repeats {} has {} entries for the input {} of rank {}",
            show_ints(&reps),
            reps.len(),
            show_input(cx, 0),
            x.len()
        ));
    }
    let mut out = Vec::with_capacity(x.len());
    for (d, &r) in x.iter().zip(&reps) {
        if r < 0 {
            return Err(format!("repeats {} has a negative entry", show_ints(&reps)));
        }
        out.push(dim_mul(d, r)?);
    }
    Ok(vec![Inferred::of(dtype, out)])
}

fn shape(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::of(Some(DType::I64), vec![Dim::Unknown])]);
    };
    let r = x.len() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.attr_int("start", 0));
    let end = clamp(cx.attr_int("end", r));
    let part = x.get(start..end.max(start)).unwrap_or_default();
    let out = Inferred::of(Some(DType::I64), vec![Dim::Known(part.len() as i64)]);
    Ok(vec![out.with_shape_data(Some(part.to_vec()), false)])
}

fn size(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let value = match cx.dims(0).map(|x| dims_product(&x)).transpose()? {
        Some(Dim::Known(n)) => Some(Data::ints(DType::I64, vec![], vec![n])),
        _ => None,
    };
    Ok(vec![Inferred::of(Some(DType::I64), vec![]).with_data(value)])
}

fn constant_of_shape(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let fill = cx.node.attr_tensor("value");
    let dtype = fill.map_or(Some(DType::F32), |t| Some(t.dtype));
    let Some(data) = cx.shape_data(0) else {
        return Ok(vec![Inferred::tensor(dtype, unknown_dims(len_1d(cx, 0)))]);
    };
    if let Some(bad) = data.iter().find(|d| d.known().is_some_and(|n| n < 0)) {
        return Err(format!("shape has a negative entry {bad}"));
    }
    let Some(shape) = data.iter().map(|d| d.known()).collect::<Option<Vec<i64>>>() else {
        return Ok(vec![Inferred::of(dtype, data)]);
    };
    if shape.len() > super::MAX_RANK || shape.iter().any(|&d| d < 0) {
        return Err(format!("invalid shape {}", show_ints(&shape)));
    }
    let value = (|| {
        let n = data::count(&shape)?;
        if n > MAX_VALUE_ELEMENTS {
            return None;
        }
        let s = match fill {
            Some(t) => Data::from_tensor(t, 1)?.get(0)?,
            None => Scalar::F(0.0),
        };
        Data::from_scalars(dtype?, shape.clone(), &vec![s; n])
    })();
    Ok(vec![Inferred::of(dtype, known(&shape)).with_data(value)])
}

/// A Constant's tensor, from whichever `value*` attribute it has.
fn constant(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let small = |t: &Tensor| -> Option<Tensor> {
        (t.dtype != DType::Str
            && t.num_elements()? <= MAX_VALUE_ELEMENTS as u64
            && t.validate().is_ok())
        .then(|| t.clone())
    };
    for a in &cx.node.attrs {
        let out = match (a.name.as_str(), &a.value) {
            ("value", AttrValue::Tensor(t)) => {
                Inferred::of(Some(t.dtype), known(&t.dims)).with_value(small(t))
            }
            ("sparse_value", AttrValue::SparseTensor(s)) => {
                Inferred::of(Some(s.values.dtype), known(&s.dims))
            }
            ("value_float", AttrValue::Float(v)) => Inferred::of(Some(DType::F32), vec![])
                .with_value(Some(Tensor::from_f32(vec![], &[*v]))),
            ("value_floats", AttrValue::Floats(v)) => {
                let t = Tensor::from_f32(vec![v.len() as i64], v);
                Inferred::of(Some(DType::F32), vec![Dim::Known(v.len() as i64)])
                    .with_value(small(&t))
            }
            ("value_int", AttrValue::Int(v)) => Inferred::of(Some(DType::I64), vec![])
                .with_value(Some(Tensor::from_i64(vec![], &[*v]))),
            ("value_ints", AttrValue::Ints(v)) => {
                let t = Tensor::from_i64(vec![v.len() as i64], v);
                Inferred::of(Some(DType::I64), vec![Dim::Known(v.len() as i64)])
                    .with_value(small(&t))
            }
            ("value_string", AttrValue::String(_)) => Inferred::of(Some(DType::Str), vec![]),
            ("value_strings", AttrValue::Strings(v)) => {
                Inferred::of(Some(DType::Str), vec![Dim::Known(v.len() as i64)])
            }
            _ => continue,
        };
        return Ok(vec![out]);
    }
    Err("Constant has no value attribute".into())
}

fn range(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0).or(cx.dtype(1)).or(cx.dtype(2));
    let unknown = Inferred::of(dtype, vec![Dim::Unknown]);
    let (Some(start), Some(limit), Some(delta)) = (cx.data(0), cx.data(1), cx.data(2)) else {
        return Ok(vec![unknown]);
    };
    let (Some(s), Some(l), Some(d)) = (start.get(0), limit.get(0), delta.get(0)) else {
        return Ok(vec![unknown]);
    };
    let n: i64 = match (s, l, d) {
        (Scalar::I(s), Scalar::I(l), Scalar::I(d)) => {
            if d == 0 {
                return Err("Range delta is 0".into());
            }
            let (diff, d) = (l as i128 - s as i128, d as i128);
            let q = diff.div_euclid(d) + i128::from(diff.rem_euclid(d) != 0);
            i64::try_from(q.max(0)).map_err(|_| "Range is too long".to_string())?
        }
        _ => {
            let (s, l, d) = (s.as_f64(), l.as_f64(), d.as_f64());
            if d == 0.0 {
                return Err("Range delta is 0".into());
            }
            let q = ((l - s) / d).ceil().max(0.0);
            if !q.is_finite() || q > 9.0e15 {
                return Err("Range is too long".into());
            }
            q as i64
        }
    };
    let value = (|| {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_VALUE_ELEMENTS)?;
        let values: Vec<Scalar> = (0..n)
            .map(|i| match (s, d) {
                (Scalar::I(s), Scalar::I(d)) => {
                    Some(Scalar::I(s.checked_add(d.checked_mul(i as i64)?)?))
                }
                _ => Some(Scalar::F(s.as_f64() + d.as_f64() * i as f64)),
            })
            .collect::<Option<_>>()?;
        Data::from_scalars(dtype?, vec![n as i64], &values)
    })();
    Ok(vec![
        Inferred::of(dtype, vec![Dim::Known(n)]).with_data(value)
    ])
}

fn trilu(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    if let Some(r) = cx.rank(0) {
        if r < 2 {
            return Err(format!(
                "Trilu input {} must have rank 2 or more",
                show_input(cx, 0)
            ));
        }
    }
    Ok(vec![Inferred::like(cx.input_type(0))])
}

fn eye_like(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = match cx.node.attr_int("dtype") {
        Some(code) => Some(
            i32::try_from(code)
                .ok()
                .and_then(DType::from_onnx_code)
                .ok_or_else(|| format!("unknown dtype code {code}"))?,
        ),
        None => cx.dtype(0),
    };
    let dims = cx.dims(0);
    if let Some(d) = &dims {
        if d.len() != 2 {
            return Err(format!("EyeLike input {} must be 2-D", show_input(cx, 0)));
        }
    }
    Ok(vec![Inferred::tensor(dtype, dims)])
}

fn blocksize(cx: &InferCtx<'_>) -> Result<i64, String> {
    let b = cx
        .node
        .attr_int("blocksize")
        .ok_or_else(|| format!("{} has no blocksize", cx.op()))?;
    if b < 1 {
        return Err(format!("blocksize {b} is not positive"));
    }
    Ok(b)
}

/// `[N, C, H, W] -> [N, C / b^2, H * b, W * b]`.
fn depth_to_space(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let b = blocksize(cx)?;
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; 4]))]);
    };
    let [n, c, h, w] = x.as_slice() else {
        return Err(format!("input {} must be 4-D", show_input(cx, 0)));
    };
    let bb = b.checked_mul(b).ok_or("blocksize overflows")?;
    let c = match c {
        Dim::Known(c) if c % bb != 0 => {
            return Err(format!(
                "{c} channels are not divisible by blocksize^2 = {bb}"
            ))
        }
        Dim::Known(c) => Dim::Known(c / bb),
        _ => Dim::Unknown,
    };
    let out = vec![n.clone(), c, dim_mul(h, b)?, dim_mul(w, b)?];
    Ok(vec![Inferred::of(dtype, out)])
}

/// `[N, C, H, W] -> [N, C * b^2, H / b, W / b]`.
fn space_to_depth(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let b = blocksize(cx)?;
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; 4]))]);
    };
    let [n, c, h, w] = x.as_slice() else {
        return Err(format!("input {} must be 4-D", show_input(cx, 0)));
    };
    let bb = b.checked_mul(b).ok_or("blocksize overflows")?;
    let div = |d: &Dim| -> Result<Dim, String> {
        Ok(match d {
            Dim::Known(v) if v % b != 0 => {
                return Err(format!(
                    "spatial size {v} is not divisible by blocksize {b}"
                ))
            }
            Dim::Known(v) => Dim::Known(v / b),
            _ => Dim::Unknown,
        })
    };
    let out = vec![n.clone(), dim_mul(c, bb)?, div(h)?, div(w)?];
    Ok(vec![Inferred::of(dtype, out)])
}
