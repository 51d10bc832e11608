//! The verifier: definitions before uses, one definition per value, no cycles, valid tensors,
//! declared types that agree with inference, channel expressions that match their axes. It runs
//! after parsing and after every pass. Errors name the node or value.

use crate::attr::AttrValue;
use crate::error::IrError;
use crate::graph::{Graph, ValueDef, ValueId};
use crate::infer::{infer_types_with, InferOptions};
use crate::model::Model;
use crate::types::{SpaceId, Type};
use std::collections::HashSet;

/// Verify a model; the first problem found is the error.
pub fn verify_model(model: &Model) -> Result<(), IrError> {
    verify_graph(&model.graph, &[], true)?;
    for f in &model.functions {
        verify_graph(&f.body, &[], false)?;
    }
    // Types against inference (strict: a known op that cannot infer is an error).
    infer_types_with(model, &InferOptions { strict: true })?;
    verify_channels(model)?;
    Ok(())
}

fn verify_graph(graph: &Graph, outer: &[HashSet<String>], main: bool) -> Result<(), IrError> {
    let mut defined_by: Vec<Option<(usize, usize)>> = vec![None; graph.value_capacity()];
    let mut names: HashSet<String> = HashSet::new();
    for v in graph.value_ids() {
        let val = graph.value(v);
        if val.def != ValueDef::Capture && val.def != ValueDef::Undefined {
            names.insert(val.name.clone());
        }
        if let Some(t) = &val.init {
            t.validate()?;
        }
    }
    for id in graph.node_ids() {
        let node = graph.node(id);
        for (k, o) in node.outputs.iter().enumerate() {
            let Some(o) = o else { continue };
            let val = graph.try_value(*o).ok_or_else(|| IrError::BadNode {
                node: node.label(),
                op: node.qualified_op(),
                reason: format!("output {k} refers to an erased value"),
            })?;
            if defined_by[o.index()].is_some() || val.def != ValueDef::Node(id, k as u32) {
                return Err(IrError::Redefined {
                    value: val.name.clone(),
                });
            }
            defined_by[o.index()] = Some((id.index(), k));
        }
        for v in node.inputs.iter().flatten() {
            let val = graph.try_value(*v).ok_or_else(|| IrError::BadNode {
                node: node.label(),
                op: node.qualified_op(),
                reason: "an input refers to an erased value".into(),
            })?;
            let undefined = match val.def {
                ValueDef::Undefined => true,
                ValueDef::Capture => main || !outer.iter().any(|s| s.contains(&val.name)),
                _ => false,
            };
            if undefined {
                return Err(IrError::UndefinedInput {
                    node: node.label(),
                    op: node.qualified_op(),
                    value: val.name.clone(),
                });
            }
        }
        for a in &node.attrs {
            match &a.value {
                AttrValue::Tensor(t) => t.validate()?,
                AttrValue::Tensors(ts) => ts.iter().try_for_each(|t| t.validate())?,
                _ => {}
            }
        }
        if node.subgraphs().next().is_some() {
            let mut scopes = outer.to_vec();
            scopes.push(names.clone());
            for sg in node.subgraphs() {
                verify_graph(sg, &scopes, false)?;
            }
        }
    }
    for &o in &graph.outputs {
        let val = graph.try_value(o).ok_or_else(|| IrError::UndefinedOutput {
            value: format!("{o}"),
        })?;
        if val.def == ValueDef::Undefined || (main && val.def == ValueDef::Capture) {
            return Err(IrError::UndefinedOutput {
                value: val.name.clone(),
            });
        }
    }
    graph.topo_order()?;
    Ok(())
}

fn verify_channels(model: &Model) -> Result<(), IrError> {
    let size = |s: SpaceId| model.spaces.get(s.0 as usize).map(|c| c.size);
    let g = &model.graph;
    let check = |v: ValueId| -> Result<(), IrError> {
        let val = g.value(v);
        let Type::Tensor(t) = &val.ty else {
            return Ok(());
        };
        let Some(shape) = &t.shape else {
            return Ok(());
        };
        for (k, ax) in shape.iter().enumerate() {
            let Some(expr) = &ax.channels else { continue };
            let n = expr.size(&size);
            let ok = match (n, ax.dim.known()) {
                (Some(n), Some(d)) => n as i64 == d,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !ok {
                return Err(IrError::ChannelSize {
                    value: val.name.clone(),
                    expr: expr.to_string(),
                    size: n,
                    axis: k,
                    dim: ax.dim.to_string(),
                });
            }
        }
        Ok(())
    };
    for v in g.value_ids() {
        check(v)?;
    }
    Ok(())
}
