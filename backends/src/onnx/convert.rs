//! IR -> `ModelProto`, the exact inverse of the frontend: initializers in `Graph::constants()`
//! order, nodes in `Graph::topo_order()` order, `value_info` in value order, attributes in stored
//! order, every tensor in its stored form. Tensor bytes are `Bytes` clones (a refcount), never
//! copies.

use super::BackendError;
use bytes::Bytes;
use spa_ir::{
    AttrValue, Attribute, Function, Graph, Model, Node, OpsetImport, SparseTensor, Tensor,
    TensorData, TensorType, Type, Value, ValueId,
};
use spa_onnx_proto as pb;
use std::collections::HashSet;

type Result<T> = std::result::Result<T, BackendError>;

/// Page alignment for large external tensors, so that readers can map them directly.
const ALIGN: u64 = 4096;
const ALIGN_FROM: u64 = 1 << 20;

/// Where tensors go when writing to a file with external data.
pub(crate) struct ExternalPlan {
    /// The data file's `location`, relative to the model's folder.
    pub location: String,
    pub threshold: Option<u64>,
    pub internalize: bool,
    /// (padding before, bytes) in file order.
    pub chunks: Vec<(u64, Bytes)>,
    pub size: u64,
}

impl ExternalPlan {
    pub(crate) fn new(location: String, threshold: Option<u64>, internalize: bool) -> ExternalPlan {
        ExternalPlan {
            location,
            threshold,
            internalize,
            chunks: Vec::new(),
            size: 0,
        }
    }

    /// Reserve room for `bytes` and return its offset.
    fn push(&mut self, bytes: Bytes) -> u64 {
        let len = bytes.len() as u64;
        let pad = if len >= ALIGN_FROM {
            (ALIGN - self.size % ALIGN) % ALIGN
        } else {
            0
        };
        let offset = self.size + pad;
        self.size = offset + len;
        self.chunks.push((pad, bytes));
        offset
    }
}

pub(crate) struct Writer<'a> {
    /// `None` (encode to memory): external tensors keep their entries as read.
    pub plan: Option<&'a mut ExternalPlan>,
    /// `location`s of the external data read in, which the output must not overwrite.
    pub sources: Vec<String>,
}

