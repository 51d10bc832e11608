//! Ops that select or combine parts: Concat, Split, Slice, Gather, GatherElements, GatherND,
//! ScatterND, ScatterElements, Pad, OneHot, NonZero. Small integer values propagate through
//! Concat, Gather and Slice.

use super::{axis, int_value, known, InferCtx, InferResult, Inferred};
use crate::types::Dim;
use crate::DType;

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    Some(match op {
        "Concat" => concat(cx),
        "Split" => split(cx),
        "Slice" => slice(cx),
        "Gather" => gather(cx),
        "GatherElements" => Ok(vec![Inferred::tensor(cx.dtype(0), cx.dims(1))]),
        "GatherND" => gather_nd(cx),
        "ScatterND" | "ScatterElements" | "Scatter" => {
            Ok(vec![Inferred::tensor(cx.dtype(0), cx.dims(0))])
        }
        "Pad" => pad(cx),
        "NonZero" => Ok(vec![Inferred::tensor(
            Some(DType::I64),
            cx.rank(0).map(|r| vec![Dim::Known(r as i64), Dim::Unknown]),
        )]),
        "OneHot" => one_hot(cx),
        _ => return None,
    })
}

fn concat(cx: &InferCtx<'_>) -> InferResult {
    let dtype = (0..cx.n_inputs()).find_map(|i| cx.dtype(i));
    let mut shapes = Vec::new();
    for i in 0..cx.n_inputs() {
        match cx.dims(i) {
            Some(d) => shapes.push(d),
            None => return Ok(vec![Inferred::tensor(dtype, None)]),
        }
    }
    let Some(first) = shapes.first() else {
        return Err("Concat has no inputs".into());
    };
    let r = first.len();
    let a = axis(cx.attr_int("axis", 0), r)?;
    let mut out = first.clone();
    let mut total = Some(0i64);
    for (i, s) in shapes.iter().enumerate() {
        if s.len() != r {
            return Err(format!(
                "Concat input {i} has rank {} but input 0 has rank {r}",
                s.len()
            ));
        }
        for k in 0..r {
            if k == a {
                total = total.and_then(|t| s[k].known().map(|n| t + n));
            } else if let (Dim::Known(x), Dim::Known(y)) = (&out[k], &s[k]) {
                if x != y {
                    return Err(format!(
                        "Concat input {i} has size {y} on axis {k}, input 0 has {x}"
                    ));
                }
            } else if out[k].known().is_none() {
                out[k] = s[k].clone();
            }
        }
    }
    out[a] = total.map(Dim::Known).unwrap_or(Dim::Unknown);
    let value = (r == 1)
        .then(|| {
            let mut vals = Vec::new();
            for i in 0..cx.n_inputs() {
                vals.extend(cx.value(i)?.to_i64().ok()?);
            }
            int_value(dtype, vec![vals.len() as i64], &vals)
        })
        .flatten();
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(value)])
}

fn split(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let n = cx.node.outputs.len();
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None); n]);
    };
    let a = axis(cx.attr_int("axis", 0), d.len())?;
    let sizes: Vec<Dim> = match cx.ints_attr_or_input("split", 1) {
        Some(s) => {
            if s.len() != n {
                return Err(format!("Split has {} sizes for {n} outputs", s.len()));
            }
            if let Dim::Known(total) = d[a] {
                if s.iter().sum::<i64>() != total {
                    return Err(format!("Split sizes {s:?} do not add up to {total}"));
                }
            }
            known(&s)
        }
        None if cx.has(1) => vec![Dim::Unknown; n],
        None => match d[a] {
            Dim::Known(total) => {
                let parts = cx.node.attr_int("num_outputs").unwrap_or(n as i64).max(1);
                let chunk = (total + parts - 1) / parts;
                (0..n as i64)
                    .map(|k| Dim::Known((total - k * chunk).clamp(0, chunk)))
                    .collect()
            }
            _ => vec![Dim::Unknown; n],
        },
    };
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut o = d.clone();
            o[a] = s;
            Inferred::tensor(dtype, Some(o))
        })
        .collect())
}

