//! The op registry: what each op means, one file per op family, in the style of MLIR op
//! interfaces. An op implements [`OpDef`] (shape inference and cost); the channel coupling rule of
//! each family is in [`couple`]. A pass asks the registry ([`lookup`]); it never matches on op
//! type strings itself. An op the registry does not know is carried untouched: its outputs keep
//! their declared types.
//!
//! **Inference** gets each input's type and, where known, its contents (a constant, or a small
//! tensor computed by inference), and returns one [`Inferred`] per node output. Contents are
//! propagated for tensors of at most [`MAX_VALUE_ELEMENTS`] elements (see [`data`]), so that the
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains exporters emit give static shapes.
//! Missing information is never an error (the output is left partly or wholly unknown); an
//! inconsistency is (`cannot broadcast f32[1,4] with f32[1,5]`), as a reason string that the caller
//! wraps with the node's name.
//!
//! Partly known shape data is propagated too: `Shape` of a tensor with a symbolic batch gives
//! `[batch, 3, 224, 224]`, which `Gather`, `Slice`, `Concat`, `Unsqueeze`, `Cast` carry to a
//! `Reshape`, `Expand`, `ConstantOfShape` or `Resize`, whose output then keeps the symbol.
//!
//! **Adding an op**: write its `infer` (and `cost`) in its family's file, add one line to that
//! file's `OPS` table, and test it in `ir/tests/infer_<family>.rs`.
//!
//! **Cost convention.** FLOPs count a multiply-add as 2: a Conv, ConvTranspose, MatMul or Gemm
//! costs `2 * MACs`, plus one per output element for a bias or Gemm's `C`. Elementwise ops and
//! activations cost one per output element, BatchNormalization 2 (a scale and a shift),
//! the other normalizations 5 (mean, variance, normalize, scale, shift), Softmax 3, pooling one
//! per window element read, reductions one per input element. Data movement (Reshape, Concat,
//! Gather, ...) costs nothing. Params count the elements of an op's constant inputs (a weight
//! shared by two nodes is counted at each use). Values with unknown dims cost nothing.

pub mod control;
mod conv;
pub mod couple;
pub mod data;
mod elementwise;
mod matmul;
mod misc;
mod norm;
mod pool;
mod reduce;
mod reshape;
mod resize;
mod slicing;
mod softmax;

pub use couple::couple;
pub use data::Data;

use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::graph::{Graph, Node, ValueId};
use crate::infer::GraphTypes;
use crate::model::Model;
use crate::tensor::Tensor;
use crate::types::{Axis, Dim, TensorType, Type};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Largest tensor (in elements) whose contents inference propagates.
pub const MAX_VALUE_ELEMENTS: usize = 64;

/// Largest parameter tensor (axes, pads, sizes, ...) an op reads the contents of.
const MAX_PARAM_ELEMENTS: u64 = 4096;

/// Largest rank inference builds from input-derived numbers (guards allocations).
pub const MAX_RANK: usize = 1024;

/// What an op means to the passes: one implementation per op (or per set of ops sharing rules).
pub trait OpDef: Sync {
    /// Types (and small contents) of the node's outputs, one entry per output position. Fewer
    /// entries than outputs leave the rest as they are.
    fn infer(&self, cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String>;

    /// FLOPs and parameters (see the module doc for the convention).
    fn cost(&self, _cx: &CostCtx<'_>) -> Cost {
        Cost::default()
    }
}

/// One input of a node as inference sees it. Every field is `None` for an omitted input.
#[derive(Clone, Copy, Debug, Default)]
pub struct InferInput<'a> {
    pub ty: Option<&'a Type>,
    /// Known contents: a constant, or a small tensor inference computed.
    pub value: Option<&'a Tensor>,
    /// Partly known contents of a small integer tensor of rank 0 or 1 that holds dims (the
    /// output of `Shape` on a tensor with a symbolic batch, and what is computed from it).
    pub shape_data: Option<&'a [Dim]>,
}

