//! `ModelProto` -> IR. The proto is consumed (strings and `Bytes` are moved, never copied).
//!
//! Value creation order is chosen so that the backend, which writes initializers in
//! `Graph::constants()` order and `value_info` in value order, reproduces the original lists:
//! initializers, sparse initializers, inputs, `value_info`, then node outputs (functions:
//! `value_info`, inputs, node outputs).

use super::error::FrontendError;
use super::external::ExternalFiles;
use spa_ir::{
    AttrKind, AttrValue, Attribute, Axis, DType, Dim, ExternalData, Function, Graph, Model, Node,
    OpsetImport, SparseTensor, Tensor, TensorData, TensorType, Type, Value, ValueDef, ValueId,
};
use spa_onnx_proto as pb;
use std::collections::{HashMap, HashSet};

pub(crate) struct Reader {
    file: String,
    external: ExternalFiles,
    /// Names defined by each enclosing graph, innermost last (for captures in subgraphs).
    scopes: Vec<HashSet<String>>,
}

type Result<T> = std::result::Result<T, FrontendError>;

fn pairs(entries: Vec<pb::StringStringEntryProto>) -> Vec<(String, String)> {
    entries.into_iter().map(|e| (e.key, e.value)).collect()
}

impl Reader {
    pub(crate) fn new(file: String, external: ExternalFiles) -> Reader {
        Reader {
            file,
            external,
            scopes: Vec::new(),
        }
    }

    fn unsupported(&self, what: String) -> FrontendError {
        FrontendError::Unsupported {
            file: self.file.clone(),
            what,
        }
    }

    fn malformed(&self, context: String, reason: impl Into<String>) -> FrontendError {
        FrontendError::Malformed {
            file: self.file.clone(),
            context,
            reason: reason.into(),
        }
    }

