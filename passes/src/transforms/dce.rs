//! `dce`: remove nodes whose outputs nothing reads and constants nothing uses. Graph outputs,
//! graph inputs and values read by subgraphs (captured by name) stay.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use spa_ir::{Graph, Model, ValueDef};

pub static INFO: PassInfo = PassInfo {
    name: "dce",
    summary: "Remove nodes and constants that do not contribute to a graph output",
    options: &[],
    create: |_| Ok(Box::new(Dce)),
};

struct Dce;

/// Counts of what was removed.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct DceCounts {
    pub nodes: usize,
    pub constants: usize,
}

/// Remove dead nodes and constants from `graph` (not from nested subgraphs, whose captures keep
/// outer values alive).
pub fn eliminate_dead_code(graph: &mut Graph) -> Result<DceCounts, spa_ir::IrError> {
    let order = graph.topo_order()?;
    let mut live = vec![false; graph.value_capacity()];
    for &v in &graph.outputs {
        live[v.index()] = true;
    }
    let mut live_nodes = vec![false; graph.node_capacity()];
    for &id in order.iter().rev() {
        let node = graph.node(id);
        if !node.outputs.iter().flatten().any(|v| live[v.index()]) {
            continue;
        }
        live_nodes[id.index()] = true;
        for v in node.inputs.iter().flatten() {
            live[v.index()] = true;
        }
        let captured = node.captured_names();
        if !captured.is_empty() {
            for v in graph.value_ids() {
                if captured.contains(&graph.value(v).name) {
                    live[v.index()] = true;
                }
            }
        }
    }
    let mut counts = DceCounts::default();
    for id in order {
        if !live_nodes[id.index()] {
            let outputs: Vec<_> = graph.node(id).outputs.iter().flatten().copied().collect();
            graph.erase_node(id);
            for v in outputs {
                graph.erase_value(v);
            }
            counts.nodes += 1;
        }
    }
    let dead_consts: Vec<_> = graph
        .constants()
        .filter(|&v| graph.value(v).def == ValueDef::Const && !live[v.index()])
        .collect();
    for v in dead_consts {
        graph.erase_value(v);
        counts.constants += 1;
    }
    Ok(counts)
}

impl Pass for Dce {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let before = model.graph.num_nodes();
        let counts = eliminate_dead_code(&mut model.graph).map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        cx.stat("nodes before", before);
        cx.stat("nodes removed", counts.nodes);
        cx.stat("constants removed", counts.constants);
        Ok(if counts == DceCounts::default() {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}
