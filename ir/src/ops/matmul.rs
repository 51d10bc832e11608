//! Gemm and MatMul (numpy semantics: 1-D operands, broadcast batch axes).

use super::elementwise::broadcast;
use super::{InferCtx, InferResult, Inferred};
use crate::graph::Node;
use crate::types::{Dim, TensorType};

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    match op {
        "Gemm" => Some(gemm(cx)),
        "MatMul" => Some(matmul(cx)),
        _ => None,
    }
}

fn check(a: &Dim, b: &Dim, what: &str) -> Result<(), String> {
    if let (Dim::Known(x), Dim::Known(y)) = (a, b) {
        if x != y {
            return Err(format!("{what}: contraction sizes differ ({x} vs {y})"));
        }
    }
    Ok(())
}

fn gemm(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(a), Some(b)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    if a.len() != 2 || b.len() != 2 {
        return Err(format!(
            "Gemm needs 2-D operands, got ranks {} and {}",
            a.len(),
            b.len()
        ));
    }
    let ta = cx.attr_int("transA", 0) != 0;
    let tb = cx.attr_int("transB", 0) != 0;
    let (m, k1) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (k2, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    check(k1, k2, "Gemm")?;
    let out = vec![m.clone(), n.clone()];
    if let Some(c) = cx.dims(2) {
        broadcast(&[out.clone(), c])?;
    }
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

fn matmul(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(mut a), Some(mut b)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    if a.is_empty() || b.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let a1 = a.len() == 1;
    let b1 = b.len() == 1;
    if a1 {
        a.insert(0, Dim::Known(1));
    }
    if b1 {
        b.push(Dim::Known(1));
    }
    check(&a[a.len() - 1], &b[b.len() - 2], "MatMul")?;
    let batch = broadcast(&[a[..a.len() - 2].to_vec(), b[..b.len() - 2].to_vec()])?;
    let mut out = batch;
    if !a1 {
        out.push(a[a.len() - 2].clone());
    }
    if !b1 {
        out.push(b[b.len() - 1].clone());
    }
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

/// 2 * M * N * K (times the batch), plus the bias for Gemm.
pub fn flops(
    node: &Node,
    inputs: &[Option<&TensorType>],
    outputs: &[Option<&TensorType>],
) -> Option<u64> {
    let a = inputs.first().copied().flatten()?.dims_or_one()?;
    let y = outputs.first().copied().flatten()?.dims_or_one()?;
    let k = if node.op_type == "Gemm" && node.attr_int("transA").unwrap_or(0) != 0 {
        *a.first()?
    } else {
        *a.last()?
    };
    let out: i64 = y.iter().product();
    let bias = if node.op_type == "Gemm" && node.input(2).is_some() {
        out
    } else {
        0
    };
    u64::try_from(out.checked_mul(k)?.checked_mul(2)?.checked_add(bias)?).ok()
}
