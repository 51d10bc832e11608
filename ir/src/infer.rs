//! Whole-model shape inference. Walk each graph's schedule, give every node's op definition
//! ([`crate::ops`]) its inputs' types and known contents, and merge what it infers with what the
//! model declares:
//!
//! - an unknown type takes the inferred one;
//! - a declared type that agrees (same dtype, same rank, compatible dims) is refined: a known dim
//!   beats a symbolic or unknown one; channel expressions already on the declared axes stay;
//! - a declared type that contradicts inference is an [`IrError::TypeMismatch`] naming the value.
//!
//! Two different symbolic dims are taken as compatible (the declared one stays): exporters and
//! ONNX shape inference name the same extent differently (`batch`, `unk__0`, `s0`).
//!
//! Small tensors computed from shapes (`Shape -> Gather -> Concat`) are propagated, so that a
//! `Reshape` fed by such a chain gets a static shape; [`InferResult::known_value`] exposes them,
//! and [`InferResult::shape_data`] the shape vectors with symbolic entries (a dynamic batch).
//! Subgraph bodies (If/Loop/Scan) are inferred with captured names typed from the enclosing
//! scopes; a call to a model-local function is inferred by instantiating its body with the
//! call's input types and attributes. An op the registry does not know keeps its outputs' types.

use crate::attr::{AttrValue, Attribute};
use crate::error::IrError;
use crate::graph::{Graph, Node, NodeId, ValueDef, ValueId};
use crate::model::{Function, Model};
use crate::ops::{self, InferCtx, InferInput, Inferred, MAX_VALUE_ELEMENTS};
use crate::tensor::Tensor;
use crate::types::{Axis, Dim, TensorType, Type};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

/// The opset assumed when a model imports none for the default domain.
pub const DEFAULT_OPSET: i64 = 17;

/// Nesting limit for subgraphs and function calls (a hostile model cannot exhaust the stack).
const MAX_DEPTH: usize = 64;

/// Function bodies instantiated per inference (functions calling functions several times each
/// could otherwise take exponential time).
const MAX_CALLS: usize = 100_000;

#[derive(Clone, Debug, Default)]
pub struct InferOptions {
    /// Fail when a known op cannot infer its outputs, instead of leaving them as they are.
    pub strict: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferStats {
    /// Values whose type was unknown and is now (partly) known.
    pub values_typed: usize,
    /// Values whose declared type was made more precise.
    pub values_refined: usize,
    /// Ops the registry does not know (their outputs keep their declared types).
    pub unknown_ops: BTreeSet<String>,
    /// Known ops whose inference failed (outputs left as they were), as errors naming the node.
    pub failures: Vec<IrError>,
}

/// Inferred types and known contents of one graph's values, indexed by [`ValueId`], and those
/// of its subgraph bodies.
#[derive(Clone, Debug, Default)]
pub struct GraphTypes {
    types: Vec<Type>,
    values: Vec<Option<Tensor>>,
    shape_data: Vec<Option<Vec<Dim>>>,
    /// Keyed by (node, attribute index, graph index within the attribute).
    subgraphs: Vec<((NodeId, usize, usize), GraphTypes)>,
}

impl GraphTypes {
    /// The merged (declared and inferred) type of a value.
    pub fn ty(&self, v: ValueId) -> Option<&Type> {
        self.types.get(v.index())
    }

    /// Contents inference computed for a node output (small tensors only; constants themselves
    /// are in [`Graph::constant`]).
    pub fn known_value(&self, v: ValueId) -> Option<&Tensor> {
        self.values.get(v.index())?.as_ref()
    }

    /// Partly known shape data of a node output (a dims vector with symbolic entries, as
    /// `Shape` of a tensor with a symbolic batch gives).
    pub fn shape_data(&self, v: ValueId) -> Option<&[Dim]> {
        self.shape_data.get(v.index())?.as_deref()
    }

