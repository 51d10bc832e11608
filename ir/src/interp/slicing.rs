//! Concat, Split, Slice, Gather, GatherElements, GatherND, ScatterND, ScatterElements, Pad,
//! Trilu, NonZero, OneHot.

use super::reduce::gather_along;
use super::value::{flat, to_array, try_map_data, Data, Value};
use super::{arg, axis, opt, Ctx, KernelFn};
use ndarray::{ArrayD, Axis, Dimension, IxDyn, Slice};

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "Concat" => concat,
        "Split" => split,
        "Slice" => slice,
        "Gather" => gather,
        "GatherElements" => gather_elements,
        "GatherND" => gather_nd,
        "ScatterND" => scatter_nd,
        "ScatterElements" | "Scatter" => scatter_elements,
        "Pad" => pad,
        "Trilu" => trilu,
        "NonZero" => nonzero,
        "OneHot" => one_hot,
        _ => return None,
    })
}

fn concat(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xs: Vec<&Value> = inputs.iter().flatten().copied().collect();
    let first = *xs.first().ok_or("Concat of nothing")?;
    let ax = axis(cx.int("axis", 0), first.shape().len())?;
    let data = match first.data() {
        Data::F32(_) => Data::F32(cat(&xs, ax, |v| v.as_f32())?),
        Data::I64(_) => Data::I64(cat(&xs, ax, |v| v.as_i64())?),
        Data::Bool(_) => Data::Bool(cat(&xs, ax, |v| v.as_bool())?),
    };
    Ok(vec![first.like(data)])
}

fn cat<T: Clone>(
    xs: &[&Value],
    ax: usize,
    get: impl Fn(&Value) -> Option<&ArrayD<T>>,
) -> Result<ArrayD<T>, String> {
    let views = xs
        .iter()
        .map(|v| {
            get(v)
                .map(|a| a.view())
                .ok_or("Concat inputs differ in dtype")
        })
        .collect::<Result<Vec<_>, _>>()?;
    ndarray::concatenate(Axis(ax), &views).map_err(|_| {
        let shapes: Vec<_> = xs.iter().map(|v| v.shape().to_vec()).collect();
        format!("cannot concatenate {shapes:?} on axis {ax}")
    })
}

/// Rows `[start, end)` of axis `ax`, copied.
fn range_of(x: &Value, ax: usize, start: usize, end: usize) -> Value {
    x.like(super::value::map_data!(x.data(), a => a.slice_axis(Axis(ax), Slice::from(start..end)).to_owned()))
}

fn split(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let ax = axis(cx.int("axis", 0), x.shape().len())?;
    let n = x.shape()[ax];
    let outs = cx.node.outputs.len();
    let sizes: Vec<usize> = {
        let given: Option<Vec<i64>> = if cx.opset >= 13 {
            opt(inputs, 1).map(|v| v.to_i64_vec())
        } else {
            cx.ints("split").map(|s| s.to_vec())
        };
        match given {
            Some(s) if !s.is_empty() => {
                if s.iter().any(|&v| v < 0) || s.iter().sum::<i64>() != n as i64 {
                    return Err(format!("split {s:?} of an axis of {n}"));
                }
                s.iter().map(|&v| v as usize).collect()
            }
            _ => {
                let k = cx.int("num_outputs", outs as i64).max(1) as usize;
                let chunk = n.div_ceil(k);
                (0..k)
                    .map(|i| chunk.min(n.saturating_sub(i * chunk)))
                    .collect()
            }
        }
    };
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&s| {
            let v = range_of(x, ax, start, start + s);
            start += s;
            v
        })
        .collect())
}