fn entries(pairs: &[(String, String)]) -> Vec<pb::StringStringEntryProto> {
    pairs
        .iter()
        .map(|(k, v)| pb::StringStringEntryProto {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn opsets(ops: &[OpsetImport]) -> Vec<pb::OperatorSetIdProto> {
    ops.iter()
        .map(|o| pb::OperatorSetIdProto {
            domain: o.domain.clone(),
            version: o.version,
        })
        .collect()
}

fn invalid(graph: &Graph, reason: String) -> BackendError {
    BackendError::InvalidGraph {
        graph: graph.name.clone(),
        reason,
    }
}

fn value(graph: &Graph, id: ValueId) -> Result<&Value> {
    graph
        .try_value(id)
        .ok_or_else(|| invalid(graph, format!("reference to erased value {id}")))
}

fn name(graph: &Graph, id: Option<ValueId>) -> Result<String> {
    match id {
        None => Ok(String::new()),
        Some(id) => Ok(value(graph, id)?.name.clone()),
    }
}

pub(crate) fn type_proto(ty: &Type) -> Option<pb::TypeProto> {
    use pb::type_proto as tp;
    let value = match ty {
        Type::Unknown => return None,
        Type::Tensor(t) => {
            let (elem_type, shape) = tensor_type(t);
            tp::Value::TensorType(tp::Tensor { elem_type, shape })
        }
        Type::SparseTensor(t) => {
            let (elem_type, shape) = tensor_type(t);
            tp::Value::SparseTensorType(tp::SparseTensor { elem_type, shape })
        }
        Type::Sequence(t) => tp::Value::SequenceType(Box::new(tp::Sequence {
            elem_type: type_proto(t).map(Box::new),
        })),
        Type::Optional(t) => tp::Value::OptionalType(Box::new(tp::Optional {
            elem_type: type_proto(t).map(Box::new),
        })),
        Type::Map(k, v) => tp::Value::MapType(Box::new(tp::Map {
            key_type: k.onnx_code(),
            value_type: type_proto(v).map(Box::new),
        })),
    };
    Some(pb::TypeProto {
        denotation: String::new(),
        value: Some(value),
    })
}

fn tensor_type(t: &TensorType) -> (i32, Option<pb::TensorShapeProto>) {
    use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
    let shape = t.shape.as_ref().map(|axes| pb::TensorShapeProto {
        dim: axes
            .iter()
            .map(|a| Dimension {
                denotation: String::new(),
                value: match &a.dim {
                    spa_ir::Dim::Known(n) => Some(D::DimValue(*n)),
                    spa_ir::Dim::Sym(s) => Some(D::DimParam(s.clone())),
                    spa_ir::Dim::Unknown => None,
                },
            })
            .collect(),
    });
    (t.dtype.map_or(0, |d| d.onnx_code()), shape)
}

fn value_info(v: &Value) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: v.name.clone(),
        r#type: type_proto(&v.ty),
        doc_string: v.doc_string.clone(),
        metadata_props: entries(&v.metadata_props),
    }
}

impl Writer<'_> {
    pub(crate) fn model(&mut self, m: &Model) -> Result<pb::ModelProto> {
        Ok(pb::ModelProto {
            ir_version: m.ir_version,
            opset_import: opsets(&m.opset_imports),
            producer_name: m.producer_name.clone(),
            producer_version: m.producer_version.clone(),
            domain: m.domain.clone(),
            model_version: m.model_version,
            doc_string: m.doc_string.clone(),
            graph: Some(self.graph(&m.graph)?),
            metadata_props: entries(&m.metadata_props),
            training_info: Vec::new(),
            functions: m
                .functions
                .iter()
                .map(|f| self.function(f))
                .collect::<Result<_>>()?,
            configuration: Vec::new(),
        })
    }

    fn graph(&mut self, g: &Graph) -> Result<pb::GraphProto> {
        let ends: HashSet<ValueId> = g.inputs.iter().chain(&g.outputs).copied().collect();
        let mut initializer = Vec::new();
        let mut sparse_initializer = Vec::new();
        for id in g.constants() {
            let v = g.value(id);
            if let Some(t) = &v.init {
                initializer.push(self.tensor(t, Some(&v.name), true)?);
            }
            if let Some(s) = &v.sparse_init {
                sparse_initializer.push(self.sparse(s, Some(&v.name))?);
            }
        }
        Ok(pb::GraphProto {
            node: self.nodes(g)?,
            name: g.name.clone(),
            initializer,
            sparse_initializer,
            doc_string: g.doc_string.clone(),
            input: g
                .inputs
                .iter()
                .map(|&id| value(g, id).map(value_info))
                .collect::<Result<_>>()?,
            output: g
                .outputs
                .iter()
                .map(|&id| value(g, id).map(value_info))
                .collect::<Result<_>>()?,
            // Inputs and outputs carry their type in their own lists.
            value_info: g
                .value_ids()
                .filter(|id| !ends.contains(id))
                .map(|id| g.value(id))
                .filter(|v| v.declared)
                .map(value_info)
                .collect(),
            quantization_annotation: Vec::new(),
            metadata_props: entries(&g.metadata_props),
        })
    }

    fn nodes(&mut self, g: &Graph) -> Result<Vec<pb::NodeProto>> {
        let order = g.topo_order().map_err(|e| invalid(g, e.to_string()))?;
        order
            .into_iter()
            .map(|id| self.node(g, g.node(id)))
            .collect()
    }

    fn node(&mut self, g: &Graph, n: &Node) -> Result<pb::NodeProto> {
        Ok(pb::NodeProto {
            input: n
                .inputs
                .iter()
                .map(|&v| name(g, v))
                .collect::<Result<_>>()?,
            output: n
                .outputs
                .iter()
                .map(|&v| name(g, v))
                .collect::<Result<_>>()?,
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            domain: n.domain.clone(),
            overload: n.overload.clone(),
            attribute: n
                .attrs
                .iter()
                .map(|a| self.attribute(a))
                .collect::<Result<_>>()?,
            doc_string: n.doc_string.clone(),
            metadata_props: entries(&n.metadata_props),
            device_configurations: Vec::new(),
        })
    }

    fn function(&mut self, f: &Function) -> Result<pb::FunctionProto> {
        let body = &f.body;
        if let Some(id) = body.constants().next() {
            return Err(invalid(
                body,
                format!(
                    "function '{}' holds the initializer '{}', which ONNX functions cannot have",
                    f.name,
                    body.value(id).name
                ),
            ));
        }
        Ok(pb::FunctionProto {
            name: f.name.clone(),
            input: body
                .inputs
                .iter()
                .map(|&v| name(body, Some(v)))
                .collect::<Result<_>>()?,
            output: body
                .outputs
                .iter()
                .map(|&v| name(body, Some(v)))
                .collect::<Result<_>>()?,
            attribute: f.attributes.clone(),
            attribute_proto: f
                .attribute_defaults
                .iter()
                .map(|a| self.attribute(a))
                .collect::<Result<_>>()?,
            node: self.nodes(body)?,
            doc_string: f.doc_string.clone(),
            opset_import: opsets(&f.opset_imports),
            domain: f.domain.clone(),
            overload: f.overload.clone(),
            // Formal parameters have no other place for their types.
            value_info: body
                .value_ids()
                .map(|id| body.value(id))
                .filter(|v| v.declared)
                .map(value_info)
                .collect(),
            metadata_props: entries(&f.metadata_props),
        })
    }

    fn attribute(&mut self, a: &Attribute) -> Result<pb::AttributeProto> {
        use pb::attribute_proto::AttributeType as T;
        let mut p = pb::AttributeProto {
            name: a.name.clone(),
            doc_string: a.doc_string.clone(),
            ..Default::default()
        };
        let kind = match &a.value {
            AttrValue::Float(f) => {
                p.f = Some(*f);
                T::Float
            }
            AttrValue::Int(i) => {
                p.i = *i;
                T::Int
            }
            AttrValue::String(s) => {
                p.s = s.clone();
                T::String
            }
            AttrValue::Tensor(t) => {
                p.t = Some(self.tensor(t, None, false)?);
                T::Tensor
            }
            AttrValue::Graph(g) => {
                p.g = Some(self.graph(g)?);
                T::Graph
            }
            AttrValue::SparseTensor(s) => {
                p.sparse_tensor = Some(self.sparse(s, None)?);
                T::SparseTensor
            }
            AttrValue::Type(t) => {
                p.tp = Some(type_proto(t).unwrap_or_default());
                T::TypeProto
            }
            AttrValue::Floats(v) => {
                p.floats = v.clone();
                T::Floats
            }
            AttrValue::Ints(v) => {
                p.ints = v.clone();
                T::Ints
            }
            AttrValue::Strings(v) => {
                p.strings = v.clone();
                T::Strings
            }
            AttrValue::Tensors(v) => {
                p.tensors = v
                    .iter()
                    .map(|t| self.tensor(t, None, false))
                    .collect::<Result<_>>()?;
                T::Tensors
            }
            AttrValue::Graphs(v) => {
                p.graphs = v.iter().map(|g| self.graph(g)).collect::<Result<_>>()?;
                T::Graphs
            }
            AttrValue::SparseTensors(v) => {
                p.sparse_tensors = v
                    .iter()
                    .map(|s| self.sparse(s, None))
                    .collect::<Result<_>>()?;
                T::SparseTensors
            }
            AttrValue::Types(v) => {
                p.type_protos = v
                    .iter()
                    .map(|t| type_proto(t).unwrap_or_default())
                    .collect();
                T::TypeProtos
            }
            AttrValue::Ref { kind, name } => {
                p.ref_attr_name = name.clone();
                attr_type(*kind)
            }
        };
        p.r#type = kind as i32;
        Ok(p)
    }

    fn sparse(&mut self, s: &SparseTensor, name: Option<&str>) -> Result<pb::SparseTensorProto> {
        Ok(pb::SparseTensorProto {
            values: Some(self.tensor(&s.values, name, false)?),
            indices: Some(self.tensor(&s.indices, None, false)?),
            dims: s.dims.clone(),
        })
    }

    /// `name` overrides the tensor's own name (initializers are named by their value).
    fn tensor(
        &mut self,
        t: &Tensor,
        name: Option<&str>,
        initializer: bool,
    ) -> Result<pb::TensorProto> {
        let mut p = pb::TensorProto {
            dims: t.dims.clone(),
            data_type: t.dtype.onnx_code(),
            name: name.unwrap_or(&t.name).to_string(),
            doc_string: t.doc_string.clone(),
            metadata_props: entries(&t.metadata_props),
            ..Default::default()
        };
        if let TensorData::External(e) = &t.data {
            if let Some(loc) = e.location() {
                self.sources.push(loc.to_string());
            }
        }
        if let Some(plan) = self.plan.as_deref_mut() {
            let from_external = matches!(t.data, TensorData::External(_));
            let big = initializer && plan.threshold.is_some_and(|n| t.byte_len() >= n);
            let can = t.dtype != spa_ir::DType::Str;
            if can && ((from_external && !plan.internalize) || big) {
                let bytes = match &t.data {
                    TensorData::Raw(b) => b.clone(),
                    TensorData::External(e) => e.bytes.clone(),
                    _ => Bytes::from(
                        t.raw_bytes()
                            .map_err(|e| BackendError::BadTensor(e.to_string()))?
                            .into_owned(),
                    ),
                };
                let len = bytes.len() as u64;
                let offset = plan.push(bytes);
                let old = match &t.data {
                    TensorData::External(e) => e.entries.as_slice(),
                    _ => &[],
                };
                p.external_data = relocate(old, &plan.location, offset, len);
                p.data_location = pb::tensor_proto::DataLocation::External as i32;
                return Ok(p);
            }
        }
        match &t.data {
            TensorData::Raw(b) => p.raw_data = b.clone(),
            TensorData::Floats(v) => p.float_data = v.clone(),
            TensorData::Int32s(v) => p.int32_data = v.clone(),
            TensorData::Int64s(v) => p.int64_data = v.clone(),
            TensorData::Doubles(v) => p.double_data = v.clone(),
            TensorData::Uint64s(v) => p.uint64_data = v.clone(),
            TensorData::Strings(v) => p.string_data = v.clone(),
            TensorData::External(e) if self.plan.is_some() => p.raw_data = e.bytes.clone(),
            TensorData::External(e) => {
                p.external_data = entries(&e.entries);
                p.data_location = pb::tensor_proto::DataLocation::External as i32;
            }
        }
        Ok(p)
    }
}

