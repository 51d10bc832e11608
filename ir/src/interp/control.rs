//! Constant, If, and calls of model-local functions.

use super::value::Value;
use super::{arg, Ctx, GraphPlan, InterpError, KernelFn, NoObserver, Slot};
use crate::attr::AttrValue;
use crate::model::Function;
use ndarray::{ArrayD, IxDyn};

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "Constant" => constant,
        "If" => if_,
        _ => return None,
    })
}

fn constant(cx: &Ctx<'_>, _: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let v = if let Some(AttrValue::Tensor(t)) = cx.attr("value") {
        Value::from_tensor(t)?
    } else if let Some(AttrValue::Float(f)) = cx.attr("value_float") {
        Value::f32(ArrayD::from_elem(IxDyn(&[]), *f))
    } else if let Some(AttrValue::Floats(f)) = cx.attr("value_floats") {
        Value::f32(super::value::to_array(&[f.len()], f.clone())?)
    } else if let Some(AttrValue::Int(i)) = cx.attr("value_int") {
        Value::i64(ArrayD::from_elem(IxDyn(&[]), *i))
    } else if let Some(AttrValue::Ints(i)) = cx.attr("value_ints") {
        Value::i64(super::value::to_array(&[i.len()], i.clone())?)
    } else {
        return Err("no supported value attribute".into());
    };
    Ok(vec![v])
}

fn if_(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let c = arg(inputs, 0)?;
    let cond = c.to_i64_vec().first().copied().ok_or("empty condition")? != 0;
    let name = if cond { "then_branch" } else { "else_branch" };
    let Some(AttrValue::Graph(g)) = cx.attr(name) else {
        return Err(format!("{name} is missing"));
    };
    let plan = GraphPlan::new(g).map_err(|e| e.to_string())?;
    plan.run(
        cx.model,
        g,
        Vec::new(),
        cx.scope,
        cx.caller,
        &mut NoObserver,
    )
    .map_err(|e| format!("in {name}: {e}"))
}

/// Run a model-local function body with the node's inputs bound to its formal inputs.
pub(super) fn call_function(
    cx: &Ctx<'_>,
    f: &Function,
    inputs: &[Option<&Value>],
) -> Result<Vec<Value>, InterpError> {
    let body = &f.body;
    let plan = GraphPlan::new(body)?;
    let bound: Vec<_> = body
        .inputs
        .iter()
        .zip(inputs)
        .filter_map(|(&v, x)| x.map(|x| (v, Slot::Borrowed(x))))
        .collect();
    // Body nodes evaluate with the function's opset; their errors name the inner node.
    plan.run(
        cx.model,
        body,
        bound,
        &|_| None,
        Some((cx.node, f)),
        &mut NoObserver,
    )
}
