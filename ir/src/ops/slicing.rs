//! Ops that cut, join, index and pad: `Concat`, `Split` (sizes as an attribute before opset 13,
//! an input from 13, `num_outputs` from 18), `Slice` (attributes before opset 10), `Gather`,
//! `GatherElements`, `GatherND`, the scatters, `Pad` (attributes before opset 11), `OneHot`,
//! `NonZero`, `TopK`, `ArgMax`/`ArgMin`, `CumSum`, `Compress`, `ReverseSequence`.

use super::data::{self, Data};
use super::{
    len_1d, norm_axes, norm_axis, show_input, show_ints, InferCtx, Inferred, Op, Table,
    MAX_VALUE_ELEMENTS,
};
use crate::dtype::DType;
use crate::types::Dim;

static CONCAT: Op = Op::new(concat);
static SPLIT: Op = Op::new(split);
static SLICE: Op = Op::new(slice);
static GATHER: Op = Op::new(gather);
static GATHER_ELEMENTS: Op = Op::new(gather_elements);
static GATHER_ND: Op = Op::new(gather_nd);
static SAME_AS_DATA: Op = Op::new(same_as_data);
static PAD: Op = Op::new(pad);
static ONE_HOT: Op = Op::new(one_hot);
static NON_ZERO: Op = Op::new(non_zero);
static TOP_K: Op = Op::new(top_k);
static ARG_REDUCE: Op = Op::new(arg_reduce);
static COMPRESS: Op = Op::new(compress);

pub(crate) static OPS: Table = &[
    ("Concat", &CONCAT),
    ("Split", &SPLIT),
    ("Slice", &SLICE),
    ("Gather", &GATHER),
    ("GatherElements", &GATHER_ELEMENTS),
    ("GatherND", &GATHER_ND),
    ("ScatterND", &SAME_AS_DATA),
    ("ScatterElements", &SAME_AS_DATA),
    ("Scatter", &SAME_AS_DATA),
    ("CumSum", &SAME_AS_DATA),
    ("ReverseSequence", &SAME_AS_DATA),
    ("Pad", &PAD),
    ("OneHot", &ONE_HOT),
    ("NonZero", &NON_ZERO),
    ("TopK", &TOP_K),
    ("ArgMax", &ARG_REDUCE),
    ("ArgMin", &ARG_REDUCE),
    ("Compress", &COMPRESS),
];

fn concat(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let axis = cx
        .node
        .attr_int("axis")
        .ok_or("Concat has no 'axis' attribute")?;
    let inputs: Vec<usize> = (0..cx.num_inputs()).filter(|&i| cx.has_input(i)).collect();
    let mut dtype = None;
    for &i in &inputs {
        if let Some(d) = cx.dtype(i) {
            match dtype {
                Some((j, e)) if e != d => {
                    return Err(format!("input {i} is {d} but input {j} is {e}"))
                }
                None => dtype = Some((i, d)),
                _ => {}
            }
        }
    }
    let dtype = dtype.map(|(_, d)| d);
    // The first input of known rank fixes the rank and the axis.
    let Some((first, x0)) = inputs.iter().find_map(|&i| Some((i, cx.dims(i)?))) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let a = norm_axis(axis, x0.len())?;
    let mut out = x0.clone();
    let mut all_known = true;
    for &i in &inputs {
        let Some(x) = cx.dims(i) else {
            all_known = false;
            continue;
        };
        let clash = || {
            format!(
                "cannot concatenate {} with {} on axis {a}",
                show_input(cx, first),
                show_input(cx, i)
            )
        };
        if x.len() != out.len() {
            return Err(clash());
        }
        for (k, d) in x.iter().enumerate() {
            if k == a {
                continue;
            }
            out[k] = match (&out[k], d) {
                (Dim::Known(p), Dim::Known(q)) if p != q => return Err(clash()),
                (Dim::Known(_), _) => out[k].clone(),
                (_, Dim::Known(_)) => d.clone(),
                (Dim::Sym(_), _) => out[k].clone(),
                _ => d.clone(),
            };
        }
    }
    // The concatenated axis: a sum of known sizes, or a single unknown part next to empty ones.
    let parts: Option<Vec<Dim>> = inputs
        .iter()
        .map(|&i| cx.dims(i).and_then(|x| x.get(a).cloned()))
        .collect();
    out[a] = match parts {
        Some(parts) if all_known => {
            let mut sum = 0i64;
            let mut other: Vec<&Dim> = Vec::new();
            for p in &parts {
                match p {
                    Dim::Known(n) => sum = sum.checked_add(*n).ok_or("axis size overflows")?,
                    d => other.push(d),
                }
            }
            match other.as_slice() {
                [] => Dim::Known(sum),
                [d] if sum == 0 => (*d).clone(),
                _ => Dim::Unknown,
            }
        }
        _ => Dim::Unknown,
    };
    let value = concat_value(cx, &inputs, a);
    // Shape vectors being assembled: 1-D parts, some entries symbolic.
    let data = if out.len() == 1 {
        inputs
            .iter()
            .map(|&i| cx.shape_data(i))
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.concat())
    } else {
        None
    };
    Ok(vec![Inferred::of(dtype, out)
        .with_data(value)
        .with_shape_data(data, false)])
}