    pub(crate) fn model(&mut self, m: pb::ModelProto) -> Result<Model> {
        let Some(graph) = m.graph else {
            return Err(FrontendError::NotAModel {
                file: self.file.clone(),
                reason: "no graph",
            });
        };
        if m.ir_version == 0 {
            return Err(FrontendError::NotAModel {
                file: self.file.clone(),
                reason: "no ir_version",
            });
        }
        if m.opset_import.is_empty() {
            return Err(FrontendError::NotAModel {
                file: self.file.clone(),
                reason: "no opset_import",
            });
        }
        if !m.training_info.is_empty() {
            return Err(self.unsupported("training_info".into()));
        }
        if !m.configuration.is_empty() {
            return Err(self.unsupported("multi-device configuration".into()));
        }
        let graph = self.graph(graph)?;
        let functions = m
            .functions
            .into_iter()
            .map(|f| self.function(f))
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            ir_version: m.ir_version,
            opset_imports: opsets(m.opset_import),
            producer_name: m.producer_name,
            producer_version: m.producer_version,
            domain: m.domain,
            model_version: m.model_version,
            doc_string: m.doc_string,
            metadata_props: pairs(m.metadata_props),
            graph,
            functions,
            spaces: Vec::new(),
        })
    }

    fn graph(&mut self, g: pb::GraphProto) -> Result<Graph> {
        if !g.quantization_annotation.is_empty() {
            return Err(self.unsupported(format!("quantization_annotation (graph '{}')", g.name)));
        }
        let mut graph = Graph::new(g.name);
        graph.doc_string = g.doc_string;
        graph.metadata_props = pairs(g.metadata_props);
        let mut names: HashMap<String, ValueId> = HashMap::new();

        for t in g.initializer {
            let tensor = self.tensor(t, "initializer")?;
            let mut v = Value::new(
                tensor.name.clone(),
                Type::Tensor(TensorType::new(tensor.dtype, &tensor.dims)),
                ValueDef::Const,
            );
            v.init = Some(tensor);
            let name = v.name.clone();
            let id = graph.add_value(v);
            names.entry(name).or_insert(id);
        }
        for s in g.sparse_initializer {
            let sparse = self.sparse(s, "sparse initializer")?;
            let ty = Type::SparseTensor(TensorType::new(sparse.values.dtype, &sparse.dims));
            let mut v = Value::new(sparse.values.name.clone(), ty, ValueDef::Const);
            v.sparse_init = Some(sparse);
            let name = v.name.clone();
            let id = graph.add_value(v);
            names.entry(name).or_insert(id);
        }
        for vi in g.input {
            let ty = self.ty(vi.r#type, &vi.name)?;
            // An initializer listed as an input is an input with a default (IR < 4 style).
            let reuse = names
                .get(&vi.name)
                .copied()
                .filter(|&id| graph.value(id).def == ValueDef::Const);
            let id = match reuse {
                Some(id) => {
                    let v = graph.value_mut(id);
                    v.def = ValueDef::Input;
                    v.ty = ty;
                    v.doc_string = vi.doc_string;
                    v.metadata_props = pairs(vi.metadata_props);
                    id
                }
                None => {
                    let mut v = Value::new(vi.name, ty, ValueDef::Input);
                    v.doc_string = vi.doc_string;
                    v.metadata_props = pairs(vi.metadata_props);
                    let name = v.name.clone();
                    let id = graph.add_value(v);
                    names.insert(name, id);
                    id
                }
            };
            graph.inputs.push(id);
        }
        self.value_infos(&mut graph, &mut names, g.value_info)?;

        let needs_scope = g.node.iter().any(|n| {
            n.attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty())
        });
        if needs_scope {
            let mut here: HashSet<String> = names.keys().cloned().collect();
            here.extend(g.node.iter().flat_map(|n| n.output.iter().cloned()));
            self.scopes.push(here);
        }
        let nodes = self.nodes(&mut graph, &mut names, g.node);
        if needs_scope {
            self.scopes.pop();
        }
        nodes?;

        for vi in g.output {
            let ty = self.ty(vi.r#type, &vi.name)?;
            let id = lookup(&mut graph, &mut names, vi.name);
            let v = graph.value_mut(id);
            v.ty = ty;
            v.doc_string = vi.doc_string;
            v.metadata_props = pairs(vi.metadata_props);
            graph.outputs.push(id);
        }
        self.mark_captures(&mut graph);
        Ok(graph)
    }

    /// Values used but not defined here become captures when an enclosing graph defines them.
    fn mark_captures(&self, graph: &mut Graph) {
        if self.scopes.is_empty() {
            return;
        }
        let undefined: Vec<ValueId> = graph
            .value_ids()
            .filter(|&v| graph.value(v).def == ValueDef::Undefined)
            .collect();
        for id in undefined {
            let v = graph.value_mut(id);
            if self.scopes.iter().any(|s| s.contains(&v.name)) {
                v.def = ValueDef::Capture;
            }
        }
    }

    fn value_infos(
        &mut self,
        graph: &mut Graph,
        names: &mut HashMap<String, ValueId>,
        infos: Vec<pb::ValueInfoProto>,
    ) -> Result<()> {
        for vi in infos {
            let ty = self.ty(vi.r#type, &vi.name)?;
            // A graph input's own entry already carries its type; a duplicate must not override it.
            if let Some(&id) = names.get(&vi.name) {
                if graph.value(id).def == ValueDef::Input {
                    continue;
                }
            }
            let id = lookup(graph, names, vi.name);
            let v = graph.value_mut(id);
            v.ty = ty;
            v.declared = true;
            v.doc_string = vi.doc_string;
            v.metadata_props = pairs(vi.metadata_props);
        }
        Ok(())
    }

    fn nodes(
        &mut self,
        graph: &mut Graph,
        names: &mut HashMap<String, ValueId>,
        nodes: Vec<pb::NodeProto>,
    ) -> Result<()> {
        for n in nodes {
            let label = if n.name.is_empty() {
                format!("<unnamed {}>", n.op_type)
            } else {
                n.name.clone()
            };
            if !n.device_configurations.is_empty() {
                return Err(self.unsupported(format!("device_configurations (node '{label}')")));
            }
            let mut node = Node::new(n.op_type);
            node.name = n.name;
            node.domain = n.domain;
            node.overload = n.overload;
            node.doc_string = n.doc_string;
            node.metadata_props = pairs(n.metadata_props);
            node.inputs = n
                .input
                .into_iter()
                .map(|name| (!name.is_empty()).then(|| lookup(graph, names, name)))
                .collect();
            node.attrs = n
                .attribute
                .into_iter()
                .map(|a| self.attribute(a, &label))
                .collect::<Result<_>>()?;
            node.outputs = n
                .output
                .into_iter()
                .map(|name| (!name.is_empty()).then(|| define(graph, names, name)))
                .collect();
            graph.add_node(node);
        }
        Ok(())
    }

    fn function(&mut self, f: pb::FunctionProto) -> Result<Function> {
        let mut body = Graph::new(f.name.clone());
        let mut names = HashMap::new();
        // value_info first: it is the only place a formal parameter's type can be, and the backend
        // writes it back in value order.
        self.value_infos(&mut body, &mut names, f.value_info)?;
        for name in f.input {
            let id = match names.get(&name).copied() {
                Some(id) if body.value(id).def == ValueDef::Undefined => id,
                _ => {
                    let id =
                        body.add_value(Value::new(name.clone(), Type::Unknown, ValueDef::Input));
                    names.insert(name, id);
                    id
                }
            };
            body.value_mut(id).def = ValueDef::Input;
            body.inputs.push(id);
        }
        let saved = std::mem::take(&mut self.scopes);
        let needs_scope = f.node.iter().any(|n| {
            n.attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty())
        });
        if needs_scope {
            let mut here: HashSet<String> = names.keys().cloned().collect();
            here.extend(f.node.iter().flat_map(|n| n.output.iter().cloned()));
            self.scopes.push(here);
        }
        let nodes = self.nodes(&mut body, &mut names, f.node);
        self.scopes = saved;
        nodes?;
        for name in f.output {
            let id = lookup(&mut body, &mut names, name);
            body.outputs.push(id);
        }
        let label = format!("function '{}'", f.name);
        let attribute_defaults = f
            .attribute_proto
            .into_iter()
            .map(|a| self.attribute(a, &label))
            .collect::<Result<_>>()?;
        Ok(Function {
            name: f.name,
            domain: f.domain,
            overload: f.overload,
            attributes: f.attribute,
            attribute_defaults,
            opset_imports: opsets(f.opset_import),
            doc_string: f.doc_string,
            metadata_props: pairs(f.metadata_props),
            body,
        })
    }

    fn attribute(&mut self, a: pb::AttributeProto, node: &str) -> Result<Attribute> {
        use pb::attribute_proto::AttributeType as T;
        let context = || format!("node '{node}' attribute '{}'", a.name);
        let kind = match T::try_from(a.r#type) {
            Ok(T::Undefined) => infer_kind(&a),
            Ok(t) => Some(kind_of(t)),
            Err(_) => {
                return Err(
                    self.malformed(context(), format!("unknown attribute type {}", a.r#type))
                )
            }
        };
        let Some(kind) = kind else {
            return Err(self.malformed(context(), "no type and no value"));
        };
        let label = |what: &str| format!("{} of {}", what, context());
        let value = if !a.ref_attr_name.is_empty() {
            AttrValue::Ref {
                kind,
                name: a.ref_attr_name,
            }
        } else {
            match kind {
                AttrKind::Float => AttrValue::Float(a.f.unwrap_or(0.0)),
                AttrKind::Int => AttrValue::Int(a.i),
                AttrKind::String => AttrValue::String(a.s),
                AttrKind::Tensor => match a.t {
                    Some(t) => AttrValue::Tensor(self.tensor(t, &label("tensor"))?),
                    None => return Err(self.malformed(context(), "type TENSOR without a tensor")),
                },
                AttrKind::Graph => match a.g {
                    Some(g) => AttrValue::Graph(Box::new(self.graph(g)?)),
                    None => return Err(self.malformed(context(), "type GRAPH without a graph")),
                },
                AttrKind::SparseTensor => match a.sparse_tensor {
                    Some(s) => {
                        AttrValue::SparseTensor(Box::new(self.sparse(s, &label("sparse tensor"))?))
                    }
                    None => {
                        return Err(
                            self.malformed(context(), "type SPARSE_TENSOR without a sparse tensor")
                        )
                    }
                },
                AttrKind::Type => match a.tp {
                    Some(tp) => AttrValue::Type(self.ty(Some(tp), &label("type"))?),
                    None => return Err(self.malformed(context(), "type TYPE_PROTO without a type")),
                },
                AttrKind::Floats => AttrValue::Floats(a.floats),
                AttrKind::Ints => AttrValue::Ints(a.ints),
                AttrKind::Strings => AttrValue::Strings(a.strings),
                AttrKind::Tensors => AttrValue::Tensors(
                    a.tensors
                        .into_iter()
                        .map(|t| self.tensor(t, &label("tensor")))
                        .collect::<Result<_>>()?,
                ),
                AttrKind::Graphs => AttrValue::Graphs(
                    a.graphs
                        .into_iter()
                        .map(|g| self.graph(g))
                        .collect::<Result<_>>()?,
                ),
                AttrKind::SparseTensors => AttrValue::SparseTensors(
                    a.sparse_tensors
                        .into_iter()
                        .map(|s| self.sparse(s, &label("sparse tensor")))
                        .collect::<Result<_>>()?,
                ),
                AttrKind::Types => AttrValue::Types(
                    a.type_protos
                        .into_iter()
                        .map(|tp| self.ty(Some(tp), &label("type")))
                        .collect::<Result<_>>()?,
                ),
            }
        };
        Ok(Attribute {
            name: a.name,
            value,
            doc_string: a.doc_string,
        })
    }

    fn sparse(&mut self, s: pb::SparseTensorProto, what: &str) -> Result<SparseTensor> {
        let (Some(values), Some(indices)) = (s.values, s.indices) else {
            return Err(self.malformed(what.to_string(), "sparse tensor without values or indices"));
        };
        let values = self.tensor(values, what)?;
        let indices = self.tensor(indices, &format!("indices of {what} '{}'", values.name))?;
        Ok(SparseTensor {
            values,
            indices,
            dims: s.dims,
        })
    }

    /// Convert a tensor, keeping its storage field. `what` names it when it has no name.
    fn tensor(&mut self, t: pb::TensorProto, what: &str) -> Result<Tensor> {
        let label = if t.name.is_empty() {
            what.to_string()
        } else {
            t.name.clone()
        };
        let bad = |reason: String| FrontendError::BadTensor {
            file: self.file.clone(),
            tensor: label.clone(),
            reason,
        };
        let dtype =
            DType::from_onnx_code(t.data_type).ok_or_else(|| FrontendError::UnknownDType {
                file: self.file.clone(),
                tensor: label.clone(),
                code: t.data_type,
            })?;
        if t.segment.is_some() {
            return Err(self.unsupported(format!("segment (tensor '{label}')")));
        }
        let external = match pb::tensor_proto::DataLocation::try_from(t.data_location) {
            Ok(pb::tensor_proto::DataLocation::Default) => false,
            Ok(pb::tensor_proto::DataLocation::External) => true,
            Err(_) => return Err(bad(format!("unknown data_location {}", t.data_location))),
        };
        if !external && !t.external_data.is_empty() {
            return Err(bad(
                "external_data entries without data_location EXTERNAL".into()
            ));
        }
        let filled = [
            !t.raw_data.is_empty() || external,
            !t.float_data.is_empty(),
            !t.int32_data.is_empty(),
            !t.int64_data.is_empty(),
            !t.double_data.is_empty(),
            !t.uint64_data.is_empty(),
            !t.string_data.is_empty(),
        ];
        if filled.iter().filter(|&&f| f).count() > 1 {
            return Err(bad("data in more than one storage field".into()));
        }
        let mut tensor = Tensor {
            name: t.name,
            dtype,
            dims: t.dims,
            data: TensorData::Raw(t.raw_data),
            doc_string: t.doc_string,
            metadata_props: pairs(t.metadata_props),
        };
        tensor.data = if external {
            let entries = pairs(t.external_data);
            let bytes = self
                .external
                .load(&label, &entries, dtype, tensor.num_elements())?;
            TensorData::External(ExternalData { entries, bytes })
        } else if !t.float_data.is_empty() {
            TensorData::Floats(t.float_data)
        } else if !t.int32_data.is_empty() {
            TensorData::Int32s(t.int32_data)
        } else if !t.int64_data.is_empty() {
            TensorData::Int64s(t.int64_data)
        } else if !t.double_data.is_empty() {
            TensorData::Doubles(t.double_data)
        } else if !t.uint64_data.is_empty() {
            TensorData::Uint64s(t.uint64_data)
        } else if !t.string_data.is_empty() || dtype == DType::Str {
            TensorData::Strings(t.string_data)
        } else {
            tensor.data
        };
        if let Err(e) = tensor.validate() {
            let reason = match e {
                spa_ir::IrError::BadTensor { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(bad(reason));
        }
        Ok(tensor)
    }

    fn ty(&self, tp: Option<pb::TypeProto>, value: &str) -> Result<Type> {
        use pb::type_proto::Value as V;
        let Some(tp) = tp else {
            return Ok(Type::Unknown);
        };
        let context = || format!("type of '{value}'");
        if !tp.denotation.is_empty() {
            return Err(self.unsupported(format!("type denotation (value '{value}')")));
        }
        Ok(match tp.value {
            None => Type::Unknown,
            Some(V::TensorType(t)) => {
                Type::Tensor(self.tensor_type(t.elem_type, t.shape, value)?)
            }
            Some(V::SparseTensorType(t)) => {
                Type::SparseTensor(self.tensor_type(t.elem_type, t.shape, value)?)
            }
            Some(V::SequenceType(s)) => {
                Type::Sequence(Box::new(self.ty(s.elem_type.map(|b| *b), value)?))
            }
            Some(V::OptionalType(o)) => {
                Type::Optional(Box::new(self.ty(o.elem_type.map(|b| *b), value)?))
            }
            Some(V::MapType(m)) => {
                let key = DType::from_onnx_code(m.key_type).ok_or_else(|| {
                    self.malformed(
                        context(),
                        format!("unknown map key type code {}", m.key_type),
                    )
                })?;
                Type::Map(key, Box::new(self.ty(m.value_type.map(|b| *b), value)?))
            }
            Some(V::OpaqueType(_)) => {
                return Err(self.unsupported(format!("opaque type (value '{value}')")))
            }
        })
    }

    fn tensor_type(
        &self,
        elem_type: i32,
        shape: Option<pb::TensorShapeProto>,
        value: &str,
    ) -> Result<TensorType> {
        use pb::tensor_shape_proto::dimension::Value as D;
        let dtype = match elem_type {
            0 => None,
            code => Some(DType::from_onnx_code(code).ok_or_else(|| {
                self.malformed(
                    format!("type of '{value}'"),
                    format!("unknown element type code {code}"),
                )
            })?),
        };
        let shape = match shape {
            None => None,
            Some(s) => Some(
                s.dim
                    .into_iter()
                    .map(|d| {
                        if !d.denotation.is_empty() {
                            return Err(
                                self.unsupported(format!("dimension denotation (value '{value}')"))
                            );
                        }
                        Ok(Axis::from(match d.value {
                            Some(D::DimValue(n)) => Dim::Known(n),
                            Some(D::DimParam(p)) => Dim::Sym(p),
                            None => Dim::Unknown,
                        }))
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        Ok(TensorType { dtype, shape })
    }
}

fn opsets(ops: Vec<pb::OperatorSetIdProto>) -> Vec<OpsetImport> {
    ops.into_iter()
        .map(|o| OpsetImport {
            domain: o.domain,
            version: o.version,
        })
        .collect()
}

/// The value a name refers to; a name not seen yet gets an `Undefined` value (a forward reference,
/// a capture, or a dangling name the verifier reports).
fn lookup(graph: &mut Graph, names: &mut HashMap<String, ValueId>, name: String) -> ValueId {
    if let Some(&id) = names.get(&name) {
        return id;
    }
    let id = graph.add_value(Value::new(name.clone(), Type::Unknown, ValueDef::Undefined));
    names.insert(name, id);
    id
}

/// The value a node output defines: the one already named (declared in value_info or referenced
/// before) if nothing defines it yet, else a new value (a redefinition the verifier reports).
fn define(graph: &mut Graph, names: &mut HashMap<String, ValueId>, name: String) -> ValueId {
    if let Some(&id) = names.get(&name) {
        if graph.value(id).def == ValueDef::Undefined {
            return id;
        }
    }
    let id = graph.add_value(Value::new(name.clone(), Type::Unknown, ValueDef::Undefined));
    names.insert(name, id);
    id
}

fn kind_of(t: pb::attribute_proto::AttributeType) -> AttrKind {
    use pb::attribute_proto::AttributeType as T;
    match t {
        T::Float | T::Undefined => AttrKind::Float,
        T::Int => AttrKind::Int,
        T::String => AttrKind::String,
        T::Tensor => AttrKind::Tensor,
        T::Graph => AttrKind::Graph,
        T::SparseTensor => AttrKind::SparseTensor,
        T::TypeProto => AttrKind::Type,
        T::Floats => AttrKind::Floats,
        T::Ints => AttrKind::Ints,
        T::Strings => AttrKind::Strings,
        T::Tensors => AttrKind::Tensors,
        T::Graphs => AttrKind::Graphs,
        T::SparseTensors => AttrKind::SparseTensors,
        T::TypeProtos => AttrKind::Types,
    }
}

/// Very old models leave `type` unset; the filled field says what the attribute is.
fn infer_kind(a: &pb::AttributeProto) -> Option<AttrKind> {
    Some(if a.t.is_some() {
        AttrKind::Tensor
    } else if a.g.is_some() {
        AttrKind::Graph
    } else if a.sparse_tensor.is_some() {
        AttrKind::SparseTensor
    } else if a.tp.is_some() {
        AttrKind::Type
    } else if !a.floats.is_empty() {
        AttrKind::Floats
    } else if !a.ints.is_empty() {
        AttrKind::Ints
    } else if !a.strings.is_empty() {
        AttrKind::Strings
    } else if !a.tensors.is_empty() {
        AttrKind::Tensors
    } else if !a.graphs.is_empty() {
        AttrKind::Graphs
    } else if !a.sparse_tensors.is_empty() {
        AttrKind::SparseTensors
    } else if !a.type_protos.is_empty() {
        AttrKind::Types
    } else if !a.s.is_empty() {
        AttrKind::String
    } else if a.i != 0 {
        AttrKind::Int
    } else if a.f.is_some() {
        AttrKind::Float
    } else {
        return None;
    })
}
