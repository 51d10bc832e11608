//! Reductions (`ReduceMean`, `ReduceSum`, `ReduceMax`, ...): axes as an attribute, or as an input
//! (`ReduceSum` from opset 13, the others from 18) with `noop_with_empty_axes`; `keepdims`.
//! Reducing known shape data over every axis is evaluated (`Shape -> ReduceProd`).

use super::data::{Data, Scalar};
use super::{len_1d, norm_axes, Cost, CostCtx, InferCtx, Inferred, Op, Table};
use crate::types::Dim;

static REDUCE: Op = Op::new(reduce).with_cost(reduce_cost);

pub(crate) static OPS: Table = &[
    ("ReduceMean", &REDUCE),
    ("ReduceSum", &REDUCE),
    ("ReduceMax", &REDUCE),
    ("ReduceMin", &REDUCE),
    ("ReduceProd", &REDUCE),
    ("ReduceL1", &REDUCE),
    ("ReduceL2", &REDUCE),
    ("ReduceLogSum", &REDUCE),
    ("ReduceLogSumExp", &REDUCE),
    ("ReduceSumSquare", &REDUCE),
];

fn reduce(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let keepdims = cx.attr_int("keepdims", 1) != 0;
    let axes_as_input = cx.opset >= 18 || (cx.op() == "ReduceSum" && cx.opset >= 13);
    let axes: Option<Vec<i64>> = if axes_as_input {
        if cx.has_nonempty_input(1) {
            match cx.ints(1) {
                Some(a) => Some(a),
                None => {
                    // Which axes is unknown: with keepdims the rank survives.
                    let rank = match (keepdims, cx.rank(0)) {
                        (true, r) => r,
                        (false, r) => r.zip(len_1d(cx, 1)).and_then(|(r, n)| r.checked_sub(n)),
                    };
                    return Ok(vec![Inferred::tensor(
                        dtype,
                        rank.map(|r| vec![Dim::Unknown; r]),
                    )]);
                }
            }
        } else {
            None
        }
    } else {
        cx.attr_ints("axes").map(|a| a.to_vec())
    };
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
        Some(a) => norm_axes(&a, x.len())?,
        None if axes_as_input && cx.attr_int("noop_with_empty_axes", 0) != 0 => {
            return Ok(vec![Inferred::like(cx.input_type(0)).with_data(cx.data(0))]);
        }
        None => (0..x.len()).collect(),
    };
    let mut out = Vec::with_capacity(x.len());
    for (i, d) in x.iter().enumerate() {
        if !axes.contains(&i) {
            out.push(d.clone());
        } else if keepdims {
            out.push(Dim::Known(1));
        }
    }
    let value = if axes.len() == x.len() {
        cx.data(0).and_then(|d| reduce_all(cx.op(), &d, out.len()))
    } else {
        None
    };
    Ok(vec![Inferred::of(dtype, out).with_data(value)])
}

/// Reduce every element of small contents to one (with `rank` ones as dims).
fn reduce_all(op: &str, d: &Data, rank: usize) -> Option<Data> {
    let xs: Vec<Scalar> = (0..d.len()).map(|i| d.get(i)).collect::<Option<_>>()?;
    let (first, rest) = xs.split_first()?;
    let name = match op {
        "ReduceSum" => "Sum",
        "ReduceProd" => "Mul",
        "ReduceMax" => "Max",
        "ReduceMin" => "Min",
        _ => return None,
    };
    let r = rest
        .iter()
        .try_fold(*first, |acc, &x| super::data::arith(name, acc, x, false))?;
    Data::from_scalars(d.dtype, vec![1; rank], &[r])
}

/// One per input element.
fn reduce_cost(cx: &CostCtx<'_>) -> Cost {
    Cost {
        flops: cx.in_numel(0).unwrap_or(0),
        params: 0,
    }
}
