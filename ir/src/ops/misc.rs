//! Ops that fit no other family: `Einsum`, detection pieces (`NonMaxSuppression`, `RoiAlign`),
//! quantization (`QuantizeLinear`, `DequantizeLinear`, `DynamicQuantizeLinear`), random
//! generators, `GridSample`.

use super::{broadcast, show_input, InferCtx, Inferred, Op, Table};
use crate::dtype::DType;
use crate::types::Dim;
use std::collections::BTreeMap;

static EINSUM: Op = Op::new(einsum);
static NMS: Op = Op::new(non_max_suppression);
static ROI_ALIGN: Op = Op::new(roi_align);
static QUANTIZE: Op = Op::new(quantize);
static DEQUANTIZE: Op = Op::new(dequantize);
static DYNAMIC_QUANTIZE: Op = Op::new(dynamic_quantize);
static RANDOM_LIKE: Op = Op::new(random_like);
static RANDOM: Op = Op::new(random);
static GRID_SAMPLE: Op = Op::new(grid_sample);

pub(crate) static OPS: Table = &[
    ("Einsum", &EINSUM),
    ("NonMaxSuppression", &NMS),
    ("RoiAlign", &ROI_ALIGN),
    ("QuantizeLinear", &QUANTIZE),
    ("DequantizeLinear", &DEQUANTIZE),
    ("DynamicQuantizeLinear", &DYNAMIC_QUANTIZE),
    ("RandomNormalLike", &RANDOM_LIKE),
    ("RandomUniformLike", &RANDOM_LIKE),
    ("Bernoulli", &RANDOM_LIKE),
    ("RandomNormal", &RANDOM),
    ("RandomUniform", &RANDOM),
    ("GridSample", &GRID_SAMPLE),
];

/// One side of an Einsum term: labels in order, with `None` for the ellipsis.
fn parse_term(t: &str) -> Option<Vec<Option<char>>> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("...") {
            if out.contains(&None) {
                return None;
            }
            out.push(None);
            rest = r;
        } else if c.is_ascii_alphabetic() {
            out.push(Some(c));
            rest = &rest[1..];
        } else {
            return None;
        }
    }
    Some(out)
}

fn einsum(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let eq: String = cx
        .node
        .attr_str("equation")
        .ok_or("Einsum has no equation")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bad = || format!("invalid Einsum equation '{eq}'");
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<Vec<Option<char>>> = lhs
        .split(',')
        .map(parse_term)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let dtype = cx.dtype(0);
    if terms.len() != cx.num_inputs() {
        return Err(format!(
            "Einsum equation '{eq}' has {} operands but the node has {} inputs",
            terms.len(),
            cx.num_inputs()
        ));
    }
    let mut labels: BTreeMap<char, Dim> = BTreeMap::new();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    let mut ellipsis: Option<Vec<Dim>> = None;
    for (i, term) in terms.iter().enumerate() {
        let Some(d) = cx.dims(i) else {
            return Ok(vec![Inferred::tensor(dtype, None)]);
        };
        let named = term.iter().filter(|l| l.is_some()).count();
        let has_ell = term.len() != named;
        let ell_rank = d.len().checked_sub(named).filter(|&e| has_ell || e == 0);
        let Some(ell_rank) = ell_rank else {
            return Err(format!(
                "Einsum operand {i} has {named} labels but the input {} has rank {}",
                show_input(cx, i),
                d.len()
            ));
        };
        let mut k = 0;
        for l in term {
            match l {
                Some(c) => {
                    let dim = &d[k];
                    *counts.entry(*c).or_default() += 1;
                    let merged = match labels.get(c) {
                        None => dim.clone(),
                        Some(prev) => match (prev, dim) {
                            (Dim::Known(p), Dim::Known(q)) if p != q => {
                                return Err(format!("Einsum label '{c}' has sizes {p} and {q}"))
                            }
                            (Dim::Known(_), _) => prev.clone(),
                            _ => dim.clone(),
                        },
                    };
                    labels.insert(*c, merged);
                    k += 1;
                }
                None => {
                    let part = &d[k..k + ell_rank];
                    ellipsis = Some(match ellipsis {
                        None => part.to_vec(),
                        Some(e) => broadcast(&e, part).ok_or_else(|| {
                            format!("Einsum '...' dimensions of operand {i} do not broadcast")
                        })?,
                    });
                    k += ell_rank;
                }
            }
        }
    }
    let out_labels: Vec<Option<char>> = match rhs {
        Some(r) => parse_term(r).ok_or_else(bad)?,
        None => {
            // Implicit output: the ellipsis, then labels used once, alphabetically.
            let mut o: Vec<Option<char>> = Vec::new();
            if ellipsis.is_some() {
                o.push(None);
            }
            o.extend(
                counts
                    .iter()
                    .filter(|(_, &n)| n == 1)
                    .map(|(&c, _)| Some(c)),
            );
            o
        }
    };
    let mut out = Vec::new();
    for l in out_labels {
        match l {
            Some(c) => out.push(labels.get(&c).cloned().ok_or_else(bad)?),
            None => out.extend(ellipsis.clone().unwrap_or_default()),
        }
    }
    Ok(vec![Inferred::of(dtype, out)])
}

