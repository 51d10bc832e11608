//! Constant evaluation, shared by `fold-constants` and the MLIR emitter: which nodes may be
//! replaced by the values they compute, and those values as constant tensors.

use super::{eval_node, InterpError, Value};
use crate::dtype::DType;
use crate::graph::{Graph, Node, NodeId};
use crate::model::Model;
use crate::tensor::Tensor;

/// Ops whose outputs are not a function of their inputs (two runs draw different values), so
/// they are never folded or merged.
pub fn is_random_op(op_type: &str) -> bool {
    matches!(
        op_type,
        "RandomNormal"
            | "RandomUniform"
            | "RandomNormalLike"
            | "RandomUniformLike"
            | "Multinomial"
            | "Bernoulli"
    )
}

/// Whether a node whose inputs are all constants may be replaced by its outputs' values:
/// a default-domain op with at least one input, no subgraph, not random, and not
/// (de)quantization (a folded DequantizeLinear would store an int8 weight as floats).
pub fn foldable(node: &Node) -> bool {
    let op = node.op_type.as_str();
    node.canonical_domain().is_empty()
        && node.inputs.iter().any(Option::is_some)
        && node.subgraphs().next().is_none()
        && !is_random_op(op)
        && !matches!(
            op,
            "Constant" | "QuantizeLinear" | "DequantizeLinear" | "DynamicQuantizeLinear"
        )
}

/// Evaluate node `id` of `graph` on constant inputs (`None` for an omitted optional input).
/// Floats are computed in f32 and integers in i64, so a node with an f64 or u64 input or result
/// is refused rather than rounded or wrapped.
pub fn eval_constant_node(
    model: &Model,
    graph: &Graph,
    id: NodeId,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>, InterpError> {
    let node = graph.try_node(id).ok_or_else(|| InterpError::Kernel {
        node: format!("#{}", id.0),
        op: "?".into(),
        reason: "no such node".into(),
    })?;
    let fail = |reason: String| InterpError::Kernel {
        node: node.label(),
        op: node.op_type.clone(),
        reason,
    };
    let mut values = Vec::with_capacity(inputs.len());
    for t in inputs {
        values.push(match t {
            Some(t) if matches!(t.dtype, DType::F64 | DType::U64) => {
                return Err(fail(format!("{} constants are not folded", t.dtype)))
            }
            Some(t) => Some(Value::from_tensor(t).map_err(fail)?),
            None => None,
        });
    }
    let refs: Vec<Option<&Value>> = values.iter().map(Option::as_ref).collect();
    let outs = eval_node(model, graph, id, &refs)?;
    outs.iter()
        .map(|v| {
            if matches!(v.dtype(), DType::F64 | DType::U64) {
                return Err(fail(format!("{} results are not folded", v.dtype())));
            }
            v.to_tensor().map_err(fail)
        })
        .collect()
}
