//! The reference interpreter: evaluates a model (or one node) on CPU with ndarray kernels, using
//! rayon inside the heavy ones (Conv, ConvTranspose, MatMul/Gemm, large elementwise ops).
//! It exists for calibration statistics (activations, layer-input Hessians), for constant
//! folding, and for tests; it is checked against independent executors (tract in `cargo test`,
//! onnxruntime in `scripts/interp_zoo.py`), never only against itself.
//!
//! # API
//!
//! - [`Value`]: a runtime tensor, an ONNX dtype over f32, i64 or bool storage ([`Data`]).
//!   Float types (f16, bf16, f64) compute in f32, integer types in i64 (wrapped to their width by
//!   `Cast`); the dtype is kept, so [`Value::to_tensor`] writes the declared type back.
//!   [`Value::from_tensor`] reads a [`Tensor`] (one pass over its bytes).
//! - [`eval_node`]`(model, graph, node, inputs)`: evaluate one node on given inputs (one entry
//!   per input position, `None` for an omitted optional input); returns one [`Value`] per output
//!   position. For constant folding. `If` needs the values its branches capture and fails here.
//! - [`Interpreter::new`]`(model)` prepares a run plan (schedule, last uses, constants read
//!   once, in parallel); [`Interpreter::run`]`(inputs, observer)` runs the main graph on inputs
//!   given by graph input name and returns the graph outputs by name, in graph output order.
//!   It can run many batches with the same plan. [`run`] does both in one call.
//! - [`Observer`]: called after every node of the main graph with the node id, its input values
//!   and its output values (borrowed: keep only what you need). Intermediate values are dropped
//!   after their last use, so a run holds only the live activations.
//! - Errors are [`InterpError`]s naming the node and op (unsupported op, bad shapes, missing
//!   inputs) or the graph input concerned.
//!
//! Graph inputs are checked against their declared types: dtype, rank, and every known dim
//! except the first (the batch may differ from the exported one).
//!
//! Kernels live in one file per op family, mirroring `ops/`; [`kernel`] maps an op type to its
//! function. A kernel gets a [`Ctx`] (node, opset, attributes) and its inputs, and returns its
//! outputs or a reason string that the caller wraps with the node's name and op.

mod control;
mod conv;
mod elementwise;
pub mod fold;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod resize;
mod shape;
mod slicing;
pub mod value;

pub use fold::{eval_constant_node, foldable, is_random_op};
/// The ndarray version the interpreter's arrays come from.
pub use ndarray;
pub use value::{Data, Value};

use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::{Graph, Node, NodeId, ValueDef, ValueId};
use crate::model::{Function, Model};
use crate::types::{Dim, Type};
use rayon::prelude::*;
use std::collections::HashMap;
use thiserror::Error;

/// Elementwise work below this many elements runs on one thread.
pub(crate) const PAR_MIN: usize = 1 << 15;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum InterpError {
    #[error("node '{node}' ({op}): op not supported by the interpreter")]
    Unsupported { node: String, op: String },
    #[error("node '{node}' ({op}): {reason}")]
    Kernel {
        node: String,
        op: String,
        reason: String,
    },
    #[error("node '{node}' ({op}): input {index} '{value}' has no value")]
    MissingValue {
        node: String,
        op: String,
        index: usize,
        value: String,
    },
    #[error("graph input '{name}' was not given")]
    MissingInput { name: String },
    #[error("no graph input named '{name}' (inputs: {expected})")]
    UnknownInput { name: String, expected: String },
    #[error("graph input '{name}': expected {expected}, got {found}")]
    BadInput {
        name: String,
        expected: String,
        found: String,
    },
    #[error("constant '{name}': {reason}")]
    BadConstant { name: String, reason: String },
    #[error("graph output '{name}' has no value")]
    MissingOutput { name: String },
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Sees every node of the main graph after it ran.
pub trait Observer {
    /// `inputs` has one entry per input position (`None`: omitted); `outputs` one per output
    /// position the kernel produced.
    fn observe(
        &mut self,
        graph: &Graph,
        node: NodeId,
        inputs: &[Option<&Value>],
        outputs: &[Value],
    );

    /// Called after the node ran and before [`Observer::observe`]: may replace the outputs the
    /// rest of the graph sees (same count, same shapes). Calibration uses it to renormalize
    /// BatchNorm outputs of synthetic data. Does nothing by default.
    fn adjust(
        &mut self,
        _graph: &Graph,
        _node: NodeId,
        _inputs: &[Option<&Value>],
        _outputs: &mut [Value],
    ) {
    }
}

/// An observer that does nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn observe(&mut self, _: &Graph, _: NodeId, _: &[Option<&Value>], _: &[Value]) {}
}

