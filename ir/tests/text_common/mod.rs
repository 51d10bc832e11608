//! Hand-built models covering every feature of the text format, shared by the text tests.
//!
//! Values that nothing defines are created in the order the printed text first mentions them, so
//! that `Graph::compact` (which keeps such values in arena order) agrees after a round trip.

#![allow(dead_code)]

use bytes::Bytes;
use spa_ir::text::{parse_model, print_model, PrintOptions};
use spa_ir::*;

pub fn full() -> PrintOptions {
    PrintOptions {
        print_constants: true,
        ..PrintOptions::default()
    }
}

pub fn ty(dtype: DType, dims: &[i64]) -> Type {
    Type::tensor(dtype, dims)
}

/// A tensor type with a channel expression on one axis.
pub fn chan(dtype: DType, dims: &[i64], axis: usize, c: ChannelExpr) -> Type {
    let mut t = TensorType::new(dtype, dims);
    if let Some(a) = t.shape.as_mut().and_then(|s| s.get_mut(axis)) {
        a.channels = Some(c);
    }
    Type::Tensor(t)
}

pub fn g(n: u32) -> ChannelExpr {
    ChannelExpr::Space(SpaceId(n))
}

pub fn input(gr: &mut Graph, name: &str, t: Type) -> ValueId {
    let id = gr.add_value(Value::new(name, t, ValueDef::Input));
    gr.inputs.push(id);
    id
}

/// A value that a node will define (or nothing will).
pub fn val(gr: &mut Graph, name: &str, t: Type) -> ValueId {
    gr.add_value(Value::new(name, t, ValueDef::Undefined))
}

pub fn capture(gr: &mut Graph, name: &str, t: Type) -> ValueId {
    gr.add_value(Value::new(name, t, ValueDef::Capture))
}

pub fn konst(gr: &mut Graph, name: &str, mut t: Tensor) -> ValueId {
    t.name = name.to_string();
    let mut v = Value::new(name, ty(t.dtype, &t.dims), ValueDef::Const);
    v.init = Some(t);
    gr.add_value(v)
}

pub fn node(
    gr: &mut Graph,
    op: &str,
    inputs: &[Option<ValueId>],
    outputs: &[Option<ValueId>],
    attrs: Vec<Attribute>,
) -> NodeId {
    let mut n = Node::new(op);
    n.inputs = inputs.to_vec();
    n.outputs = outputs.to_vec();
    n.attrs = attrs;
    gr.add_node(n)
}

pub fn attr(name: &str, v: AttrValue) -> Attribute {
    Attribute::new(name, v)
}

pub fn raw(dtype: DType, dims: &[i64], bytes: Vec<u8>) -> Tensor {
    Tensor::from_raw(dtype, dims.to_vec(), Bytes::from(bytes))
}

pub fn typed(dtype: DType, dims: &[i64], data: TensorData) -> Tensor {
    Tensor {
        name: String::new(),
        dtype,
        dims: dims.to_vec(),
        data,
        doc_string: String::new(),
        metadata_props: Vec::new(),
    }
}

pub fn f32s(dims: &[i64], v: &[f32]) -> Tensor {
    Tensor::from_f32(dims.to_vec(), v)
}

fn le<T: Copy, const N: usize>(xs: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    xs.iter().flat_map(|&x| f(x)).collect()
}

// ---------------------------------------------------------------------------------------------
// Normalization for comparisons

fn compact_deep(gr: &Graph) -> Graph {
    let mut c = gr.compact();
    let ids: Vec<NodeId> = c.node_ids().collect();
    for id in ids {
        let n = c.node_mut(id);
        // The printer sorts attributes by name.
        n.attrs.sort_by(|a, b| a.name.cmp(&b.name));
        for a in &mut n.attrs {
            match &mut a.value {
                AttrValue::Graph(sub) => **sub = compact_deep(sub),
                AttrValue::Graphs(gs) => gs.iter_mut().for_each(|s| *s = compact_deep(s)),
                _ => {}
            }
        }
    }
    c
}

/// The model with every graph compacted and attributes sorted: what a round trip preserves.
pub fn normalize(m: &Model) -> Model {
    let mut m = m.clone();
    m.graph = compact_deep(&m.graph);
    for f in &mut m.functions {
        f.body = compact_deep(&f.body);
    }
    m
}

/// `parse(print(m)) == m` (after normalization) and `print(parse(print(m))) == print(m)`.
pub fn assert_roundtrip(m: &Model) -> String {
    let text = print_model(m, &full());
    let parsed = match parse_model(&text) {
        Ok(p) => p,
        Err(e) => panic!("printed model does not parse: {e}\n{text}"),
    };
    let (a, b) = (normalize(&parsed), normalize(m));
    if a != b {
        // Show the first difference in a readable form.
        assert_eq!(format!("{:#?}", a), format!("{:#?}", b), "\n{text}");
    }
    assert_eq!(print_model(&parsed, &full()), text);
    text
}

