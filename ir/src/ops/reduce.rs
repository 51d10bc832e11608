//! Reductions (axes from the attribute before opset 18 — 13 for ReduceSum — and from an input
//! after), ArgMax/ArgMin, TopK.

use super::{axis, int_value, InferCtx, InferResult, Inferred};
use crate::types::Dim;
use crate::DType;

const REDUCE: &[&str] = &[
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    if REDUCE.contains(&op) {
        return Some(reduce(op, cx));
    }
    match op {
        "ArgMax" | "ArgMin" => Some(arg(cx)),
        "TopK" => Some(topk(cx)),
        _ => None,
    }
}

fn reduce(op: &str, cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let keep = cx.attr_int("keepdims", 1) != 0;
    let axes: Vec<i64> = match cx.node.attr_ints("axes") {
        Some(a) => a.to_vec(),
        None if cx.has(1) => match cx.ints(1) {
            Some(a) => a,
            None => return Ok(vec![Inferred::tensor(dtype, None)]),
        },
        None => Vec::new(),
    };
    let axes: Vec<usize> = if axes.is_empty() {
        if cx.attr_int("noop_with_empty_axes", 0) != 0 {
            return Ok(vec![
                Inferred::tensor(dtype, Some(d)).with_value(cx.value(0).cloned())
            ]);
        }
        (0..d.len()).collect()
    } else {
        axes.iter()
            .map(|&a| axis(a, d.len()))
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for (k, x) in d.iter().enumerate() {
        if axes.contains(&k) {
            if keep {
                out.push(Dim::Known(1));
            }
        } else {
            out.push(x.clone());
        }
    }
    // Products and sums of known shape vectors (shape arithmetic in some exports).
    let value = cx.value(0).filter(|_| d.len() == 1 && !keep).and_then(|t| {
        let v = t.to_i64().ok()?;
        let r = match op {
            "ReduceProd" => v.iter().try_fold(1i64, |a, &b| a.checked_mul(b))?,
            "ReduceSum" => v.iter().try_fold(0i64, |a, &b| a.checked_add(b))?,
            _ => return None,
        };
        int_value(dtype, vec![], &[r])
    });
    Ok(vec![Inferred::tensor(dtype, Some(out)).with_value(value)])
}

fn arg(cx: &InferCtx<'_>) -> InferResult {
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(Some(DType::I64), None)]);
    };
    let a = axis(cx.attr_int("axis", 0), d.len())?;
    let keep = cx.attr_int("keepdims", 1) != 0;
    let out = d
        .iter()
        .enumerate()
        .filter_map(|(k, x)| {
            if k == a {
                keep.then_some(Dim::Known(1))
            } else {
                Some(x.clone())
            }
        })
        .collect();
    Ok(vec![Inferred::tensor(Some(DType::I64), Some(out))])
}

fn topk(cx: &InferCtx<'_>) -> InferResult {
    let Some(mut d) = cx.dims(0) else {
        return Ok(vec![
            Inferred::tensor(cx.dtype(0), None),
            Inferred::tensor(Some(DType::I64), None),
        ]);
    };
    let a = axis(cx.attr_int("axis", -1), d.len())?;
    d[a] = match cx.ints(1).and_then(|k| k.first().copied()) {
        Some(k) => Dim::Known(k),
        None => Dim::Unknown,
    };
    Ok(vec![
        Inferred::tensor(cx.dtype(0), Some(d.clone())),
        Inferred::tensor(Some(DType::I64), Some(d)),
    ])
}
