//! The verifier: one test per error, with the exact message, and valid models that pass.

mod infer_common;
use infer_common::parse;
use spa_ir::verify::verify_model;
use spa_ir::{DType, Graph, Model, Node, Type, Value, ValueDef};

fn verify(src: &str) -> Result<(), String> {
    verify_model(&parse(src)).map_err(|e| e.to_string())
}

#[test]
fn valid_models_pass() {
    verify(
        "spaces {g0 = 16}
graph @main(%x: f32[N,3,8,8]) -> (%y) {
  %w = const f32[16@g0,3,3,3] #splat<1.0>
  %c = onnx.Conv(%x, %w) {pads = [1, 1, 1, 1]} : f32[N,16@g0,8,8]
  %y = onnx.Relu(%c) : f32[N,16@g0,8,8]
  %u = com.example.Unknown(%y)
}",
    )
    .unwrap();
    verify(
        "graph @main(%x: f32[2], %c: bool[]) -> (%y) {
  %y = onnx.If(%c) {
    then_branch = graph @t() -> (%a) { %a = onnx.Relu(%x) },
    else_branch = graph @e() -> (%x) {}
  }
}",
    )
    .unwrap();
    verify(
        "graph @main(%x: f32[2]) -> (%y) {
  %y = local.F(%x)
}
func local.F(%a) -> (%b) { %b = onnx.Neg(%a) }",
    )
    .unwrap();
}

#[test]
fn undefined_input() {
    assert_eq!(
        verify(
            "graph @main(%x: f32[1,4]) -> (%y: f32[1,4]) {
  %y = onnx.Add(%x, %nowhere) : f32[1,4] loc(\"add\")
}"
        )
        .unwrap_err(),
        "node 'add' (Add): input 'nowhere' is never defined"
    );
}