// ---------------------------------------------------------------------------------------------
// Models

/// A small CNN as a PyTorch export names it, grouped: symbolic batch, channel expressions,
/// weights large enough to be elided by default.
pub fn conv_model() -> Model {
    let mut gr = Graph::new("main_graph");
    let batch = |dims: &[i64], c: Option<(usize, ChannelExpr)>| {
        let mut t = TensorType::new(DType::F32, dims);
        if let Some(s) = t.shape.as_mut() {
            s[0].dim = Dim::Sym("batch".into());
            if let Some((axis, c)) = c {
                s[axis].channels = Some(c);
            }
        }
        Type::Tensor(t)
    };
    let x = input(&mut gr, "input.1", batch(&[1, 3, 8, 8], None));
    let w: Vec<f32> = (0..16 * 3 * 3 * 3)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let w1 = konst(&mut gr, "conv1.weight", f32s(&[16, 3, 3, 3], &w));
    gr.value_mut(w1).ty = chan(DType::F32, &[16, 3, 3, 3], 0, g(0));
    let b: Vec<f32> = (0..16).map(|i| i as f32 / 8.0 - 1.0).collect();
    let b1 = konst(&mut gr, "conv1.bias", f32s(&[16], &b));
    let fw: Vec<f32> = (0..4 * 16).map(|i| (i as f32 * 0.11).cos()).collect();
    let fcw = konst(&mut gr, "fc.weight", f32s(&[4, 16], &fw));
    let fcb = konst(&mut gr, "fc.bias", f32s(&[4], &[0.5, -0.25, 1e-7, 3.0]));
    let c = val(
        &mut gr,
        "/conv1/Conv_output_0",
        batch(&[1, 16, 8, 8], Some((1, g(0)))),
    );
    let r = val(
        &mut gr,
        "/relu/Relu_output_0",
        batch(&[1, 16, 8, 8], Some((1, g(0)))),
    );
    let p = val(
        &mut gr,
        "onnx::Flatten_9",
        batch(&[1, 16, 1, 1], Some((1, g(0)))),
    );
    let f = val(
        &mut gr,
        "/Flatten_output_0",
        batch(
            &[1, 16],
            Some((1, ChannelExpr::Prod(vec![g(0), ChannelExpr::Lit(1)]))),
        ),
    );
    let out = val(&mut gr, "output", batch(&[1, 4], Some((1, g(1)))));
    let n = node(
        &mut gr,
        "Conv",
        &[Some(x), Some(w1), Some(b1)],
        &[Some(c)],
        vec![
            attr("strides", AttrValue::Ints(vec![1, 1])),
            attr("pads", AttrValue::Ints(vec![1, 1, 1, 1])),
            attr("kernel_shape", AttrValue::Ints(vec![3, 3])),
            attr("group", AttrValue::Int(1)),
            attr("dilations", AttrValue::Ints(vec![1, 1])),
        ],
    );
    gr.node_mut(n).name = "/conv1/Conv".into();
    let n = node(&mut gr, "Relu", &[Some(c)], &[Some(r)], vec![]);
    gr.node_mut(n).name = "/relu/Relu".into();
    node(&mut gr, "GlobalAveragePool", &[Some(r)], &[Some(p)], vec![]);
    node(
        &mut gr,
        "Flatten",
        &[Some(p)],
        &[Some(f)],
        vec![attr("axis", AttrValue::Int(1))],
    );
    node(
        &mut gr,
        "Gemm",
        &[Some(f), Some(fcw), Some(fcb)],
        &[Some(out)],
        vec![
            attr("alpha", AttrValue::Float(1.0)),
            attr("beta", AttrValue::Float(1.0)),
            attr("transB", AttrValue::Int(1)),
        ],
    );
    gr.outputs.push(out);
    let mut m = Model::new(gr);
    m.producer_name = "pytorch".into();
    m.producer_version = "2.1.0".into();
    m.spaces = vec![ChannelSpace { size: 16 }, ChannelSpace { size: 4 }];
    m
}

