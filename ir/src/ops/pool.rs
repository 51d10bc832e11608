//! Pooling: `MaxPool` (with its indices output), `AveragePool`, `LpPool` (kernel, strides, pads,
//! dilations, `auto_pad`, `ceil_mode`), and the global pools.

use super::{
    attr_list, numel, show_input, AutoPad, Cost, CostCtx, InferCtx, Inferred, Op, Table, Window,
};
use crate::dtype::DType;
use crate::types::Dim;

static POOL: Op = Op::new(pool).with_cost(pool_cost);
static GLOBAL_POOL: Op = Op::new(global_pool).with_cost(global_pool_cost);

pub(crate) static OPS: Table = &[
    ("MaxPool", &POOL),
    ("AveragePool", &POOL),
    ("LpPool", &POOL),
    ("GlobalAveragePool", &GLOBAL_POOL),
    ("GlobalMaxPool", &GLOBAL_POOL),
    ("GlobalLpPool", &GLOBAL_POOL),
];

fn pool(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let kernel = cx
        .attr_ints("kernel_shape")
        .ok_or_else(|| format!("{} has no kernel_shape", cx.op()))?;
    let n = kernel.len();
    let Some(x) = cx.dims(0) else {
        let dims = Some(vec![Dim::Unknown; n + 2]);
        return Ok(vec![
            Inferred::tensor(dtype, dims.clone()),
            Inferred::tensor(Some(DType::I64), dims),
        ]);
    };
    if x.len() != n + 2 {
        return Err(format!(
            "kernel_shape has {n} entries but the input {} has {} spatial axes",
            show_input(cx, 0),
            x.len().saturating_sub(2)
        ));
    }
    let strides = attr_list(cx, "strides", n, 1)?;
    let dilations = attr_list(cx, "dilations", n, 1)?;
    let pads = attr_list(cx, "pads", 2 * n, 0)?;
    let auto_pad = AutoPad::from_attr(cx)?;
    let ceil_mode = cx.attr_int("ceil_mode", 0) != 0;
    let mut out = vec![x[0].clone(), x[1].clone()];
    for i in 0..n {
        let win = Window {
            kernel: Dim::Known(kernel[i]),
            stride: strides[i],
            dilation: dilations[i],
            pad_begin: pads[i],
            pad_end: pads[i + n],
            auto_pad,
            ceil_mode,
        };
        out.push(win.output(&x[i + 2], i)?);
    }
    Ok(vec![
        Inferred::of(dtype, out.clone()),
        Inferred::of(Some(DType::I64), out),
    ])
}

fn global_pool(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    if x.len() < 3 {
        return Err(format!(
            "{} input {} must have rank 3 or more",
            cx.op(),
            show_input(cx, 0)
        ));
    }
    let mut out = x[..2].to_vec();
    out.extend(std::iter::repeat_n(Dim::Known(1), x.len() - 2));
    Ok(vec![Inferred::of(dtype, out)])
}

/// One per window element read: `out_elements * prod(kernel)`.
fn pool_cost(cx: &CostCtx<'_>) -> Cost {
    let k = cx.node.attr_ints("kernel_shape").and_then(numel);
    let flops = k.and_then(|k| cx.out_numel(0)?.checked_mul(k));
    Cost {
        flops: flops.unwrap_or(0),
        params: 0,
    }
}

fn global_pool_cost(cx: &CostCtx<'_>) -> Cost {
    Cost {
        flops: cx.in_numel(0).unwrap_or(0),
        params: 0,
    }
}
