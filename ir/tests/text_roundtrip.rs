//! The text format round-trips every feature of the IR, prints deterministically, and reads the
//! hand-written forms that pass tests use.

mod text_common;

use bytes::Bytes;
use spa_ir::text::{parse_model, print_model, PrintOptions};
use spa_ir::*;
use text_common::*;

#[test]
fn conv_model_round_trips() {
    assert_roundtrip(&conv_model());
}

#[test]
fn every_dtype_and_storage_round_trips() {
    let m = dtypes_model();
    let text = assert_roundtrip(&m);
    // Bits survive, not just values: the NaN payloads and the storage fields.
    let parsed = parse_model(&text).unwrap();
    let g = &parsed.graph;
    let names = g.names();
    let bytes = |n: &str| {
        g.value(names[n])
            .init
            .as_ref()
            .unwrap()
            .raw_bytes()
            .unwrap()
            .to_vec()
    };
    assert_eq!(bytes("f32"), g_bytes(&m, "f32"));
    assert_eq!(bytes("f16"), g_bytes(&m, "f16"));
    assert!(matches!(
        g.value(names["u8_as_minus_one"]).init.as_ref().unwrap().data,
        TensorData::Int32s(ref v) if v == &[-1]
    ));
}

fn g_bytes(m: &Model, name: &str) -> Vec<u8> {
    let g = &m.graph;
    g.value(g.names()[name])
        .init
        .as_ref()
        .unwrap()
        .raw_bytes()
        .unwrap()
        .to_vec()
}

#[test]
fn every_attribute_kind_round_trips() {
    assert_roundtrip(&attrs_model());
}

#[test]
fn subgraphs_with_captures_round_trip() {
    let m = assert_roundtrip(&subgraph_model());
    let parsed = parse_model(&m).unwrap();
    let AttrValue::Graph(then) = parsed.graph.node(NodeId(0)).attr("then_branch").unwrap() else {
        panic!("then_branch is a graph");
    };
    // Names not defined in a subgraph are captures, not dangling references.
    let x = then.names()["x"];
    assert_eq!(then.value(x).def, ValueDef::Capture);
}

#[test]
fn functions_round_trip() {
    assert_roundtrip(&function_model());
}

#[test]
fn values_nodes_and_metadata_round_trip() {
    let text = assert_roundtrip(&values_model());
    let parsed = parse_model(&text).unwrap();
    let g = &parsed.graph;
    let names = g.names();
    assert_eq!(g.value(names["undefined thing"]).def, ValueDef::Undefined);
    assert_eq!(g.value(names["dangling"]).def, ValueDef::Undefined);
    assert!(g.value(names["dangling"]).declared);
}

#[test]
fn printing_is_deterministic() {
    for m in [conv_model(), attrs_model(), values_model()] {
        assert_eq!(
            print_model(&m, &PrintOptions::default()),
            print_model(&m.clone(), &PrintOptions::default())
        );
    }
}

#[test]
fn snapshot_conv_model_elided() {
    insta::assert_snapshot!(print_model(&conv_model(), &PrintOptions::default()));
}

#[test]
fn snapshot_values_model() {
    insta::assert_snapshot!(print_model(&values_model(), &full()));
}

#[test]
fn snapshot_subgraph_model() {
    insta::assert_snapshot!(print_model(&subgraph_model(), &full()));
}

#[test]
fn snapshot_function_model() {
    insta::assert_snapshot!(print_model(&function_model(), &full()));
}

#[test]
fn snapshot_dtypes_model() {
    insta::assert_snapshot!(print_model(&dtypes_model(), &full()));
}

#[test]
fn snapshot_attrs_model() {
    insta::assert_snapshot!(print_model(&attrs_model(), &full()));
}

#[test]
fn large_constants_are_elided_with_their_digest() {
    let m = conv_model();
    let text = print_model(&m, &PrintOptions::default());
    let w = m.graph.value(m.graph.names()["conv1.weight"]);
    let digest = w.init.as_ref().unwrap().digest();
    assert!(text.contains(&format!(
        "%conv1.weight = const f32[16@g0,3,3,3] #elided<{digest}>"
    )));
    // 16 elements is not above the default limit.
    assert!(text.contains("%conv1.bias = const f32[16] dense<[-1.0, -0.875,"));
    let tight = PrintOptions {
        elide_above: 3,
        ..PrintOptions::default()
    };
    assert!(print_model(&m, &tight).contains("%fc.bias = const f32[4] #elided<"));
}

