//! Every pass, one module each. Each module exposes `INFO`, its declaration.

pub mod cse;
pub mod dce;
pub mod fold_bn;
pub mod fold_constants;
pub mod fold_shapes;
pub mod shape_infer;
pub mod split_fused;
pub mod test_print_shapes;
pub mod untie;
pub mod verify;

use spa_ir::{Graph, NodeId, Tensor, Type, Value, ValueDef, ValueId};
use std::collections::HashSet;

/// The only node reading `v` (which is not a graph output), with the input slot it reads it at;
/// `users` is [`Graph::users`].
pub(crate) fn only_user(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    v: ValueId,
) -> Option<(NodeId, usize)> {
    if graph.outputs.contains(&v) {
        return None;
    }
    match users.get(v.index())?.as_slice() {
        [(n, slot)] => Some((*n, *slot)),
        _ => None,
    }
}

/// The first name `{stem}{k}`, `k = first, first + 1, ...`, not in `names`; recorded there.
pub(crate) fn fresh_name(names: &mut HashSet<String>, stem: &str, first: usize) -> String {
    let mut k = first;
    loop {
        let n = format!("{stem}{k}");
        if names.insert(n.clone()) {
            return n;
        }
        k += 1;
    }
}

/// Add a constant value `name` holding `t` (renamed to match).
pub(crate) fn add_constant(graph: &mut Graph, name: String, mut t: Tensor) -> ValueId {
    t.name = name.clone();
    let mut v = Value::new(name, Type::tensor(t.dtype, &t.dims), ValueDef::Const);
    v.init = Some(t);
    graph.add_value(v)
}

/// Give graph output `from`'s name (and type, doc string, metadata) to `to`, which replaces it,
/// so the model's interface keeps its names. Fails, changing nothing, when `to` is a graph
/// input, a constant or another graph output, whose names are fixed.
pub(crate) fn take_output_name(graph: &mut Graph, from: ValueId, to: ValueId) -> bool {
    if !matches!(graph.value(to).def, ValueDef::Node(..)) || graph.outputs.contains(&to) {
        return false;
    }
    let f = graph.value(from).clone();
    let t = graph.value_mut(to);
    let old = std::mem::replace(&mut t.name, f.name);
    t.ty = f.ty;
    t.declared = f.declared;
    t.doc_string = f.doc_string;
    t.metadata_props = f.metadata_props;
    graph.value_mut(from).name = old;
    for o in graph.outputs.iter_mut() {
        if *o == from {
            *o = to;
        }
    }
    true
}