fn concat_value(cx: &InferCtx<'_>, inputs: &[usize], a: usize) -> Option<Data> {
    let parts: Vec<Data> = inputs.iter().map(|&i| cx.data(i)).collect::<Option<_>>()?;
    let first = parts.first()?;
    let outer = data::count(first.dims.get(..a)?)?.max(1);
    let mut dims = first.dims.clone();
    *dims.get_mut(a)? = parts
        .iter()
        .try_fold(0i64, |s, p| s.checked_add(*p.dims.get(a)?))?;
    // Each part contributes a contiguous chunk per index of the leading axes.
    let mut values = Vec::new();
    for o in 0..outer {
        for p in &parts {
            let chunk = p.len() / outer;
            for k in 0..chunk {
                values.push(p.get(o * chunk + k)?);
            }
        }
    }
    Data::from_scalars(first.dtype, dims, &values)
}

fn split(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let nout = cx.num_outputs();
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None); nout]);
    };
    let a = norm_axis(cx.attr_int("axis", 0), x.len())?;
    let dim = x[a].clone();
    let sizes: Option<Vec<Dim>> = if cx.opset < 13 && cx.attr_ints("split").is_some() {
        cx.attr_ints("split")
            .map(|s| s.iter().map(|&d| Dim::Known(d)).collect())
    } else if cx.opset >= 13 && cx.has_input(1) {
        cx.ints(1)
            .map(|s| s.iter().map(|&d| Dim::Known(d)).collect())
    } else if let (true, Some(n)) = (cx.opset >= 18, cx.node.attr_int("num_outputs")) {
        if usize::try_from(n).ok() != Some(nout) {
            return Err(format!("num_outputs {n} but the node has {nout} outputs"));
        }
        // Equal chunks of ceil(dim / n); the last one takes what is left.
        Some(match dim.known() {
            Some(d) if n > 0 => {
                let chunk = super::div_ceil(d, n);
                let last = chunk
                    .checked_mul(n - 1)
                    .and_then(|used| d.checked_sub(used))
                    .ok_or("split size overflows")?;
                if last < 0 {
                    return Err(format!(
                        "axis {a} of size {d} cannot be split into {n} outputs"
                    ));
                }
                let mut s = vec![Dim::Known(chunk); nout.saturating_sub(1)];
                s.push(Dim::Known(last));
                s
            }
            _ => vec![Dim::Unknown; nout],
        })
    } else {
        Some(match dim.known() {
            Some(d) if nout > 0 => {
                let n = nout as i64;
                if d % n != 0 {
                    return Err(format!(
                        "axis {a} of size {d} cannot be split into {n} equal parts"
                    ));
                }
                vec![Dim::Known(d / n); nout]
            }
            _ => vec![Dim::Unknown; nout],
        })
    };
    let Some(sizes) = sizes else {
        let mut d = x.clone();
        d[a] = Dim::Unknown;
        return Ok(vec![Inferred::of(dtype, d); nout]);
    };
    let ints: Vec<i64> = sizes.iter().filter_map(|d| d.known()).collect();
    if sizes.len() != nout {
        return Err(format!(
            "split sizes {} have {} entries for {nout} outputs",
            show_ints(&ints),
            sizes.len()
        ));
    }
    if ints.iter().any(|&s| s < 0) {
        return Err(format!(
            "split sizes {} have a negative entry",
            show_ints(&ints)
        ));
    }
    if let (Some(d), true) = (dim.known(), ints.len() == sizes.len()) {
        let sum = ints.iter().try_fold(0i64, |s, &v| s.checked_add(v));
        if sum != Some(d) {
            return Err(format!(
                "split sizes {} do not add up to {d}, the size of axis {a} of {}",
                show_ints(&ints),
                show_input(cx, 0)
            ));
        }
    }
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut d = x.clone();
            d[a] = s;
            Inferred::of(dtype, d)
        })
        .collect())
}

