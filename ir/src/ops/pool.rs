//! Pooling: MaxPool (with indices), AveragePool, LpPool, and the global variants.

use super::conv::{attr_list, window_out};
use super::{InferCtx, InferResult, Inferred};
use crate::types::Dim;
use crate::DType;

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    match op {
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let dims = cx.dims(0).map(|d| {
                d.iter()
                    .enumerate()
                    .map(|(k, x)| if k < 2 { x.clone() } else { Dim::Known(1) })
                    .collect()
            });
            Some(Ok(vec![Inferred::tensor(cx.dtype(0), dims)]))
        }
        "MaxPool" | "AveragePool" | "LpPool" => Some(pool(cx)),
        _ => None,
    }
}

fn pool(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![
            Inferred::tensor(dtype, None),
            Inferred::tensor(Some(DType::I64), None),
        ]);
    };
    if x.len() < 3 {
        return Err(format!("pooling needs rank >= 3, got {}", x.len()));
    }
    let n = x.len() - 2;
    let kernel = cx
        .node
        .attr_ints("kernel_shape")
        .filter(|k| k.len() == n)
        .ok_or("kernel_shape is missing or has the wrong length")?
        .to_vec();
    let strides = attr_list(cx.node, "strides", n, 1);
    let dil = attr_list(cx.node, "dilations", n, 1);
    let pads = attr_list(cx.node, "pads", 2 * n, 0);
    let auto_pad = cx.node.attr_str("auto_pad").unwrap_or("NOTSET");
    let ceil = cx.attr_int("ceil_mode", 0) != 0;
    let mut out = vec![x[0].clone(), x[1].clone()];
    for k in 0..n {
        out.push(window_out(
            &x[2 + k],
            kernel[k],
            strides[k],
            dil[k],
            pads[k],
            pads[n + k],
            auto_pad,
            ceil,
        )?);
    }
    Ok(vec![
        Inferred::tensor(dtype, Some(out.clone())),
        Inferred::tensor(Some(DType::I64), Some(out)),
    ])
}
