//! `shape-infer`: infer every value's type from the op registry and merge it with what the model
//! declares; with `declare=true` the inferred types are also written to `value_info`.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use spa_ir::infer::{infer_model, InferOptions};
use spa_ir::{Model, ValueDef};

pub static INFO: PassInfo = PassInfo {
    name: "shape-infer",
    summary: "Infer value types and shapes (with constant shape propagation) from the op registry",
    options: &[
        OptionDecl {
            name: "strict",
            kind: OptionKind::Bool,
            default: "false",
            help: "fail when a known op cannot infer its output types",
        },
        OptionDecl {
            name: "declare",
            kind: OptionKind::Bool,
            default: "false",
            help: "write every inferred intermediate type to the model's value_info",
        },
    ],
    create: |opts: &Options| {
        Ok(Box::new(ShapeInfer {
            strict: opts.bool("strict"),
            declare: opts.bool("declare"),
        }))
    },
};

struct ShapeInfer {
    strict: bool,
    declare: bool,
}

impl Pass for ShapeInfer {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let opts = InferOptions {
            strict: self.strict,
        };
        let stats = infer_model(model, &opts).map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        cx.stat("values typed", stats.values_typed);
        cx.stat("values refined", stats.values_refined);
        if !stats.unknown_ops.is_empty() {
            let ops: Vec<_> = stats.unknown_ops.iter().cloned().collect();
            cx.stat("ops without shape inference", ops.join(" "));
        }
        if self.declare {
            let graph = &mut model.graph;
            let ids: Vec<_> = graph.value_ids().collect();
            let mut declared = 0;
            for v in ids {
                let val = graph.value_mut(v);
                if matches!(val.def, ValueDef::Node(..)) && !val.ty.is_unknown() && !val.declared {
                    val.declared = true;
                    declared += 1;
                }
            }
            cx.stat("values declared", declared);
        }
        Ok(Preserved::None)
    }
}