fn slice(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let r = x.shape().len();
    type Bounds = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);
    let (starts, ends, axes, steps): Bounds = if cx.opset < 10 {
        (
            cx.ints("starts").ok_or("starts missing")?.to_vec(),
            cx.ints("ends").ok_or("ends missing")?.to_vec(),
            cx.ints("axes").map(|a| a.to_vec()),
            None,
        )
    } else {
        (
            arg(inputs, 1)?.to_i64_vec(),
            arg(inputs, 2)?.to_i64_vec(),
            opt(inputs, 3).map(|v| v.to_i64_vec()),
            opt(inputs, 4).map(|v| v.to_i64_vec()),
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut slices: Vec<Slice> = vec![Slice::from(..); r];
    for i in 0..starts.len() {
        let ax = axis(axes[i], r)?;
        let dim = x.shape()[ax] as i64;
        let step = steps[i];
        if step == 0 {
            return Err("slice step 0".into());
        }
        let norm = |v: i64| if v < 0 { v + dim } else { v };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        let (s, e) = if step > 0 {
            (s.clamp(0, dim), e.clamp(0, dim))
        } else {
            (s.clamp(-1, dim - 1), e.clamp(-1, dim - 1))
        };
        slices[ax] = if step > 0 {
            Slice::new(s as isize, Some(e.max(s) as isize), step as isize)
        } else if e >= s {
            Slice::new(0, Some(0), 1)
        } else {
            // ndarray slices a range then steps from its end for negative steps.
            Slice::new((e + 1) as isize, Some((s + 1) as isize), step as isize)
        };
    }
    fn sl<T: Clone>(a: &ArrayD<T>, slices: &[Slice]) -> ArrayD<T> {
        let mut v = a.view();
        for (ax, s) in slices.iter().enumerate() {
            v.slice_axis_inplace(Axis(ax), *s);
        }
        v.to_owned()
    }
    Ok(vec![x.like(
        super::value::map_data!(x.data(), a => sl(a, &slices)),
    )])
}

fn gather(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let iv = arg(inputs, 1)?;
    let ax = axis(cx.int("axis", 0), x.shape().len())?;
    let n = x.shape()[ax] as i64;
    let idx: Vec<usize> = iv
        .to_i64_vec()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                Err(format!("index {i} out of range for an axis of {n}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_, _>>()?;
    let mut shape = x.shape()[..ax].to_vec();
    shape.extend_from_slice(iv.shape());
    shape.extend_from_slice(&x.shape()[ax + 1..]);
    fn g<T: Clone>(
        a: &ArrayD<T>,
        ax: usize,
        idx: &[usize],
        shape: &[usize],
    ) -> Result<ArrayD<T>, String> {
        let sel = a.select(Axis(ax), idx);
        let v: Vec<T> = flat(&sel);
        to_array(shape, v)
    }
    Ok(vec![x.like(
        try_map_data!(x.data(), a => g(a, ax, &idx, &shape)),
    )])
}

fn gather_elements(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let idx = arg(inputs, 1)?;
    let ax = axis(cx.int("axis", 0), x.shape().len())?;
    let idx = idx.as_i64().ok_or("indices must be integers")?;
    Ok(vec![gather_along(x, idx, ax)?])
}

/// Offsets into a row-major array for each index tuple of the last axis of `idx`.
fn tuples(idx: &ArrayD<i64>, shape: &[usize]) -> Result<(Vec<usize>, usize, Vec<usize>), String> {
    let k = *idx.shape().last().ok_or("indices of rank 0")?;
    if k > shape.len() {
        return Err(format!("index tuples of {k} for rank {}", shape.len()));
    }
    let inner: usize = shape[k..].iter().product();
    let flat: Vec<i64> = idx.as_standard_layout().iter().copied().collect();
    let mut offs = Vec::with_capacity(flat.len() / k.max(1));
    for t in flat.chunks(k.max(1)) {
        let mut off = 0usize;
        for (d, &i) in t.iter().enumerate().take(k) {
            let n = shape[d] as i64;
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return Err(format!("index {i} out of range for an axis of {n}"));
            }
            off = off * shape[d] + j as usize;
        }
        offs.push(off * inner);
    }
    if k == 0 {
        offs = vec![0; idx.len()];
    }
    Ok((offs, inner, shape[k..].to_vec()))
}

fn gather_nd(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    if cx.int("batch_dims", 0) != 0 {
        return Err("GatherND with batch_dims is not supported".into());
    }
    let idx = arg(inputs, 1)?.as_i64().ok_or("indices must be integers")?;
    let (offs, inner, tail) = tuples(idx, x.shape())?;
    let mut shape = idx.shape()[..idx.ndim() - 1].to_vec();
    shape.extend(tail);
    fn g<T: Clone>(
        a: &ArrayD<T>,
        offs: &[usize],
        inner: usize,
        shape: &[usize],
    ) -> Result<ArrayD<T>, String> {
        let data: Vec<T> = flat(a);
        let mut out = Vec::with_capacity(offs.len() * inner);
        for &o in offs {
            out.extend_from_slice(data.get(o..o + inner).ok_or("index out of range")?);
        }
        to_array(shape, out)
    }
    Ok(vec![x.like(
        try_map_data!(x.data(), a => g(a, &offs, inner, &shape)),
    )])
}

fn scatter_nd(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let idx = arg(inputs, 1)?.as_i64().ok_or("indices must be integers")?;
    let upd = arg(inputs, 2)?;
    let (offs, inner, _) = tuples(idx, x.shape())?;
    let red = cx.string("reduction", "none");
    fn s<T: Copy + std::ops::Add<Output = T> + std::ops::Mul<Output = T> + PartialOrd>(
        a: &ArrayD<T>,
        u: Option<&ArrayD<T>>,
        offs: &[usize],
        inner: usize,
        red: &str,
    ) -> Result<ArrayD<T>, String> {
        let u = u.ok_or("updates differ in dtype")?;
        let uf: Vec<T> = flat(u);
        let mut data: Vec<T> = flat(a);
        if uf.len() != offs.len() * inner {
            return Err(format!(
                "{} updates for {} slices of {inner}",
                uf.len(),
                offs.len()
            ));
        }
        for (k, &o) in offs.iter().enumerate() {
            let dst = data.get_mut(o..o + inner).ok_or("index out of range")?;
            for (d, &v) in dst.iter_mut().zip(&uf[k * inner..(k + 1) * inner]) {
                *d = match red {
                    "add" => *d + v,
                    "mul" => *d * v,
                    "max" => {
                        if v > *d {
                            v
                        } else {
                            *d
                        }
                    }
                    "min" => {
                        if v < *d {
                            v
                        } else {
                            *d
                        }
                    }
                    _ => v,
                };
            }
        }
        to_array(a.shape(), data)
    }
    let data = match x.data() {
        Data::F32(a) => Data::F32(s(a, upd.as_f32(), &offs, inner, red)?),
        Data::I64(a) => Data::I64(s(a, upd.as_i64(), &offs, inner, red)?),
        Data::Bool(_) => return Err("ScatterND of a bool tensor".into()),
    };
    Ok(vec![x.like(data)])
}

fn scatter_elements(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let idx = arg(inputs, 1)?.as_i64().ok_or("indices must be integers")?;
    let upd = arg(inputs, 2)?;
    let ax = axis(cx.int("axis", 0), x.shape().len())?;
    let red = cx.string("reduction", "none");
    fn s<T: Copy + std::ops::Add<Output = T> + std::ops::Mul<Output = T> + PartialOrd>(
        a: &ArrayD<T>,
        u: Option<&ArrayD<T>>,
        idx: &ArrayD<i64>,
        ax: usize,
        red: &str,
    ) -> Result<ArrayD<T>, String> {
        let u = u.ok_or("updates differ in dtype")?;
        let mut out = a.to_owned();
        let n = a.shape()[ax] as i64;
        for (pos, &i) in idx.indexed_iter() {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return Err(format!("index {i} out of range for an axis of {n}"));
            }
            let v = *u.get(pos.clone()).ok_or("updates smaller than indices")?;
            let mut dst = pos.slice().to_vec();
            dst[ax] = j as usize;
            let d = out.get_mut(IxDyn(&dst)).ok_or("index out of range")?;
            *d = match red {
                "add" => *d + v,
                "mul" => *d * v,
                "max" => {
                    if v > *d {
                        v
                    } else {
                        *d
                    }
                }
                "min" => {
                    if v < *d {
                        v
                    } else {
                        *d
                    }
                }
                _ => v,
            };
        }
        Ok(out)
    }
    let data = match x.data() {
        Data::F32(a) => Data::F32(s(a, upd.as_f32(), idx, ax, red)?),
        Data::I64(a) => Data::I64(s(a, upd.as_i64(), idx, ax, red)?),
        Data::Bool(_) => return Err("ScatterElements of a bool tensor".into()),
    };
    Ok(vec![x.like(data)])
}

fn pad(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let r = x.shape().len();
    let pads: Vec<i64> = if cx.opset < 11 {
        cx.ints("pads").ok_or("pads missing")?.to_vec()
    } else {
        arg(inputs, 1)?.to_i64_vec()
    };
    let axes: Vec<usize> = match opt(inputs, 3) {
        Some(a) => a
            .to_i64_vec()
            .iter()
            .map(|&v| axis(v, r))
            .collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut before = vec![0i64; r];
    let mut after = vec![0i64; r];
    for (i, &a) in axes.iter().enumerate() {
        before[a] = pads[i];
        after[a] = pads[i + axes.len()];
    }
    let mode = cx.string("mode", "constant");
    let value_f = if cx.opset < 11 {
        cx.float("value", 0.0) as f64
    } else {
        opt(inputs, 2)
            .map(|v| match v.data() {
                Data::F32(a) => a.iter().next().map_or(0.0, |&x| x as f64),
                Data::I64(a) => a.iter().next().map_or(0.0, |&x| x as f64),
                Data::Bool(a) => a.iter().next().map_or(0.0, |&x| x as u8 as f64),
            })
            .unwrap_or(0.0)
    };
    let shape = x.shape().to_vec();
    let mut out_shape = Vec::with_capacity(r);
    for i in 0..r {
        let d = shape[i] as i64 + before[i] + after[i];
        if d < 0 {
            return Err(format!("pads {pads:?} remove more than axis {i} holds"));
        }
        out_shape.push(d as usize);
    }
    if mode != "constant" && shape.contains(&0) {
        return Err(format!("{mode} padding of an empty tensor"));
    }
    fn p<T: Copy>(
        a: &ArrayD<T>,
        out_shape: &[usize],
        before: &[i64],
        mode: &str,
        fill: T,
    ) -> Result<ArrayD<T>, String> {
        let s = a.shape();
        let mut out = ArrayD::from_elem(IxDyn(out_shape), fill);
        let mut src = vec![0usize; s.len()];
        for (pos, o) in out.indexed_iter_mut() {
            let mut inside = true;
            for d in 0..s.len() {
                let n = s[d] as i64;
                let mut i = pos[d] as i64 - before[d];
                if i < 0 || i >= n {
                    match mode {
                        "edge" => i = i.clamp(0, n - 1),
                        "reflect" => {
                            if n == 1 {
                                i = 0;
                            } else {
                                let period = 2 * (n - 1);
                                i = i.rem_euclid(period);
                                if i >= n {
                                    i = period - i;
                                }
                            }
                        }
                        "wrap" => i = i.rem_euclid(n),
                        _ => {
                            inside = false;
                            break;
                        }
                    }
                }
                src[d] = i as usize;
            }
            if inside {
                *o = *a.get(IxDyn(&src)).ok_or("pad index out of range")?;
            }
        }
        Ok(out)
    }
    let data = match x.data() {
        Data::F32(a) => Data::F32(p(a, &out_shape, &before, mode, value_f as f32)?),
        Data::I64(a) => Data::I64(p(a, &out_shape, &before, mode, value_f as i64)?),
        Data::Bool(a) => Data::Bool(p(a, &out_shape, &before, mode, value_f != 0.0)?),
    };
    Ok(vec![x.like(data)])
}

fn trilu(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let k = opt(inputs, 1)
        .and_then(|v| v.to_i64_vec().first().copied())
        .unwrap_or(0);
    let upper = cx.int("upper", 1) != 0;
    let r = x.shape().len();
    if r < 2 {
        return Err("Trilu needs rank 2 or more".into());
    }
    fn t<T: Copy + Default>(a: &ArrayD<T>, k: i64, upper: bool) -> ArrayD<T> {
        let mut out = a.to_owned();
        let r = a.ndim();
        for (pos, v) in out.indexed_iter_mut() {
            let (i, j) = (pos[r - 2] as i64, pos[r - 1] as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if !keep {
                *v = T::default();
            }
        }
        out
    }
    Ok(vec![x.like(
        super::value::map_data!(x.data(), a => t(a, k, upper)),
    )])
}

fn nonzero(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let a = x.to_f32_array();
    let r = a.ndim();
    let hits: Vec<Vec<usize>> = a
        .indexed_iter()
        .filter(|(_, &v)| v != 0.0)
        .map(|(p, _)| p.slice().to_vec())
        .collect();
    let n = hits.len();
    let mut out = vec![0i64; r * n];
    for (j, p) in hits.iter().enumerate() {
        for (d, &i) in p.iter().enumerate() {
            out[d * n + j] = i as i64;
        }
    }
    Ok(vec![Value::i64(to_array(&[r, n], out)?)])
}

fn one_hot(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let idx = arg(inputs, 0)?.to_i64_vec();
    let ishape = arg(inputs, 0)?.shape().to_vec();
    let depth = arg(inputs, 1)?
        .to_i64_vec()
        .first()
        .copied()
        .ok_or("empty depth")?;
    let values = arg(inputs, 2)?;
    if depth <= 0 {
        return Err(format!("depth {depth}"));
    }
    let r = ishape.len() + 1;
    let ax = axis(cx.int("axis", -1), r)?;
    let mut shape = ishape.clone();
    shape.insert(ax, depth as usize);
    let outer: usize = ishape[..ax].iter().product();
    let inner: usize = ishape[ax..].iter().product();
    let mut hot = vec![false; outer * depth as usize * inner];
    for o in 0..outer {
        for i in 0..inner {
            let v = idx[o * inner + i];
            let v = if v < 0 { v + depth } else { v };
            if (0..depth).contains(&v) {
                hot[(o * depth as usize + v as usize) * inner + i] = true;
            }
        }
    }
    let hot = to_array(&shape, hot)?;
    let data = match values.data() {
        Data::F32(a) => {
            let v: Vec<f32> = a.iter().copied().collect();
            let (off, on) = (*v.first().ok_or("values")?, *v.get(1).ok_or("values")?);
            Data::F32(hot.mapv(|h| if h { on } else { off }))
        }
        Data::I64(a) => {
            let v: Vec<i64> = a.iter().copied().collect();
            let (off, on) = (*v.first().ok_or("values")?, *v.get(1).ok_or("values")?);
            Data::I64(hot.mapv(|h| if h { on } else { off }))
        }
        Data::Bool(_) => return Err("bool OneHot values".into()),
    };
    Ok(vec![values.like(data)])
}