#[test]
fn undefined_capture_in_a_subgraph() {
    assert_eq!(
        verify(
            "graph @main(%c: bool[]) -> (%y) {
  %y = onnx.If(%c) {
    then_branch = graph @t() -> (%a) { %a = onnx.Relu(%ghost) loc(\"r\") },
    else_branch = graph @e() -> (%b) { %b = onnx.Relu(%c) }
  }
}"
        )
        .unwrap_err(),
        "node 'r' (Relu): input 'ghost' is never defined"
    );
}

#[test]
fn undefined_input_in_a_function() {
    assert_eq!(
        verify(
            "graph @main(%x: f32[2]) -> (%y) { %y = local.F(%x) }
func local.F(%a) -> (%b) { %b = onnx.Add(%a, %zz) loc(\"f_add\") }"
        )
        .unwrap_err(),
        "node 'f_add' (Add): input 'zz' is never defined"
    );
}

#[test]
fn capture_in_the_main_graph() {
    let mut g = Graph::new("main");
    let x = g.add_value(Value::new(
        "outer",
        Type::tensor(DType::F32, &[2]),
        ValueDef::Capture,
    ));
    let y = g.add_value(Value::new("y", Type::Unknown, ValueDef::Undefined));
    let mut n = Node::new("Relu");
    n.name = "r".into();
    n.inputs = vec![Some(x)];
    n.outputs = vec![Some(y)];
    g.add_node(n);
    g.outputs.push(y);
    assert_eq!(
        verify_model(&Model::new(g)).unwrap_err().to_string(),
        "node 'r' (Relu): input 'outer' is never defined"
    );
}

#[test]
fn undefined_graph_output() {
    assert_eq!(
        verify("graph @main(%x: f32[1]) -> (%q) {}").unwrap_err(),
        "graph output 'q' is never defined"
    );
}

#[test]
fn cycle() {
    assert_eq!(
        verify(
            "graph @main(%x: f32[1,4]) -> (%b: f32[1,4]) {
  %a = onnx.Add(%x, %b) : f32[1,4] loc(\"a\")
  %b = onnx.Relu(%a) : f32[1,4] loc(\"b\")
}"
        )
        .unwrap_err(),
        "the graph has a cycle through node 'a' (Add)"
    );
}

/// `x -> Relu -> y`, with `y` also produced by a second node.
fn two_producers() -> Model {
    let mut g = Graph::new("main");
    let x = g.add_value(Value::new(
        "x",
        Type::tensor(DType::F32, &[2]),
        ValueDef::Input,
    ));
    g.inputs.push(x);
    let y = g.add_value(Value::new("y", Type::Unknown, ValueDef::Undefined));
    for name in ["r1", "r2"] {
        let mut n = Node::new("Relu");
        n.name = name.into();
        n.inputs = vec![Some(x)];
        n.outputs = vec![Some(y)];
        g.add_node(n);
    }
    g.outputs.push(y);
    Model::new(g)
}

#[test]
fn value_defined_twice() {
    assert_eq!(
        verify_model(&two_producers()).unwrap_err().to_string(),
        "value 'y' is defined more than once"
    );
    // A node output that is also a graph input.
    let mut g = Graph::new("main");
    let x = g.add_value(Value::new(
        "x",
        Type::tensor(DType::F32, &[2]),
        ValueDef::Input,
    ));
    g.inputs.push(x);
    let mut n = Node::new("Relu");
    n.inputs = vec![Some(x)];
    n.outputs = vec![Some(x)];
    g.add_node(n);
    assert_eq!(
        verify_model(&Model::new(g)).unwrap_err().to_string(),
        "value 'x' is defined more than once"
    );
    // A node output that is also an initializer.
    let mut g = Graph::new("main");
    let x = g.add_value(Value::new(
        "x",
        Type::tensor(DType::F32, &[2]),
        ValueDef::Input,
    ));
    g.inputs.push(x);
    let mut w = Value::new("w", Type::tensor(DType::F32, &[2]), ValueDef::Const);
    w.init = Some(spa_ir::Tensor::from_f32(vec![2], &[1.0, 2.0]));
    let w = g.add_value(w);
    let mut n = Node::new("Relu");
    n.inputs = vec![Some(x)];
    n.outputs = vec![Some(w)];
    g.add_node(n);
    assert_eq!(
        verify_model(&Model::new(g)).unwrap_err().to_string(),
        "value 'w' is defined more than once"
    );
}

#[test]
fn shape_mismatch() {
    assert_eq!(
        verify(
            "graph @main(%x: f32[1,4]) -> (%y: f32[1,5]) {
  %y = onnx.Relu(%x) : f32[1,5]
}"
        )
        .unwrap_err(),
        "value 'y': declared type f32[1,5] does not match inferred type f32[1,4]"
    );
    assert_eq!(
        verify(
            "graph @main() -> (%w) {
  %w = const f32[2] dense<[1.0, 2.0]> : f32[3]
}"
        )
        .unwrap_err(),
        "value 'w': declared type f32[3] does not match inferred type f32[2]"
    );
}

#[test]
fn shape_mismatch_inside_a_branch() {
    assert_eq!(
        verify(
            "graph @main(%x: f32[2], %c: bool[]) -> (%y) {
  %y = onnx.If(%c) {
    then_branch = graph @t() -> (%a) { %a = onnx.Relu(%x) : f32[3] },
    else_branch = graph @e() -> (%x) {}
  }
}"
        )
        .unwrap_err(),
        "value 'a': declared type f32[3] does not match inferred type f32[2]"
    );
}

#[test]
fn op_inference_failure() {
    assert_eq!(
        verify(
            "graph @main(%a: f32[1,4], %b: f32[1,5]) -> (%y) {
  %y = onnx.Add(%a, %b) loc(\"add\")
}"
        )
        .unwrap_err(),
        "node 'add' (Add): cannot broadcast f32[1,4] with f32[1,5]"
    );
    assert_eq!(
        verify(
            "graph @main(%x: f32[1,4,8,8]) -> (%y) {
  %w = const f32[16,3,3,3] #splat<1.0>
  %y = onnx.Conv(%x, %w) loc(\"conv1\")
}"
        )
        .unwrap_err(),
        "node 'conv1' (Conv): Conv weight has 3 input channels but input has 4 (group 1)"
    );
}

#[test]
fn bad_channel_expression_size() {
    assert_eq!(
        verify(
            "spaces {g0 = 3}
graph @main(%x: f32[1,4@g0]) -> (%y: f32[1,4]) {
  %y = onnx.Relu(%x) : f32[1,4]
}"
        )
        .unwrap_err(),
        "value 'x': channel expression g0 has size 3, but axis 1 has 4"
    );
    assert_eq!(
        verify(
            "spaces {g0 = 3, g1 = 2}
graph @main(%x: f32[1,8@cat(g0,g1)]) -> (%x) {}"
        )
        .unwrap_err(),
        "value 'x': channel expression cat(g0,g1) has size 5, but axis 1 has 8"
    );
    // A product with a literal, and a symbolic dim (not checkable), pass.
    verify(
        "spaces {g0 = 4}
graph @main(%x: f32[1,12@(g0*3), B@g0]) -> (%x) {}",
    )
    .unwrap();
}

#[test]
fn channel_expression_on_a_missing_space_or_a_non_tensor() {
    assert_eq!(
        verify(
            "spaces {g0 = 4}
graph @main(%x: f32[1,4@g3]) -> (%x) {}"
        )
        .unwrap_err(),
        "value 'x': channel expression g3 on axis 1 refers to g3, but the model has 1 channel spaces"
    );
    assert_eq!(
        verify(
            "spaces {g0 = 4}
graph @main(%x: seq<f32[4@g0]>) -> (%x) {}"
        )
        .unwrap_err(),
        "value 'x': channel expressions are only allowed on tensor types, not in seq<f32[4@g0]>"
    );
}

#[test]
fn bad_tensor_size() {
    assert_eq!(
        verify(
            "graph @main() -> (%w) {
  %w = const f32[3] hex<\"0000000000000000\">
}"
        )
        .unwrap_err(),
        "tensor 'w': 8 data bytes for 3 elements of f32 (expected 12)"
    );
    assert_eq!(
        verify(
            "graph @main() -> (%y) {
  %y = onnx.Constant() {value = f32[2] hex<\"00000000\">} loc(\"k\")
}"
        )
        .unwrap_err(),
        "tensor 'k.value': 4 data bytes for 2 elements of f32 (expected 8)"
    );
}