/// What an op's inference sees.
pub struct InferCtx<'a> {
    pub node: &'a Node,
    /// The opset version of the node's domain.
    pub opset: i64,
    /// One entry per node input position.
    pub inputs: Vec<InferInput<'a>>,
    /// Output types of each subgraph attribute (If branches, Loop/Scan bodies), by attribute
    /// name, when the caller inferred them.
    pub subgraphs: Vec<(&'a str, Vec<Type>)>,
}

/// An inferred output.
#[derive(Clone, Debug, PartialEq)]
pub struct Inferred {
    pub ty: Type,
    /// Known contents, for small tensors.
    pub value: Option<Tensor>,
    /// Partly known shape data, when `value` is not known (see [`InferInput::shape_data`]).
    pub shape_data: Option<Vec<Dim>>,
}

impl Inferred {
    pub fn new(ty: Type) -> Inferred {
        Inferred {
            ty,
            value: None,
            shape_data: None,
        }
    }

    pub fn unknown() -> Inferred {
        Inferred::new(Type::Unknown)
    }

    /// A tensor with an optional dtype and optional dims (`None`: rank unknown).
    pub fn tensor(dtype: Option<DType>, dims: Option<Vec<Dim>>) -> Inferred {
        Inferred::new(Type::Tensor(TensorType {
            dtype,
            shape: dims.map(|d| d.into_iter().map(Axis::from).collect()),
        }))
    }

    /// A tensor of known rank.
    pub fn of(dtype: Option<DType>, dims: Vec<Dim>) -> Inferred {
        Inferred::tensor(dtype, Some(dims))
    }

    /// The same type as a given one, without channel expressions.
    pub fn like(ty: Option<&Type>) -> Inferred {
        match ty {
            Some(Type::Tensor(t)) => Inferred::new(Type::Tensor(t.without_channels())),
            Some(t) => Inferred::new(t.clone()),
            None => Inferred::unknown(),
        }
    }

    pub fn with_value(mut self, value: Option<Tensor>) -> Inferred {
        self.value = value;
        self
    }

    /// Attach contents computed by [`data`] (dropped when too large or not encodable).
    pub fn with_data(self, data: Option<Data>) -> Inferred {
        let value = data
            .filter(|d| d.len() <= MAX_VALUE_ELEMENTS)
            .and_then(|d| d.to_tensor());
        self.with_value(value)
    }

    /// Attach shape data of an integer output of rank 0 (`scalar`) or 1: as contents when
    /// every element is known, else as partly known shape data. Keeps contents already set.
    pub fn with_shape_data(self, elems: Option<Vec<Dim>>, scalar: bool) -> Inferred {
        let Some(elems) = elems.filter(|e| e.len() <= MAX_VALUE_ELEMENTS) else {
            return self;
        };
        if self.value.is_some() || (scalar && elems.len() != 1) {
            return self;
        }
        let dtype = self
            .ty
            .as_tensor()
            .and_then(|t| t.dtype)
            .filter(|d| data::is_int_like(*d));
        let Some(dtype) = dtype else {
            return self;
        };
        let known: Option<Vec<i64>> = elems.iter().map(|d| d.known()).collect();
        match known {
            Some(v) => {
                let dims = if scalar { vec![] } else { vec![v.len() as i64] };
                self.with_data(Some(Data::ints(dtype, dims, v)))
            }
            None => Inferred {
                shape_data: Some(elems),
                ..self
            },
        }
    }
}

