//! `cse`: common subexpression elimination. Two nodes with the same op, domain, attributes and
//! inputs compute the same outputs, so the later one's outputs are replaced by the earlier one's;
//! equal constants (same dtype, dims and bytes, up to [`MAX_CONST_BYTES`]) are merged the same way.
//! Random ops are never merged (two draws differ); nodes with subgraphs are left alone.
//! A replaced graph output keeps its name: the surviving value takes it, unless that value's name
//! is fixed too (a graph input, a constant or another output), in which case the node stays.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use crate::transforms::dce::eliminate_dead_code;
use spa_ir::{Graph, Model, NodeId, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};

pub static INFO: PassInfo = PassInfo {
    name: "cse",
    summary: "Merge nodes that compute the same thing from the same inputs, and equal constants",
    options: &[],
    create: |_| Ok(Box::new(Cse)),
};

struct Cse;

/// Constants up to this size are compared by content.
pub const MAX_CONST_BYTES: u64 = 1 << 20;

/// Merge duplicates; returns how many values were replaced.
pub fn cse(model: &mut Model) -> Result<usize, spa_ir::IrError> {
    let graph = &mut model.graph;
    let mut captured: HashSet<String> = HashSet::new();
    for id in graph.node_ids() {
        captured.extend(graph.node(id).captured_names());
    }
    let outputs: HashSet<ValueId> = graph.outputs.iter().copied().collect();
    let mut subst: HashMap<ValueId, ValueId> = HashMap::new();
    let replace = |graph: &mut Graph,
                   subst: &mut HashMap<ValueId, ValueId>,
                   from: ValueId,
                   to: ValueId|
     -> bool {
        if captured.contains(&graph.value(from).name) {
            return false;
        }
        if outputs.contains(&from) && !super::take_output_name(graph, from, to) {
            return false;
        }
        subst.insert(from, to);
        true
    };

    // Constants by content.
    let mut seen_consts: HashMap<(spa_ir::DType, Vec<i64>, Vec<u8>), ValueId> = HashMap::new();
    let consts: Vec<ValueId> = graph
        .value_ids()
        .filter(|&v| graph.value(v).def == ValueDef::Const && graph.value(v).init.is_some())
        .collect();
    for v in consts {
        let Some(t) = graph.value(v).init.as_ref() else {
            continue;
        };
        if t.is_external() || t.byte_len() > MAX_CONST_BYTES {
            continue;
        }
        let Ok(bytes) = t.raw_bytes() else { continue };
        let key = (t.dtype, t.dims.clone(), bytes.into_owned());
        match seen_consts.get(&key) {
            Some(&first) => {
                replace(graph, &mut subst, v, first);
            }
            None => {
                seen_consts.insert(key, v);
            }
        }
    }

    // Nodes in schedule order, keyed on their resolved inputs.
    let order = graph.topo_order()?;
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    let resolve = |subst: &HashMap<ValueId, ValueId>, v: ValueId| *subst.get(&v).unwrap_or(&v);
    for id in order {
        let node = graph.node(id);
        if spa_ir::interp::is_random_op(&node.op_type) || node.subgraphs().next().is_some() {
            continue;
        }
        let big_tensor = node.attrs.iter().any(
            |a| matches!(&a.value, spa_ir::AttrValue::Tensor(t) if t.byte_len() > MAX_CONST_BYTES),
        );
        if big_tensor {
            continue;
        }
        let inputs: Vec<Option<ValueId>> = node
            .inputs
            .iter()
            .map(|i| i.map(|v| resolve(&subst, v)))
            .collect();
        let mut attrs: Vec<String> = node
            .attrs
            .iter()
            .map(|a| format!("{}={:?}", a.name, a.value))
            .collect();
        attrs.sort();
        let key = format!(
            "{}|{}|{}|{:?}|{:?}|{}",
            node.domain,
            node.op_type,
            node.overload,
            inputs,
            attrs,
            node.outputs.len()
        );
        match seen.get(&key) {
            Some(&first) => {
                let theirs = graph.node(first).outputs.clone();
                let ours = node.outputs.clone();
                for (a, b) in ours.iter().zip(&theirs) {
                    if let (Some(a), Some(b)) = (a, b) {
                        replace(graph, &mut subst, *a, *b);
                    }
                }
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    let replaced = subst.len();
    if replaced > 0 {
        let ids: Vec<NodeId> = graph.node_ids().collect();
        for id in ids {
            for i in graph.node_mut(id).inputs.iter_mut().flatten() {
                if let Some(&to) = subst.get(i) {
                    *i = to;
                }
            }
        }
        eliminate_dead_code(graph)?;
    }
    Ok(replaced)
}

impl Pass for Cse {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let before = model.graph.num_nodes();
        let replaced = cse(model).map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        cx.stat("nodes before", before);
        cx.stat("nodes after", model.graph.num_nodes());
        cx.stat("values replaced", replaced);
        Ok(if replaced == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}