    /// Types of the body in attribute `attr` (its index in `Node::attrs`), graph `index`.
    pub fn subgraph(&self, node: NodeId, attr: usize, index: usize) -> Option<&GraphTypes> {
        self.subgraphs
            .iter()
            .find(|(k, _)| *k == (node, attr, index))
            .map(|(_, g)| g)
    }
}

/// A problem inference found.
#[derive(Clone, Debug, PartialEq)]
enum Problem {
    /// A declared type contradicts inference.
    Mismatch(IrError),
    /// A known op cannot infer its outputs.
    Failure(IrError),
}

/// The result of [`infer_types`]: types of the main graph (and its bodies), known contents,
/// statistics, and the problems found, in schedule order.
#[derive(Clone, Debug, Default)]
pub struct InferResult {
    graph: GraphTypes,
    pub stats: InferStats,
    problems: Vec<Problem>,
}

impl InferResult {
    pub fn ty(&self, v: ValueId) -> Option<&Type> {
        self.graph.ty(v)
    }

    pub fn known_value(&self, v: ValueId) -> Option<&Tensor> {
        self.graph.known_value(v)
    }

    pub fn shape_data(&self, v: ValueId) -> Option<&[Dim]> {
        self.graph.shape_data(v)
    }

    pub fn graph(&self) -> &GraphTypes {
        &self.graph
    }

    /// Every problem: type mismatches and inference failures of known ops, in schedule order.
    pub fn errors(&self) -> Vec<&IrError> {
        self.problems
            .iter()
            .map(|p| match p {
                Problem::Mismatch(e) | Problem::Failure(e) => e,
            })
            .collect()
    }

    /// The first problem that `opts` makes fatal: a mismatch, or (strict) a failure.
    fn first_fatal(&self, opts: &InferOptions) -> Option<&IrError> {
        self.problems.iter().find_map(|p| match p {
            Problem::Mismatch(e) => Some(e),
            Problem::Failure(e) if opts.strict => Some(e),
            Problem::Failure(_) => None,
        })
    }
}

/// Infer types without changing the model. Only a structural problem (a cycle) is an error;
/// mismatches and failures are in [`InferResult::errors`].
pub fn infer_types(model: &Model) -> Result<InferResult, IrError> {
    let mut w = Walker::new(model);
    let graph = w.walk(&model.graph, w.default_opset, None, &[], None)?;
    let mut stats = InferStats {
        unknown_ops: std::mem::take(&mut w.unknown_ops),
        ..InferStats::default()
    };
    count_changes(&model.graph, &graph, &mut stats);
    stats.failures = w
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Failure(e) => Some(e.clone()),
            Problem::Mismatch(_) => None,
        })
        .collect();
    Ok(InferResult {
        graph,
        stats,
        problems: w.problems,
    })
}

/// Infer types without changing the model; a mismatch (or, with `strict`, a failure) is an error.
pub fn infer_types_with(model: &Model, opts: &InferOptions) -> Result<InferResult, IrError> {
    let result = infer_types(model)?;
    match result.first_fatal(opts) {
        Some(e) => Err(e.clone()),
        None => Ok(result),
    }
}

/// Infer and write the merged types into the model (main graph and subgraph bodies; function
/// bodies depend on their call sites and are left as declared).
pub fn infer_model(model: &mut Model, opts: &InferOptions) -> Result<InferStats, IrError> {
    let result = infer_types_with(model, opts)?;
    apply(&mut model.graph, &result.graph);
    Ok(result.stats)
}

/// Problems inference finds in a function body on its own (formal inputs as declared, attribute
/// references resolved from the function's defaults). Used by the verifier.
pub fn function_errors(model: &Model, f: &Function) -> Result<Vec<IrError>, IrError> {
    let mut w = Walker::new(model);
    // Calls inside the body are checked where the main graph instantiates them.
    w.calls_left = 0;
    let env = AttrEnv {
        call: &[],
        defaults: &f.attribute_defaults,
    };
    w.walk(&f.body, function_opset(model, f), None, &[], Some(&env))?;
    Ok(w.problems
        .into_iter()
        .map(|p| match p {
            Problem::Mismatch(e) | Problem::Failure(e) => e,
        })
        .collect())
}

