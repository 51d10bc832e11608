//! Whole-model inference: shape data propagation, merging with declared types, subgraphs,
//! local functions, statistics and costs.

mod infer_common;
use infer_common::{known_ints, model, parse, type_of};
use spa_ir::infer::{infer_model, infer_types, InferOptions};
use spa_ir::ops;

/// The classic exporter's chain: Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
const SHAPE_CHAIN: &str = "
  %s = onnx.Shape(%x)
  %i0 = const i64[] dense<[0]>
  %i1 = const i64[] dense<[1]>
  %b = onnx.Gather(%s, %i0) {axis = 0}
  %t = onnx.Gather(%s, %i1) {axis = 0}
  %ax = const i64[1] dense<[0]>
  %bu = onnx.Unsqueeze(%b, %ax)
  %tu = onnx.Unsqueeze(%t, %ax)
  %h = const i64[1] dense<[4]>
  %shape = onnx.Concat(%bu, %tu, %h, %h) {axis = 0}
  %y = onnx.Reshape(%x, %shape)";

#[test]
fn shape_chain_gives_a_static_reshape() {
    let mut m = model(17, "%x: f32[1,6,16]", SHAPE_CHAIN, &["y"]);
    assert_eq!(known_ints(&m, "shape"), Some(vec![1, 6, 4, 4]));
    assert_eq!(known_ints(&m, "b"), Some(vec![1]));
    let stats = infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[1,6,4,4]");
    assert_eq!(type_of(&m, "b"), "i64[]");
    assert_eq!(type_of(&m, "shape"), "i64[4]");
    assert_eq!(stats.values_typed, 7);
    assert!(stats.unknown_ops.is_empty());
}

#[test]
fn shape_chain_with_a_symbolic_batch() {
    // Only the batch entry is unknown; Reshape's -1 takes the symbol back.
    let body = "
  %s = onnx.Shape(%x)
  %i1 = const i64[] dense<[1]>
  %t = onnx.Gather(%s, %i1) {axis = 0}
  %tu = onnx.Unsqueeze(%t, %ax)
  %ax = const i64[1] dense<[0]>
  %m1 = const i64[1] dense<[-1]>
  %h = const i64[2] dense<[4, 4]>
  %shape = onnx.Concat(%m1, %tu, %h) {axis = 0}
  %y = onnx.Reshape(%x, %shape)";
    let mut m = model(17, "%x: f32[B,6,16]", body, &["y"]);
    infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[B,6,4,4]");
    assert_eq!(known_ints(&m, "shape"), Some(vec![-1, 6, 4, 4]));
    // The batch itself travels through the chain as a symbolic entry of the shape data.
    let mut m = model(17, "%x: f32[B,6,16]", SHAPE_CHAIN, &["y"]);
    let r = infer_types(&m).unwrap();
    let shape = *m.graph.names().get("shape").unwrap();
    assert!(r.known_value(shape).is_none());
    let data: Vec<String> = r
        .shape_data(shape)
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(data, vec!["B", "6", "4", "4"]);
    infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[B,6,4,4]");
    // Unknown entries stay unknown.
    let mut m = model(17, "%x: f32[?,6,16]", SHAPE_CHAIN, &["y"]);
    infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[?,6,4,4]");
}

#[test]
fn flatten_by_reshape_with_a_symbolic_batch() {
    // torchvision's `x.view(x.size(0), -1)` with a dynamic batch.
    let body = "
  %s = onnx.Shape(%x)
  %i0 = const i64[] dense<[0]>
  %b = onnx.Gather(%s, %i0) {axis = 0}
  %ax = const i64[1] dense<[0]>
  %bu = onnx.Unsqueeze(%b, %ax)
  %m1 = const i64[1] dense<[-1]>
  %shape = onnx.Concat(%bu, %m1) {axis = 0}
  %y = onnx.Reshape(%x, %shape)
  %z = onnx.Expand(%x, %s)
  %c = onnx.ConstantOfShape(%s)";
    let mut m = model(17, "%x: f32[N,512,1,1]", body, &["y", "z", "c"]);
    infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[N,512]");
    assert_eq!(type_of(&m, "z"), "f32[N,512,1,1]");
    assert_eq!(type_of(&m, "c"), "f32[N,512,1,1]");
}

