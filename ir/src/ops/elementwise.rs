//! Elementwise ops: unary activations and math (same type out as in), casts, and the
//! numpy-broadcasting binary, variadic and ternary (`Where`) ops. Shape computations through
//! `Add`/`Sub`/`Mul`/`Div`/`Equal`/`Where`/`Cast`/... are evaluated when their inputs are known.

use super::data::{self, Data, Scalar};
use super::{
    broadcast, cost_elementwise, show, show_input, InferCtx, Inferred, Op, Table,
    MAX_VALUE_ELEMENTS,
};
use crate::dtype::DType;
use crate::types::Dim;

static UNARY: Op = Op::new(unary).with_cost(cost_elementwise);
static PREDICATE: Op = Op::new(predicate).with_cost(cost_elementwise);
static DROPOUT: Op = Op::new(dropout);
static CAST: Op = Op::new(cast);
static CAST_LIKE: Op = Op::new(cast_like);
static ARITH: Op = Op::new(arith).with_cost(cost_elementwise);
static COMPARE: Op = Op::new(compare).with_cost(cost_elementwise);
static WHERE: Op = Op::new(where_).with_cost(cost_elementwise);
static PRELU: Op = Op::new(prelu).with_cost(cost_elementwise);

pub(crate) static OPS: Table = &[
    ("Relu", &UNARY),
    ("Sigmoid", &UNARY),
    ("Tanh", &UNARY),
    ("Erf", &UNARY),
    ("Gelu", &UNARY),
    ("HardSigmoid", &UNARY),
    ("HardSwish", &UNARY),
    ("Softplus", &UNARY),
    ("Softsign", &UNARY),
    ("LeakyRelu", &UNARY),
    ("ThresholdedRelu", &UNARY),
    ("Shrink", &UNARY),
    ("Clip", &UNARY),
    ("Exp", &UNARY),
    ("Log", &UNARY),
    ("Sqrt", &UNARY),
    ("Neg", &UNARY),
    ("Abs", &UNARY),
    ("Reciprocal", &UNARY),
    ("Floor", &UNARY),
    ("Ceil", &UNARY),
    ("Round", &UNARY),
    ("Sin", &UNARY),
    ("Cos", &UNARY),
    ("Tan", &UNARY),
    ("Asin", &UNARY),
    ("Acos", &UNARY),
    ("Atan", &UNARY),
    ("Sinh", &UNARY),
    ("Cosh", &UNARY),
    ("Asinh", &UNARY),
    ("Acosh", &UNARY),
    ("Atanh", &UNARY),
    ("Not", &UNARY),
    ("BitwiseNot", &UNARY),
    ("Mish", &UNARY),
    ("Elu", &UNARY),
    ("Selu", &UNARY),
    ("Celu", &UNARY),
    ("Sign", &UNARY),
    ("Identity", &UNARY),
    ("IsNaN", &PREDICATE),
    ("IsInf", &PREDICATE),
    ("Dropout", &DROPOUT),
    ("Cast", &CAST),
    ("CastLike", &CAST_LIKE),
    ("Add", &ARITH),
    ("Sub", &ARITH),
    ("Mul", &ARITH),
    ("Div", &ARITH),
    ("Pow", &ARITH),
    ("Mod", &ARITH),
    ("BitShift", &ARITH),
    ("BitwiseAnd", &ARITH),
    ("BitwiseOr", &ARITH),
    ("BitwiseXor", &ARITH),
    ("Max", &ARITH),
    ("Min", &ARITH),
    ("Mean", &ARITH),
    ("Sum", &ARITH),
    ("Equal", &COMPARE),
    ("Less", &COMPARE),
    ("Greater", &COMPARE),
    ("LessOrEqual", &COMPARE),
    ("GreaterOrEqual", &COMPARE),
    ("And", &COMPARE),
    ("Or", &COMPARE),
    ("Xor", &COMPARE),
    ("Where", &WHERE),
    ("PRelu", &PRELU),
];

/// Same type out as in; contents computed for the few unary ops shape code uses.
fn unary(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let value = cx.data(0).and_then(|d| unary_value(cx.op(), &d));
    let data = (cx.op() == "Identity").then(|| cx.shape_data(0)).flatten();
    let scalar = cx.rank(0) == Some(0);
    Ok(vec![Inferred::like(cx.input_type(0))
        .with_data(value)
        .with_shape_data(data, scalar)])
}

