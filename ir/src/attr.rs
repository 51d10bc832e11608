//! Node attributes: every ONNX attribute kind, including tensors, subgraphs and lists.

use crate::graph::Graph;
use crate::tensor::Tensor;
use crate::types::Type;
use bytes::Bytes;

/// A sparse tensor (COO), as in ONNX `SparseTensorProto`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTensor {
    pub values: Tensor,
    pub indices: Tensor,
    pub dims: Vec<i64>,
}

/// The kind of an attribute, mirroring ONNX `AttributeProto.AttributeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrKind {
    Float,
    Int,
    String,
    Tensor,
    Graph,
    SparseTensor,
    Type,
    Floats,
    Ints,
    Strings,
    Tensors,
    Graphs,
    SparseTensors,
    Types,
}

impl AttrKind {
    pub fn name(self) -> &'static str {
        match self {
            AttrKind::Float => "float",
            AttrKind::Int => "int",
            AttrKind::String => "string",
            AttrKind::Tensor => "tensor",
            AttrKind::Graph => "graph",
            AttrKind::SparseTensor => "sparse_tensor",
            AttrKind::Type => "type",
            AttrKind::Floats => "floats",
            AttrKind::Ints => "ints",
            AttrKind::Strings => "strings",
            AttrKind::Tensors => "tensors",
            AttrKind::Graphs => "graphs",
            AttrKind::SparseTensors => "sparse_tensors",
            AttrKind::Types => "types",
        }
    }

    pub fn from_name(s: &str) -> Option<AttrKind> {
        use AttrKind::*;
        [
            Float,
            Int,
            String,
            Tensor,
            Graph,
            SparseTensor,
            Type,
            Floats,
            Ints,
            Strings,
            Tensors,
            Graphs,
            SparseTensors,
            Types,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Bytes),
    Tensor(Tensor),
    Graph(Box<Graph>),
    SparseTensor(Box<SparseTensor>),
    Type(Type),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Bytes>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    SparseTensors(Vec<SparseTensor>),
    Types(Vec<Type>),
    /// Inside a function body: the value is the caller's attribute `name` (ONNX `ref_attr_name`).
    Ref {
        kind: AttrKind,
        name: String,
    },
}

impl AttrValue {
    pub fn kind(&self) -> AttrKind {
        match self {
            AttrValue::Float(_) => AttrKind::Float,
            AttrValue::Int(_) => AttrKind::Int,
            AttrValue::String(_) => AttrKind::String,
            AttrValue::Tensor(_) => AttrKind::Tensor,
            AttrValue::Graph(_) => AttrKind::Graph,
            AttrValue::SparseTensor(_) => AttrKind::SparseTensor,
            AttrValue::Type(_) => AttrKind::Type,
            AttrValue::Floats(_) => AttrKind::Floats,
            AttrValue::Ints(_) => AttrKind::Ints,
            AttrValue::Strings(_) => AttrKind::Strings,
            AttrValue::Tensors(_) => AttrKind::Tensors,
            AttrValue::Graphs(_) => AttrKind::Graphs,
            AttrValue::SparseTensors(_) => AttrKind::SparseTensors,
            AttrValue::Types(_) => AttrKind::Types,
            AttrValue::Ref { kind, .. } => *kind,
        }
    }
}

/// A named attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
    pub doc_string: String,
}

impl Attribute {
    pub fn new(name: impl Into<String>, value: AttrValue) -> Attribute {
        Attribute {
            name: name.into(),
            value,
            doc_string: String::new(),
        }
    }
}