#[test]
fn dynamo_style_chain_with_arithmetic() {
    // Opset 18: axes as inputs, sizes computed with Mul/Div and Cast.
    let body = "
  %s = onnx.Shape(%x) {start = 0, end = 1}
  %w = onnx.Shape(%x) {start = 2}
  %two = const i64[1] dense<[2]>
  %half = onnx.Div(%w, %two)
  %c = onnx.Cast(%half) {to = 1}
  %cs = onnx.Cast(%c) {to = 7}
  %n = const i64[1] dense<[-1]>
  %shape = onnx.Concat(%s, %n, %cs) {axis = 0}
  %y = onnx.Reshape(%x, %shape)
  %eq = onnx.Equal(%shape, %n)
  %one = const i64[] dense<[1]>
  %fixed = onnx.Where(%eq, %one, %shape)";
    let mut m = model(18, "%x: f32[2,3,8]", body, &["y", "fixed"]);
    infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[2,6,4]");
    assert_eq!(type_of(&m, "c"), "f32[1]");
    assert_eq!(known_ints(&m, "fixed"), Some(vec![2, 1, 4]));
}

#[test]
fn declared_types_are_refined_and_checked() {
    let body = "
  %w = const f32[8,4] #splat<1.0>
  %m = onnx.MatMul(%x, %w) : f32[batch,?]
  %y = onnx.Relu(%m) : f32[?,4@g0]";
    let src = format!("spaces {{g0 = 4}}\ngraph @main(%x: f32[2,8]) -> (%y) {{{body}\n}}");
    let mut m = parse(&src);
    let stats = infer_model(&mut m, &InferOptions::default()).unwrap();
    // Known beats symbolic and unknown; the channel expression stays.
    assert_eq!(type_of(&m, "m"), "f32[2,4]");
    assert_eq!(type_of(&m, "y"), "f32[2,4@g0]");
    assert_eq!((stats.values_typed, stats.values_refined), (0, 2));

    let mut m = model(17, "%x: f32[1,4]", "%y = onnx.Relu(%x) : f32[1,5]", &["y"]);
    let e = infer_model(&mut m, &InferOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "value 'y': declared type f32[1,5] does not match inferred type f32[1,4]"
    );
    let mut m = model(17, "%x: f32[1,4]", "%y = onnx.Relu(%x) : i64[1,4]", &["y"]);
    let e = infer_model(&mut m, &InferOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "value 'y': declared type i64[1,4] does not match inferred type f32[1,4]"
    );
    // Different symbols may name the same extent.
    let mut m = model(
        17,
        "%x: f32[batch,4]",
        "%y = onnx.Relu(%x) : f32[unk__0,4]",
        &["y"],
    );
    infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[unk__0,4]");
}

