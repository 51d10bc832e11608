//! `fold-shapes`: replace shape computations whose result inference can compute (Shape ->
//! Gather -> Unsqueeze -> Concat -> Reshape chains that exporters emit) by constants, so that
//! Reshape targets are constants that `prune` can rewrite. Needs static input shapes where the
//! chain reads them.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use crate::transforms::dce::eliminate_dead_code;
use spa_ir::{Graph, Model, NodeId, Tensor, Type, ValueDef, ValueId};

pub static INFO: PassInfo = PassInfo {
    name: "fold-shapes",
    summary: "Replace shape computations with the constants inference derives for them",
    options: &[],
    create: |_| Ok(Box::new(FoldShapes)),
};

struct FoldShapes;

/// Fold every node output whose contents inference knows into a constant; returns how many
/// values were folded.
pub fn fold_shapes(model: &mut Model) -> Result<usize, spa_ir::IrError> {
    fold_known_values(model, u64::MAX)
}

/// [`fold_shapes`] for values of at most `max_bytes` bytes.
pub fn fold_known_values(model: &mut Model, max_bytes: u64) -> Result<usize, spa_ir::IrError> {
    let known = spa_ir::infer::infer_types(model)?;
    let graph = &mut model.graph;
    let mut folded = 0;
    let ids: Vec<_> = graph.node_ids().collect();
    for id in ids {
        let node = graph.node(id);
        if node.op_type == "Constant" && node.canonical_domain().is_empty() {
            continue;
        }
        if node.subgraphs().next().is_some() {
            continue;
        }
        let outputs: Vec<_> = node.outputs.iter().flatten().copied().collect();
        if outputs.is_empty()
            || !outputs.iter().all(|&v| {
                known
                    .known_value(v)
                    .is_some_and(|t| t.byte_len() <= max_bytes)
                    && !graph.outputs.contains(&v)
            })
        {
            continue;
        }
        let values: Vec<_> = outputs
            .iter()
            .filter_map(|&v| known.known_value(v).cloned())
            .collect();
        folded += replace_with_constants(graph, id, outputs, values);
    }
    if folded > 0 {
        eliminate_dead_code(graph)?;
    }
    Ok(folded)
}

/// Erase node `id` and make each of its `outputs` a constant holding its value (the value keeps
/// its name); returns how many values became constants.
pub(crate) fn replace_with_constants(
    graph: &mut Graph,
    id: NodeId,
    outputs: Vec<ValueId>,
    values: Vec<Tensor>,
) -> usize {
    graph.erase_node(id);
    let mut n = 0;
    for (v, mut t) in outputs.into_iter().zip(values) {
        let val = graph.value_mut(v);
        t.name = val.name.clone();
        val.ty = Type::tensor(t.dtype, &t.dims);
        val.def = ValueDef::Const;
        val.declared = false;
        val.init = Some(t);
        n += 1;
    }
    n
}

impl Pass for FoldShapes {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let before = model.graph.num_nodes();
        let folded = fold_shapes(model).map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        cx.stat("values folded", folded);
        cx.stat("nodes removed", before - model.graph.num_nodes());
        Ok(if folded == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}