/// Merge a declared type with an inferred one; `None` if they contradict each other.
pub fn merge(declared: &Type, inferred: &Type) -> Option<Type> {
    match (declared, inferred) {
        (_, Type::Unknown) => Some(declared.clone()),
        (Type::Unknown, t) => Some(t.clone()),
        (Type::Tensor(d), Type::Tensor(i)) => merge_tensor(d, i).map(Type::Tensor),
        (Type::SparseTensor(d), Type::SparseTensor(i)) => {
            merge_tensor(d, i).map(Type::SparseTensor)
        }
        (Type::Sequence(d), Type::Sequence(i)) => merge(d, i).map(|t| Type::Sequence(Box::new(t))),
        (Type::Optional(d), Type::Optional(i)) => merge(d, i).map(|t| Type::Optional(Box::new(t))),
        (d, i) if d == i => Some(d.clone()),
        _ => None,
    }
}

fn merge_tensor(d: &TensorType, i: &TensorType) -> Option<TensorType> {
    let dtype = match (d.dtype, i.dtype) {
        (Some(a), Some(b)) if a != b => return None,
        (a, b) => a.or(b),
    };
    let shape = match (&d.shape, &i.shape) {
        (None, None) => None,
        (None, Some(s)) => Some(
            s.iter()
                .map(|a| Axis::from(a.dim.clone()))
                .collect::<Vec<_>>(),
        ),
        (Some(s), None) => Some(s.clone()),
        (Some(a), Some(b)) => {
            if a.len() != b.len() {
                return None;
            }
            let mut out = Vec::with_capacity(a.len());
            for (x, y) in a.iter().zip(b) {
                out.push(Axis {
                    dim: merge_dim(&x.dim, &y.dim)?,
                    channels: x.channels.clone(),
                });
            }
            Some(out)
        }
    };
    Some(TensorType { dtype, shape })
}

fn merge_dim(declared: &Dim, inferred: &Dim) -> Option<Dim> {
    Some(match (declared, inferred) {
        (Dim::Known(a), Dim::Known(b)) if a != b => return None,
        (Dim::Known(_), _) => declared.clone(),
        (_, Dim::Known(_)) => inferred.clone(),
        (Dim::Sym(_), _) => declared.clone(),
        (Dim::Unknown, _) => inferred.clone(),
    })
}

/// The type a constant tensor has.
fn tensor_type(t: &Tensor) -> Type {
    Type::tensor(t.dtype, &t.dims)
}

fn function_opset(model: &Model, f: &Function) -> i64 {
    f.opset_imports
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .or_else(|| model.opset(""))
        .unwrap_or(DEFAULT_OPSET)
}

/// What a formal input of a body starts with.
#[derive(Clone, Debug, Default)]
struct Seed {
    ty: Option<Type>,
    value: Option<Tensor>,
}

/// Attribute values a function body's `Ref` attributes resolve to.
struct AttrEnv<'e> {
    call: &'e [Attribute],
    defaults: &'e [Attribute],
}

impl AttrEnv<'_> {
    fn get(&self, name: &str) -> Option<&AttrValue> {
        self.call
            .iter()
            .chain(self.defaults)
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }
}

/// The node with `Ref` attributes replaced by their values; `None` if one cannot be resolved
/// (an absent optional attribute is dropped).
fn resolve_refs<'n>(node: &'n Node, env: Option<&AttrEnv<'_>>) -> Option<Cow<'n, Node>> {
    if !node
        .attrs
        .iter()
        .any(|a| matches!(a.value, AttrValue::Ref { .. }))
    {
        return Some(Cow::Borrowed(node));
    }
    let env = env?;
    let mut n = node.clone();
    let mut attrs = Vec::with_capacity(n.attrs.len());
    for mut a in std::mem::take(&mut n.attrs) {
        if let AttrValue::Ref { kind, name } = &a.value {
            match env.get(name) {
                Some(v) if v.kind() == *kind => a.value = v.clone(),
                Some(_) => return None,
                None => continue,
            }
        }
        attrs.push(a);
    }
    n.attrs = attrs;
    Some(Cow::Owned(n))
}

/// What a graph sees of the graphs enclosing it.
struct Scope<'s> {
    parent: Option<&'s Scope<'s>>,
    graph: &'s Graph,
    names: &'s HashMap<&'s str, ValueId>,
    types: &'s [Type],
    values: &'s [Option<Tensor>],
}