#[test]
fn empty_and_duplicate_names_get_fallbacks() {
    let mut g = Graph::new("main");
    let a = input(&mut g, "", ty(DType::F32, &[1]));
    let b = val(&mut g, "a", ty(DType::F32, &[1]));
    let c = val(&mut g, "a", ty(DType::F32, &[1]));
    let d = val(&mut g, "v2", ty(DType::F32, &[1]));
    node(&mut g, "Relu", &[Some(a)], &[Some(b)], vec![]);
    node(&mut g, "Relu", &[Some(b)], &[Some(c)], vec![]);
    node(&mut g, "Relu", &[Some(c)], &[Some(d)], vec![]);
    g.outputs.push(d);
    let m = Model::new(g);
    let text = print_model(&m, &full());
    // The empty name and the second "a" fall back to `v<id>`, avoiding the real name "v2".
    assert!(
        text.contains("graph @main(%v0: f32[1]) -> (%v2: f32[1])"),
        "{text}"
    );
    assert!(text.contains("%a = onnx.Relu(%v0)"), "{text}");
    assert!(text.contains("%v2_1 = onnx.Relu(%a)"), "{text}");
    assert!(text.contains("%v2 = onnx.Relu(%v2_1)"), "{text}");
    let parsed = parse_model(&text).unwrap();
    assert_eq!(print_model(&parsed, &full()), text);
}

#[test]
fn nan_attribute_keeps_its_bits() {
    let mut g = Graph::new("main");
    let y = val(&mut g, "y", ty(DType::F32, &[]));
    node(
        &mut g,
        "Constant",
        &[],
        &[Some(y)],
        vec![
            attr("a", AttrValue::Float(f32::from_bits(0x7fc0_0123))),
            attr("b", AttrValue::Float(f32::NAN)),
            attr("c", AttrValue::Floats(vec![f32::from_bits(0xffc0_0000)])),
        ],
    );
    let text = print_model(&Model::new(g), &full());
    assert!(
        text.contains("{a = nan(0x7fc00123), b = nan, c = [-nan]}"),
        "{text}"
    );
    let parsed = parse_model(&text).unwrap();
    let n = parsed.graph.node(NodeId(0));
    assert_eq!(n.attr_float("a").unwrap().to_bits(), 0x7fc0_0123);
    assert_eq!(n.attr_floats("c").unwrap()[0].to_bits(), 0xffc0_0000);
}

#[test]
fn invalid_ir_still_prints() {
    // A cycle, an erased node (its output becomes undefined), a reference to an erased value.
    let mut g = Graph::new("main");
    let x = input(&mut g, "x", ty(DType::F32, &[1]));
    let a = val(&mut g, "a", ty(DType::F32, &[1]));
    let b = val(&mut g, "b", ty(DType::F32, &[1]));
    let gone = val(&mut g, "gone", ty(DType::F32, &[1]));
    let e = val(&mut g, "e", ty(DType::F32, &[1]));
    node(&mut g, "Add", &[Some(x), Some(b)], &[Some(a)], vec![]);
    node(&mut g, "Relu", &[Some(a)], &[Some(b)], vec![]);
    let dead = node(&mut g, "Relu", &[Some(x)], &[Some(e)], vec![]);
    node(&mut g, "Relu", &[Some(gone), Some(e)], &[], vec![]);
    g.erase_node(dead);
    g.erase_value(gone);
    g.outputs.push(b);
    g.outputs.push(ValueId(99));
    let text = print_model(&Model::new(g), &full());
    assert!(text.contains("%a = onnx.Add(%x, %b)"), "{text}");
    assert!(text.contains("onnx.Relu(%\"?v3\", %e)"), "{text}");
    // The cycle parses back (as a forward reference) and prints the same.
    let parsed = parse_model(&text).unwrap();
    assert_eq!(print_model(&parsed, &full()), text);
}

#[test]
fn hand_written_test_files_parse() {
    let src = r#"
// RUN: --pass='group'
graph @main(%x: f32[1,3,32,32]) -> (%y: f32[1,16@g0,32,32]) {
  %w1 = const f32[16,3,3,3] #rand<1>
  %b1 = const f32[16] #splat<0.5>
  %idx = const i64[2,3] #iota
  %c1 = onnx.Conv(%x, %w1, %b1) {kernel_shape=[3,3], pads=[1,1,1,1]} : f32[1,16@g0,32,32]
  %y = onnx.Relu(%c1) : f32[1,16@g0,32,32]
  return %y
}
"#;
    let m = parse_model(src).unwrap();
    let g = &m.graph;
    let names = g.names();
    let w = g
        .value(names["w1"])
        .init
        .as_ref()
        .unwrap()
        .to_f32()
        .unwrap();
    assert_eq!(w.len(), 16 * 27);
    assert!(w.iter().all(|v| (-1.0..1.0).contains(v)));
    assert_ne!(w[0], w[1]);
    // The same seed gives the same data.
    let again = parse_model(src).unwrap();
    assert_eq!(
        again.graph.value(names["w1"]).init,
        g.value(names["w1"]).init
    );
    let b = g
        .value(names["b1"])
        .init
        .as_ref()
        .unwrap()
        .to_f32()
        .unwrap();
    assert_eq!(b, vec![0.5; 16]);
    let idx = g
        .value(names["idx"])
        .init
        .as_ref()
        .unwrap()
        .to_i64()
        .unwrap();
    assert_eq!(idx, vec![0, 1, 2, 3, 4, 5]);
    let conv = g.node(NodeId(0));
    assert_eq!(conv.attr_ints("pads"), Some(&[1, 1, 1, 1][..]));
    assert_eq!(conv.outputs.len(), 1);
    assert_eq!(m.opset(""), Some(17));
}

