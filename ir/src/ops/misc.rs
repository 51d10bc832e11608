//! Resize/Upsample, Einsum, If (types from the branches), and a few ops seen in detection models.

use super::{InferCtx, InferResult, Inferred};
use crate::types::{Dim, Type};
use std::collections::HashMap;

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    Some(match op {
        "Resize" | "Upsample" => resize(op, cx),
        "Einsum" => einsum(cx),
        "If" => {
            let n = cx.node.outputs.len();
            let mut out = Vec::with_capacity(n);
            for k in 0..n {
                let t = cx
                    .subgraph_outputs
                    .first()
                    .and_then(|g| g.get(k))
                    .cloned()
                    .unwrap_or_default();
                let e = cx
                    .subgraph_outputs
                    .get(1)
                    .and_then(|g| g.get(k))
                    .cloned()
                    .unwrap_or_default();
                // Branches may disagree on static sizes; keep only what both say.
                let ty = if t == e { t } else { merge_branches(&t, &e) };
                out.push(Inferred { ty, value: None });
            }
            Ok(out)
        }
        _ => return None,
    })
}

fn merge_branches(a: &Type, b: &Type) -> Type {
    match (a.as_tensor(), b.as_tensor()) {
        (Some(x), Some(y)) if x.dtype == y.dtype => {
            let dims = match (x.dims(), y.dims()) {
                (Some(p), Some(q)) if p.len() == q.len() => Some(
                    p.into_iter()
                        .zip(q)
                        .map(|(p, q)| if p == q { p } else { Dim::Unknown })
                        .collect(),
                ),
                _ => None,
            };
            Inferred::tensor(x.dtype, dims).ty
        }
        _ => Type::Unknown,
    }
}

fn resize(op: &str, cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let Some(d) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let r = d.len();
    // Resize(X, roi, scales, sizes) from opset 11; Resize(X, scales) in 10; Upsample(X, scales).
    let (scales_at, sizes_at) = if op == "Upsample" || cx.opset < 11 {
        (1, usize::MAX)
    } else {
        (2, 3)
    };
    if let Some(sizes) = cx
        .value(sizes_at)
        .and_then(|t| t.to_i64().ok())
        .filter(|s| !s.is_empty())
    {
        let axes: Vec<usize> = match cx.node.attr_ints("axes") {
            Some(a) => a
                .iter()
                .map(|&x| super::axis(x, r))
                .collect::<Result<_, _>>()?,
            None => (0..r).collect(),
        };
        let mut out = d.clone();
        for (i, &a) in axes.iter().enumerate() {
            out[a] = Dim::Known(*sizes.get(i).ok_or("Resize sizes too short")?);
        }
        return Ok(vec![Inferred::tensor(dtype, Some(out))]);
    }
    let scales = cx
        .value(scales_at)
        .and_then(|t| t.to_f32().ok())
        .or_else(|| cx.node.attr_floats("scales").map(|s| s.to_vec()))
        .filter(|s| !s.is_empty());
    let Some(scales) = scales else {
        return Ok(vec![Inferred::tensor(dtype, Some(vec![Dim::Unknown; r]))]);
    };
    if scales.len() != r {
        return Err(format!("Resize has {} scales for rank {r}", scales.len()));
    }
    let out = d
        .iter()
        .zip(&scales)
        .map(|(x, &s)| match x {
            Dim::Known(n) => Dim::Known(((*n as f64) * s as f64).floor() as i64),
            other if s == 1.0 => other.clone(),
            _ => Dim::Unknown,
        })
        .collect();
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

fn einsum(cx: &InferCtx<'_>) -> InferResult {
    let dtype = cx.dtype(0);
    let eq = cx
        .node
        .attr_str("equation")
        .ok_or("Einsum has no equation")?
        .replace(' ', "");
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != cx.n_inputs() || terms.iter().any(|t| t.contains('.')) {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    }
    let mut size: HashMap<char, Dim> = HashMap::new();
    let mut count: HashMap<char, usize> = HashMap::new();
    for (i, t) in terms.iter().enumerate() {
        let Some(d) = cx.dims(i) else {
            return Ok(vec![Inferred::tensor(dtype, None)]);
        };
        if d.len() != t.chars().count() {
            return Err(format!(
                "Einsum term '{t}' does not match input {i} of rank {}",
                d.len()
            ));
        }
        for (c, x) in t.chars().zip(d) {
            *count.entry(c).or_default() += 1;
            let e = size.entry(c).or_insert(x.clone());
            if e.known().is_none() || e.known() == Some(1) {
                *e = x;
            }
        }
    }
    let out_labels: Vec<char> = match rhs {
        Some(r) => r.chars().collect(),
        None => {
            let mut v: Vec<char> = count
                .iter()
                .filter(|(_, &n)| n == 1)
                .map(|(&c, _)| c)
                .collect();
            v.sort_unstable();
            v
        }
    };
    let out = out_labels
        .iter()
        .map(|c| size.get(c).cloned().unwrap_or(Dim::Unknown))
        .collect();
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}