/// Every dtype in constants, in every storage form (raw, typed fields, verbatim fields for data
/// no element spelling reproduces, external), special float values, tensor annotations.
pub fn dtypes_model() -> Model {
    let mut gr = Graph::new("dtypes");
    let f32_special = [
        0.1f32,
        -0.0,
        1e-45,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(0x7fc0_0001),
        f32::NAN,
        f32::MAX,
    ];
    konst(
        &mut gr,
        "f32",
        raw(DType::F32, &[8], le(&f32_special, |x| x.to_le_bytes())),
    );
    let f64_special = [
        0.1f64,
        -1e300,
        f64::from_bits(0x7ff8_0000_0000_0001),
        5e-324,
    ];
    konst(
        &mut gr,
        "f64",
        raw(DType::F64, &[2, 2], le(&f64_special, |x| x.to_le_bytes())),
    );
    let f16_bits: [u16; 6] = [0x3c00, 0x7e01, 0x0001, 0xfc00, 0x8000, 0x7e00];
    konst(
        &mut gr,
        "f16",
        raw(DType::F16, &[6], le(&f16_bits, |x| x.to_le_bytes())),
    );
    let bf16_bits: [u16; 4] = [0x3f80, 0x7fc1, 0x0001, 0xc2f7];
    konst(
        &mut gr,
        "bf16",
        raw(DType::Bf16, &[4], le(&bf16_bits, |x| x.to_le_bytes())),
    );
    konst(&mut gr, "i8", raw(DType::I8, &[3], vec![0x80, 0x7f, 0]));
    konst(&mut gr, "u8", raw(DType::U8, &[2], vec![0, 255]));
    konst(
        &mut gr,
        "i16",
        raw(
            DType::I16,
            &[2],
            le(&[i16::MIN, i16::MAX], |x| x.to_le_bytes()),
        ),
    );
    konst(
        &mut gr,
        "u16",
        raw(DType::U16, &[1], le(&[u16::MAX], |x| x.to_le_bytes())),
    );
    konst(
        &mut gr,
        "i32",
        raw(
            DType::I32,
            &[2],
            le(&[i32::MIN, i32::MAX], |x| x.to_le_bytes()),
        ),
    );
    konst(
        &mut gr,
        "u32",
        raw(DType::U32, &[1], le(&[u32::MAX], |x| x.to_le_bytes())),
    );
    konst(
        &mut gr,
        "i64",
        raw(
            DType::I64,
            &[2],
            le(&[i64::MIN, i64::MAX], |x| x.to_le_bytes()),
        ),
    );
    konst(
        &mut gr,
        "u64",
        raw(DType::U64, &[1], le(&[u64::MAX], |x| x.to_le_bytes())),
    );
    konst(&mut gr, "bool", raw(DType::Bool, &[3], vec![0, 1, 1]));
    konst(
        &mut gr,
        "str",
        typed(
            DType::Str,
            &[3],
            TensorData::Strings(vec![
                Bytes::from_static(b"hello"),
                Bytes::from_static(b"quote \" and \\ and\nnewline"),
                Bytes::from_static(b"\xff\xfe not utf-8 \xc3\xa9"),
            ]),
        ),
    );
    konst(
        &mut gr,
        "c64",
        raw(
            DType::C64,
            &[2],
            le(&[1.0f32, -1.0, 0.5, 2.0], |x| x.to_le_bytes()),
        ),
    );
    konst(
        &mut gr,
        "c128",
        raw(DType::C128, &[1], le(&[1.0f64, -1.0], |x| x.to_le_bytes())),
    );
    konst(
        &mut gr,
        "f8e4m3fn",
        raw(DType::F8E4M3Fn, &[2], vec![0x38, 0x7f]),
    );
    konst(
        &mut gr,
        "f8e4m3fnuz",
        raw(DType::F8E4M3Fnuz, &[1], vec![0x80]),
    );
    konst(&mut gr, "f8e5m2", raw(DType::F8E5M2, &[1], vec![0x3c]));
    konst(
        &mut gr,
        "f8e5m2fnuz",
        raw(DType::F8E5M2Fnuz, &[1], vec![0x01]),
    );
    konst(&mut gr, "f8e8m0", raw(DType::F8E8M0, &[1], vec![0x7f]));
    konst(
        &mut gr,
        "f4e2m1",
        raw(DType::F4E2M1, &[3], vec![0x21, 0x03]),
    );
    konst(&mut gr, "u4", raw(DType::U4, &[3], vec![0x21, 0x0f]));
    konst(&mut gr, "i4", raw(DType::I4, &[2], vec![0x7f]));
    konst(&mut gr, "u2", raw(DType::U2, &[5], vec![0xe4, 0x03]));
    konst(&mut gr, "i2", raw(DType::I2, &[4], vec![0b10_01_00_11]));
    // Data that has no element spelling: non-zero padding, wrong length, negative dims.
    konst(&mut gr, "u4_padding", raw(DType::U4, &[1], vec![0xf3]));
    konst(&mut gr, "short", raw(DType::F32, &[3], vec![0; 8]));
    konst(&mut gr, "negative_dims", raw(DType::F32, &[-1], vec![0; 4]));
    konst(&mut gr, "scalar", f32s(&[], &[42.0]));
    konst(&mut gr, "empty", f32s(&[0, 3], &[]));

    // Typed storage fields that `as <field>` reproduces.
    konst(
        &mut gr,
        "float_data",
        typed(DType::F32, &[2], TensorData::Floats(vec![1.5, -2.0])),
    );
    konst(
        &mut gr,
        "c64_data",
        typed(DType::C64, &[1], TensorData::Floats(vec![1.0, 2.0])),
    );
    konst(
        &mut gr,
        "double_data",
        typed(DType::F64, &[1], TensorData::Doubles(vec![0.1])),
    );
    konst(
        &mut gr,
        "c128_data",
        typed(DType::C128, &[1], TensorData::Doubles(vec![0.1, 0.2])),
    );
    konst(
        &mut gr,
        "int64_data",
        typed(DType::I64, &[2], TensorData::Int64s(vec![-1, 7])),
    );
    konst(
        &mut gr,
        "uint64_data",
        typed(DType::U64, &[1], TensorData::Uint64s(vec![u64::MAX])),
    );
    konst(
        &mut gr,
        "u32_data",
        typed(DType::U32, &[1], TensorData::Uint64s(vec![7])),
    );
    konst(
        &mut gr,
        "int32_data",
        typed(DType::I32, &[1], TensorData::Int32s(vec![-3])),
    );
    konst(
        &mut gr,
        "i16_data",
        typed(DType::I16, &[1], TensorData::Int32s(vec![-5])),
    );
    konst(
        &mut gr,
        "u16_data",
        typed(DType::U16, &[1], TensorData::Int32s(vec![65535])),
    );
    konst(
        &mut gr,
        "f16_data",
        typed(DType::F16, &[2], TensorData::Int32s(vec![0x3c00, 0x7e01])),
    );
    konst(
        &mut gr,
        "bf16_data",
        typed(DType::Bf16, &[1], TensorData::Int32s(vec![0x3f80])),
    );
    konst(
        &mut gr,
        "i8_data",
        typed(DType::I8, &[1], TensorData::Int32s(vec![-1])),
    );
    konst(
        &mut gr,
        "u8_data",
        typed(DType::U8, &[1], TensorData::Int32s(vec![255])),
    );
    konst(
        &mut gr,
        "bool_data",
        typed(DType::Bool, &[2], TensorData::Int32s(vec![1, 0])),
    );
    konst(
        &mut gr,
        "u4_data",
        typed(DType::U4, &[2], TensorData::Int32s(vec![0x21])),
    );
    konst(
        &mut gr,
        "f8_data",
        typed(DType::F8E4M3Fn, &[1], TensorData::Int32s(vec![0x38])),
    );
    // Typed fields printed verbatim: a non-canonical value, a field that does not fit the dtype,
    // a count that does not match the dims.
    konst(
        &mut gr,
        "u8_as_minus_one",
        typed(DType::U8, &[1], TensorData::Int32s(vec![-1])),
    );
    konst(
        &mut gr,
        "i64_in_floats",
        typed(DType::I64, &[1], TensorData::Floats(vec![1.0])),
    );
    konst(
        &mut gr,
        "strings_short",
        typed(
            DType::Str,
            &[2],
            TensorData::Strings(vec![Bytes::from_static(b"a")]),
        ),
    );
    konst(
        &mut gr,
        "strings_for_f32",
        typed(
            DType::F32,
            &[1],
            TensorData::Strings(vec![Bytes::from_static(b"x")]),
        ),
    );

    // External data: entries in order, non-numeric and non-canonical values kept as strings.
    let ext = typed(
        DType::F32,
        &[2],
        TensorData::External(ExternalData {
            entries: vec![
                ("location".into(), "weights dir/w.bin".into()),
                ("offset".into(), "4096".into()),
                ("length".into(), "0008".into()),
                ("checksum".into(), "abc123".into()),
            ],
            bytes: Bytes::from(le(&[1.0f32, 2.0], |x| x.to_le_bytes())),
        }),
    );
    konst(&mut gr, "external", ext);
    let ext_hex = typed(
        DType::F8E5M2,
        &[2],
        TensorData::External(ExternalData {
            entries: vec![("location".into(), "w.bin".into())],
            bytes: Bytes::from_static(&[1, 2]),
        }),
    );
    konst(&mut gr, "external_f8", ext_hex);

    // Tensor annotations, and value types other than the literal's own.
    let mut t = f32s(&[2], &[1.0, 2.0]);
    t.doc_string = "tensor doc".into();
    t.metadata_props = vec![("origin".into(), "test".into())];
    let id = konst(&mut gr, "annotated", t);
    if let Some(t) = gr.value_mut(id).init.as_mut() {
        t.name = "other name".into();
    }
    let id = konst(&mut gr, "unnamed_tensor", f32s(&[1], &[1.0]));
    if let Some(t) = gr.value_mut(id).init.as_mut() {
        t.name.clear();
    }
    let id = konst(&mut gr, "channels", f32s(&[4], &[1.0, 2.0, 3.0, 4.0]));
    gr.value_mut(id).ty = chan(DType::F32, &[4], 0, g(0));
    let id = konst(
        &mut gr,
        "declared_with_channels",
        f32s(&[4], &[1.0, 2.0, 3.0, 4.0]),
    );
    gr.value_mut(id).ty = chan(DType::F32, &[4], 0, g(0));
    gr.value_mut(id).declared = true;
    gr.value_mut(id).doc_string = "value doc".into();
    let id = konst(&mut gr, "unknown_type", f32s(&[1], &[1.0]));
    gr.value_mut(id).ty = Type::Unknown;
    let id = konst(&mut gr, "mismatched_type", f32s(&[1], &[1.0]));
    gr.value_mut(id).ty = ty(DType::F32, &[1, 1]);

    let out = val(&mut gr, "sum", ty(DType::F32, &[8]));
    let f32_id = gr.names()["f32"];
    node(&mut gr, "Identity", &[Some(f32_id)], &[Some(out)], vec![]);
    gr.outputs.push(out);
    let mut m = Model::new(gr);
    m.spaces = vec![ChannelSpace { size: 4 }];
    m
}