fn non_max_suppression(_cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    Ok(vec![Inferred::of(
        Some(DType::I64),
        vec![Dim::Unknown, Dim::Known(3)],
    )])
}

/// `[R, C, output_height, output_width]`.
fn roi_align(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let c = cx
        .dims(0)
        .and_then(|x| x.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    let r = cx
        .dims(1)
        .and_then(|x| x.first().cloned())
        .or_else(|| cx.dims(2).and_then(|x| x.first().cloned()))
        .unwrap_or(Dim::Unknown);
    let h = Dim::Known(cx.attr_int("output_height", 1));
    let w = Dim::Known(cx.attr_int("output_width", 1));
    Ok(vec![Inferred::of(cx.dtype(0), vec![r, c, h, w])])
}

fn dtype_attr(cx: &InferCtx<'_>, name: &str) -> Result<Option<DType>, String> {
    match cx.node.attr_int(name) {
        None | Some(0) => Ok(None),
        Some(code) => i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx_code)
            .map(Some)
            .ok_or_else(|| format!("unknown dtype code {code}")),
    }
}

fn quantize(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = match dtype_attr(cx, "output_dtype")? {
        Some(d) => Some(d),
        None if cx.has_input(2) => cx.dtype(2),
        None => Some(DType::U8),
    };
    Ok(vec![Inferred::tensor(dtype, cx.dims(0))])
}

fn dequantize(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = if cx.opset >= 19 {
        cx.dtype(1)
    } else {
        Some(DType::F32)
    };
    Ok(vec![Inferred::tensor(dtype, cx.dims(0))])
}

fn dynamic_quantize(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    Ok(vec![
        Inferred::tensor(Some(DType::U8), cx.dims(0)),
        Inferred::of(Some(DType::F32), vec![]),
        Inferred::of(Some(DType::U8), vec![]),
    ])
}

fn random_like(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = dtype_attr(cx, "dtype")?.or(cx.dtype(0));
    Ok(vec![Inferred::tensor(dtype, cx.dims(0))])
}

fn random(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = dtype_attr(cx, "dtype")?.or(Some(DType::F32));
    let shape = cx
        .attr_ints("shape")
        .ok_or_else(|| format!("{} has no shape", cx.op()))?;
    Ok(vec![Inferred::of(dtype, super::known(shape))])
}

/// `X [N, C, ...]` sampled at `grid [N, out..., 2]` gives `[N, C, out...]`.
fn grid_sample(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let (Some(x), Some(g)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let (Some(n), Some(c), Some(spatial)) =
        (x.first(), x.get(1), g.get(1..g.len().saturating_sub(1)))
    else {
        return Err(format!(
            "GridSample input {} must have rank 3 or more",
            show_input(cx, 0)
        ));
    };
    let mut out = vec![n.clone(), c.clone()];
    out.extend(spatial.iter().cloned());
    Ok(vec![Inferred::of(dtype, out)])
}
