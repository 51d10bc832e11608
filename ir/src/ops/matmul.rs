//! Matrix products: `MatMul` (numpy semantics: 1-D operands, broadcast batch dims),
//! `MatMulInteger`, and `Gemm` (2-D, `transA`/`transB`, `C` broadcast to the result).

use super::{broadcast, show, show_input, Cost, CostCtx, InferCtx, Inferred, Op, Table};
use crate::dtype::DType;
use crate::types::Dim;

static MATMUL: Op = Op::new(matmul).with_cost(matmul_cost);
static GEMM: Op = Op::new(gemm).with_cost(gemm_cost);

pub(crate) static OPS: Table = &[
    ("MatMul", &MATMUL),
    ("MatMulInteger", &MATMUL),
    ("Gemm", &GEMM),
];

fn matmul(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = if cx.op() == "MatMulInteger" {
        Some(DType::I32)
    } else {
        cx.dtype(0).or(cx.dtype(1))
    };
    let (Some(a), Some(b)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    if a.is_empty() || b.is_empty() {
        return Err(format!(
            "cannot multiply {} by {}: MatMul does not take scalars",
            show_input(cx, 0),
            show_input(cx, 1)
        ));
    }
    // A 1-D left operand is a row vector, a 1-D right operand a column; both are dropped after.
    let (a_batch, m, ka) = match a.len() {
        1 => (&a[..0], None, &a[0]),
        n => (&a[..n - 2], Some(&a[n - 2]), &a[n - 1]),
    };
    let (b_batch, kb, n) = match b.len() {
        1 => (&b[..0], &b[0], None),
        r => (&b[..r - 2], &b[r - 2], Some(&b[r - 1])),
    };
    if !ka.compatible(kb) {
        return Err(format!(
            "cannot multiply {} by {}: inner dimensions {ka} and {kb} differ",
            show_input(cx, 0),
            show_input(cx, 1)
        ));
    }
    let mut out = broadcast(a_batch, b_batch).ok_or_else(|| {
        format!(
            "cannot multiply {} by {}: batch dimensions {} and {} do not broadcast",
            show_input(cx, 0),
            show_input(cx, 1),
            show(None, a_batch),
            show(None, b_batch)
        )
    })?;
    out.extend(m.cloned());
    out.extend(n.cloned());
    Ok(vec![Inferred::of(dtype, out)])
}

fn gemm(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0).or(cx.dtype(1));
    let (Some(a), Some(b)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; 2]))]);
    };
    for (i, d) in [(0, &a), (1, &b)] {
        if d.len() != 2 {
            return Err(format!(
                "Gemm input {} must be 2-D, got {}",
                ["A", "B"][i],
                show_input(cx, i)
            ));
        }
    }
    let ta = cx.attr_int("transA", 0) != 0;
    let tb = cx.attr_int("transB", 0) != 0;
    let (m, ka) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    if !ka.compatible(kb) {
        return Err(format!(
            "cannot multiply {} by {} (transA={}, transB={}): inner dimensions {ka} and {kb} differ",
            show_input(cx, 0),
            show_input(cx, 1),
            ta as i32,
            tb as i32
        ));
    }
    let out = vec![m.clone(), n.clone()];
    if let Some(c) = cx.dims(2) {
        // C broadcasts one way: to the result.
        if c.len() > 2
            || broadcast(&c, &out).is_none_or(|r| !r.iter().zip(&out).all(|(x, y)| x.compatible(y)))
        {
            return Err(format!(
                "Gemm C {} does not broadcast to the result {}",
                show_input(cx, 2),
                show(dtype, &out)
            ));
        }
    }
    Ok(vec![Inferred::of(dtype, out)])
}

/// `2 * out_elements * K`.
fn matmul_cost(cx: &CostCtx<'_>) -> Cost {
    let k = cx.in_dims(0).and_then(|a| a.last().copied());
    let macs = k.and_then(|k| cx.out_numel(0)?.checked_mul(u64::try_from(k).ok()?));
    Cost {
        flops: macs.and_then(|m| m.checked_mul(2)).unwrap_or(0),
        params: cx.params(),
    }
}

/// `2 * M * K * N`, plus `M * N` for `C`.
fn gemm_cost(cx: &CostCtx<'_>) -> Cost {
    let ta = cx.node.attr_int("transA").unwrap_or(0) != 0;
    let k = cx.in_dims(0).and_then(|a| {
        if ta {
            a.first().copied()
        } else {
            a.get(1).copied()
        }
    });
    let out = cx.out_numel(0);
    let macs = k.and_then(|k| out?.checked_mul(u64::try_from(k).ok()?));
    let c = if cx.node.input(2).is_some() {
        out.unwrap_or(0)
    } else {
        0
    };
    Cost {
        flops: macs
            .and_then(|m| m.checked_mul(2))
            .unwrap_or(0)
            .saturating_add(c),
        params: cx.params(),
    }
}
