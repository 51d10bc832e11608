//! `test-print-shapes`: print every value with its type, in schedule order, so that shape
//! inference and the pass manager can be snapshot-tested on their own.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use spa_ir::{Model, ValueDef};
use std::fmt::Write as _;

pub static INFO: PassInfo = PassInfo {
    name: "test-print-shapes",
    summary: "Print every value's type in schedule order (inputs, constants, node outputs)",
    options: &[],
    create: |_| Ok(Box::new(PrintShapes)),
};

struct PrintShapes;

impl Pass for PrintShapes {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let g = &model.graph;
        let order = g.topo_order().map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        let out = &mut *cx.out;
        let _ = writeln!(out, "// shapes of @{}", g.name);
        for &v in &g.inputs {
            let val = g.value(v);
            let _ = writeln!(out, "input  %{}: {}", val.name, val.ty);
        }
        for v in g.constants() {
            let val = g.value(v);
            if val.def == ValueDef::Const {
                let _ = writeln!(out, "const  %{}: {}", val.name, val.ty);
            }
        }
        for id in order {
            let node = g.node(id);
            for o in node.outputs.iter().flatten() {
                let val = g.value(*o);
                let _ = writeln!(out, "{:<6} %{}: {}", node.op_type, val.name, val.ty);
            }
        }
        Ok(Preserved::All)
    }
}