impl<F: FnMut(&Graph, NodeId, &[Option<&Value>], &[Value])> Observer for F {
    fn observe(
        &mut self,
        graph: &Graph,
        node: NodeId,
        inputs: &[Option<&Value>],
        outputs: &[Value],
    ) {
        self(graph, node, inputs, outputs)
    }
}

/// Values of an enclosing scope, by name (what a subgraph captures).
pub(crate) type Scope<'s> = &'s dyn Fn(&str) -> Option<&'s Value>;

/// What a kernel sees.
pub struct Ctx<'a> {
    pub node: &'a Node,
    /// The opset version of the node's domain.
    pub opset: i64,
    pub model: &'a Model,
    /// Values of the enclosing scopes (for subgraphs).
    pub(crate) scope: Scope<'a>,
    /// When evaluating a function body: the calling node and the function (attribute references).
    pub(crate) caller: Option<(&'a Node, &'a Function)>,
}

impl<'a> Ctx<'a> {
    /// An attribute, with function-body references resolved against the caller.
    pub fn attr(&self, name: &str) -> Option<&'a AttrValue> {
        match self.node.attr(name)? {
            AttrValue::Ref { name: r, .. } => {
                let (call, f) = self.caller?;
                call.attr(r).or_else(|| {
                    f.attribute_defaults
                        .iter()
                        .find(|a| &a.name == r)
                        .map(|a| &a.value)
                })
            }
            v => Some(v),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attr(name) {
            Some(AttrValue::Int(v)) => *v,
            _ => default,
        }
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attr(name) {
            Some(AttrValue::Float(v)) => *v,
            _ => default,
        }
    }

    pub fn ints(&self, name: &str) -> Option<&'a [i64]> {
        match self.attr(name)? {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }

    pub fn floats(&self, name: &str) -> Option<&'a [f32]> {
        match self.attr(name)? {
            AttrValue::Floats(v) => Some(v),
            _ => None,
        }
    }

    pub fn string(&self, name: &str, default: &'a str) -> &'a str {
        match self.attr(name) {
            Some(AttrValue::String(v)) => std::str::from_utf8(v).unwrap_or(default),
            _ => default,
        }
    }

    fn error(&self, reason: String) -> InterpError {
        InterpError::Kernel {
            node: self.node.label(),
            op: self.node.qualified_op(),
            reason,
        }
    }
}

/// Required input `i`.
pub(crate) fn arg<'v>(inputs: &[Option<&'v Value>], i: usize) -> Result<&'v Value, String> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("input {i} is required"))
}

/// Optional input `i` (absent or an empty tensor count as not given only for `None`).
pub(crate) fn opt<'v>(inputs: &[Option<&'v Value>], i: usize) -> Option<&'v Value> {
    inputs.get(i).copied().flatten()
}

/// Input `i` as f32 storage.
pub(crate) fn f32_arg<'v>(
    inputs: &[Option<&'v Value>],
    i: usize,
) -> Result<&'v ndarray::ArrayD<f32>, String> {
    let v = arg(inputs, i)?;
    v.as_f32()
        .ok_or_else(|| format!("input {i}: expected a float tensor, got {}", v.dtype()))
}