impl<'a> InferCtx<'a> {
    /// A context without subgraph information (what a test or a one-off query needs).
    pub fn new(node: &'a Node, opset: i64, inputs: Vec<InferInput<'a>>) -> InferCtx<'a> {
        InferCtx {
            node,
            opset,
            inputs,
            subgraphs: Vec::new(),
        }
    }

    pub fn op(&self) -> &'a str {
        &self.node.op_type
    }

    /// Is input `i` given (not omitted)?
    pub fn has_input(&self, i: usize) -> bool {
        self.node.input(i).is_some()
    }

    pub fn num_inputs(&self) -> usize {
        self.node.inputs.len()
    }

    pub fn num_outputs(&self) -> usize {
        self.node.outputs.len()
    }

    pub fn input_type(&self, i: usize) -> Option<&'a Type> {
        self.inputs.get(i).and_then(|x| x.ty)
    }

    pub fn tensor(&self, i: usize) -> Option<&'a TensorType> {
        self.input_type(i).and_then(|t| t.as_tensor())
    }

    pub fn dtype(&self, i: usize) -> Option<DType> {
        self.tensor(i).and_then(|t| t.dtype)
    }

    /// Dims of input `i` when its rank is known.
    pub fn dims(&self, i: usize) -> Option<Vec<Dim>> {
        self.tensor(i).and_then(|t| t.dims())
    }

    pub fn rank(&self, i: usize) -> Option<usize> {
        self.tensor(i).and_then(|t| t.rank())
    }

    pub fn value(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).and_then(|x| x.value)
    }

    /// Contents of input `i` when known and small.
    pub fn data(&self, i: usize) -> Option<Data> {
        Data::from_tensor(self.value(i)?, MAX_VALUE_ELEMENTS)
    }

    /// Elements of an integer input of rank 0 or 1 as dims: known contents, or partly known
    /// shape data (symbolic entries come from `Shape`).
    pub fn shape_data(&self, i: usize) -> Option<Vec<Dim>> {
        if let Some(t) = self.value(i) {
            if t.dims.len() > 1 {
                return None;
            }
            return self.ints(i).map(|v| known(&v));
        }
        self.inputs.get(i)?.shape_data.map(|d| d.to_vec())
    }

    /// Integer contents of input `i` (axes, pads, sizes), when known.
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        let t = self.value(i)?;
        if t.num_elements()? > MAX_PARAM_ELEMENTS || !data::is_int_like(t.dtype) {
            return None;
        }
        t.validate().ok()?;
        t.to_i64().ok()
    }

    /// Float contents of input `i` (scales), when known.
    pub fn floats(&self, i: usize) -> Option<Vec<f64>> {
        let t = self.value(i)?;
        if t.num_elements()? > MAX_PARAM_ELEMENTS {
            return None;
        }
        Some(Data::from_tensor(t, MAX_PARAM_ELEMENTS as usize)?.to_f64())
    }

    /// Input `i` is given and not an empty tensor (exporters pass empty tensors for "absent").
    pub fn has_nonempty_input(&self, i: usize) -> bool {
        if !self.has_input(i) {
            return false;
        }
        if let Some(t) = self.value(i) {
            return t.num_elements() != Some(0);
        }
        !matches!(self.dims(i).as_deref(), Some([Dim::Known(0)]))
    }

    pub fn attr_int(&self, name: &str, default: i64) -> i64 {
        self.node.attr_int(name).unwrap_or(default)
    }

    pub fn attr_ints(&self, name: &str) -> Option<&'a [i64]> {
        self.node.attr_ints(name)
    }

    pub fn attr_str(&self, name: &str, default: &'a str) -> &'a str {
        self.node.attr_str(name).unwrap_or(default)
    }

    /// Output types of the subgraph held in attribute `name`, when inferred.
    pub fn subgraph(&self, name: &str) -> Option<&[Type]> {
        self.subgraphs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_slice())
    }
}

/// FLOPs and parameters of a node or a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub flops: u64,
    pub params: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            flops: self.flops.saturating_add(o.flops),
            params: self.params.saturating_add(o.params),
        }
    }
}

/// One input of a node as the cost model sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CostInput<'a> {
    pub ty: Option<&'a TensorType>,
    /// The constant this input is (a weight), if it is one.
    pub constant: Option<&'a Tensor>,
}