impl<'s> Scope<'s> {
    fn lookup(&self, name: &str) -> Option<(&'s Type, Option<&'s Tensor>)> {
        match self.names.get(name) {
            Some(&v) if self.graph.try_value(v)?.def != ValueDef::Capture => {
                let ty = self.types.get(v.index())?;
                let value = self
                    .graph
                    .constant(v)
                    .or_else(|| self.values.get(v.index())?.as_ref());
                Some((ty, value))
            }
            _ => self.parent?.lookup(name),
        }
    }
}

struct Walker<'m> {
    model: &'m Model,
    default_opset: i64,
    problems: Vec<Problem>,
    unknown_ops: BTreeSet<String>,
    depth: usize,
    /// Inside a function instantiation: problems belong to the call, not to the model.
    quiet: bool,
    /// Functions being instantiated (ONNX forbids recursion; a cycle is not followed).
    calls: Vec<*const Function>,
    calls_left: usize,
}

impl<'m> Walker<'m> {
    fn new(model: &'m Model) -> Walker<'m> {
        Walker {
            model,
            default_opset: model.opset("").unwrap_or(DEFAULT_OPSET),
            problems: Vec::new(),
            unknown_ops: BTreeSet::new(),
            depth: 0,
            quiet: false,
            calls: Vec::new(),
            calls_left: MAX_CALLS,
        }
    }

    fn problem(&mut self, p: Problem) {
        if !self.quiet {
            self.problems.push(p);
        }
    }

    /// Infer one graph. `seeds` type its formal inputs (by position); `parent` resolves captures.
    fn walk(
        &mut self,
        graph: &Graph,
        opset: i64,
        parent: Option<&Scope<'_>>,
        seeds: &[Seed],
        env: Option<&AttrEnv<'_>>,
    ) -> Result<GraphTypes, IrError> {
        let cap = graph.value_capacity();
        let mut types: Vec<Type> = vec![Type::Unknown; cap];
        let mut values: Vec<Option<Tensor>> = vec![None; cap];
        let mut shapes: Vec<Option<Vec<Dim>>> = vec![None; cap];
        for v in graph.value_ids() {
            types[v.index()] = graph.value(v).ty.clone();
        }
        for (&v, seed) in graph.inputs.iter().zip(seeds) {
            let Some(slot) = types.get_mut(v.index()) else {
                continue;
            };
            // A body input declared differently from what the op passes keeps its declaration.
            if let Some(m) = seed.ty.as_ref().and_then(|t| merge(slot, t)) {
                *slot = m;
            }
            if let Some(t) = &seed.value {
                values[v.index()] = Some(t.clone());
            }
        }
        for v in graph.value_ids() {
            let val = graph.value(v);
            match val.def {
                ValueDef::Capture => {
                    if let Some((t, _)) = parent.and_then(|p| p.lookup(&val.name)) {
                        if let Some(m) = merge(&types[v.index()], t) {
                            types[v.index()] = m;
                        }
                    }
                }
                ValueDef::Const => {
                    let t = match (&val.init, &val.sparse_init) {
                        (Some(t), _) => tensor_type(t),
                        (None, Some(s)) => Type::tensor(s.values.dtype, &s.dims),
                        (None, None) => continue,
                    };
                    match merge(&types[v.index()], &t) {
                        Some(m) => types[v.index()] = m,
                        None => self.problem(Problem::Mismatch(IrError::TypeMismatch {
                            value: val.name.clone(),
                            declared: val.ty.to_string(),
                            inferred: t.to_string(),
                        })),
                    }
                }
                _ => {}
            }
        }
        let mut names: Option<HashMap<&str, ValueId>> = None;
        let mut subgraphs = Vec::new();
        for id in graph.topo_order()? {
            let node = graph.node(id);
            let Some(node) = resolve_refs(node, env) else {
                continue;
            };
            let node: &Node = &node;
            let inputs: Vec<InferInput<'_>> = node
                .inputs
                .iter()
                .map(|v| match v {
                    Some(v) => InferInput {
                        ty: types.get(v.index()),
                        value: input_value(graph, &values, parent, *v),
                        shape_data: shapes.get(v.index()).and_then(|d| d.as_deref()),
                    },
                    None => InferInput::default(),
                })
                .collect();
            let mut bodies: Vec<(&str, Vec<Type>)> = Vec::new();
            if node.subgraphs().next().is_some() && self.depth < MAX_DEPTH {
                let names = names.get_or_insert_with(|| graph.names());
                let scope = Scope {
                    parent,
                    graph,
                    names,
                    types: &types,
                    values: &values,
                };
                let untaken = ops::control::untaken_branch(node, &inputs);
                for (ai, attr) in node.attrs.iter().enumerate() {
                    if Some(attr.name.as_str()) == untaken {
                        // Shape-dependent code: the other branch may not fit these shapes.
                        continue;
                    }
                    let gs: &[Graph] = match &attr.value {
                        AttrValue::Graph(g) => std::slice::from_ref(g.as_ref()),
                        AttrValue::Graphs(gs) => gs,
                        _ => continue,
                    };
                    let seeds: Vec<Seed> =
                        ops::control::body_inputs(node, &attr.name, opset, &inputs)
                            .into_iter()
                            .map(|ty| Seed { ty, value: None })
                            .collect();
                    for (gi, g) in gs.iter().enumerate() {
                        self.depth += 1;
                        let gt = self.walk(g, opset, Some(&scope), &seeds, env);
                        self.depth -= 1;
                        let gt = gt?;
                        if gi == 0 {
                            let outs = g
                                .outputs
                                .iter()
                                .map(|o| gt.types.get(o.index()).cloned().unwrap_or_default())
                                .collect();
                            bodies.push((attr.name.as_str(), outs));
                        }
                        subgraphs.push(((id, ai, gi), gt));
                    }
                }
            }
            let outs: Option<Result<Vec<Inferred>, String>> = match ops::lookup_node(node) {
                Some(op) => {
                    let cx = InferCtx {
                        node,
                        opset,
                        inputs,
                        subgraphs: bodies,
                    };
                    Some(op.infer(&cx))
                }
                None => match self
                    .model
                    .find_function(&node.domain, &node.op_type, &node.overload)
                {
                    Some(f) => self.call(f, node, &inputs).map(Ok),
                    None => {
                        self.unknown_ops.insert(node.qualified_op());
                        None
                    }
                },
            };
            match outs {
                None => {}
                Some(Err(reason)) => self.problem(Problem::Failure(IrError::Shape {
                    node: node.label(),
                    op: node.qualified_op(),
                    reason,
                })),
                Some(Ok(outs)) => {
                    for (k, inferred) in outs.into_iter().enumerate() {
                        let Some(v) = node.output(k) else { continue };
                        let (Some(cur), Some(val)) = (types.get(v.index()), graph.try_value(v))
                        else {
                            continue;
                        };
                        match merge(cur, &inferred.ty) {
                            Some(m) => {
                                types[v.index()] = m;
                                let small = |t: &Tensor| {
                                    t.num_elements()
                                        .is_some_and(|n| n <= MAX_VALUE_ELEMENTS as u64)
                                };
                                values[v.index()] = inferred.value.filter(small);
                                shapes[v.index()] = inferred.shape_data;
                            }
                            None => {
                                let e = IrError::TypeMismatch {
                                    value: val.name.clone(),
                                    declared: val.ty.to_string(),
                                    inferred: inferred.ty.to_string(),
                                };
                                self.problem(Problem::Mismatch(e));
                            }
                        }
                    }
                }
            }
        }
        Ok(GraphTypes {
            types,
            values,
            shape_data: shapes,
            subgraphs,
        })
    }

    /// Instantiate a model-local function's body for a call; `None` when it cannot be.
    fn call(
        &mut self,
        f: &Function,
        node: &Node,
        inputs: &[InferInput<'_>],
    ) -> Option<Vec<Inferred>> {
        let key: *const Function = f;
        if self.depth >= MAX_DEPTH || self.calls_left == 0 || self.calls.contains(&key) {
            return None;
        }
        self.calls_left -= 1;
        let seeds: Vec<Seed> = inputs
            .iter()
            .map(|x| Seed {
                ty: x.ty.cloned(),
                value: x
                    .value
                    .filter(|t| {
                        t.num_elements()
                            .is_some_and(|n| n <= MAX_VALUE_ELEMENTS as u64)
                    })
                    .cloned(),
            })
            .collect();
        let env = AttrEnv {
            call: &node.attrs,
            defaults: &f.attribute_defaults,
        };
        let quiet = std::mem::replace(&mut self.quiet, true);
        self.depth += 1;
        self.calls.push(key);
        let body = self.walk(
            &f.body,
            function_opset(self.model, f),
            None,
            &seeds,
            Some(&env),
        );
        self.calls.pop();
        self.depth -= 1;
        self.quiet = quiet;
        let body = body.ok()?;
        Some(
            f.body
                .outputs
                .iter()
                .map(|o| Inferred {
                    ty: body.types.get(o.index()).cloned().unwrap_or_default(),
                    value: body.values.get(o.index()).cloned().flatten(),
                    shape_data: body.shape_data.get(o.index()).cloned().flatten(),
                })
                .collect(),
        )
    }
}

/// Known contents of a value: a constant, a computed value, or a captured outer one.
fn input_value<'x>(
    graph: &'x Graph,
    values: &'x [Option<Tensor>],
    parent: Option<&Scope<'x>>,
    v: ValueId,
) -> Option<&'x Tensor> {
    if let Some(t) = graph.constant(v) {
        return Some(t);
    }
    if let Some(Some(t)) = values.get(v.index()) {
        return Some(t);
    }
    let val = graph.try_value(v)?;
    if val.def == ValueDef::Capture {
        return parent?.lookup(&val.name)?.1;
    }
    None
}

