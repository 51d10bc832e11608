//! Untie constant aliases. Exporters store identical parameters once and alias the other copies
//! with `Identity` (torch.onnx does this for every pair of equal initializers, which in a freshly
//! initialized model means every zero bias and every unit BatchNorm/LayerNorm scale of a given
//! size); tf2onnx and ONNX optimizers instead let every user read the one constant. Either way
//! one constant would tie the channels of unrelated layers into one group. Here each `Identity` of
//! a constant becomes a constant of its own, and a float vector read by several nodes gets one
//! copy per node (raw bytes are shared, not copied).

use crate::transforms::fold_shapes::replace_with_constants;
use spa_ir::{Graph, NodeId, Tensor, ValueId};
use std::collections::HashSet;

/// Both untyings; returns how many constants were made.
pub fn untie_constants(graph: &mut Graph) -> usize {
    untie_constant_aliases(graph) + untie_shared_vectors(graph)
}

/// Replace every `Identity` whose input is a constant (and whose output is not a graph output)
/// by a constant with the same contents; returns how many were replaced. Chains of aliases are
/// untied too (nodes are visited in order, so an alias of an alias sees a constant).
pub fn untie_constant_aliases(graph: &mut Graph) -> usize {
    let ids: Vec<_> = graph.node_ids().collect();
    let mut untied = 0;
    for id in ids {
        let node = graph.node(id);
        if node.op_type != "Identity" || !node.canonical_domain().is_empty() {
            continue;
        }
        let (Some(Some(input)), [Some(output)]) = (node.inputs.first(), node.outputs.as_slice())
        else {
            continue;
        };
        let output = *output;
        if graph.outputs.contains(&output) {
            continue;
        }
        let Some(tensor) = graph.constant(*input).cloned() else {
            continue;
        };
        untied += replace_with_constants(graph, id, vec![output], vec![tensor]);
    }
    untied
}

/// A constant that [`untie_shared_vectors`] copies per reader: a float vector of at least two
/// elements (a bias or a norm scale).
pub(crate) fn is_untied_vector(t: &Tensor) -> bool {
    t.dtype.is_float() && t.dims.len() == 1 && t.dims[0] >= 2
}

/// The distinct nodes reading `v` (from [`Graph::users`]), in order; without `Identity` nodes
/// when `skip_identity`.
pub(crate) fn reading_nodes(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    v: ValueId,
    skip_identity: bool,
) -> Vec<NodeId> {
    let mut readers: Vec<NodeId> = users
        .get(v.index())
        .map(|u| {
            u.iter()
                .map(|&(n, _)| n)
                .filter(|&n| !skip_identity || graph.node(n).op_type != "Identity")
                .collect()
        })
        .unwrap_or_default();
    // A node's uses are consecutive in `users`.
    readers.dedup();
    readers
}

