//! The verifier: every use is defined, every value is defined once, graphs are acyclic, graph
//! outputs exist, tensors hold as many elements as their dims say, declared types agree with
//! inference, and channel expressions refer to existing spaces whose sizes match their axes. It
//! recurses into subgraph and function bodies, runs after parsing and after every pass, and
//! reports the first problem as a one-line error naming the node or value.

use crate::attr::AttrValue;
use crate::error::IrError;
use crate::graph::{Graph, Node, ValueDef, ValueId};
use crate::infer;
use crate::model::Model;
use crate::tensor::Tensor;
use crate::types::{SpaceId, Type};
use std::collections::HashSet;

/// Verify a model; the first problem found is the error.
pub fn verify_model(model: &Model) -> Result<(), IrError> {
    verify_graph(&model.graph, &[], Scope::Main)?;
    for f in &model.functions {
        verify_graph(&f.body, &[], Scope::Function)?;
    }
    let result = infer::infer_types(model)?;
    if let Some(e) = result.errors().first() {
        return Err((*e).clone());
    }
    for f in &model.functions {
        if let Some(e) = infer::function_errors(model, f)?.into_iter().next() {
            return Err(e);
        }
    }
    verify_channels(model, &model.graph)?;
    for f in &model.functions {
        verify_channels(model, &f.body)?;
    }
    Ok(())
}

/// Where a graph sits: captures are only valid inside subgraphs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Main,
    Function,
    Sub,
}

/// A tensor's problem, named after the value or attribute that holds it when it has no name.
fn check_tensor(t: &Tensor, owner: &str) -> Result<(), IrError> {
    t.validate().map_err(|e| match e {
        IrError::BadTensor { name, reason } if name.is_empty() => IrError::BadTensor {
            name: owner.to_string(),
            reason,
        },
        e => e,
    })
}

fn check_attr_tensors(node: &Node) -> Result<(), IrError> {
    for a in &node.attrs {
        let owner = format!("{}.{}", node.label(), a.name);
        match &a.value {
            AttrValue::Tensor(t) => check_tensor(t, &owner)?,
            AttrValue::Tensors(ts) => ts.iter().try_for_each(|t| check_tensor(t, &owner))?,
            AttrValue::SparseTensor(s) => {
                check_tensor(&s.values, &owner)?;
                check_tensor(&s.indices, &owner)?;
            }
            AttrValue::SparseTensors(ss) => ss.iter().try_for_each(|s| {
                check_tensor(&s.values, &owner)?;
                check_tensor(&s.indices, &owner)
            })?,
            _ => {}
        }
    }
    Ok(())
}

/// Structure of one graph. `outer` holds the names each enclosing graph defines, innermost last.
fn verify_graph(graph: &Graph, outer: &[HashSet<&str>], scope: Scope) -> Result<(), IrError> {
    let inputs: HashSet<ValueId> = graph.inputs.iter().copied().collect();
    if inputs.len() != graph.inputs.len() {
        let dup = graph
            .inputs
            .iter()
            .enumerate()
            .find(|(i, v)| graph.inputs[..*i].contains(v))
            .map(|(_, v)| name_of(graph, *v))
            .unwrap_or_default();
        return Err(IrError::Redefined { value: dup });
    }
    let mut defined: HashSet<&str> = HashSet::new();
    for v in graph.value_ids() {
        let val = graph.value(v);
        if let Some(t) = &val.init {
            check_tensor(t, &val.name)?;
        }
        if let Some(s) = &val.sparse_init {
            check_tensor(&s.values, &val.name)?;
            check_tensor(&s.indices, &val.name)?;
        }
        if defines(graph, &inputs, v) {
            defined.insert(val.name.as_str());
        }
    }
    let mut produced = vec![false; graph.value_capacity()];
    for id in graph.node_ids() {
        let node = graph.node(id);
        let bad_ref = |what: &str| IrError::BadNode {
            node: node.label(),
            op: node.qualified_op(),
            reason: format!("{what} refers to an erased value"),
        };
        for (k, o) in node.outputs.iter().enumerate() {
            let Some(o) = *o else { continue };
            let val = graph
                .try_value(o)
                .ok_or_else(|| bad_ref(&format!("output {k}")))?;
            let slot = produced
                .get_mut(o.index())
                .ok_or_else(|| bad_ref(&format!("output {k}")))?;
            // Produced twice, or also an input, a constant or another node's output.
            let twice = *slot
                || val.def != ValueDef::Node(id, k as u32)
                || inputs.contains(&o)
                || val.init.is_some()
                || val.sparse_init.is_some();
            if twice {
                return Err(IrError::Redefined {
                    value: val.name.clone(),
                });
            }
            *slot = true;
        }
        for (k, v) in node.inputs.iter().enumerate() {
            let Some(v) = *v else { continue };
            let val = graph
                .try_value(v)
                .ok_or_else(|| bad_ref(&format!("input {k}")))?;
            let ok = match val.def {
                ValueDef::Capture => {
                    scope == Scope::Sub && outer.iter().any(|s| s.contains(val.name.as_str()))
                }
                _ => defines(graph, &inputs, v),
            };
            if !ok {
                return Err(IrError::UndefinedInput {
                    node: node.label(),
                    op: node.qualified_op(),
                    value: val.name.clone(),
                });
            }
        }
        check_attr_tensors(node)?;
        if node.subgraphs().next().is_some() {
            let mut scopes = outer.to_vec();
            scopes.push(defined.clone());
            for sub in node.subgraphs() {
                verify_graph(sub, &scopes, Scope::Sub)?;
            }
        }
    }
    for &o in &graph.outputs {
        let Some(val) = graph.try_value(o) else {
            return Err(IrError::UndefinedOutput {
                value: o.to_string(),
            });
        };
        let ok = match val.def {
            ValueDef::Capture => {
                scope == Scope::Sub && outer.iter().any(|s| s.contains(val.name.as_str()))
            }
            _ => defines(graph, &inputs, o),
        };
        if !ok {
            return Err(IrError::UndefinedOutput {
                value: val.name.clone(),
            });
        }
    }
    graph.topo_order()?;
    Ok(())
}