/// What an op's cost sees: operand types (after inference) and which inputs are constants.
pub struct CostCtx<'a> {
    pub node: &'a Node,
    pub opset: i64,
    pub inputs: Vec<CostInput<'a>>,
    pub outputs: Vec<Option<&'a TensorType>>,
}

impl<'a> CostCtx<'a> {
    /// The cost context of `node` (of `graph`), with operand and result types from `ty`.
    pub fn of_node(
        node: &'a Node,
        graph: &'a Graph,
        opset: i64,
        ty: impl Fn(ValueId) -> Option<&'a TensorType>,
    ) -> CostCtx<'a> {
        CostCtx {
            node,
            opset,
            inputs: node
                .inputs
                .iter()
                .map(|v| CostInput {
                    ty: v.and_then(&ty),
                    constant: v.and_then(|v| graph.constant(v)),
                })
                .collect(),
            outputs: node.outputs.iter().map(|v| v.and_then(&ty)).collect(),
        }
    }

    /// Dims of input `i`, symbolic and unknown sizes counted as 1: costs are per unit of each
    /// symbolic dim (a dynamic batch counts as batch 1), so a model exported with a dynamic batch
    /// has the FLOPs of one sample rather than none.
    pub fn in_dims(&self, i: usize) -> Option<Vec<i64>> {
        self.inputs.get(i)?.ty?.dims_or_one()
    }

    /// Dims of output `i`, as [`CostCtx::in_dims`].
    pub fn out_dims(&self, i: usize) -> Option<Vec<i64>> {
        self.outputs.get(i).copied().flatten()?.dims_or_one()
    }

    pub fn in_numel(&self, i: usize) -> Option<u64> {
        numel(&self.in_dims(i)?)
    }

    pub fn out_numel(&self, i: usize) -> Option<u64> {
        numel(&self.out_dims(i)?)
    }

    /// Elements of every constant input.
    pub fn params(&self) -> u64 {
        self.inputs
            .iter()
            .filter_map(|x| x.constant?.num_elements())
            .fold(0u64, u64::saturating_add)
    }
}