/// Give every node after the first that reads a float vector constant (rank 1, at least two
/// elements) its own copy, named `<name>.<k>`; returns how many copies were made. Matrices are
/// left shared: a tied weight (input and output embeddings) is real tying, and copying it would
/// store it twice; vectors are biases and norm scales, whose sharing is an exporter's saving.
pub fn untie_shared_vectors(graph: &mut Graph) -> usize {
    let users = graph.users();
    let mut names: HashSet<String> = graph
        .value_ids()
        .map(|v| graph.value(v).name.clone())
        .collect();
    let shared: Vec<ValueId> = graph
        .constants()
        .filter(|&v| !graph.outputs.contains(&v) && graph.constant(v).is_some_and(is_untied_vector))
        .collect();
    let mut made = 0;
    for v in shared {
        let readers = reading_nodes(graph, &users, v, false);
        let Some(tensor) = graph.constant(v).cloned() else {
            continue;
        };
        let stem = format!("{}.", graph.value(v).name);
        for &reader in readers.iter().skip(1) {
            let name = super::fresh_name(&mut names, &stem, 1);
            let nv = super::add_constant(graph, name, tensor.clone());
            for input in graph.node_mut(reader).inputs.iter_mut() {
                if *input == Some(v) {
                    *input = Some(nv);
                }
            }
            made += 1;
        }
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_aliases_of_aliases_become_constants() {
        let model = spa_ir::text::parse_model(
            "graph @main(%x: f32[4]) -> (%y: f32[4], %z: f32[4]) {\n\
               %b = const f32[4] dense<[1.0, 2.0, 3.0, 4.0]>\n\
               %c = onnx.Identity(%b) : f32[4]\n\
               %d = onnx.Identity(%c) : f32[4]\n\
               %y = onnx.Add(%x, %c) : f32[4]\n\
               %z = onnx.Identity(%d) : f32[4]\n\
               return %y, %z\n\
             }\n",
        );
        let mut model = model.expect("parses");
        let g = &mut model.graph;
        // %z is a graph output: it stays an Identity (of what is now a constant).
        assert_eq!(untie_constant_aliases(g), 2);
        let names: Vec<_> = g.node_ids().map(|n| g.node(n).op_type.clone()).collect();
        assert_eq!(names, ["Add", "Identity"]);
        for name in ["c", "d"] {
            let v = g
                .value_ids()
                .find(|&v| g.value(v).name == name)
                .expect("value");
            let t = g.constant(v).expect("a constant now");
            assert_eq!(t.to_f32().expect("f32"), [1.0, 2.0, 3.0, 4.0]);
        }
    }

    #[test]
    fn shared_vectors_get_one_copy_per_reader_and_matrices_stay_shared() {
        let mut model = spa_ir::text::parse_model(
            "graph @main(%x: f32[2,3]) -> (%y: f32[2,3], %z: f32[3], %m: f32[3,3], %n: f32[3,3]) {\n\
               %b = const f32[3] dense<[0.0, 0.0, 0.0]>\n\
               %w = const f32[3,3] dense<[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]>\n\
               %y = onnx.Add(%x, %b) : f32[2,3]\n\
               %z = onnx.Mul(%b, %b) : f32[3]\n\
               %m = onnx.Add(%w, %w) : f32[3,3]\n\
               %n = onnx.Sub(%w, %b) : f32[3,3]\n\
               return %y, %z, %m, %n\n\
             }\n",
        )
        .expect("parses");
        let g = &mut model.graph;
        // %b is read by three nodes (Mul twice): two copies; %w (a matrix) stays shared.
        assert_eq!(untie_shared_vectors(g), 2);
        let reads = |g: &Graph, op: &str| -> Vec<String> {
            let n = g
                .node_ids()
                .find(|&n| g.node(n).op_type == op)
                .expect("node");
            g.node(n)
                .inputs
                .iter()
                .flatten()
                .map(|&v| g.value(v).name.clone())
                .collect()
        };
        assert_eq!(reads(g, "Add"), ["x", "b"]);
        assert_eq!(reads(g, "Mul"), ["b.1", "b.1"]);
        assert_eq!(reads(g, "Sub"), ["w", "b.2"]);
        let v = g
            .value_ids()
            .find(|&v| g.value(v).name == "b.2")
            .expect("copy");
        assert_eq!(
            g.constant(v).expect("constant").to_f32().expect("f32"),
            [0.0; 3]
        );
    }

    #[test]
    fn untying_keeps_the_parameter_count() {
        let mut model = spa_ir::text::parse_model(
            "graph @main(%x: f32[1,4]) -> (%y: f32[1,4]) {\n\
               %b = const f32[4] dense<[0.0, 0.0, 0.0, 0.0]>\n\
               %c = onnx.Identity(%b) : f32[4]\n\
               %p = onnx.Add(%x, %b) : f32[1,4]\n\
               %q = onnx.Mul(%p, %b) : f32[1,4]\n\
               %r = onnx.Sub(%q, %c) : f32[1,4]\n\
               %y = onnx.Div(%r, %c) : f32[1,4]\n\
               return %y\n\
             }\n",
        )
        .expect("parses");
        let before = crate::prune::report::measure(&model).params;
        // %b: read by Add and Mul (two users); %c: an alias read by Sub and Div.
        assert_eq!(before, 16);
        assert_eq!(untie_constants(&mut model.graph), 3);
        assert_eq!(crate::prune::report::measure(&model).params, before);
    }
}
