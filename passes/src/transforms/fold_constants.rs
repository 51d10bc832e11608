//! `fold-constants`: replace every value that can be computed without the graph inputs by a
//! constant: shape computations inference derives (Shape -> Gather -> Concat chains over static
//! shapes, as `fold-shapes`), then every node whose inputs are all constants, evaluated by the
//! reference interpreter. Random ops and (de)quantization are never folded (a folded
//! DequantizeLinear would store an int8 weight as floats), and results larger than `max-bytes`
//! stay computed (folding would grow the file).

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind};
use crate::registry::{Pass, PassInfo};
use crate::transforms::dce::eliminate_dead_code;
use crate::transforms::fold_shapes::replace_with_constants;
use spa_ir::{interp, Tensor, ValueId};

pub static INFO: PassInfo = PassInfo {
    name: "fold-constants",
    summary:
        "Replace values computed only from constants (including static shape chains) by constants",
    options: &[OptionDecl {
        name: "max-bytes",
        kind: OptionKind::UInt,
        default: "16777216",
        help: "largest result (bytes) to fold; bigger ones stay computed",
    }],
    create: |opts| {
        Ok(Box::new(FoldConstants {
            max_bytes: opts.int("max-bytes").max(0) as u64,
        }))
    },
};

struct FoldConstants {
    max_bytes: u64,
}

/// Default size limit of folded results.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;

/// Fold with the default limit; returns how many values were folded.
pub fn fold_constants(model: &mut spa_ir::Model) -> Result<usize, spa_ir::IrError> {
    fold_constants_with(model, DEFAULT_MAX_BYTES)
}

pub fn fold_constants_with(
    model: &mut spa_ir::Model,
    max_bytes: u64,
) -> Result<usize, spa_ir::IrError> {
    let mut folded = crate::transforms::fold_shapes::fold_known_values(model, max_bytes)?;
    // In topological order, so a folded node's consumers see its outputs as constants.
    let order = model.graph.topo_order()?;
    let mut evaluated = 0;
    for id in order {
        let graph = &model.graph;
        let Some(node) = graph.try_node(id) else {
            continue;
        };
        if !interp::foldable(node) {
            continue;
        }
        let outputs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        if outputs.is_empty() || outputs.iter().any(|v| graph.outputs.contains(v)) {
            continue;
        }
        let inputs: Option<Vec<Option<&Tensor>>> = node
            .inputs
            .iter()
            .map(|i| match i {
                None => Some(None),
                Some(v) => graph.constant(*v).map(Some),
            })
            .collect();
        let Some(inputs) = inputs else {
            continue;
        };
        // A node the interpreter cannot evaluate stays computed: folding is an optimization.
        let Ok(values) = interp::eval_constant_node(model, graph, id, &inputs) else {
            continue;
        };
        if values.len() != outputs.len() || values.iter().any(|t| t.byte_len() > max_bytes) {
            continue;
        }
        evaluated += replace_with_constants(&mut model.graph, id, outputs, values);
    }
    if evaluated > 0 {
        eliminate_dead_code(&mut model.graph)?;
    }
    folded += evaluated;
    Ok(folded)
}

impl Pass for FoldConstants {
    fn run(
        &mut self,
        model: &mut spa_ir::Model,
        cx: &mut PassContext<'_>,
    ) -> Result<Preserved, PassError> {
        let before = model.graph.num_nodes();
        let folded =
            fold_constants_with(model, self.max_bytes).map_err(|source| PassError::Ir {
                pass: INFO.name.to_string(),
                source,
            })?;
        cx.stat("nodes before", before);
        cx.stat("nodes after", model.graph.num_nodes());
        cx.stat("values folded", folded);
        Ok(if folded == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}