/// Start and element count of a slice of a known extent (ONNX clamping rules).
pub(crate) fn slice_extent(start: i64, end: i64, step: i64, dim: i64) -> (i64, i64) {
    let (s, e) = (start as i128, end as i128);
    // A negative extent (from a bad declaration) is treated as empty.
    let (d, st) = (dim.max(0) as i128, step as i128);
    let s = if s < 0 { s + d } else { s };
    let e = if e < 0 { e + d } else { e };
    let (s, len) = if st > 0 {
        let s = s.clamp(0, d);
        let e = e.clamp(0, d);
        (s, if e > s { (e - s + st - 1) / st } else { 0 })
    } else {
        let s = s.clamp(0, (d - 1).max(0));
        let e = e.clamp(-1, d - 1);
        (
            s,
            if s > e {
                (s - e + (-st) - 1) / (-st)
            } else {
                0
            },
        )
    };
    (s as i64, len as i64)
}

fn slice(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let get = |n: &str| cx.attr_ints(n).map(|v| v.to_vec());
        (get("starts"), get("ends"), get("axes"), None)
    } else {
        let get = |i: usize| if cx.has_input(i) { cx.ints(i) } else { None };
        (get(1), get(2), get(3), get(4))
    };
    let axes_given = cx.opset >= 10 && cx.has_input(3) || cx.opset < 10 && axes.is_some();
    let (Some(starts), Some(ends)) = (starts, ends) else {
        // Which axes are sliced may be known even when the bounds are not.
        let mut out = x.clone();
        match (&axes, axes_given) {
            (Some(axes), _) => {
                for a in norm_axes(axes, x.len())? {
                    out[a] = Dim::Unknown;
                }
            }
            (None, false) => {
                let n = len_1d(cx, 1).unwrap_or(x.len());
                out.iter_mut().take(n).for_each(|d| *d = Dim::Unknown);
            }
            (None, true) => out.iter_mut().for_each(|d| *d = Dim::Unknown),
        }
        return Ok(vec![Inferred::of(dtype, out)]);
    };
    if axes_given && axes.is_none() || cx.opset >= 10 && cx.has_input(4) && steps.is_none() {
        return Ok(vec![Inferred::of(dtype, vec![Dim::Unknown; x.len()])]);
    }
    let n = starts.len();
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(format!(
            "starts {}, ends {}, axes {} and steps {} differ in length",
            show_ints(&starts),
            show_ints(&ends),
            show_ints(&axes),
            show_ints(&steps)
        ));
    }
    let axes = norm_axes(&axes, x.len())?;
    let mut out = x.clone();
    // Per axis: (start, step, count) when known, for computing contents.
    let mut picks: Vec<Option<(i64, i64, i64)>> =
        x.iter().map(|d| d.known().map(|d| (0, 1, d))).collect();
    for k in 0..n {
        let (a, step) = (axes[k], steps[k]);
        if step == 0 {
            return Err("Slice step cannot be 0".into());
        }
        match x[a] {
            Dim::Known(d) => {
                let (s, len) = slice_extent(starts[k], ends[k], step, d);
                out[a] = Dim::Known(len);
                picks[a] = Some((s, step, len));
            }
            // Exporters slice "to the end" with a huge end; the extent survives that.
            _ if starts[k] == 0 && step == 1 && ends[k] >= i32::MAX as i64 => {}
            _ => out[a] = Dim::Unknown,
        }
    }
    let value = cx.data(0).and_then(|d| {
        let picks: Vec<(i64, i64, i64)> = picks.iter().copied().collect::<Option<_>>()?;
        gather_strided(&d, &picks)
    });
    let data = match (picks.as_slice(), cx.shape_data(0)) {
        ([Some((s, step, n))], Some(elems)) => (0..*n)
            .map(|k| {
                usize::try_from(k.checked_mul(*step)?.checked_add(*s)?)
                    .ok()
                    .and_then(|i| elems.get(i).cloned())
            })
            .collect(),
        _ => None,
    };
    Ok(vec![Inferred::of(dtype, out)
        .with_data(value)
        .with_shape_data(data, false)])
}