/// Elements of a static shape (`None` on a negative dim or overflow).
pub fn numel(dims: &[i64]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

/// An op given by functions: the registry's building block.
pub(crate) struct Op {
    pub infer: fn(&InferCtx<'_>) -> Result<Vec<Inferred>, String>,
    pub cost: fn(&CostCtx<'_>) -> Cost,
}

impl Op {
    pub const fn new(infer: fn(&InferCtx<'_>) -> Result<Vec<Inferred>, String>) -> Op {
        Op {
            infer,
            cost: no_cost,
        }
    }

    pub const fn with_cost(self, cost: fn(&CostCtx<'_>) -> Cost) -> Op {
        Op {
            infer: self.infer,
            cost,
        }
    }
}

impl OpDef for Op {
    fn infer(&self, cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
        (self.infer)(cx)
    }

    fn cost(&self, cx: &CostCtx<'_>) -> Cost {
        (self.cost)(cx)
    }
}

pub(crate) fn no_cost(_: &CostCtx<'_>) -> Cost {
    Cost::default()
}

/// One per output element, plus the constant inputs as params.
pub(crate) fn cost_elementwise(cx: &CostCtx<'_>) -> Cost {
    Cost {
        flops: cx.out_numel(0).unwrap_or(0),
        params: cx.params(),
    }
}

/// A registry table: op type and its definition.
pub(crate) type Table = &'static [(&'static str, &'static dyn OpDef)];

fn tables() -> [Table; 12] {
    [
        elementwise::OPS,
        conv::OPS,
        matmul::OPS,
        norm::OPS,
        reshape::OPS,
        slicing::OPS,
        pool::OPS,
        reduce::OPS,
        softmax::OPS,
        resize::OPS,
        control::OPS,
        misc::OPS,
    ]
}

fn registry() -> &'static HashMap<&'static str, &'static dyn OpDef> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static dyn OpDef>> = OnceLock::new();
    REGISTRY.get_or_init(|| tables().iter().flat_map(|t| t.iter().copied()).collect())
}

/// The definition of an op, keyed by `(domain, op_type)`; `""` and `ai.onnx` are the default
/// domain. Version differences are handled inside the op from [`InferCtx::opset`].
pub fn lookup(domain: &str, op_type: &str) -> Option<&'static dyn OpDef> {
    if !(domain.is_empty() || domain == "ai.onnx") {
        return None;
    }
    registry().get(op_type).copied()
}

/// The definition for a node.
pub fn lookup_node(node: &Node) -> Option<&'static dyn OpDef> {
    lookup(node.canonical_domain(), &node.op_type)
}

/// Every registered op type of the default domain, sorted.
pub fn registered_ops() -> Vec<&'static str> {
    let mut ops: Vec<_> = registry().keys().copied().collect();
    ops.sort_unstable();
    ops
}

/// FLOPs and params of a model: every node of the main graph and of its subgraph bodies (an `If`
/// counts both branches, a `Loop` one iteration), with types from inference. Calls to
/// model-local functions and unknown ops cost nothing.
pub fn model_cost(model: &Model) -> Cost {
    let inferred = crate::infer::infer_types(model).ok();
    graph_cost(model, &model.graph, inferred.as_ref().map(|r| r.graph()))
}

/// Total FLOPs of a model (see [`model_cost`]).
pub fn model_flops(model: &Model) -> u64 {
    model_cost(model).flops
}

/// Cost of a graph with inferred types when there are some, else the declared ones.
fn graph_cost(model: &Model, graph: &Graph, types: Option<&GraphTypes>) -> Cost {
    let opset = model.opset("").unwrap_or(crate::infer::DEFAULT_OPSET);
    let ty = |v: ValueId| {
        types
            .and_then(|t| t.ty(v))
            .or_else(|| graph.try_value(v).map(|val| &val.ty))
    };
    let tensor = |v: Option<ValueId>| v.and_then(ty).and_then(|t| t.as_tensor());
    let mut total = Cost::default();
    for id in graph.node_ids() {
        let node = graph.node(id);
        for (ai, attr) in node.attrs.iter().enumerate() {
            let bodies: &[Graph] = match &attr.value {
                AttrValue::Graph(g) => std::slice::from_ref(g.as_ref()),
                AttrValue::Graphs(gs) => gs,
                _ => continue,
            };
            for (gi, body) in bodies.iter().enumerate() {
                let sub = types.and_then(|t| t.subgraph(id, ai, gi));
                total = total + graph_cost(model, body, sub);
            }
        }
        let Some(op) = lookup_node(node) else {
            continue;
        };
        let cx = CostCtx::of_node(node, graph, opset, |v| tensor(Some(v)));
        total = total + op.cost(&cx);
    }
    total
}

// ---- helpers shared by the op families ----

/// Display a tensor type from its parts, for messages (`f32[1,4]`).
pub(crate) fn show(dtype: Option<DType>, dims: &[Dim]) -> String {
    TensorType {
        dtype,
        shape: Some(dims.iter().cloned().map(Axis::from).collect()),
    }
    .to_string()
}

/// Display input `i` of a node for messages.
pub(crate) fn show_input(cx: &InferCtx<'_>, i: usize) -> String {
    match cx.input_type(i) {
        Some(t) => t.to_string(),
        None => "?".to_string(),
    }
}

/// `[1,2,3]`, the way shapes print in types.
pub(crate) fn show_ints(v: &[i64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

pub(crate) fn known(dims: &[i64]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

/// Normalize a possibly negative axis against a rank.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 {
        axis.saturating_add(r)
    } else {
        axis
    };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// The labels of an `Einsum` written out in full: one term per input and the output term, no
/// ellipsis (every label an ASCII letter), whitespace ignored. `None` for an implicit output,
/// an ellipsis, or a term count that is not the node's input count.
pub fn explicit_einsum(node: &Node) -> Option<(Vec<Vec<char>>, Vec<char>)> {
    let eq: String = node
        .attr_str("equation")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (lhs, rhs) = eq.split_once("->")?;
    let ins: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let out: Vec<char> = rhs.chars().collect();
    let plain = |t: &[char]| t.iter().all(char::is_ascii_alphabetic);
    (ins.len() == node.inputs.len() && ins.iter().all(|t| plain(t)) && plain(&out))
        .then_some((ins, out))
}

/// A two-operand [`explicit_einsum`] with no label twice in one term: `[a, b, out]` (what a
/// batched matrix product between transposes can express, traces aside).
pub fn binary_einsum(node: &Node) -> Option<[Vec<char>; 3]> {
    let (ins, out) = explicit_einsum(node)?;
    let [a, b]: [Vec<char>; 2] = ins.try_into().ok()?;
    let terms = [a, b, out];
    let distinct = |t: &Vec<char>| t.iter().enumerate().all(|(i, c)| !t[..i].contains(c));
    terms.iter().all(distinct).then_some(terms)
}

/// Normalize a list of axes; duplicates are an error.
pub fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(format!("axis {a} appears twice in {}", show_ints(axes)));
        }
        out.push(n);
    }
    Ok(out)
}