/// Normalize a possibly negative axis against a rank.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if n < 0 || n >= r.max(1) {
        return Err(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(n as usize)
}

type KernelFn = fn(&Ctx<'_>, &[Option<&Value>]) -> Result<Vec<Value>, String>;

/// The kernel of an op of the default domain.
pub fn kernel(op_type: &str) -> Option<KernelFn> {
    elementwise::kernel(op_type)
        .or_else(|| conv::kernel(op_type))
        .or_else(|| matmul::kernel(op_type))
        .or_else(|| norm::kernel(op_type))
        .or_else(|| pool::kernel(op_type))
        .or_else(|| reduce::kernel(op_type))
        .or_else(|| shape::kernel(op_type))
        .or_else(|| slicing::kernel(op_type))
        .or_else(|| resize::kernel(op_type))
        .or_else(|| control::kernel(op_type))
}

/// Does the interpreter evaluate this op (a default-domain kernel or a model-local function)?
pub fn supports(model: &Model, node: &Node) -> bool {
    let domain = node.canonical_domain();
    (domain.is_empty() && kernel(&node.op_type).is_some())
        || model
            .find_function(&node.domain, &node.op_type, &node.overload)
            .is_some()
}

fn no_scope<'v>(_: &str) -> Option<&'v Value> {
    None
}

/// Evaluate one node of `graph` (the main graph or a subgraph of `model`) on given inputs.
pub fn eval_node(
    model: &Model,
    graph: &Graph,
    node: NodeId,
    inputs: &[Option<&Value>],
) -> Result<Vec<Value>, InterpError> {
    let node = graph.try_node(node).ok_or_else(|| InterpError::Kernel {
        node: format!("#{}", node.0),
        op: "?".into(),
        reason: "no such node".into(),
    })?;
    eval(model, node, inputs, &no_scope, None)
}

pub(crate) fn eval<'a>(
    model: &'a Model,
    node: &'a Node,
    inputs: &[Option<&Value>],
    scope: Scope<'a>,
    caller: Option<(&'a Node, &'a Function)>,
) -> Result<Vec<Value>, InterpError> {
    let opset = match caller {
        Some((_, f)) => f
            .opset_imports
            .iter()
            .find(|o| o.domain == node.domain || (o.domain == "ai.onnx" && node.domain.is_empty()))
            .map(|o| o.version)
            .or_else(|| model.opset(&node.domain)),
        None => model.opset(&node.domain),
    }
    .unwrap_or(if node.canonical_domain().is_empty() {
        17
    } else {
        1
    });
    let cx = Ctx {
        node,
        opset,
        model,
        scope,
        caller,
    };
    if let Some(f) = model.find_function(&node.domain, &node.op_type, &node.overload) {
        return control::call_function(&cx, f, inputs);
    }
    let k = (if node.canonical_domain().is_empty() {
        kernel(&node.op_type)
    } else {
        None
    })
    .ok_or_else(|| InterpError::Unsupported {
        node: node.label(),
        op: node.qualified_op(),
    })?;
    let outs = k(&cx, inputs).map_err(|r| cx.error(r))?;
    let wanted = node
        .outputs
        .iter()
        .rposition(|o| o.is_some())
        .map_or(0, |p| p + 1);
    if outs.len() < wanted {
        return Err(cx.error(format!(
            "produced {} outputs, the node uses {wanted}",
            outs.len()
        )));
    }
    Ok(outs)
}

/// A value slot during a run: borrowed (constants, caller inputs) or computed.
pub(crate) enum Slot<'a> {
    Empty,
    Borrowed(&'a Value),
    Owned(Value),
}

impl Slot<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            Slot::Empty => None,
            Slot::Borrowed(v) => Some(v),
            Slot::Owned(v) => Some(v),
        }
    }
}

/// A prepared run of a model's main graph.
pub struct Interpreter<'m> {
    model: &'m Model,
    plan: GraphPlan,
}