#[test]
fn hand_written_conveniences() {
    let src = r#"
graph @main(%x) -> (%z) {
  %n = const f32[2,2] dense<[[1, 2], [3.5, -inf]]>
  %h = const f16[2] dense<[0.5, nan]>
  %s = const str[2] #splat<"ab">
  %q = const bool[3] dense<[true, 0, 1]>
  %z = onnx.Add(%y, %undef) {scales = [1, 2.5], more = [1, 2] : floats}
  %y = onnx.Relu(%x)
}
"#;
    let m = parse_model(src).unwrap();
    let g = &m.graph;
    let names = g.names();
    let n = g.value(names["n"]).init.as_ref().unwrap().to_f32().unwrap();
    assert_eq!(n, vec![1.0, 2.0, 3.5, f32::NEG_INFINITY]);
    assert_eq!(
        g.value(names["s"]).init.as_ref().unwrap().data,
        TensorData::Strings(vec![Bytes::from_static(b"ab"); 2])
    );
    // A use before the definition is a forward reference; a name never defined is undefined.
    let add = g.node(NodeId(0));
    assert_eq!(
        g.value(add.inputs[0].unwrap()).def,
        ValueDef::Node(NodeId(1), 0)
    );
    assert_eq!(g.value(names["undef"]).def, ValueDef::Undefined);
    assert_eq!(add.attr_floats("scales"), Some(&[1.0, 2.5][..]));
    assert_eq!(add.attr_floats("more"), Some(&[1.0, 2.0][..]));
    // Types left out are unknown.
    assert_eq!(g.value(names["z"]).ty, Type::Unknown);
    assert_eq!(g.value(names["x"]).ty, Type::Unknown);
}

#[test]
fn types_print_and_parse_back() {
    let texts = [
        "?",
        "?[*]",
        "f32[*]",
        "f32[]",
        "f32[1,64@g0,56,56]",
        "f32[1,128@cat(g0,g3),28,28]",
        "f32[1,3136@(g5*49)]",
        "f32[1,197,768@(g7*g8)]",
        "f32[1,384@cat((g1*64),g2,(2*g3))]",
        "i64[batch,?,\"seq len\",-1]",
        "sparse<f32[4,4]>",
        "seq<opt<map<str,f32[*]>>>",
    ];
    for t in texts {
        let src = format!("graph @g(%x: {t}) -> () {{}}");
        let m = parse_model(&src).unwrap_or_else(|e| panic!("{t}: {e}"));
        let ty = &m.graph.value(m.graph.inputs[0]).ty;
        let printed = print_model(&m, &full());
        // An unknown type is left out of a signature.
        let sig = if t == "?" {
            "(%x)".to_string()
        } else {
            format!("(%x: {t})")
        };
        assert!(printed.contains(&sig), "{t}: {printed}");
        if !t.contains('"') {
            // Display and the printer agree when no symbol needs quotes.
            assert_eq!(ty.to_string(), t);
        }
    }
}

#[test]
fn tensors_with_absurd_dims_still_print() {
    let mut g = Graph::new("main");
    konst(&mut g, "huge_raw", raw(DType::F32, &[1 << 62], vec![0; 4]));
    konst(
        &mut g,
        "huge_typed",
        typed(DType::C64, &[i64::MAX], TensorData::Floats(vec![1.0])),
    );
    let m = Model::new(g);
    let text = print_model(&m, &full());
    assert!(
        text.contains("%huge_raw = const f32[4611686018427387904] hex<\"00000000\">"),
        "{text}"
    );
    assert!(text.contains("float_data<[1.0]>"), "{text}");
    assert_eq!(print_model(&parse_model(&text).unwrap(), &full()), text);
}

#[test]
fn captures_outside_subgraphs_are_listed() {
    // Invalid in a main graph, but representable: it must not come back as undefined.
    let mut g = Graph::new("main");
    let c = capture(&mut g, "outer", Type::Unknown);
    let y = val(&mut g, "y", Type::Unknown);
    node(&mut g, "Relu", &[Some(c)], &[Some(y)], vec![]);
    g.outputs.push(y);
    let text = assert_roundtrip(&Model::new(g));
    assert!(text.contains("-> (%y) captures(%outer) {"), "{text}");
}
