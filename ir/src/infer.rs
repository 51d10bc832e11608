//! Whole-model shape inference: walk the schedule, ask the op registry, and merge what it infers
//! with what the model declares. Small integer tensors computed from shapes are propagated, so
//! that exporters' Shape -> Gather -> Concat -> Reshape chains give static shapes (and can be folded
//! into constants by the `fold-shapes` pass).

use crate::error::IrError;
use crate::graph::{Graph, ValueDef, ValueId};
use crate::model::Model;
use crate::ops::{self, InferCtx, InferInput};
use crate::tensor::Tensor;
use crate::types::{Axis, Dim, TensorType, Type};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug, Default)]
pub struct InferOptions {
    /// Fail when a known op cannot infer its outputs (the verifier uses this).
    pub strict: bool,
}

#[derive(Clone, Debug, Default)]
pub struct InferStats {
    /// Values whose type was unknown and is now inferred.
    pub values_typed: usize,
    /// Values whose declared type was made more precise.
    pub values_refined: usize,
    /// Op types the registry does not know (their outputs keep their declared types).
    pub unknown_ops: BTreeSet<String>,
}

/// Inferred types and known contents of the main graph's values.
#[derive(Clone, Debug, Default)]
pub struct InferResult {
    types: Vec<Option<Type>>,
    values: HashMap<ValueId, Tensor>,
    pub stats: InferStats,
}

impl InferResult {
    pub fn ty(&self, v: ValueId) -> Option<&Type> {
        self.types.get(v.index()).and_then(|t| t.as_ref())
    }

    /// Contents inference derived for a non-constant value (a small integer tensor).
    pub fn known_value(&self, v: ValueId) -> Option<&Tensor> {
        self.values.get(&v)
    }
}

/// Merge a declared type with an inferred one; `None` if they contradict each other.
pub fn merge(declared: &Type, inferred: &Type) -> Option<Type> {
    match (declared, inferred) {
        (Type::Unknown, t) => Some(t.clone()),
        (d, Type::Unknown) => Some(d.clone()),
        (Type::Tensor(d), Type::Tensor(i)) => merge_tensor(d, i).map(Type::Tensor),
        (d, _) => Some(d.clone()),
    }
}

fn merge_tensor(d: &TensorType, i: &TensorType) -> Option<TensorType> {
    let dtype = match (d.dtype, i.dtype) {
        (Some(a), Some(b)) if a != b => return None,
        (a, b) => a.or(b),
    };
    let shape = match (&d.shape, &i.shape) {
        (None, s) => s.clone(),
        (s, None) => s.clone(),
        (Some(a), Some(b)) => {
            if a.len() != b.len() {
                return None;
            }
            let mut out = Vec::with_capacity(a.len());
            for (x, y) in a.iter().zip(b) {
                let dim = match (&x.dim, &y.dim) {
                    (Dim::Known(p), Dim::Known(q)) if p != q => return None,
                    (Dim::Known(_), _) => x.dim.clone(),
                    (_, Dim::Known(_)) => y.dim.clone(),
                    (Dim::Sym(_), _) => x.dim.clone(),
                    _ => y.dim.clone(),
                };
                out.push(Axis {
                    dim,
                    channels: x.channels.clone(),
                });
            }
            Some(out)
        }
    };
    Some(TensorType { dtype, shape })
}

/// The type a constant tensor has.
fn const_type(t: &Tensor) -> Type {
    Type::tensor(t.dtype, &t.dims)
}

struct Walk<'a> {
    opset: i64,
    strict: bool,
    stats: &'a mut InferStats,
}