/// External data entries pointing at the new file: the old entries' order and extra keys
/// (`checksum`, ...) are kept, `location`/`offset`/`length` are rewritten.
fn relocate(
    old: &[(String, String)],
    location: &str,
    offset: u64,
    length: u64,
) -> Vec<pb::StringStringEntryProto> {
    let new_value = |key: &str| match key {
        "location" => Some(location.to_string()),
        "offset" => Some(offset.to_string()),
        "length" => Some(length.to_string()),
        _ => None,
    };
    let mut out: Vec<pb::StringStringEntryProto> = old
        .iter()
        .map(|(k, v)| pb::StringStringEntryProto {
            key: k.clone(),
            value: new_value(k).unwrap_or_else(|| v.clone()),
        })
        .collect();
    for key in ["location", "offset", "length"] {
        if !old.iter().any(|(k, _)| k == key) {
            out.push(pb::StringStringEntryProto {
                key: key.to_string(),
                value: new_value(key).unwrap_or_default(),
            });
        }
    }
    out
}

fn attr_type(kind: spa_ir::AttrKind) -> pb::attribute_proto::AttributeType {
    use pb::attribute_proto::AttributeType as T;
    use spa_ir::AttrKind as K;
    match kind {
        K::Float => T::Float,
        K::Int => T::Int,
        K::String => T::String,
        K::Tensor => T::Tensor,
        K::Graph => T::Graph,
        K::SparseTensor => T::SparseTensor,
        K::Type => T::TypeProto,
        K::Floats => T::Floats,
        K::Ints => T::Ints,
        K::Strings => T::Strings,
        K::Tensors => T::Tensors,
        K::Graphs => T::Graphs,
        K::SparseTensors => T::SparseTensors,
        K::Types => T::TypeProtos,
    }
}