/// Pick `(start, step, count)` per axis from small contents.
fn gather_strided(d: &Data, picks: &[(i64, i64, i64)]) -> Option<Data> {
    let dims: Vec<i64> = picks.iter().map(|p| p.2).collect();
    let total = data::count(&dims)?;
    if total > MAX_VALUE_ELEMENTS || picks.len() != d.dims.len() {
        return None;
    }
    let strides = data::strides(&d.dims);
    let out_strides = data::strides(&dims);
    let mut idx = Vec::with_capacity(total);
    for flat in 0..total {
        let mut src = 0i64;
        for (k, &(s, st, n)) in picks.iter().enumerate() {
            let os = *out_strides.get(k)?;
            let c = ((flat / os.max(1)) % usize::try_from(n).ok()?.max(1)) as i64;
            let pos = c.checked_mul(st)?.checked_add(s)?;
            src = src.checked_add(pos.checked_mul(i64::try_from(*strides.get(k)?).ok()?)?)?;
        }
        idx.push(usize::try_from(src).ok()?);
    }
    d.pick(dims, &idx)
}

fn gather(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let (Some(x), Some(ind)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    if x.is_empty() {
        return Err(format!("Gather data {} is a scalar", show_input(cx, 0)));
    }
    let a = norm_axis(cx.attr_int("axis", 0), x.len())?;
    let indices = cx.ints(1);
    if let (Dim::Known(d), Some(indices)) = (&x[a], &indices) {
        if let Some(bad) = indices.iter().find(|&&i| i < -d || i >= *d) {
            return Err(format!(
                "index {bad} is out of range for axis {a} of {}",
                show_input(cx, 0)
            ));
        }
    }
    let mut out = x[..a].to_vec();
    out.extend(ind.iter().cloned());
    out.extend(x[a + 1..].iter().cloned());
    let value = (|| {
        let d = cx.data(0)?;
        let indices = indices?;
        let dims: Vec<i64> = out.iter().map(|d| d.known()).collect::<Option<_>>()?;
        let outer = data::count(d.dims.get(..a)?)?;
        let inner = data::count(d.dims.get(a + 1..)?)?;
        let n = *d.dims.get(a)?;
        let mut idx = Vec::new();
        for o in 0..outer {
            for &i in &indices {
                let i = usize::try_from(if i < 0 { i + n } else { i }).ok()?;
                let base = (o * usize::try_from(n).ok()? + i) * inner;
                idx.extend(base..base + inner);
            }
        }
        d.pick(dims, &idx)
    })();
    // One entry (or several) of a shape vector.
    let data = match (x.len(), cx.shape_data(0), cx.ints(1)) {
        (1, Some(elems), Some(indices)) if ind.len() <= 1 => indices
            .iter()
            .map(|&i| {
                let n = elems.len() as i64;
                usize::try_from(if i < 0 { i + n } else { i })
                    .ok()
                    .and_then(|i| elems.get(i).cloned())
            })
            .collect(),
        _ => None,
    };
    Ok(vec![Inferred::of(dtype, out)
        .with_data(value)
        .with_shape_data(data, ind.is_empty())])
}

fn gather_elements(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    if let (Some(x), Some(i)) = (cx.rank(0), cx.rank(1)) {
        if x != i {
            return Err(format!(
                "indices {} and data {} differ in rank",
                show_input(cx, 1),
                show_input(cx, 0)
            ));
        }
    }
    Ok(vec![Inferred::tensor(cx.dtype(0), cx.dims(1))])
}

fn gather_nd(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let (Some(x), Some(ind)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let b = usize::try_from(cx.attr_int("batch_dims", 0)).map_err(|_| "negative batch_dims")?;
    let Some((last, lead)) = ind.split_last() else {
        return Err(format!("indices {} is a scalar", show_input(cx, 1)));
    };
    let Some(k) = last.known().and_then(|k| usize::try_from(k).ok()) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let tail = b.checked_add(k).and_then(|s| x.get(s..)).ok_or_else(|| {
        format!(
            "indices {} index deeper than the data {}",
            show_input(cx, 1),
            show_input(cx, 0)
        )
    })?;
    let mut out = lead.to_vec();
    out.extend(tail.iter().cloned());
    Ok(vec![Inferred::of(dtype, out)])
}

fn same_as_data(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    Ok(vec![Inferred::like(cx.input_type(0))])
}

fn pad(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let pads = if cx.opset < 11 {
        cx.attr_ints("pads")
            .or_else(|| cx.attr_ints("paddings"))
            .map(|p| p.to_vec())
    } else {
        cx.ints(1)
    };
    let axes: Option<Vec<usize>> = if cx.opset >= 18 && cx.has_input(3) {
        match cx.ints(3) {
            Some(a) => Some(norm_axes(&a, x.len())?),
            None => return Ok(vec![Inferred::of(dtype, vec![Dim::Unknown; x.len()])]),
        }
    } else {
        None
    };
    let axes = axes.unwrap_or_else(|| (0..x.len()).collect());
    let Some(pads) = pads else {
        let mut out = x.clone();
        for &a in &axes {
            out[a] = Dim::Unknown;
        }
        return Ok(vec![Inferred::of(dtype, out)]);
    };
    let n = axes.len();
    if pads.len() != 2 * n {
        return Err(format!(
            "pads {} has {} entries for {n} axes",
            show_ints(&pads),
            pads.len()
        ));
    }
    let mut out = x.clone();
    for (k, &a) in axes.iter().enumerate() {
        let (b, e) = (pads[k], pads[k + n]);
        out[a] = match &x[a] {
            Dim::Known(d) => {
                let v = d
                    .checked_add(b)
                    .and_then(|v| v.checked_add(e))
                    .ok_or("padded size overflows")?;
                if v < 0 {
                    return Err(format!(
                        "pads {} make axis {a} of {} negative",
                        show_ints(&pads),
                        show_input(cx, 0)
                    ));
                }
                Dim::Known(v)
            }
            d if b == 0 && e == 0 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    Ok(vec![Inferred::of(dtype, out)])
}

fn one_hot(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(2);
    let Some(ind) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let a = norm_axis(cx.attr_int("axis", -1), ind.len() + 1)?;
    let depth = cx
        .data(1)
        .and_then(|d| d.get(0))
        .and_then(|s| s.as_i64())
        .map_or(Dim::Unknown, Dim::Known);
    let mut out = ind;
    out.insert(a, depth);
    Ok(vec![Inferred::of(dtype, out)])
}

fn non_zero(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let r = cx.rank(0).map_or(Dim::Unknown, |r| Dim::Known(r as i64));
    Ok(vec![Inferred::of(Some(DType::I64), vec![r, Dim::Unknown])])
}

fn top_k(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![
            Inferred::tensor(dtype, None),
            Inferred::tensor(Some(DType::I64), None),
        ]);
    };
    let a = norm_axis(cx.attr_int("axis", -1), x.len())?;
    let k = if cx.opset < 10 {
        cx.node.attr_int("k")
    } else {
        cx.ints(1).and_then(|k| k.first().copied())
    };
    if let (Some(k), Dim::Known(d)) = (k, &x[a]) {
        if k < 0 || k > *d {
            return Err(format!(
                "k = {k} is out of range for axis {a} of {}",
                show_input(cx, 0)
            ));
        }
    }
    let mut out = x;
    out[a] = k.map_or(Dim::Unknown, Dim::Known);
    Ok(vec![
        Inferred::of(dtype, out.clone()),
        Inferred::of(Some(DType::I64), out),
    ])
}

fn arg_reduce(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(Some(DType::I64), None)]);
    };
    let a = norm_axis(cx.attr_int("axis", 0), x.len())?;
    let mut out = x;
    if cx.attr_int("keepdims", 1) != 0 {
        out[a] = Dim::Known(1);
    } else {
        out.remove(a);
    }
    Ok(vec![Inferred::of(Some(DType::I64), out)])
}

fn compress(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let out = match (cx.node.attr_int("axis"), cx.dims(0)) {
        (None, _) => Some(vec![Dim::Unknown]),
        (Some(a), Some(mut x)) => {
            let a = norm_axis(a, x.len())?;
            x[a] = Dim::Unknown;
            Some(x)
        }
        (Some(_), None) => None,
    };
    Ok(vec![Inferred::tensor(dtype, out)])
}