impl Walk<'_> {
    /// Infer one graph. `outer` gives the types of names captured from enclosing scopes.
    fn graph(
        &mut self,
        graph: &Graph,
        outer: &HashMap<String, Type>,
    ) -> Result<(Vec<Option<Type>>, HashMap<ValueId, Tensor>), IrError> {
        let mut types: Vec<Option<Type>> = vec![None; graph.value_capacity()];
        let mut values: HashMap<ValueId, Tensor> = HashMap::new();
        for v in graph.value_ids() {
            let val = graph.value(v);
            let mut ty = val.ty.clone();
            if val.def == ValueDef::Capture {
                if let Some(t) = outer.get(&val.name) {
                    ty = merge(&ty, t).unwrap_or(ty);
                }
            }
            if let Some(t) = graph
                .constant(v)
                .filter(|_| val.def == ValueDef::Const || val.init.is_some())
            {
                ty = merge(&ty, &const_type(t)).ok_or_else(|| IrError::TypeMismatch {
                    value: val.name.clone(),
                    declared: val.ty.to_string(),
                    inferred: const_type(t).to_string(),
                })?;
            }
            types[v.index()] = Some(ty);
        }
        let order = graph.topo_order()?;
        for id in order {
            let node = graph.node(id);
            let inputs: Vec<InferInput<'_>> = node
                .inputs
                .iter()
                .map(|v| match v {
                    Some(v) => InferInput {
                        ty: types[v.index()].as_ref().and_then(|t| t.as_tensor()),
                        value: graph.constant(*v).or_else(|| values.get(v)),
                    },
                    None => InferInput::default(),
                })
                .collect();
            let mut subgraph_outputs = Vec::new();
            if node.subgraphs().next().is_some() {
                let mut scope = outer.clone();
                for v in graph.value_ids() {
                    if let Some(t) = &types[v.index()] {
                        scope.insert(graph.value(v).name.clone(), t.clone());
                    }
                }
                for sg in node.subgraphs() {
                    let (st, _) = self.graph(sg, &scope)?;
                    subgraph_outputs.push(
                        sg.outputs
                            .iter()
                            .map(|o| st.get(o.index()).cloned().flatten().unwrap_or_default())
                            .collect(),
                    );
                }
            }
            let cx = InferCtx {
                node,
                opset: self.opset,
                inputs,
                subgraph_outputs,
            };
            let result = match ops::infer(&cx) {
                None => {
                    self.stats.unknown_ops.insert(node.qualified_op());
                    continue;
                }
                Some(r) => r,
            };
            let outs = match result {
                Ok(o) => o,
                Err(reason) if self.strict => {
                    return Err(IrError::Shape {
                        node: node.label(),
                        op: node.qualified_op(),
                        reason,
                    })
                }
                Err(_) => continue,
            };
            for (k, inferred) in outs.into_iter().enumerate() {
                let Some(v) = node.output(k) else { continue };
                let cur = types[v.index()].clone().unwrap_or_default();
                let merged = merge(&cur, &inferred.ty).ok_or_else(|| IrError::TypeMismatch {
                    value: graph.value(v).name.clone(),
                    declared: cur.to_string(),
                    inferred: inferred.ty.to_string(),
                })?;
                if merged != cur {
                    if cur.is_unknown() {
                        self.stats.values_typed += 1;
                    } else {
                        self.stats.values_refined += 1;
                    }
                }
                types[v.index()] = Some(merged);
                if let Some(t) = inferred.value {
                    values.insert(v, t);
                }
            }
        }
        Ok((types, values))
    }
}

/// Infer types without changing the model.
pub fn infer_types_with(model: &Model, opts: &InferOptions) -> Result<InferResult, IrError> {
    let mut stats = InferStats::default();
    let mut walk = Walk {
        opset: model.opset("").unwrap_or(17),
        strict: opts.strict,
        stats: &mut stats,
    };
    let (types, values) = walk.graph(&model.graph, &HashMap::new())?;
    Ok(InferResult {
        types,
        values,
        stats,
    })
}

/// Infer types (lenient: an op that cannot infer leaves its outputs as they are).
pub fn infer_types(model: &Model) -> Result<InferResult, IrError> {
    infer_types_with(model, &InferOptions::default())
}

/// Infer and write the types into the model's values.
pub fn infer_model(model: &mut Model, opts: &InferOptions) -> Result<InferStats, IrError> {
    let result = infer_types_with(model, opts)?;
    let ids: Vec<ValueId> = model.graph.value_ids().collect();
    for v in ids {
        if let Some(t) = result.ty(v) {
            if !t.is_unknown() {
                model.graph.value_mut(v).ty = t.clone();
            }
        }
    }
    Ok(result.stats)
}