fn small_graph(name: &str, out_name: &str, captured: &str) -> Graph {
    let mut gr = Graph::new(name);
    let x = capture(&mut gr, captured, Type::Unknown);
    let y = val(&mut gr, out_name, ty(DType::F32, &[1]));
    node(&mut gr, "Identity", &[Some(x)], &[Some(y)], vec![]);
    gr.outputs.push(y);
    gr
}

/// Every attribute kind, including empty lists, docs and unusual strings.
pub fn attrs_model() -> Model {
    let mut gr = Graph::new("attrs");
    let x = input(&mut gr, "x", ty(DType::F32, &[1]));
    let y = val(&mut gr, "y", ty(DType::F32, &[1]));
    let mut t = f32s(&[2], &[1.0, -2.5]);
    t.name = "attr tensor".into();
    t.doc_string = "a tensor attribute".into();
    let sparse = SparseTensor {
        values: f32s(&[2], &[1.0, 2.0]),
        indices: Tensor::from_i64(vec![2], &[0, 3]),
        dims: vec![2, 2],
    };
    let mut with_doc = attr("documented", AttrValue::Int(7));
    with_doc.doc_string = "why seven".into();
    let attrs = vec![
        attr("zfloat", AttrValue::Float(1.0)),
        attr("float_small", AttrValue::Float(1e-5)),
        attr("float_neg_zero", AttrValue::Float(-0.0)),
        attr("float_inf", AttrValue::Float(f32::NEG_INFINITY)),
        attr("float_max", AttrValue::Float(f32::MAX)),
        attr("int", AttrValue::Int(-3)),
        attr("int_max", AttrValue::Int(i64::MAX)),
        attr("string", AttrValue::String(Bytes::from_static(b"NCHW"))),
        attr(
            "string_odd",
            AttrValue::String(Bytes::from_static(b"tab\t \"q\" \\ \xff\x00 \xe2\x82\xac")),
        ),
        attr("tensor", AttrValue::Tensor(t.clone())),
        attr(
            "graph",
            AttrValue::Graph(Box::new(small_graph("body", "out", "x"))),
        ),
        attr("sparse", AttrValue::SparseTensor(Box::new(sparse.clone()))),
        attr(
            "type",
            AttrValue::Type(Type::Sequence(Box::new(Type::Map(
                DType::I64,
                Box::new(ty(DType::F32, &[2])),
            )))),
        ),
        attr("floats", AttrValue::Floats(vec![1.0, 0.5, -3.0])),
        attr("ints", AttrValue::Ints(vec![1, -2, 3])),
        attr(
            "strings",
            AttrValue::Strings(vec![Bytes::from_static(b"a"), Bytes::from_static(b"")]),
        ),
        attr(
            "tensors",
            AttrValue::Tensors(vec![t, Tensor::from_i64(vec![1], &[5])]),
        ),
        attr(
            "graphs",
            AttrValue::Graphs(vec![
                small_graph("g1", "a", "x"),
                small_graph("g2", "b", "y"),
            ]),
        ),
        attr("sparse_tensors", AttrValue::SparseTensors(vec![sparse])),
        attr(
            "types",
            AttrValue::Types(vec![
                Type::Optional(Box::new(ty(DType::I64, &[]))),
                Type::SparseTensor(TensorType::new(DType::F32, &[4, 4])),
                Type::Unknown,
            ]),
        ),
        attr("empty_floats", AttrValue::Floats(vec![])),
        attr("empty_ints", AttrValue::Ints(vec![])),
        attr("empty_strings", AttrValue::Strings(vec![])),
        attr("empty_tensors", AttrValue::Tensors(vec![])),
        attr("empty_graphs", AttrValue::Graphs(vec![])),
        attr("empty_sparse", AttrValue::SparseTensors(vec![])),
        attr("empty_types", AttrValue::Types(vec![])),
        attr("weird name!", AttrValue::Int(0)),
        with_doc,
    ];
    let n = node(&mut gr, "Custom", &[Some(x)], &[Some(y)], attrs);
    gr.node_mut(n).domain = "com.example".into();
    gr.outputs.push(y);
    let mut m = Model::new(gr);
    m.opset_imports.push(OpsetImport {
        domain: "com.example".into(),
        version: 1,
    });
    m
}