#[test]
fn unknown_ops_and_failures() {
    let body = "
  %a = com.example.Mystery(%x) : f32[3]
  %b = onnx.LSTM(%x)
  %c = onnx.Relu(%a)
  %y = onnx.Add(%c, %z) loc(\"add\")";
    let mut m = model(17, "%x: f32[2], %z: f32[4]", body, &["y"]);
    let stats = infer_model(&mut m, &InferOptions::default()).unwrap();
    assert_eq!(
        stats.unknown_ops.iter().cloned().collect::<Vec<_>>(),
        vec!["LSTM", "com.example.Mystery"]
    );
    assert_eq!(type_of(&m, "c"), "f32[3]");
    assert_eq!(type_of(&m, "b"), "?");
    // Non-strict: the failure is reported in the statistics and `y` stays unknown.
    assert_eq!(type_of(&m, "y"), "?");
    assert_eq!(stats.failures.len(), 1);
    assert_eq!(
        stats.failures[0].to_string(),
        "node 'add' (Add): cannot broadcast f32[3] with f32[4]"
    );
    let mut m = model(17, "%x: f32[2], %z: f32[4]", body, &["y"]);
    let e = infer_model(&mut m, &InferOptions { strict: true }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 'add' (Add): cannot broadcast f32[3] with f32[4]"
    );
}

#[test]
fn infer_types_does_not_change_the_model() {
    let m = model(17, "%x: f32[1,6,16]", SHAPE_CHAIN, &["y"]);
    let before = m.clone();
    let r = infer_types(&m).unwrap();
    assert_eq!(m, before);
    let y = *m.graph.names().get("y").unwrap();
    assert_eq!(r.ty(y).unwrap().to_string(), "f32[1,6,4,4]");
    assert!(r.known_value(y).is_none());
    assert!(r.errors().is_empty());
}

#[test]
fn if_branches_with_captures() {
    let src = "
graph @main(%x: f32[2,3], %c: bool[]) -> (%y, %z) {
  %y = onnx.If(%c) {
    then_branch = graph @then() -> (%t) { %t = onnx.Relu(%x) },
    else_branch = graph @else() -> (%e) { %e = onnx.Neg(%x) }
  }
  %s = const i64[2] dense<[3, 2]>
  %z = onnx.If(%c) {
    then_branch = graph @then2() -> (%t2) { %t2 = onnx.Relu(%x) },
    else_branch = graph @else2() -> (%e2) { %e2 = onnx.Reshape(%x, %s) }
  }
}";
    let mut m = parse(src);
    infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[2,3]");
    // Branches that disagree on dims keep the rank.
    assert_eq!(type_of(&m, "z"), "f32[?,?]");
    // Values inside the branches are typed too.
    let node = m.graph.node(m.graph.node_ids().next().unwrap());
    let then = node.subgraphs().next().unwrap();
    let t = then.outputs[0];
    assert_eq!(then.value(t).ty.to_string(), "f32[2,3]");
}

#[test]
fn if_with_a_known_condition_takes_its_branch() {
    let src = "
graph @main(%x: f32[2,3]) -> (%z) {
  %c = const bool[] dense<[false]>
  %s = const i64[2] dense<[3, 2]>
  %z = onnx.If(%c) {
    then_branch = graph @then() -> (%t) { %t = onnx.Relu(%x) },
    else_branch = graph @else() -> (%e) { %e = onnx.Reshape(%x, %s) }
  }
}";
    let mut m = parse(src);
    infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "z"), "f32[3,2]");
}

#[test]
fn if_branches_of_different_dtypes_fail() {
    let src = "
graph @main(%x: f32[2], %c: bool[]) -> (%z) {
  %z = onnx.If(%c) {
    then_branch = graph @then() -> (%t) { %t = onnx.Relu(%x) },
    else_branch = graph @else() -> (%e) { %e = onnx.Cast(%x) {to = 7} }
  } loc(\"if\")
}";
    let mut m = parse(src);
    let e = infer_model(&mut m, &InferOptions { strict: true }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 'if' (If): output 0 is f32[2] in then_branch but i64[2] in else_branch"
    );
}

#[test]
fn loop_carried_and_scan_outputs() {
    let src = "
graph @main(%v0: f32[4], %n: i64[]) -> (%v, %s) {
  %t = const bool[] dense<[true]>
  %v, %s = onnx.Loop(%n, %t, %v0) {
    body = graph @body(%i, %c, %vi) -> (%c2, %vo, %so) {
      %c2 = onnx.Identity(%c)
      %vo = onnx.Add(%vi, %vi)
      %so = onnx.Relu(%vi)
    }
  }
}";
    let mut m = parse(src);
    infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "v"), "f32[4]");
    assert_eq!(type_of(&m, "s"), "f32[?,4]");
    let body = m
        .graph
        .node(m.graph.node_ids().next().unwrap())
        .subgraphs()
        .next()
        .unwrap();
    assert_eq!(body.value(body.inputs[0]).ty.to_string(), "i64[]");
    assert_eq!(body.value(body.outputs[0]).ty.to_string(), "bool[]");
}

#[test]
fn scan_outputs() {
    let src = "
graph @main(%h0: f32[8], %xs: f32[10,8]) -> (%h, %ys) {
  %h, %ys = onnx.Scan(%h0, %xs) {
    num_scan_inputs = 1,
    body = graph @body(%h1, %x) -> (%h2, %y) {
      %h2 = onnx.Add(%h1, %x)
      %y = onnx.Relu(%h2)
    }
  }
}";
    let mut m = parse(src);
    infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "h"), "f32[8]");
    assert_eq!(type_of(&m, "ys"), "f32[10,8]");
}

