//! Control flow: `If`, `Loop`, `Scan`. Their outputs come from the types of their bodies'
//! outputs, which the caller infers first (with [`body_inputs`] typing the body's formal inputs
//! and captures typed from the enclosing scope) and passes in [`InferCtx::subgraphs`].

use super::{norm_axis, InferCtx, InferInput, Inferred, Op, Table};
use crate::dtype::DType;
use crate::graph::Node;
use crate::types::{Dim, TensorType, Type};

static IF: Op = Op::new(if_);
static LOOP: Op = Op::new(loop_);
static SCAN: Op = Op::new(scan);

pub(crate) static OPS: Table = &[("If", &IF), ("Loop", &LOOP), ("Scan", &SCAN)];

/// Types for the formal inputs of the body in attribute `attr` of `node`, from the node's input
/// types (`None` where nothing is known). Only `Loop` and `Scan` bodies have inputs.
pub fn body_inputs(
    node: &Node,
    attr: &str,
    opset: i64,
    inputs: &[InferInput<'_>],
) -> Vec<Option<Type>> {
    let ty = |i: usize| inputs.get(i).and_then(|x| x.ty).cloned();
    match (node.op_type.as_str(), attr) {
        ("Loop", "body") => {
            // (iteration number, condition, loop-carried values...)
            let mut out = vec![
                Some(Type::tensor(DType::I64, &[])),
                Some(Type::tensor(DType::Bool, &[])),
            ];
            out.extend((2..node.inputs.len()).map(ty));
            out
        }
        ("Scan", "body") if opset >= 9 => {
            let m = usize::try_from(node.attr_int("num_scan_inputs").unwrap_or(0)).unwrap_or(0);
            let n = node.inputs.len().saturating_sub(m);
            let axes = node.attr_ints("scan_input_axes");
            let mut out: Vec<Option<Type>> = (0..n).map(ty).collect();
            for j in 0..m {
                // A scan input's slice: the scan axis removed.
                let slice = ty(n + j).and_then(|t| {
                    let t = t.as_tensor()?;
                    let mut dims = t.dims()?;
                    let a = norm_axis(
                        axes.and_then(|a| a.get(j).copied()).unwrap_or(0),
                        dims.len(),
                    )
                    .ok()?;
                    dims.remove(a);
                    Some(tensor_type(t.dtype, Some(dims)))
                });
                out.push(slice);
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The branch of an `If` whose condition is known not to select it.
pub fn untaken_branch(node: &Node, inputs: &[InferInput<'_>]) -> Option<&'static str> {
    if node.op_type != "If" || !node.canonical_domain().is_empty() {
        return None;
    }
    let cond = inputs.first()?.value?;
    let c = super::Data::from_tensor(cond, 1)?.get(0)?;
    Some(if c.truthy() {
        "else_branch"
    } else {
        "then_branch"
    })
}

fn tensor_type(dtype: Option<DType>, dims: Option<Vec<Dim>>) -> Type {
    Inferred::tensor(dtype, dims).ty
}

/// The type of a value that is one of two types (branches, or a loop's first and later
/// iterations): dims that agree are kept, others become unknown.
pub fn join(a: &Type, b: &Type) -> Result<Type, (String, String)> {
    match (a, b) {
        (Type::Tensor(x), Type::Tensor(y)) => {
            let dtype = match (x.dtype, y.dtype) {
                (Some(p), Some(q)) if p != q => return Err((a.to_string(), b.to_string())),
                (p, q) => p.or(q),
            };
            let dims = match (x.dims(), y.dims()) {
                (Some(p), Some(q)) if p.len() == q.len() => Some(
                    p.iter()
                        .zip(&q)
                        .map(|(m, n)| if m == n { m.clone() } else { Dim::Unknown })
                        .collect(),
                ),
                _ => None,
            };
            Ok(tensor_type(dtype, dims))
        }
        _ if a == b => Ok(a.clone()),
        _ => Ok(Type::Unknown),
    }
}

fn without_channels(t: &Type) -> Type {
    match t {
        Type::Tensor(t) => Type::Tensor(t.without_channels()),
        t => t.clone(),
    }
}

fn if_(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let n = cx.num_outputs();
    // A known condition picks its branch (the other one is not inferred).
    if let Some(c) = cx.data(0).and_then(|d| d.get(0)) {
        let name = if c.truthy() {
            "then_branch"
        } else {
            "else_branch"
        };
        let Some(taken) = cx.subgraph(name) else {
            return Ok(vec![Inferred::unknown(); n]);
        };
        if taken.len() != n {
            return Err(format!(
                "{name} has {} outputs, but the node has {n}",
                taken.len()
            ));
        }
        return Ok(taken
            .iter()
            .map(|t| Inferred::new(without_channels(t)))
            .collect());
    }
    let (Some(then), Some(els)) = (cx.subgraph("then_branch"), cx.subgraph("else_branch")) else {
        return Ok(vec![Inferred::unknown(); n]);
    };
    if then.len() != els.len() || then.len() != n {
        return Err(format!(
            "then_branch has {} outputs and else_branch {}, but the node has {n}",
            then.len(),
            els.len()
        ));
    }
    then.iter()
        .zip(els)
        .enumerate()
        .map(|(i, (t, e))| {
            let (t, e) = (without_channels(t), without_channels(e));
            if t.is_unknown() || e.is_unknown() {
                return Ok(Inferred::unknown());
            }
            join(&t, &e).map(Inferred::new).map_err(|(t, e)| {
                format!("output {i} is {t} in then_branch but {e} in else_branch")
            })
        })
        .collect()
}

/// A loop-carried value is its initial value after zero iterations and the body's output after
/// more.
fn carried(init: Option<&Type>, body: Option<&Type>) -> Inferred {
    let ty = match (init, body) {
        (Some(i), Some(b)) if !i.is_unknown() && !b.is_unknown() => {
            join(&without_channels(i), &without_channels(b)).unwrap_or(Type::Unknown)
        }
        _ => Type::Unknown,
    };
    Inferred::new(ty)
}

/// A scan output: the body's per-iteration output stacked along `axis`.
fn stacked(body: Option<&Type>, axis: i64, len: Dim) -> Inferred {
    match body.and_then(|t| t.as_tensor()) {
        Some(TensorType {
            dtype,
            shape: Some(s),
        }) => {
            let mut dims: Vec<Dim> = s.iter().map(|a| a.dim.clone()).collect();
            match norm_axis(axis, dims.len() + 1) {
                Ok(a) => {
                    dims.insert(a, len);
                    Inferred::of(*dtype, dims)
                }
                Err(_) => Inferred::tensor(*dtype, None),
            }
        }
        Some(t) => Inferred::tensor(t.dtype, None),
        None => Inferred::unknown(),
    }
}

fn loop_(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let n_carried = cx.num_inputs().saturating_sub(2);
    let n = cx.num_outputs();
    let Some(body) = cx.subgraph("body") else {
        return Ok(vec![Inferred::unknown(); n]);
    };
    if body.len() < 1 + n_carried || body.len() - 1 != n {
        return Err(format!(
            "the body has {} outputs for {n_carried} loop-carried values and {n} node outputs",
            body.len()
        ));
    }
    let mut out: Vec<Inferred> = (0..n_carried)
        .map(|i| carried(cx.input_type(2 + i), body.get(1 + i)))
        .collect();
    for j in n_carried..n {
        out.push(stacked(body.get(1 + j), 0, Dim::Unknown));
    }
    Ok(out)
}

fn scan(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let n_out = cx.num_outputs();
    let Some(body) = cx.subgraph("body").filter(|_| cx.opset >= 9) else {
        return Ok(vec![Inferred::unknown(); n_out]);
    };
    let m = usize::try_from(cx.attr_int("num_scan_inputs", 0))
        .map_err(|_| "num_scan_inputs is negative".to_string())?;
    let n_state = cx
        .num_inputs()
        .checked_sub(m)
        .ok_or("fewer inputs than num_scan_inputs")?;
    if body.len() != n_out || n_out < n_state {
        return Err(format!(
            "the body has {} outputs but the node has {n_out}",
            body.len()
        ));
    }
    // The sequence length is the first scan input's extent along its scan axis.
    let len = cx
        .dims(n_state)
        .and_then(|d| {
            let a = cx
                .attr_ints("scan_input_axes")
                .and_then(|a| a.first().copied())
                .unwrap_or(0);
            d.get(norm_axis(a, d.len()).ok()?).cloned()
        })
        .unwrap_or(Dim::Unknown);
    let out_axes = cx.attr_ints("scan_output_axes");
    let mut out: Vec<Inferred> = (0..n_state)
        .map(|i| carried(cx.input_type(i), body.get(i)))
        .collect();
    for j in 0..n_out - n_state {
        let axis = out_axes.and_then(|a| a.get(j).copied()).unwrap_or(0);
        out.push(stacked(body.get(n_state + j), axis, len.clone()));
    }
    Ok(out)
}