/// Broadcast two dims (numpy rules); `None` when they cannot broadcast.
pub(crate) fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    Some(match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => {
            if x == y || *y == 1 {
                a.clone()
            } else if *x == 1 {
                b.clone()
            } else {
                return None;
            }
        }
        (Dim::Known(1), o) | (o, Dim::Known(1)) => o.clone(),
        // The other side must be 1 or the same size.
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => a.clone(),
        _ => Dim::Unknown,
    })
}

/// Broadcast two shapes (numpy rules, aligned on the right).
pub(crate) fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let x = (i + a.len()).checked_sub(n).and_then(|k| a.get(k));
        let y = (i + b.len()).checked_sub(n).and_then(|k| b.get(k));
        out.push(match (x, y) {
            (Some(x), Some(y)) => broadcast_dim(x, y)?,
            (Some(d), None) | (None, Some(d)) => d.clone(),
            (None, None) => Dim::Unknown,
        });
    }
    Some(out)
}

/// Product of dims: known when all are, a single symbolic dim times ones stays symbolic.
pub(crate) fn dims_product(dims: &[Dim]) -> Result<Dim, String> {
    if dims.contains(&Dim::Known(0)) {
        return Ok(Dim::Known(0));
    }
    let mut known = 1i64;
    let mut other: Option<&Dim> = None;
    let mut others = 0;
    for d in dims {
        match d {
            Dim::Known(n) => {
                known = known
                    .checked_mul(*n)
                    .ok_or_else(|| format!("the product of {} overflows", show(None, dims)))?;
            }
            _ => {
                others += 1;
                other = Some(d);
            }
        }
    }
    Ok(match (others, other) {
        (0, _) => Dim::Known(known),
        (1, Some(d)) if known == 1 => d.clone(),
        _ => Dim::Unknown,
    })
}

/// `a * b` on dims (`1 * x = x`).
pub(crate) fn dim_mul(a: &Dim, b: i64) -> Result<Dim, String> {
    match a {
        Dim::Known(x) => x
            .checked_mul(b)
            .map(Dim::Known)
            .ok_or_else(|| format!("dimension {x} * {b} overflows")),
        _ if b == 1 => Ok(a.clone()),
        _ if b == 0 => Ok(Dim::Known(0)),
        _ => Ok(Dim::Unknown),
    }
}

/// A rank read from input-derived numbers, when it is a plausible one.
pub(crate) fn plausible_rank(n: i64) -> Option<usize> {
    usize::try_from(n).ok().filter(|&r| r <= MAX_RANK)
}

