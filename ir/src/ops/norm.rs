//! Normalizations: BatchNormalization, InstanceNormalization, LayerNormalization,
//! GroupNormalization. The output has the input's type; parameters must match the channel axis.

use super::{axis, InferCtx, InferResult, Inferred};
use crate::types::Dim;

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    match op {
        "BatchNormalization" | "InstanceNormalization" | "GroupNormalization" => {
            Some(channel(cx, op))
        }
        "LayerNormalization" => Some(layer(cx)),
        _ => None,
    }
}

fn channel(cx: &InferCtx<'_>, op: &str) -> InferResult {
    let dims = cx.dims(0);
    if let Some(d) = &dims {
        if d.len() < 2 {
            return Err(format!("{op} needs rank >= 2"));
        }
        let c = &d[1];
        let params = if op == "GroupNormalization" {
            1..3
        } else {
            1..cx.n_inputs()
        };
        for i in params {
            if let (Some(p), Dim::Known(c)) = (cx.dims(i), c) {
                if p.len() == 1
                    && p[0].known().is_some_and(|n| n != *c)
                    && op != "GroupNormalization"
                {
                    return Err(format!(
                        "parameter {i} has {} elements but the input has {c} channels",
                        p[0]
                    ));
                }
            }
        }
    }
    let mut out = vec![Inferred::tensor(cx.dtype(0), dims.clone())];
    // Training-mode BatchNorm: running mean and var.
    for _ in 1..cx.node.outputs.len() {
        let c = dims.as_ref().and_then(|d| d.get(1).cloned());
        out.push(Inferred::tensor(cx.dtype(1), c.map(|c| vec![c])));
    }
    Ok(out)
}

fn layer(cx: &InferCtx<'_>) -> InferResult {
    let dims = cx.dims(0);
    let mut out = vec![Inferred::tensor(cx.dtype(0), dims.clone())];
    if cx.node.outputs.len() > 1 {
        let stat = match &dims {
            Some(d) => {
                let a = axis(cx.attr_int("axis", -1), d.len())?;
                Some(
                    d.iter()
                        .enumerate()
                        .map(|(k, x)| if k < a { x.clone() } else { Dim::Known(1) })
                        .collect(),
                )
            }
            None => None,
        };
        let st = cx
            .node
            .attr_int("stash_type")
            .and_then(|c| crate::DType::from_onnx_code(c as i32))
            .or(Some(crate::DType::F32));
        for _ in 1..cx.node.outputs.len() {
            out.push(Inferred::tensor(st, stat.clone()));
        }
    }
    Ok(out)
}
