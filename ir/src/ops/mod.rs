//! The op registry: what each op means, one file per op family. Passes ask the registry; they
//! never match on op types themselves. Today an op family provides shape inference (with value
//! propagation for small integer tensors, so that shape computations fold), its cost (FLOPs), and
//! its channel coupling rule ([`couple`]). An op the registry does not know is carried untouched:
//! its outputs keep their declared types, and the spaces it touches are pinned.
//!
//! Cost convention: FLOPs count a multiply-add as 2 (so a conv is 2 * MACs); elementwise ops count
//! one per output element; data movement counts nothing.

pub mod conv;
pub mod couple;
pub mod elementwise;
pub mod matmul;
pub mod misc;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod reshape;
pub mod slicing;

pub use couple::couple;

use crate::graph::Node;
use crate::tensor::Tensor;
use crate::types::{Axis, Dim, TensorType, Type};
use crate::DType;

/// One input of a node as inference sees it.
#[derive(Clone, Copy, Default)]
pub struct InferInput<'a> {
    pub ty: Option<&'a TensorType>,
    /// Known contents (a constant, or a value propagated through shape computations).
    pub value: Option<&'a Tensor>,
}

/// What an op's inference sees.
pub struct InferCtx<'a> {
    pub node: &'a Node,
    pub opset: i64,
    pub inputs: Vec<InferInput<'a>>,
    /// Output types of subgraph bodies (If branches), when the caller computed them.
    pub subgraph_outputs: Vec<Vec<Type>>,
}

/// An inferred output: its type and, for small integer tensors, its contents.
#[derive(Clone, Debug, PartialEq)]
pub struct Inferred {
    pub ty: Type,
    pub value: Option<Tensor>,
}

impl Inferred {
    pub fn tensor(dtype: Option<DType>, dims: Option<Vec<Dim>>) -> Inferred {
        Inferred {
            ty: Type::Tensor(TensorType {
                dtype,
                shape: dims.map(|d| d.into_iter().map(Axis::from).collect()),
            }),
            value: None,
        }
    }

    pub fn with_value(mut self, v: Option<Tensor>) -> Inferred {
        self.value = v;
        self
    }
}

/// Largest tensor whose contents inference propagates.
pub const MAX_PROPAGATED: u64 = 64;

pub type InferResult = Result<Vec<Inferred>, String>;

impl<'a> InferCtx<'a> {
    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    pub fn has(&self, i: usize) -> bool {
        self.node.input(i).is_some()
    }

    pub fn ty(&self, i: usize) -> Option<&'a TensorType> {
        self.inputs.get(i).and_then(|x| x.ty)
    }

    pub fn dtype(&self, i: usize) -> Option<DType> {
        self.ty(i).and_then(|t| t.dtype)
    }

    pub fn dims(&self, i: usize) -> Option<Vec<Dim>> {
        self.ty(i).and_then(|t| t.dims())
    }

    pub fn rank(&self, i: usize) -> Option<usize> {
        self.ty(i).and_then(|t| t.rank())
    }

    pub fn value(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).and_then(|x| x.value)
    }

    /// Known integer contents of input `i`.
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.value(i)?.to_i64().ok()
    }

    pub fn attr_int(&self, name: &str, default: i64) -> i64 {
        self.node.attr_int(name).unwrap_or(default)
    }

    /// An integer list from an attribute (older opsets) or from input `i` (newer ones).
    pub fn ints_attr_or_input(&self, name: &str, i: usize) -> Option<Vec<i64>> {
        match self.node.attr_ints(name) {
            Some(v) => Some(v.to_vec()),
            None => self.ints(i),
        }
    }
}

/// Normalize a possibly negative axis against a rank.
pub fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..r).contains(&n) {
        Ok(n as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

pub fn known(dims: &[i64]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

/// An i64 tensor holding `values`, for propagated shapes.
pub fn int_tensor(dims: Vec<i64>, values: &[i64]) -> Tensor {
    Tensor::from_i64(dims, values)
}

/// Propagated value of an integer computation, as the dtype the op produces.
pub fn int_value(dtype: Option<DType>, dims: Vec<i64>, values: &[i64]) -> Option<Tensor> {
    let n = values.len() as u64;
    if n > MAX_PROPAGATED {
        return None;
    }
    match dtype? {
        DType::I64 => Some(Tensor::from_i64(dims, values)),
        DType::I32 => {
            let raw: Vec<u8> = values
                .iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect();
            Some(Tensor::from_raw(DType::I32, dims, raw.into()))
        }
        DType::Bool => {
            let raw: Vec<u8> = values.iter().map(|&v| (v != 0) as u8).collect();
            Some(Tensor::from_raw(DType::Bool, dims, raw.into()))
        }
        _ => None,
    }
}

/// Infer a node's outputs. `None`: the registry does not know the op.
pub fn infer(cx: &InferCtx<'_>) -> Option<InferResult> {
    if !cx.node.canonical_domain().is_empty() {
        return None;
    }
    let op = cx.node.op_type.as_str();
    elementwise::infer(op, cx)
        .or_else(|| conv::infer(op, cx))
        .or_else(|| matmul::infer(op, cx))
        .or_else(|| norm::infer(op, cx))
        .or_else(|| pool::infer(op, cx))
        .or_else(|| reduce::infer(op, cx))
        .or_else(|| reshape::infer(op, cx))
        .or_else(|| slicing::infer(op, cx))
        .or_else(|| misc::infer(op, cx))
}

/// Does the registry know this op?
pub fn is_known(node: &Node) -> bool {
    let cx = InferCtx {
        node,
        opset: 17,
        inputs: Vec::new(),
        subgraph_outputs: Vec::new(),
    };
    infer(&cx).is_some()
}

/// FLOPs of a node given its operand types (see the module doc for the convention).
pub fn flops(node: &Node, inputs: &[Option<&TensorType>], outputs: &[Option<&TensorType>]) -> u64 {
    let numel = |t: Option<&TensorType>| -> Option<u64> {
        t?.dims()?.iter().try_fold(1u64, |a, d| {
            a.checked_mul(u64::try_from(d.known().unwrap_or(1)).ok()?)
        })
    };
    let out0 = outputs.first().copied().flatten();
    match node.op_type.as_str() {
        "Conv" | "ConvTranspose" => conv::flops(node, inputs, outputs).unwrap_or(0),
        "Gemm" | "MatMul" => matmul::flops(node, inputs, outputs).unwrap_or(0),
        "Constant" | "Shape" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Transpose"
        | "Identity" | "Concat" | "Split" | "Slice" | "Gather" | "Cast" | "Expand" | "Dropout" => 0,
        _ => numel(out0).unwrap_or(0),
    }
}

/// Total FLOPs of the main graph (values whose shapes are unknown count nothing).
pub fn model_flops(model: &crate::Model) -> u64 {
    let g = &model.graph;
    let ty = |v: Option<crate::ValueId>| v.and_then(|v| g.value(v).ty.as_tensor());
    g.node_ids()
        .map(|id| {
            let n = g.node(id);
            let ins: Vec<_> = n.inputs.iter().map(|v| ty(*v)).collect();
            let outs: Vec<_> = n.outputs.iter().map(|v| ty(*v)).collect();
            flops(n, &ins, &outs)
        })
        .fold(0u64, |a, b| a.saturating_add(b))
}