/// If and Loop with subgraphs capturing from one and two levels up, an explicitly typed capture,
/// a subgraph that returns a capture directly.
pub fn subgraph_model() -> Model {
    let mut gr = Graph::new("main");
    let cond = input(&mut gr, "cond", ty(DType::Bool, &[]));
    let x = input(&mut gr, "x", ty(DType::F32, &[2]));
    let w = konst(&mut gr, "w", f32s(&[2], &[0.5, 2.0]));
    let trip = konst(&mut gr, "trip", Tensor::from_i64(vec![], &[3]));
    let out = val(&mut gr, "out", ty(DType::F32, &[2]));
    let acc = val(&mut gr, "acc", ty(DType::F32, &[2]));

    // else: %e = Sub(%x, %w), both captured.
    let mut els = Graph::new("else");
    let cx = capture(&mut els, "x", Type::Unknown);
    let cw = capture(&mut els, "w", Type::Unknown);
    let e = val(&mut els, "e", ty(DType::F32, &[2]));
    node(&mut els, "Sub", &[Some(cx), Some(cw)], &[Some(e)], vec![]);
    els.outputs.push(e);

    // then: a nested If whose branches capture %x (returned directly) and %w.
    let mut inner_then = Graph::new("inner_then");
    let ix = capture(&mut inner_then, "x", Type::Unknown);
    inner_then.outputs.push(ix);
    let mut inner_else = Graph::new("inner_else");
    let iw = capture(&mut inner_else, "w", ty(DType::F32, &[2]));
    let z = val(&mut inner_else, "z", ty(DType::F32, &[2]));
    node(&mut inner_else, "Neg", &[Some(iw)], &[Some(z)], vec![]);
    inner_else.outputs.push(z);
    let mut then = Graph::new("then");
    let tc = capture(&mut then, "cond", Type::Unknown);
    let tx = capture(&mut then, "x", Type::Unknown);
    let inner = val(&mut then, "inner", ty(DType::F32, &[2]));
    let t = val(&mut then, "t", ty(DType::F32, &[2]));
    node(
        &mut then,
        "If",
        &[Some(tc)],
        &[Some(inner)],
        vec![
            attr("then_branch", AttrValue::Graph(Box::new(inner_then))),
            attr("else_branch", AttrValue::Graph(Box::new(inner_else))),
        ],
    );
    node(
        &mut then,
        "Add",
        &[Some(tx), Some(inner)],
        &[Some(t)],
        vec![],
    );
    then.outputs.push(t);
    node(
        &mut gr,
        "If",
        &[Some(cond)],
        &[Some(out)],
        vec![
            attr("then_branch", AttrValue::Graph(Box::new(then))),
            attr("else_branch", AttrValue::Graph(Box::new(els))),
        ],
    );

    // Loop body: (%i, %c_in, %a_in) -> (%c_out, %a_out), captures %w with its type declared.
    let mut body = Graph::new("loop_body");
    let i = input(&mut body, "i", ty(DType::I64, &[]));
    let c_in = input(&mut body, "c_in", ty(DType::Bool, &[]));
    let a_in = input(&mut body, "a_in", ty(DType::F32, &[2]));
    let bw = capture(&mut body, "w", ty(DType::F32, &[2]));
    body.value_mut(bw).declared = true;
    let c_out = val(&mut body, "c_out", ty(DType::Bool, &[]));
    let a_out = val(&mut body, "a_out", ty(DType::F32, &[2]));
    node(&mut body, "Identity", &[Some(c_in)], &[Some(c_out)], vec![]);
    node(
        &mut body,
        "Add",
        &[Some(a_in), Some(bw)],
        &[Some(a_out)],
        vec![],
    );
    body.outputs.extend([c_out, a_out]);
    let _ = i;
    node(
        &mut gr,
        "Loop",
        &[Some(trip), None, Some(out)],
        &[Some(acc)],
        vec![attr("body", AttrValue::Graph(Box::new(body)))],
    );
    gr.outputs.push(acc);
    let _ = (x, w);
    Model::new(gr)
}