fn unary_value(op: &str, d: &Data) -> Option<Data> {
    let f = |s: Scalar| -> Option<Scalar> {
        Some(match (op, s) {
            ("Identity", s) => s,
            ("Neg", Scalar::I(v)) => Scalar::I(v.checked_neg()?),
            ("Neg", Scalar::F(v)) => Scalar::F(-v),
            ("Abs", Scalar::I(v)) => Scalar::I(v.checked_abs()?),
            ("Abs", Scalar::F(v)) => Scalar::F(v.abs()),
            ("Sign", Scalar::I(v)) => Scalar::I(v.signum()),
            ("Sign", Scalar::F(v)) => Scalar::F(if v == 0.0 { 0.0 } else { v.signum() }),
            ("Not", s) => Scalar::I(!s.truthy() as i64),
            ("Floor", Scalar::F(v)) => Scalar::F(v.floor()),
            ("Ceil", Scalar::F(v)) => Scalar::F(v.ceil()),
            ("Round", Scalar::F(v)) => Scalar::F(v.round_ties_even()),
            ("Sqrt", Scalar::F(v)) => Scalar::F(v.sqrt()),
            ("Reciprocal", Scalar::F(v)) => Scalar::F(1.0 / v),
            ("Floor" | "Ceil" | "Round", s @ Scalar::I(_)) => s,
            _ => return None,
        })
    };
    let values: Vec<Scalar> = (0..d.len())
        .map(|i| d.get(i).and_then(f))
        .collect::<Option<_>>()?;
    Data::from_scalars(d.dtype, d.dims.clone(), &values)
}

/// `IsNaN`, `IsInf`: bool of the input's shape.
fn predicate(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    Ok(vec![Inferred::tensor(Some(DType::Bool), cx.dims(0))])
}

/// `Dropout` (inference mode: identity) and its mask, bool from opset 10.
fn dropout(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let mask = if cx.opset >= 10 {
        Some(DType::Bool)
    } else {
        cx.dtype(0)
    };
    Ok(vec![
        Inferred::like(cx.input_type(0)).with_data(cx.data(0)),
        Inferred::tensor(mask, cx.dims(0)),
    ])
}

fn cast(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let to = cx.node.attr_int("to").ok_or("Cast has no 'to' attribute")?;
    let dtype = i32::try_from(to)
        .ok()
        .and_then(DType::from_onnx_code)
        .ok_or_else(|| format!("Cast to unknown dtype code {to}"))?;
    let value = cx.data(0).and_then(|d| d.cast(dtype));
    let scalar = cx.rank(0) == Some(0);
    Ok(vec![Inferred::tensor(Some(dtype), cx.dims(0))
        .with_data(value)
        .with_shape_data(cx.shape_data(0), scalar)])
}

fn cast_like(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(1);
    let value = match (cx.data(0), dtype) {
        (Some(d), Some(t)) => d.cast(t),
        _ => None,
    };
    Ok(vec![Inferred::tensor(dtype, cx.dims(0)).with_data(value)])
}

/// Broadcast the shapes of every given input; `None` when a rank is unknown.
fn broadcast_inputs(cx: &InferCtx<'_>, inputs: &[usize]) -> Result<Option<Vec<Dim>>, String> {
    let mut acc: Option<Vec<Dim>> = None;
    let mut first: Option<usize> = None;
    for &i in inputs {
        let Some(d) = cx.dims(i) else {
            return Ok(None);
        };
        acc = Some(match (acc, first) {
            (Some(a), Some(f)) => broadcast(&a, &d).ok_or_else(|| {
                let lhs = if inputs.first() == Some(&f) && inputs.get(1) == Some(&i) {
                    show_input(cx, f)
                } else {
                    show(cx.dtype(f), &a)
                };
                format!("cannot broadcast {lhs} with {}", show_input(cx, i))
            })?,
            _ => {
                first = Some(i);
                d
            }
        });
    }
    Ok(acc)
}