/// The length of a 1-D input from its type (`[n]`), when known.
pub(crate) fn len_1d(cx: &InferCtx<'_>, i: usize) -> Option<usize> {
    match cx.dims(i)?.as_slice() {
        [Dim::Known(n)] => plausible_rank(*n),
        _ => None,
    }
}

/// An integer-list attribute of a given length, or a default fill.
pub(crate) fn attr_list(
    cx: &InferCtx<'_>,
    name: &str,
    len: usize,
    default: i64,
) -> Result<Vec<i64>, String> {
    match cx.attr_ints(name) {
        None => Ok(vec![default; len]),
        Some(v) if v.len() == len => Ok(v.to_vec()),
        Some(v) => Err(format!(
            "{name} {} has {} entries, expected {len}",
            show_ints(v),
            v.len()
        )),
    }
}

/// How a sliding window (conv or pool) pads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn from_attr(cx: &InferCtx<'_>) -> Result<AutoPad, String> {
        Ok(match cx.attr_str("auto_pad", "NOTSET") {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => return Err(format!("unknown auto_pad '{other}'")),
        })
    }
}

/// One spatial axis of a sliding window.
pub(crate) struct Window {
    pub kernel: Dim,
    pub stride: i64,
    pub dilation: i64,
    pub pad_begin: i64,
    pub pad_end: i64,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

impl Window {
    /// The output extent of the axis for an input extent (spatial axis `axis`, for messages).
    pub fn output(&self, input: &Dim, axis: usize) -> Result<Dim, String> {
        let s = self.stride;
        if s < 1 {
            return Err(format!("stride {s} on spatial axis {axis} is not positive"));
        }
        if self.dilation < 1 {
            return Err(format!(
                "dilation {} on spatial axis {axis} is not positive",
                self.dilation
            ));
        }
        if matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower) {
            return Ok(match input {
                Dim::Known(n) => Dim::Known(div_ceil(*n, s)),
                _ if s == 1 => input.clone(),
                _ => Dim::Unknown,
            });
        }
        let Dim::Known(k) = self.kernel else {
            return Ok(Dim::Unknown);
        };
        if k < 1 {
            return Err(format!(
                "kernel size {k} on spatial axis {axis} is not positive"
            ));
        }
        let (pb, pe) = if self.auto_pad == AutoPad::Valid {
            (0, 0)
        } else {
            (self.pad_begin, self.pad_end)
        };
        if pb < 0 || pe < 0 {
            return Err(format!("negative padding on spatial axis {axis}"));
        }
        let overflow = || format!("window arithmetic overflows on spatial axis {axis}");
        let dk = (k - 1)
            .checked_mul(self.dilation)
            .and_then(|x| x.checked_add(1))
            .ok_or_else(overflow)?;
        let Dim::Known(n) = input else {
            // The window leaves a dim unchanged only when it is one element wide after padding.
            let identity = dk.checked_sub(pb).and_then(|v| v.checked_sub(pe)) == Some(1);
            return Ok(if s == 1 && identity {
                input.clone()
            } else {
                Dim::Unknown
            });
        };
        let padded = n
            .checked_add(pb)
            .and_then(|x| x.checked_add(pe))
            .ok_or_else(overflow)?;
        let room = padded.checked_sub(dk).ok_or_else(overflow)?;
        if room < 0 {
            return Err(format!(
                "window of size {dk} does not fit in the padded input of size {padded} on spatial axis {axis}"
            ));
        }
        let mut out = if self.ceil_mode {
            div_ceil(room, s) + 1
        } else {
            room / s + 1
        };
        // A last window that would start in the end padding is dropped (ONNX, PyTorch).
        if self.ceil_mode && (out - 1).saturating_mul(s) >= n.saturating_add(pb) {
            out -= 1;
        }
        Ok(Dim::Known(out))
    }
}

/// Ceiling division for a positive divisor.
pub(crate) fn div_ceil(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) != 0 {
        q + 1
    } else {
        q
    }
}
