//! Elementwise ops: unary (activations, Cast, Identity, Dropout, ...) and n-ary with numpy
//! broadcasting (Add, Mul, Where, comparisons, ...). Small integer values propagate.

use super::{int_value, InferCtx, InferResult, Inferred};
use crate::types::Dim;
use crate::DType;

const UNARY: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Mish",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Sign",
    "Identity",
    "Clip",
    "ThresholdedRelu",
    "Shrink",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "CumSum",
    "Trilu",
    "BitwiseNot",
];

const BINARY: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Mod",
    "BitShift",
    "And",
    "Or",
    "Xor",
    "PRelu",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
];

const COMPARE: &[&str] = &["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"];

/// Numpy broadcasting of several shapes.
pub fn broadcast(shapes: &[Vec<Dim>]) -> Result<Vec<Dim>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for k in 0..rank {
        let mut d = Dim::Known(1);
        for s in shapes {
            let Some(j) = (k + s.len()).checked_sub(rank) else {
                continue;
            };
            let e = &s[j];
            d = match (&d, e) {
                (Dim::Known(1), _) => e.clone(),
                (_, Dim::Known(1)) => d,
                (Dim::Known(a), Dim::Known(b)) if a == b => d,
                (Dim::Known(a), Dim::Known(b)) => {
                    let show = |s: &Vec<Dim>| {
                        s.iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let all: Vec<String> =
                        shapes.iter().map(|s| format!("[{}]", show(s))).collect();
                    return Err(format!(
                        "cannot broadcast {} (axis {k}: {a} vs {b})",
                        all.join(" with ")
                    ));
                }
                (Dim::Known(_), _) => d,
                (_, Dim::Known(_)) => e.clone(),
                (Dim::Sym(a), Dim::Sym(b)) if a == b => d,
                _ => Dim::Unknown,
            };
        }
        out.push(d);
    }
    Ok(out)
}

/// Index of `out_index` (row-major over `out`) in a broadcast input of shape `dims`.
fn source_index(out: &[i64], dims: &[i64], mut flat: usize) -> usize {
    let mut coords = vec![0usize; out.len()];
    for k in (0..out.len()).rev() {
        let n = out[k].max(1) as usize;
        coords[k] = flat % n;
        flat /= n;
    }
    let off = out.len() - dims.len();
    let mut idx = 0usize;
    for (j, &d) in dims.iter().enumerate() {
        let c = if d == 1 { 0 } else { coords[off + j] };
        idx = idx * d.max(1) as usize + c;
    }
    idx
}

/// Elementwise integer evaluation over broadcast known inputs.
fn eval_ints(
    cx: &InferCtx<'_>,
    dims: &[Dim],
    dtype: Option<DType>,
    f: impl Fn(&[i64]) -> Option<i64>,
) -> Option<crate::Tensor> {
    let out: Vec<i64> = dims.iter().map(|d| d.known()).collect::<Option<_>>()?;
    let n: i64 = out.iter().product();
    if n as u64 > super::MAX_PROPAGATED {
        return None;
    }
    let mut ins = Vec::new();
    for i in 0..cx.n_inputs() {
        let t = cx.value(i)?;
        if !t.dtype.is_int() && t.dtype != DType::Bool {
            return None;
        }
        ins.push((t.dims.clone(), t.to_i64().ok()?));
    }
    let mut vals = Vec::with_capacity(n as usize);
    for p in 0..n as usize {
        let args: Vec<i64> = ins
            .iter()
            .map(|(d, v)| v.get(source_index(&out, d, p)).copied())
            .collect::<Option<_>>()?;
        vals.push(f(&args)?);
    }
    int_value(dtype, out, &vals)
}

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    if UNARY.contains(&op) {
        let v = match op {
            "Identity" => cx.value(0).cloned(),
            "Neg" => cx.value(0).and_then(|t| {
                let v: Vec<i64> = t.to_i64().ok()?.iter().map(|x| -x).collect();
                int_value(Some(t.dtype), t.dims.clone(), &v)
            }),
            _ => None,
        };
        return Some(Ok(vec![
            Inferred::tensor(cx.dtype(0), cx.dims(0)).with_value(v)
        ]));
    }
    match op {
        "Dropout" => Some(Ok(vec![
            Inferred::tensor(cx.dtype(0), cx.dims(0)).with_value(cx.value(0).cloned()),
            Inferred::tensor(Some(DType::Bool), cx.dims(0)),
        ])),
        "Not" | "IsNaN" | "IsInf" => {
            Some(Ok(vec![Inferred::tensor(Some(DType::Bool), cx.dims(0))]))
        }
        "Cast" | "CastLike" => {
            let to = if op == "Cast" {
                cx.node
                    .attr_int("to")
                    .and_then(|c| DType::from_onnx_code(c as i32))
            } else {
                cx.dtype(1)
            };
            let v = cx.value(0).and_then(|t| {
                if !(t.dtype.is_int() || t.dtype == DType::Bool) {
                    return None;
                }
                int_value(to, t.dims.clone(), &t.to_i64().ok()?)
            });
            Some(Ok(vec![Inferred::tensor(to, cx.dims(0)).with_value(v)]))
        }
        _ if BINARY.contains(&op) || COMPARE.contains(&op) || op == "Where" => Some(binary(op, cx)),
        _ => None,
    }
}

fn binary(op: &str, cx: &InferCtx<'_>) -> InferResult {
    let mut shapes = Vec::new();
    let mut all_known = true;
    for i in 0..cx.n_inputs() {
        if !cx.has(i) {
            continue;
        }
        match cx.dims(i) {
            Some(d) => shapes.push(d),
            None => all_known = false,
        }
    }
    let dtype = if COMPARE.contains(&op) {
        Some(DType::Bool)
    } else if op == "Where" {
        cx.dtype(1).or(cx.dtype(2))
    } else {
        (0..cx.n_inputs()).find_map(|i| cx.dtype(i))
    };
    if !all_known {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    }
    let dims = broadcast(&shapes)?;
    let value = eval_ints(cx, &dims, dtype, |a| {
        Some(match op {
            "Add" | "Sum" => a.iter().try_fold(0i64, |x, &y| x.checked_add(y))?,
            "Sub" => a[0].checked_sub(*a.get(1)?)?,
            "Mul" => a.iter().try_fold(1i64, |x, &y| x.checked_mul(y))?,
            "Div" => {
                let d = *a.get(1)?;
                if d == 0 {
                    return None;
                }
                // Integer Div truncates toward zero, as Rust does.
                a[0].checked_div(d)?
            }
            "Mod" => {
                let d = *a.get(1)?;
                if d == 0 {
                    return None;
                }
                a[0].rem_euclid(d)
            }
            "Max" => *a.iter().max()?,
            "Min" => *a.iter().min()?,
            "Equal" => (a[0] == *a.get(1)?) as i64,
            "Less" => (a[0] < *a.get(1)?) as i64,
            "Greater" => (a[0] > *a.get(1)?) as i64,
            "LessOrEqual" => (a[0] <= *a.get(1)?) as i64,
            "GreaterOrEqual" => (a[0] >= *a.get(1)?) as i64,
            "Where" => {
                if a[0] != 0 {
                    *a.get(1)?
                } else {
                    *a.get(2)?
                }
            }
            "And" => ((a[0] != 0) && (*a.get(1)? != 0)) as i64,
            "Or" => ((a[0] != 0) || (*a.get(1)? != 0)) as i64,
            _ => return None,
        })
    });
    Ok(vec![Inferred::tensor(dtype, Some(dims)).with_value(value)])
}