/// Model-local functions: attribute parameters with and without defaults, `@ref` attributes,
/// opset imports, overloads, annotations, odd domains.
pub fn function_model() -> Model {
    let mut body = Graph::new("Swish_body");
    let x = input(&mut body, "x", Type::Unknown);
    let beta = input(&mut body, "beta_in", Type::Unknown);
    let s = val(&mut body, "s", Type::Unknown);
    let a = val(&mut body, "alpha_c", Type::Unknown);
    let sig = val(&mut body, "sig", Type::Unknown);
    let y = val(&mut body, "y", Type::Unknown);
    node(&mut body, "Mul", &[Some(x), Some(beta)], &[Some(s)], vec![]);
    node(
        &mut body,
        "Constant",
        &[],
        &[Some(a)],
        vec![attr(
            "value_float",
            AttrValue::Ref {
                kind: AttrKind::Float,
                name: "alpha".into(),
            },
        )],
    );
    node(&mut body, "Sigmoid", &[Some(s)], &[Some(sig)], vec![]);
    node(
        &mut body,
        "Mul",
        &[Some(x), Some(sig), Some(a)],
        &[Some(y)],
        vec![],
    );
    body.outputs.push(y);
    body.doc_string = "body doc".into();
    let mut beta_default = attr("beta", AttrValue::Float(1.0));
    beta_default.doc_string = "slope".into();
    let swish = Function {
        name: "Swish".into(),
        domain: "com.example".into(),
        overload: "v2".into(),
        attributes: vec!["alpha".into(), "gamma".into()],
        attribute_defaults: vec![beta_default, attr("mode", AttrValue::String("fast".into()))],
        opset_imports: vec![OpsetImport {
            domain: String::new(),
            version: 17,
        }],
        doc_string: "x * sigmoid(beta * x)".into(),
        metadata_props: vec![("author".into(), "test".into())],
        body,
    };

    let mut body = Graph::new("");
    let p = input(&mut body, "p", ty(DType::F32, &[1]));
    let q = val(&mut body, "q", Type::Unknown);
    let mut n = Node::new("Identity");
    n.inputs = vec![Some(p)];
    n.outputs = vec![Some(q)];
    body.add_node(n);
    body.outputs.push(q);
    let odd = Function {
        name: "odd name".into(),
        domain: "my domain".into(),
        overload: String::new(),
        attributes: vec![],
        attribute_defaults: vec![],
        opset_imports: vec![],
        doc_string: String::new(),
        metadata_props: vec![],
        body,
    };

    let mut gr = Graph::new("main");
    let inp = input(&mut gr, "in", ty(DType::F32, &[1]));
    let b = konst(&mut gr, "b", f32s(&[1], &[1.5]));
    let out = val(&mut gr, "out", ty(DType::F32, &[1]));
    let out2 = val(&mut gr, "out2", ty(DType::F32, &[1]));
    let n = node(
        &mut gr,
        "Swish",
        &[Some(inp), Some(b)],
        &[Some(out)],
        vec![attr("alpha", AttrValue::Float(2.0))],
    );
    gr.node_mut(n).domain = "com.example".into();
    gr.node_mut(n).overload = "v2".into();
    let n = node(&mut gr, "odd name", &[Some(out)], &[Some(out2)], vec![]);
    gr.node_mut(n).domain = "my domain".into();
    gr.outputs.push(out2);
    let mut m = Model::new(gr);
    m.opset_imports.push(OpsetImport {
        domain: "com.example".into(),
        version: 1,
    });
    m.functions = vec![swish, odd];
    m
}