fn slice(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let r = d.len();
    let params = if cx.opset < 10 {
        let s = cx.node.attr_ints("starts").map(|v| v.to_vec());
        let e = cx.node.attr_ints("ends").map(|v| v.to_vec());
        let a = cx.node.attr_ints("axes").map(|v| v.to_vec());
        s.zip(e).map(|(s, e)| {
            let n = s.len();
            (
                s,
                e,
                a.unwrap_or_else(|| (0..n as i64).collect()),
                vec![1; n],
            )
        })
    } else {
        let s = cx.ints(1);
        let e = cx.ints(2);
        let a = if cx.has(3) {
            cx.ints(3)
        } else {
            s.as_ref().map(|s| (0..s.len() as i64).collect())
        };
        let st = if cx.has(4) {
            cx.ints(4)
        } else {
            s.as_ref().map(|s| vec![1; s.len()])
        };
        match (s, e, a, st) {
            (Some(s), Some(e), Some(a), Some(st)) => Some((s, e, a, st)),
            _ => None,
        }
    };
    let Some((starts, ends, axes, steps)) = params else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; r]))]);
    };
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("Slice starts, ends, axes and steps differ in length".into());
    }
    let mut out = d.clone();
    let mut ranges: Vec<(usize, i64, i64, i64)> = Vec::new();
    for i in 0..axes.len() {
        let a = axis(axes[i], r)?;
        let step = steps[i];
        if step == 0 {
            return Err("Slice step is 0".into());
        }
        let Dim::Known(n) = d[a] else {
            out[a] = Dim::Unknown;
            continue;
        };
        let clamp = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v.saturating_add(n) } else { v };
            v.clamp(lo, hi)
        };
        let (s, e) = if step > 0 {
            (clamp(starts[i], 0, n), clamp(ends[i], 0, n))
        } else {
            (clamp(starts[i], -1, n - 1), clamp(ends[i], -1, n - 1))
        };
        let len = if step > 0 {
            ((e - s) + step - 1).div_euclid(step).max(0)
        } else {
            ((s - e) + (-step) - 1).div_euclid(-step).max(0)
        };
        out[a] = Dim::Known(len);
        ranges.push((a, s, step, len));
    }
    let value = (r == 1 && ranges.len() == 1)
        .then(|| {
            let t = cx.value(0)?;
            let v = t.to_i64().ok()?;
            let (_, s, step, len) = ranges[0];
            let vals: Vec<i64> = (0..len)
                .map(|k| v.get((s + k * step) as usize).copied())
                .collect::<Option<_>>()?;
            int_value(Some(t.dtype), vec![len], &vals)
        })
        .flatten();
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(value)])
}

fn gather(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(d), Some(idx)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let a = axis(cx.attr_int("axis", 0), d.len())?;
    let mut out: Vec<Dim> = d[..a].to_vec();
    out.extend(idx.iter().cloned());
    out.extend(d[a + 1..].iter().cloned());
    let value = (d.len() == 1)
        .then(|| {
            let t = cx.value(0)?;
            let v = t.to_i64().ok()?;
            let n = v.len() as i64;
            let ind = cx.ints(1)?;
            let vals: Vec<i64> = ind
                .iter()
                .map(|&i| v.get((if i < 0 { i + n } else { i }) as usize).copied())
                .collect::<Option<_>>()?;
            let dims: Vec<i64> = idx.iter().map(|x| x.known()).collect::<Option<_>>()?;
            int_value(Some(t.dtype), dims, &vals)
        })
        .flatten();
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(value)])
}

fn gather_nd(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(d), Some(idx)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let b = cx.attr_int("batch_dims", 0).max(0) as usize;
    let Some(Dim::Known(k)) = idx.last().cloned() else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let mut out: Vec<Dim> = idx[..idx.len() - 1].to_vec();
    let from = b + k as usize;
    if from > d.len() {
        return Err(format!(
            "GatherND indexes {k} axes after {b} batch axes of a rank-{} tensor",
            d.len()
        ));
    }
    out.extend(d[from..].iter().cloned());
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

fn pad(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let r = d.len();
    let Some(pads) = cx.ints_attr_or_input("pads", 1) else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; r]))]);
    };
    let axes: Vec<usize> = if cx.has(3) {
        match cx.ints(3) {
            Some(a) => a.iter().map(|&x| axis(x, r)).collect::<Result<_, _>>()?,
            None => return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; r]))]),
        }
    } else {
        (0..r).collect()
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!(
            "Pad has {} pads for {} axes",
            pads.len(),
            axes.len()
        ));
    }
    let mut out = d.clone();
    for (i, &a) in axes.iter().enumerate() {
        if let Dim::Known(n) = d[a] {
            out[a] = Dim::Known(n + pads[i] + pads[i + axes.len()]);
        } else if pads[i] != 0 || pads[i + axes.len()] != 0 {
            out[a] = Dim::Unknown;
        }
    }
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

fn one_hot(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(2);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let depth = cx
        .value(1)
        .and_then(|t| t.to_f32().ok())
        .and_then(|v| v.first().copied());
    let r = d.len() + 1;
    let a = axis(cx.attr_int("axis", -1), r)?;
    let mut out = d;
    out.insert(
        a,
        depth.map(|x| Dim::Known(x as i64)).unwrap_or(Dim::Unknown),
    );
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}