/// Present inputs (variadic ops skip omitted ones).
fn present(cx: &InferCtx<'_>) -> Vec<usize> {
    (0..cx.num_inputs()).filter(|&i| cx.has_input(i)).collect()
}

/// Every input has the same dtype as the first (where known).
fn same_dtype(cx: &InferCtx<'_>, inputs: &[usize]) -> Result<Option<DType>, String> {
    let mut dtype: Option<(usize, DType)> = None;
    for &i in inputs {
        if let Some(d) = cx.dtype(i) {
            match dtype {
                Some((j, e)) if e != d => {
                    return Err(format!("input {i} is {d} but input {j} is {e}"));
                }
                None => dtype = Some((i, d)),
                _ => {}
            }
        }
    }
    Ok(dtype.map(|(_, d)| d))
}

/// Arithmetic: the output has the first input's dtype and the broadcast shape.
fn arith(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let inputs = present(cx);
    let dims = broadcast_inputs(cx, &inputs)?;
    let dtype = match cx.op() {
        // Pow's exponent and BitShift's amount may have their own type.
        "Pow" | "BitShift" => cx.dtype(0),
        _ => same_dtype(cx, &inputs)?,
    };
    let value = arith_value(cx, &inputs, dtype);
    Ok(vec![Inferred::tensor(dtype, dims).with_data(value)])
}

fn arith_value(cx: &InferCtx<'_>, inputs: &[usize], dtype: Option<DType>) -> Option<Data> {
    let op = cx.op();
    let fmod = cx.attr_int("fmod", 0) != 0;
    let data: Vec<Data> = inputs.iter().map(|&i| cx.data(i)).collect::<Option<_>>()?;
    let refs: Vec<&Data> = data.iter().collect();
    let n = refs.len();
    // A float sum of three or more would round once here but at every step at runtime.
    if op == "Sum" && n > 2 && dtype.is_some_and(|d| d.is_float()) {
        return None;
    }
    data::map_broadcast(&refs, dtype?, MAX_VALUE_ELEMENTS, |s| {
        let (first, rest) = s.split_first()?;
        if op == "Mean" {
            // Only for integers: a float sum-then-divide may round differently at runtime.
            let sum = s.iter().try_fold(0i64, |acc, x| match x {
                Scalar::I(v) => acc.checked_add(*v),
                Scalar::F(_) => None,
            })?;
            return Some(Scalar::I(sum / n as i64));
        }
        rest.iter()
            .try_fold(*first, |acc, &x| data::arith(op, acc, x, fmod))
    })
}

/// Comparisons and logic: bool output of the broadcast shape.
fn compare(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let inputs = [0, 1];
    let dims = broadcast_inputs(cx, &inputs)?;
    same_dtype(cx, &inputs)?;
    let value = match (cx.data(0), cx.data(1)) {
        (Some(a), Some(b)) => {
            let op = cx.op();
            data::map_broadcast(&[&a, &b], DType::Bool, MAX_VALUE_ELEMENTS, |s| {
                data::compare(op, *s.first()?, *s.get(1)?)
            })
        }
        _ => None,
    };
    Ok(vec![
        Inferred::tensor(Some(DType::Bool), dims).with_data(value)
    ])
}

fn where_(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dims = broadcast_inputs(cx, &[0, 1, 2])?;
    let dtype = same_dtype(cx, &[1, 2])?;
    let value = match (cx.data(0), cx.data(1), cx.data(2), dtype) {
        (Some(c), Some(a), Some(b), Some(t)) => {
            data::map_broadcast(&[&c, &a, &b], t, MAX_VALUE_ELEMENTS, |s| {
                Some(if s.first()?.truthy() {
                    *s.get(1)?
                } else {
                    *s.get(2)?
                })
            })
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(dtype, dims).with_data(value)])
}

/// `PRelu`: the slope broadcasts to the input, whose shape the output has.
fn prelu(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    if let (Some(x), Some(s)) = (cx.dims(0), cx.dims(1)) {
        if broadcast(&x, &s).is_none() || s.len() > x.len() {
            return Err(format!(
                "slope {} does not broadcast to the input {}",
                show_input(cx, 1),
                show_input(cx, 0)
            ));
        }
    }
    Ok(vec![Inferred::like(cx.input_type(0))])
}