#[test]
fn local_functions_are_instantiated() {
    let src = "
graph @main(%x: f32[2,3,4]) -> (%y, %f) {
  %y = local.Double(%x)
  %f = local.Flat(%x) {ax = 2}
}
func local.Double(%a) -> (%b) {
  %b = onnx.Add(%a, %a)
}
func local.Flat(%a) -> (%b) attrs [ax] {
  %b = onnx.Flatten(%a) {axis = @ref(ax) : int}
}";
    let mut m = parse(src);
    let stats = infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "y"), "f32[2,3,4]");
    assert_eq!(type_of(&m, "f"), "f32[6,4]");
    assert!(stats.unknown_ops.is_empty());
    // The body itself is left as declared: it depends on the call.
    let f = &m.functions[0];
    assert_eq!(f.body.value(f.body.outputs[0]).ty.to_string(), "?");
}

#[test]
fn model_cost_counts_flops_and_params() {
    let body = "
  %w = const f32[4,3,3,3] #splat<1.0>
  %c = onnx.Conv(%x, %w) {pads = [1, 1, 1, 1]}
  %r = onnx.Relu(%c)
  %f = onnx.Flatten(%r)
  %fw = const f32[10,256] #splat<1.0>
  %fb = const f32[10] #splat<0.0>
  %y = onnx.Gemm(%f, %fw, %fb) {transB = 1}";
    let m = model(17, "%x: f32[1,3,8,8]", body, &["y"]);
    let cost = ops::model_cost(&m);
    // Conv: 2 * 256 outputs * 27; Relu: 256; Gemm: 2 * 10 * 256 + 10.
    assert_eq!(cost.flops, 2 * 256 * 27 + 256 + 2 * 10 * 256 + 10);
    assert_eq!(cost.params, 108 + 2560 + 10);
    assert_eq!(ops::model_flops(&m), cost.flops);
}

#[test]
fn the_registry_knows_the_zoo() {
    let ops = ops::registered_ops();
    for op in [
        "Conv",
        "ConvTranspose",
        "MatMul",
        "Gemm",
        "BatchNormalization",
        "LayerNormalization",
        "Relu",
        "Gelu",
        "Add",
        "Where",
        "Reshape",
        "Shape",
        "Gather",
        "Slice",
        "Concat",
        "Split",
        "MaxPool",
        "GlobalAveragePool",
        "ReduceMean",
        "Softmax",
        "Resize",
        "If",
        "Loop",
        "Einsum",
        "NonMaxSuppression",
        "RoiAlign",
        "TopK",
        "Range",
        "Trilu",
        "CumSum",
        "ScatterND",
    ] {
        assert!(ops.contains(&op), "{op} is not registered");
    }
    assert!(ops::lookup("ai.onnx", "Conv").is_some());
    assert!(ops::lookup("com.microsoft", "Conv").is_none());
    assert!(ops::lookup("", "LSTM").is_none());
}

#[test]
fn the_branch_a_known_condition_skips_is_not_inferred() {
    // Shape-dependent code: the else branch would not fit these shapes.
    let src = "
graph @main(%x: f32[5]) -> (%z) {
  %n = onnx.Size(%x)
  %five = const i64[] dense<[5]>
  %c = onnx.Equal(%n, %five)
  %z = onnx.If(%c) {
    then_branch = graph @then() -> (%t) { %t = onnx.Relu(%x) },
    else_branch = graph @else() -> (%a) { %a, %b, %d, %e = onnx.Split(%x) {num_outputs = 4} }
  }
}";
    let mut m = model_from(src);
    infer_model(&mut m, &InferOptions { strict: true }).unwrap();
    assert_eq!(type_of(&m, "z"), "f32[5]");
    spa_ir::verify::verify_model(&m).unwrap();
}

fn model_from(src: &str) -> spa_ir::Model {
    let mut m = parse(src);
    m.opset_imports[0].version = 18;
    m
}