/// Does this graph define `v`: a listed input, a constant with data, or a live node's output?
fn defines(graph: &Graph, inputs: &HashSet<ValueId>, v: ValueId) -> bool {
    let Some(val) = graph.try_value(v) else {
        return false;
    };
    match val.def {
        ValueDef::Input => inputs.contains(&v),
        ValueDef::Const => val.init.is_some() || val.sparse_init.is_some(),
        ValueDef::Node(n, k) => graph
            .try_node(n)
            .is_some_and(|node| node.output(k as usize) == Some(v)),
        ValueDef::Capture | ValueDef::Undefined => false,
    }
}

fn name_of(graph: &Graph, v: ValueId) -> String {
    graph
        .try_value(v)
        .map_or_else(|| v.to_string(), |val| val.name.clone())
}

/// Channel expressions: only on tensor types, over existing spaces, sized like their axes.
fn verify_channels(model: &Model, graph: &Graph) -> Result<(), IrError> {
    let size = |s: SpaceId| model.spaces.get(s.0 as usize).map(|c| c.size);
    for v in graph.value_ids() {
        let val = graph.value(v);
        check_type_channels(model, &val.name, &val.ty, None, &size)?;
    }
    for id in graph.node_ids() {
        for sub in graph.node(id).subgraphs() {
            verify_channels(model, sub)?;
        }
    }
    Ok(())
}

/// `whole` is the value's type when `ty` is nested inside it.
fn check_type_channels(
    model: &Model,
    value: &str,
    ty: &Type,
    whole: Option<&Type>,
    size: &dyn Fn(SpaceId) -> Option<u64>,
) -> Result<(), IrError> {
    let t = match ty {
        Type::Unknown => return Ok(()),
        Type::Tensor(t) if whole.is_none() => t,
        Type::Tensor(t) | Type::SparseTensor(t) => {
            let has = t.shape.iter().flatten().any(|a| a.channels.is_some());
            if has {
                return Err(IrError::BadChannels {
                    value: value.to_string(),
                    reason: format!(
                        "channel expressions are only allowed on tensor types, not in {}",
                        whole.unwrap_or(ty)
                    ),
                });
            }
            return Ok(());
        }
        Type::Sequence(inner) | Type::Optional(inner) | Type::Map(_, inner) => {
            return check_type_channels(model, value, inner, Some(whole.unwrap_or(ty)), size)
        }
    };
    let Some(shape) = &t.shape else {
        return Ok(());
    };
    for (k, ax) in shape.iter().enumerate() {
        let Some(expr) = &ax.channels else { continue };
        let mut spaces = Vec::new();
        expr.spaces(&mut spaces);
        if let Some(s) = spaces.iter().find(|s| size(**s).is_none()) {
            return Err(IrError::BadChannels {
                value: value.to_string(),
                reason: format!(
                    "channel expression {expr} on axis {k} refers to {s}, but the model has {} channel spaces",
                    model.spaces.len()
                ),
            });
        }
        let n = expr.size(size);
        let fits = match (n, ax.dim.known()) {
            (Some(n), Some(d)) => i64::try_from(n).is_ok_and(|n| n == d),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !fits {
            return Err(IrError::ChannelSize {
                value: value.to_string(),
                expr: expr.to_string(),
                size: n,
                axis: k,
                dim: ax.dim.to_string(),
            });
        }
    }
    Ok(())
}
