//! Inference and verification never panic, whatever the model says: random single-node graphs
//! over every registered op, with extreme dims, attributes and constant contents.

use spa_ir::infer::{infer_model, infer_types, InferOptions};
use spa_ir::ops::registered_ops;
use spa_ir::verify::verify_model;
use spa_ir::{
    AttrValue, Axis, DType, Dim, Graph, Model, Node, Tensor, TensorType, Type, Value, ValueDef,
};

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn int(&mut self) -> i64 {
        const NASTY: [i64; 12] = [0, 1, 2, 3, -1, -2, 4, 7, 64, i64::MAX, i64::MIN, 1 << 40];
        NASTY[self.below(NASTY.len() as u64) as usize]
    }

    fn dim(&mut self) -> Dim {
        match self.below(8) {
            0 => Dim::Sym("n".into()),
            1 => Dim::Unknown,
            2 => Dim::Known(self.int()),
            _ => Dim::Known(self.below(5) as i64),
        }
    }

    fn ints(&mut self, max_len: u64) -> Vec<i64> {
        let n = self.below(max_len + 1);
        (0..n).map(|_| self.int()).collect()
    }
}

fn random_type(r: &mut Rng) -> Type {
    if r.below(10) == 0 {
        return Type::Unknown;
    }
    let dtype = [DType::F32, DType::I64, DType::Bool, DType::I32, DType::F16][r.below(5) as usize];
    let shape = if r.below(10) == 0 {
        None
    } else {
        let rank = r.below(6);
        Some((0..rank).map(|_| Axis::from(r.dim())).collect())
    };
    Type::Tensor(TensorType {
        dtype: Some(dtype),
        shape,
    })
}

fn random_attr(r: &mut Rng) -> (String, AttrValue) {
    const NAMES: [&str; 22] = [
        "axis",
        "axes",
        "perm",
        "pads",
        "strides",
        "dilations",
        "kernel_shape",
        "group",
        "to",
        "keepdims",
        "split",
        "num_outputs",
        "starts",
        "ends",
        "shape",
        "output_shape",
        "output_padding",
        "blocksize",
        "k",
        "scales",
        "batch_dims",
        "allowzero",
    ];
    let name = NAMES[r.below(NAMES.len() as u64) as usize].to_string();
    let value = match r.below(4) {
        0 => AttrValue::Int(r.int()),
        1 => AttrValue::Floats((0..r.below(5)).map(|_| r.int() as f32 * 0.5).collect()),
        2 => AttrValue::String(bytes::Bytes::from_static(b"SAME_UPPER")),
        _ => AttrValue::Ints(r.ints(6)),
    };
    (name, value)
}

fn random_model(r: &mut Rng, op: &str) -> Model {
    let mut g = Graph::new("main");
    let mut node = Node::new(op);
    let n_in = r.below(5);
    for i in 0..n_in {
        if r.below(8) == 0 {
            node.inputs.push(None);
            continue;
        }
        let v = if r.below(2) == 0 {
            // A constant with extreme integer contents.
            let vals = r.ints(6);
            let dims = if r.below(3) == 0 {
                vec![]
            } else {
                vec![vals.len() as i64]
            };
            let vals = if dims.is_empty() { vec![r.int()] } else { vals };
            let mut t = Tensor::from_i64(dims.clone(), &vals);
            t.name = format!("c{i}");
            let mut val = Value::new(
                format!("c{i}"),
                Type::tensor(DType::I64, &dims),
                ValueDef::Const,
            );
            val.init = Some(t);
            g.add_value(val)
        } else {
            let v = g.add_value(Value::new(format!("x{i}"), random_type(r), ValueDef::Input));
            g.inputs.push(v);
            v
        };
        node.inputs.push(Some(v));
    }
    for _ in 0..r.below(4) {
        let (name, value) = random_attr(r);
        node.set_attr(&name, value);
    }
    let n_out = 1 + r.below(3);
    for k in 0..n_out {
        let ty = if r.below(3) == 0 {
            random_type(r)
        } else {
            Type::Unknown
        };
        let v = g.add_value(Value::new(format!("y{k}"), ty, ValueDef::Undefined));
        node.outputs.push(Some(v));
        g.outputs.push(v);
    }
    g.add_node(node);
    let mut m = Model::new(g);
    m.opset_imports[0].version = [7, 9, 11, 13, 17, 18, 21][r.below(7) as usize];
    m
}

#[test]
fn random_nodes_never_panic() {
    let mut r = Rng(42);
    for op in registered_ops() {
        for _ in 0..300 {
            let mut m = random_model(&mut r, op);
            let _ = infer_types(&m);
            let _ = verify_model(&m);
            let _ = infer_model(&mut m, &InferOptions { strict: true });
            let _ = spa_ir::ops::model_cost(&m);
        }
    }
}

#[test]
fn recursive_and_fanning_out_functions_terminate() {
    let src = "
graph @main(%x: f32[2]) -> (%y) { %y = local.F(%x) }
func local.F(%a) -> (%b) {
  %c = local.F(%a)
  %d = local.F(%c)
  %b = onnx.Add(%c, %d)
}";
    let m = spa_ir::text::parse_model(src).unwrap();
    infer_types(&m).unwrap();
    // F0 calls F1 twice, F1 calls F2 twice, ...: 2^24 calls without a budget.
    let mut src = String::from("graph @main(%x: f32[2]) -> (%y) { %y = local.F0(%x) }\n");
    for i in 0..24 {
        src.push_str(&format!(
            "func local.F{i}(%a) -> (%b) {{ %c = local.F{n}(%a)\n %b = local.F{n}(%c) }}\n",
            n = i + 1
        ));
    }
    src.push_str("func local.F24(%a) -> (%b) { %b = onnx.Relu(%a) }\n");
    let m = spa_ir::text::parse_model(&src).unwrap();
    infer_types(&m).unwrap();
    verify_model(&m).unwrap();
}