/// Values and nodes in every shape: annotations, `!`, omitted operands and results, zero-result
/// nodes, sparse initializers, input defaults, undefined values, non-tensor types, quoted names,
/// odd domains, model and graph metadata.
pub fn values_model() -> Model {
    let mut gr = Graph::new("main graph");
    gr.doc_string = "graph doc".into();
    gr.metadata_props = vec![("k1".into(), "v1".into()), ("k0".into(), "v0".into())];
    let x_ty = Type::Tensor(TensorType {
        dtype: Some(DType::F32),
        shape: Some(vec![
            Axis::known(2),
            Dim::Unknown.into(),
            Dim::Sym("seq len".into()).into(),
            Dim::Sym("N".into()).into(),
        ]),
    });
    let x = input(&mut gr, "x", x_ty);
    gr.value_mut(x).declared = true;
    gr.value_mut(x).doc_string = "the input".into();
    gr.value_mut(x).metadata_props = vec![("unit".into(), "m/s".into())];
    let mask = input(&mut gr, "mask", ty(DType::Bool, &[2]));
    let dflt = input(&mut gr, "with default", ty(DType::F32, &[2]));
    gr.value_mut(dflt).init = Some({
        let mut t = f32s(&[2], &[1.0, 2.0]);
        t.name = "with default".into();
        t
    });
    let sdflt = input(
        &mut gr,
        "sparse default",
        Type::SparseTensor(TensorType::new(DType::F32, &[3])),
    );
    gr.value_mut(sdflt).sparse_init = Some(SparseTensor {
        values: {
            let mut t = f32s(&[1], &[9.0]);
            t.name = "sparse default".into();
            t
        },
        indices: Tensor::from_i64(vec![1], &[2]),
        dims: vec![3],
    });
    let mut sp = Value::new(
        "sp",
        Type::SparseTensor(TensorType::new(DType::F32, &[4, 4])),
        ValueDef::Const,
    );
    sp.sparse_init = Some(SparseTensor {
        values: {
            let mut t = f32s(&[2], &[1.0, 2.0]);
            t.name = "sp".into();
            t
        },
        indices: Tensor::from_i64(vec![2, 2], &[0, 1, 3, 3]),
        dims: vec![4, 4],
    });
    let sp = gr.add_value(sp);

    let a = val(&mut gr, "a", ty(DType::F32, &[1, 2]));
    gr.value_mut(a).declared = true;
    let c = val(
        &mut gr,
        "c",
        Type::Tensor(TensorType {
            dtype: Some(DType::F32),
            shape: None,
        }),
    );
    gr.value_mut(c).metadata_props = vec![("note".into(), "rank unknown".into())];
    // Split(%x, _) -> (%a, _, %c): an omitted input and an omitted output.
    let n = node(
        &mut gr,
        "Split",
        &[Some(x), None],
        &[Some(a), None, Some(c)],
        vec![],
    );
    gr.node_mut(n).name = "split \"node\"".into();
    gr.node_mut(n).doc_string = "node doc\nline 2".into();
    gr.node_mut(n).metadata_props = vec![("pkg.torch.stack".into(), "a.py:1".into())];
    // A node without results, in a custom domain.
    let n = node(&mut gr, "Print", &[Some(a), Some(mask)], &[], vec![]);
    gr.node_mut(n).domain = "com.example.debug".into();
    // A node with every result omitted.
    node(&mut gr, "Dropout", &[Some(c)], &[None, None], vec![]);

    let undefined = val(&mut gr, "undefined thing", Type::Unknown);
    let weird = val(
        &mut gr,
        "weird \"name\" \u{e9}",
        Type::Tensor(TensorType {
            dtype: None,
            shape: None,
        }),
    );
    let n = node(
        &mut gr,
        "Add",
        &[Some(c), Some(undefined)],
        &[Some(weird)],
        vec![],
    );
    gr.node_mut(n).domain = "ai.onnx".into();
    let colon = val(
        &mut gr,
        "ends:",
        Type::Sequence(Box::new(ty(DType::F32, &[2]))),
    );
    let n = node(
        &mut gr,
        "SequenceConstruct",
        &[Some(weird), Some(sp)],
        &[Some(colon)],
        vec![],
    );
    gr.node_mut(n).domain = "onnx".into();
    let opt = val(
        &mut gr,
        "onnx::Opt_1",
        Type::Optional(Box::new(Type::Map(
            DType::Str,
            Box::new(ty(DType::I64, &[])),
        ))),
    );
    let n = node(
        &mut gr,
        "my op",
        &[Some(colon), Some(dflt), Some(sdflt)],
        &[Some(opt)],
        vec![],
    );
    gr.node_mut(n).overload = "o1".into();
    let under = val(&mut gr, "_", ty(DType::F32, &[1]));
    let n = node(&mut gr, "Weird", &[Some(opt)], &[Some(under)], vec![]);
    gr.node_mut(n).domain = "org.1x".into();
    let dangling = val(&mut gr, "dangling", ty(DType::F32, &[3]));
    gr.value_mut(dangling).declared = true;
    gr.value_mut(dangling).doc_string = "never defined".into();
    gr.outputs.extend([under, dangling, x]);

    let mut m = Model::new(gr);
    m.ir_version = 10;
    m.opset_imports.push(OpsetImport {
        domain: "com.example".into(),
        version: 1,
    });
    m.producer_name = "hand".into();
    m.domain = "org.test".into();
    m.model_version = 3;
    m.doc_string = "model doc with \"quotes\"".into();
    m.metadata_props = vec![("b".into(), "2".into()), ("a".into(), "1".into())];
    m
}
