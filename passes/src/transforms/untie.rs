//! Untie constant aliases. Exporters store identical parameters once and alias the other copies
//! with `Identity` (torch.onnx does this for every pair of equal initializers, which in a freshly
//! initialized model means every zero bias and every unit BatchNorm/LayerNorm scale of a given
//! size). `Identity` couples its input and output channels, so each alias would tie the channels
//! of unrelated layers into one group. Here each `Identity` of a constant becomes a constant of
//! its own holding the same tensor (raw bytes are shared, not copied).

use crate::transforms::fold_shapes::replace_with_constants;
use spa_ir::Graph;

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
}
