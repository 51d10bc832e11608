//! `Softmax`, `LogSoftmax`, `Hardmax`: the output has the input's type; the axis is checked (its
//! default is 1 before opset 13, -1 from 13).

use super::{norm_axis, Cost, CostCtx, InferCtx, Inferred, Op, Table};

static SOFTMAX: Op = Op::new(softmax).with_cost(softmax_cost);

pub(crate) static OPS: Table = &[
    ("Softmax", &SOFTMAX),
    ("LogSoftmax", &SOFTMAX),
    ("Hardmax", &SOFTMAX),
];

fn softmax(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    if let Some(r) = cx.rank(0) {
        let default = if cx.opset < 13 { 1 } else { -1 };
        // Before opset 13 the input is coerced to 2-D at the axis, so axis == rank is allowed.
        let axis = cx.attr_int("axis", default);
        if !(cx.opset < 13 && axis == r as i64) {
            norm_axis(axis, r.max(1))?;
        }
    }
    Ok(vec![Inferred::like(cx.input_type(0))])
}

/// Three per element: exponent, sum, divide.
fn softmax_cost(cx: &CostCtx<'_>) -> Cost {
    Cost {
        flops: cx.out_numel(0).unwrap_or(0).saturating_mul(3),
        params: 0,
    }
}