/// Schedule, last uses and constants of one graph.
pub(crate) struct GraphPlan {
    order: Vec<NodeId>,
    /// For each scheduled node, the values whose last use it is.
    frees: Vec<Vec<ValueId>>,
    consts: Vec<(ValueId, Value)>,
}

impl GraphPlan {
    pub(crate) fn new(graph: &Graph) -> Result<GraphPlan, InterpError> {
        let order = graph.topo_order()?;
        let consts: Vec<ValueId> = graph
            .value_ids()
            .filter(|&v| graph.value(v).init.is_some())
            .collect();
        let consts = consts
            .par_iter()
            .map(|&v| {
                let val = graph.value(v);
                let t = val.init.as_ref().ok_or_else(|| InterpError::BadConstant {
                    name: val.name.clone(),
                    reason: "no initializer".into(),
                })?;
                Value::from_tensor(t)
                    .map(|x| (v, x))
                    .map_err(|reason| InterpError::BadConstant {
                        name: val.name.clone(),
                        reason,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names = graph.names();
        let mut last: HashMap<ValueId, usize> = HashMap::new();
        for (step, &id) in order.iter().enumerate() {
            let node = graph.node(id);
            for v in node.inputs.iter().flatten() {
                last.insert(*v, step);
            }
            for name in node.captured_names() {
                if let Some(&v) = names.get(name.as_str()) {
                    last.insert(v, step);
                }
            }
        }
        for v in &graph.outputs {
            last.remove(v);
        }
        let mut frees = vec![Vec::new(); order.len()];
        for (v, step) in last {
            if graph.value(v).init.is_none() {
                frees[step].push(v);
            }
        }
        Ok(GraphPlan {
            order,
            frees,
            consts,
        })
    }

    /// Run a graph with its inputs already bound (`bound`: by value id).
    pub(crate) fn run<'a>(
        &'a self,
        model: &'a Model,
        graph: &'a Graph,
        bound: Vec<(ValueId, Slot<'a>)>,
        scope: Scope<'_>,
        caller: Option<(&'a Node, &'a Function)>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<Value>, InterpError> {
        let mut slots: Vec<Slot<'a>> = (0..graph.value_capacity()).map(|_| Slot::Empty).collect();
        for (v, c) in &self.consts {
            slots[v.index()] = Slot::Borrowed(c);
        }
        for (v, s) in bound {
            if let Some(slot) = slots.get_mut(v.index()) {
                *slot = s;
            }
        }
        for (step, &id) in self.order.iter().enumerate() {
            let node = graph.node(id);
            let outs = {
                let mut ins: Vec<Option<&Value>> = Vec::with_capacity(node.inputs.len());
                for (i, v) in node.inputs.iter().enumerate() {
                    let Some(v) = v else {
                        ins.push(None);
                        continue;
                    };
                    let val = graph.value(*v);
                    let got = match slots.get(v.index()).and_then(|s| s.get()) {
                        Some(x) => Some(x),
                        None if val.def == ValueDef::Capture => scope(&val.name),
                        None => None,
                    };
                    match got {
                        Some(x) => ins.push(Some(x)),
                        None => {
                            return Err(InterpError::MissingValue {
                                node: node.label(),
                                op: node.qualified_op(),
                                index: i,
                                value: val.name.clone(),
                            })
                        }
                    }
                }
                let lookup = |name: &str| -> Option<&Value> {
                    graph
                        .value_ids()
                        .find(|&v| graph.value(v).name == name)
                        .and_then(|v| slots.get(v.index()).and_then(|s| s.get()))
                        .or_else(|| scope(name))
                };
                let mut outs = eval(model, node, &ins, &lookup, caller)?;
                observer.adjust(graph, id, &ins, &mut outs);
                observer.observe(graph, id, &ins, &outs);
                outs
            };
            for (o, val) in node.outputs.iter().zip(outs) {
                if let Some(o) = o {
                    if let Some(slot) = slots.get_mut(o.index()) {
                        *slot = Slot::Owned(val);
                    }
                }
            }
            for v in &self.frees[step] {
                if let Some(slot) = slots.get_mut(v.index()) {
                    *slot = Slot::Empty;
                }
            }
        }
        let mut outs = Vec::with_capacity(graph.outputs.len());
        for &v in &graph.outputs {
            let name = &graph.value(v).name;
            let val = match std::mem::replace(&mut slots[v.index()], Slot::Empty) {
                Slot::Owned(x) => x,
                Slot::Borrowed(x) => x.clone(),
                Slot::Empty => match scope(name) {
                    Some(x) => x.clone(),
                    None => return Err(InterpError::MissingOutput { name: name.clone() }),
                },
            };
            outs.push(val);
        }
        Ok(outs)
    }
}

impl<'m> Interpreter<'m> {
    pub fn new(model: &'m Model) -> Result<Interpreter<'m>, InterpError> {
        Ok(Interpreter {
            model,
            plan: GraphPlan::new(&model.graph)?,
        })
    }

    /// The graph inputs a caller must give (inputs without a default initializer).
    pub fn input_names(&self) -> Vec<&'m str> {
        let g = &self.model.graph;
        g.inputs
            .iter()
            .filter(|&&v| g.value(v).init.is_none())
            .map(|&v| g.value(v).name.as_str())
            .collect()
    }

    /// Run the main graph. `inputs` are by graph input name; inputs with an initializer may be
    /// omitted. Returns `(output name, value)` in graph output order.
    pub fn run(
        &self,
        inputs: &[(&str, &Value)],
        observer: &mut dyn Observer,
    ) -> Result<Vec<(String, Value)>, InterpError> {
        let g = &self.model.graph;
        let mut bound = Vec::new();
        for (name, val) in inputs {
            let v = g
                .inputs
                .iter()
                .copied()
                .find(|&v| g.value(v).name == *name)
                .ok_or_else(|| InterpError::UnknownInput {
                    name: name.to_string(),
                    expected: self.input_names().join(", "),
                })?;
            check_input(name, &g.value(v).ty, val)?;
            bound.push((v, Slot::Borrowed(val)));
        }
        for &v in &g.inputs {
            let val = g.value(v);
            if val.init.is_none() && !inputs.iter().any(|(n, _)| *n == val.name) {
                return Err(InterpError::MissingInput {
                    name: val.name.clone(),
                });
            }
        }
        let outs = self
            .plan
            .run(self.model, g, bound, &no_scope, None, observer)?;
        Ok(g.outputs
            .iter()
            .map(|&v| g.value(v).name.clone())
            .zip(outs)
            .collect())
    }
}

/// Prepare and run a model once (see [`Interpreter::run`]).
pub fn run(
    model: &Model,
    inputs: &[(&str, &Value)],
    observer: &mut dyn Observer,
) -> Result<Vec<(String, Value)>, InterpError> {
    Interpreter::new(model)?.run(inputs, observer)
}

fn check_input(name: &str, ty: &Type, val: &Value) -> Result<(), InterpError> {
    let Some(t) = ty.as_tensor() else {
        return Ok(());
    };
    let bad = |expected: String| InterpError::BadInput {
        name: name.to_string(),
        expected,
        found: format!("{}{:?}", val.dtype(), val.shape()),
    };
    if let Some(d) = t.dtype {
        let same_class = |a: DType, b: DType| {
            a == b || (a.is_float() && b.is_float() && a != DType::F32 && b == DType::F32)
        };
        if !same_class(d, val.dtype()) {
            return Err(bad(format!("dtype {d}")));
        }
    }
    if let Some(dims) = t.dims() {
        let shape = val.shape();
        let show = || {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("shape [{}]", parts.join(","))
        };
        if dims.len() != shape.len() {
            return Err(bad(show()));
        }
        for (i, (d, &s)) in dims.iter().zip(shape).enumerate() {
            if let Dim::Known(k) = d {
                if i > 0 && *k as usize != s {
                    return Err(bad(show()));
                }
            }
        }
    }
    Ok(())
}