/// Count typed and refined values of a graph and its bodies.
fn count_changes(graph: &Graph, gt: &GraphTypes, stats: &mut InferStats) {
    for v in graph.value_ids() {
        let val = graph.value(v);
        if val.def == ValueDef::Capture {
            continue;
        }
        if let Some(t) = gt.ty(v) {
            if *t != val.ty {
                if val.ty.is_unknown() {
                    stats.values_typed += 1;
                } else {
                    stats.values_refined += 1;
                }
            }
        }
    }
    for ((node, ai, gi), sub) in &gt.subgraphs {
        if let Some(g) = body(graph, *node, *ai, *gi) {
            count_changes(g, sub, stats);
        }
    }
}

fn body(graph: &Graph, node: NodeId, attr: usize, index: usize) -> Option<&Graph> {
    match &graph.try_node(node)?.attrs.get(attr)?.value {
        AttrValue::Graph(g) if index == 0 => Some(g),
        AttrValue::Graphs(gs) => gs.get(index),
        _ => None,
    }
}

/// Write merged types into a graph and its bodies (captures keep theirs: they are references).
fn apply(graph: &mut Graph, gt: &GraphTypes) {
    let ids: Vec<ValueId> = graph.value_ids().collect();
    for v in ids {
        let val = graph.value_mut(v);
        if val.def == ValueDef::Capture {
            continue;
        }
        if let Some(t) = gt.ty(v) {
            if *t != val.ty {
                val.ty = t.clone();
            }
        }
    }
    for ((node, ai, gi), sub) in &gt.subgraphs {
        if graph.try_node(*node).is_none() {
            continue;
        }
        let Some(attr) = graph.node_mut(*node).attrs.get_mut(*ai) else {
            continue;
        };
        match &mut attr.value {
            AttrValue::Graph(g) if *gi == 0 => apply(g, sub),
            AttrValue::Graphs(gs) => {
                if let Some(g) = gs.get_mut(*gi) {
                    apply(g, sub);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_refines_and_keeps_channels() {
        use crate::types::{ChannelExpr, SpaceId};
        let declared = Type::Tensor(TensorType {
            dtype: None,
            shape: Some(vec![
                Dim::Sym("batch".into()).into(),
                Axis {
                    dim: Dim::Unknown,
                    channels: Some(ChannelExpr::Space(SpaceId(0))),
                },
            ]),
        });
        let inferred = Type::tensor(crate::DType::F32, &[1, 8]);
        let m = merge(&declared, &inferred).unwrap();
        assert_eq!(m.to_string(), "f32[1,8@g0]");
        assert!(merge(&inferred, &Type::tensor(crate::DType::F32, &[1, 9])).is_none());
        assert!(merge(&inferred, &Type::tensor(crate::DType::F16, &[1, 8])).is_none());
        let s = |a: &str| {
            Type::Tensor(TensorType {
                dtype: None,
                shape: Some(vec![Dim::Sym(a.into()).into()]),
            })
        };
        assert_eq!(merge(&s("batch"), &s("unk__0")), Some(s("batch")));
    }
}
