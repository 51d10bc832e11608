//! `split-fused`: split a fused projection into one projection per part.
//!
//! timm's ViT, DeiT, Swin and MobileViT, and torchvision's `MultiheadAttention` (ViT) and Swin
//! (V1 and V2) compute Q, K and V with one MatMul of width `3E`, reshape its last axis to
//! `(3, ...)`, move that axis around with layout ops and take the parts out along it (a `Split`
//! into ones followed by `Squeeze`s, one `Gather` of a scalar index per part, or, from the dynamo
//! exporter, one `Slice` of one index per part followed by a `Squeeze`). The reshape to
//! `(3, heads, head_dim)` forces Q, K and V to keep the same head dims, so Q/K dims and V dims
//! become one channel group: they can only be pruned together, by one score, in one basis. With
//! one MatMul per part (the part's block of columns of the weight and of the bias, and the same
//! layout ops without the part axis, into the values the selection produced), the graph computes
//! the same function and each part's channels are free.
//!
//! Matched: a MatMul with a constant 2-D f32 weight (read by it alone), optionally a bias `Add`
//! of an f32 vector computed from constants alone, then either
//! - a `Reshape` to a constant shape that splits the last axis into `(n, ...)` (a `-1` is
//!   resolved by shape inference; a `0` only before the input's last axis), up to eight
//!   `Transpose`, `Squeeze`, `Unsqueeze` or `Identity` nodes that keep the part axis, and the
//!   selection along it; every node of the chain has one reader and the selection reads the
//!   whole part axis; or
//! - column slices of the last axis that every reader takes: one `Split` of it, or `Slice`s with
//!   constant bounds (torchvision's MaxViT, `qkv.chunk(3, dim=-1)`), at least two.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use crate::transforms::dce::eliminate_dead_code;
use crate::transforms::{add_constant, fresh_name, only_user};
use spa_ir::{
    AttrValue, DType, Graph, Model, Node, NodeId, Tensor, Type, Value, ValueDef, ValueId,
};
use std::collections::HashSet;

pub static INFO: PassInfo = PassInfo {
    name: "split-fused",
    summary: "Split fused projections (one MatMul for Q, K and V, reshaped to (3, ...) and taken apart, or sliced along its last axis) into one MatMul per part, so that each part's head dims are a channel group of their own",
    options: &[],
    create: |_| Ok(Box::new(SplitFused)),
};

struct SplitFused;

impl Pass for SplitFused {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let ir = |source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        };
        // Exporters compute Reshape targets from Shape ops: fold them first, as `group` does.
        let folded = crate::transforms::fold_shapes::fold_shapes(model).map_err(ir)?;
        let infer = |m: &mut Model| {
            spa_ir::infer::infer_model(m, &spa_ir::infer::InferOptions::default()).map_err(ir)
        };
        infer(model)?;
        let split = split_fused_projections(model).map_err(ir)?;
        if split > 0 {
            infer(model)?;
        }
        cx.stat("fused projections split", split);
        cx.stat("shape values folded", folded);
        Ok(if split + folded == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}

/// How an axis-list operand is given.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AxesForm {
    Attr,
    Input,
}

/// One layout node of the chain, with what its copy in a part needs.
#[derive(Clone, Debug)]
enum Step {
    Identity,
    /// The part's permutation.
    Transpose(Vec<i64>),
    /// The part's axes.
    Squeeze(Vec<i64>, AxesForm),
    Unsqueeze(Vec<i64>, AxesForm),
}

/// One part of a fused projection: a block of its columns, and the values that receive it.
struct Part {
    from: usize,
    width: usize,
    to: Vec<ValueId>,
}

/// A matched fused projection.
struct Fused {
    x: ValueId,
    weight: ValueId,
    /// The bias and whether it is the Add's first operand (its data is read only once the
    /// projection has matched, in [`split_fused_projections`]).
    bias: Option<(ValueId, bool)>,
    /// The part's Reshape target; `None` when the parts are column slices of the projection's
    /// output (no Reshape, no layout ops).
    shape: Option<Vec<i64>>,
    steps: Vec<Step>,
    parts: Vec<Part>,
    /// Every node the parts replace.
    erase: Vec<NodeId>,
    /// Names to derive the new nodes' names from: MatMul, Add, Reshape, chain.
    names: Vec<String>,
}

/// Split every fused projection of the main graph; returns how many were split. Reads the value
/// types (run inference first: a Reshape target's `-1` is resolved from its output's type); the
/// parts' new values are left untyped, for the caller's next inference.
pub fn split_fused_projections(model: &mut Model) -> Result<usize, spa_ir::IrError> {
    let candidates: Vec<NodeId> = model
        .graph
        .node_ids()
        .filter(|&n| model.graph.node(n).op_type == "MatMul")
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut split = 0;
    let mut names: HashSet<String> = model
        .graph
        .value_ids()
        .map(|v| model.graph.value(v).name.clone())
        .chain(
            model
                .graph
                .node_ids()
                .map(|n| model.graph.node(n).name.clone()),
        )
        .collect();
    let mut users = model.graph.users();
    for n in candidates {
        if model.graph.try_node(n).is_none() {
            continue;
        }
        let Some(f) = match_fused(model, &users, n) else {
            continue;
        };
        // The bias's data: a constant, or computed from constants (evaluated here).
        let bias = match f.bias {
            Some((b, first)) => {
                let Some(data) = computed_constant(model, b, 8).and_then(|t| t.to_f32().ok())
                else {
                    continue;
                };
                Some((model.graph.value(b).name.clone(), data, first))
            }
            None => None,
        };
        if rewrite(&mut model.graph, &f, bias, &mut names).is_some() {
            users = model.graph.users();
            split += 1;
        }
    }
    if split > 0 {
        eliminate_dead_code(&mut model.graph)?;
    }
    Ok(split)
}

/// The axes of a Squeeze/Unsqueeze: attribute (old opsets) or constant input 1.
fn axes_of(graph: &Graph, node: &Node) -> Option<(Vec<i64>, AxesForm)> {
    match node.input(1) {
        Some(a) => Some((graph.constant_ints(a)?, AxesForm::Input)),
        None => Some((node.attr_ints("axes")?.to_vec(), AxesForm::Attr)),
    }
}

/// Axes normalized to `0..rank`, or `None` when one is out of range or repeated.
fn normalize(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    spa_ir::ops::norm_axes(axes, rank).ok()
}

fn is_plain(node: &Node) -> bool {
    node.canonical_domain().is_empty()
}

/// Known dims of a value, if all are known.
fn dims_of(graph: &Graph, v: ValueId) -> Option<Vec<i64>> {
    let t = graph.value(v).ty.as_tensor()?;
    t.shape.as_ref()?.iter().map(|a| a.dim.known()).collect()
}

/// The constant behind `v`, through `Identity` aliases.
fn constant_through(graph: &Graph, mut v: ValueId) -> Option<&Tensor> {
    for _ in 0..4 {
        if let Some(t) = graph.constant(v) {
            return Some(t);
        }
        let ValueDef::Node(n, 0) = graph.value(v).def else {
            return None;
        };
        let node = graph.node(n);
        if node.op_type != "Identity" || !is_plain(node) {
            return None;
        }
        v = node.input(0)?;
    }
    None
}

/// The contents of `v` when it is a constant or computed from constants only (torchvision's
/// Swin V2 zeroes the K part of its QKV bias with a `ScatterND` in the graph), evaluated by the
/// reference interpreter; at most `depth` nodes deep.
fn computed_constant(model: &Model, v: ValueId, depth: usize) -> Option<Tensor> {
    let graph = &model.graph;
    if let Some(t) = graph.constant(v) {
        return Some(t.clone());
    }
    let ValueDef::Node(n, k) = graph.value(v).def else {
        return None;
    };
    let node = graph.node(n);
    if depth == 0 || !spa_ir::interp::foldable(node) {
        return None;
    }
    let inputs: Vec<Option<Tensor>> = node
        .inputs
        .iter()
        .map(|i| match i {
            None => Some(None),
            Some(x) => computed_constant(model, *x, depth - 1).map(Some),
        })
        .collect::<Option<_>>()?;
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
    let mut out = spa_ir::interp::eval_constant_node(model, graph, n, &refs).ok()?;
    let k = k as usize;
    (k < out.len()).then(|| out.swap_remove(k))
}

fn match_fused(model: &Model, users: &[Vec<(NodeId, usize)>], n: NodeId) -> Option<Fused> {
    let graph = &model.graph;
    let node = graph.node(n);
    if node.op_type != "MatMul" || !is_plain(node) {
        return None;
    }
    let (x, wv) = (node.input(0)?, node.input(1)?);
    let w = constant_through(graph, wv)?;
    if graph.constant(x).is_some() || w.dtype != DType::F32 || w.dims.len() != 2 {
        return None;
    }
    if users.get(wv.index())?.len() != 1 || graph.outputs.contains(&wv) {
        return None;
    }
    let c = w.dims[1];
    let mut names = vec![node.name.clone()];
    let mut erase = vec![n];
    let mut v = node.output(0)?;
    let mut bias = None;
    match only_user(graph, users, v) {
        Some((u, slot)) if graph.node(u).op_type == "Add" && is_plain(graph.node(u)) => {
            let add = graph.node(u);
            let b = add.input(1 - slot)?;
            let ty = graph.value(b).ty.as_tensor()?;
            if ty.dtype != Some(DType::F32) || dims_of(graph, b)? != [c] {
                return None;
            }
            bias = Some((b, slot == 1));
            names.push(add.name.clone());
            erase.push(u);
            v = add.output(0)?;
        }
        _ => names.push(String::new()),
    }
    // Column slices of the output (torchvision's MaxViT: `qkv.chunk(3, dim=-1)`).
    if let Some((parts, chosen)) = column_parts(graph, users, v, c) {
        erase.extend(chosen);
        return Some(Fused {
            x,
            weight: wv,
            bias,
            shape: None,
            steps: Vec::new(),
            parts,
            erase,
            names,
        });
    }
    let (u, slot) = only_user(graph, users, v)?;
    // The Reshape that splits the last axis into (n, ...).
    let reshape = graph.node(u);
    if reshape.op_type != "Reshape" || !is_plain(reshape) || slot != 0 {
        return None;
    }
    let target = graph.constant_ints(reshape.input(1)?)?;
    // A 0 copies the input's dim: fine before its last axis (the same in every part).
    let last_in = dims_of(graph, v)
        .map(|d| d.len().saturating_sub(1))
        .unwrap_or(0);
    if target
        .iter()
        .enumerate()
        .any(|(i, &d)| d == 0 && i >= last_in)
    {
        return None;
    }
    // The output dims: the target's, or inference's where it has a -1.
    let out = match dims_of(graph, reshape.output(0)?) {
        Some(d) if d.len() == target.len() => d,
        _ => target.clone(),
    };
    let mut j = (0..out.len()).find(|&j| {
        out[j..].iter().all(|&d| d > 0)
            && out[j..].iter().try_fold(1i64, |a, &d| a.checked_mul(d)) == Some(c)
    })?;
    while out[j] == 1 && j + 1 < out.len() {
        j += 1;
    }
    let parts = out[j];
    if parts < 2 || c % parts != 0 {
        return None;
    }
    let parts = usize::try_from(parts).ok()?;
    let mut shape = target.clone();
    shape.remove(j);
    names.push(reshape.name.clone());
    erase.push(u);
    let (mut k, mut rank) = (j, target.len());
    v = reshape.output(0)?;
    // Layout ops that keep the part axis.
    let mut steps = Vec::new();
    for _ in 0..8 {
        let Some((u, 0)) = only_user(graph, users, v) else {
            break;
        };
        let un = graph.node(u);
        if !is_plain(un) || un.outputs.len() != 1 {
            break;
        }
        let step = match un.op_type.as_str() {
            "Identity" => Step::Identity,
            "Transpose" => {
                let perm: Vec<i64> = match un.attr_ints("perm") {
                    Some(p) => p.to_vec(),
                    None => (0..rank as i64).rev().collect(),
                };
                let p = normalize(&perm, rank)?;
                if p.len() != rank {
                    return None;
                }
                let at = p.iter().position(|&a| a == k)?;
                let part = p
                    .iter()
                    .filter(|&&a| a != k)
                    .map(|&a| if a > k { a as i64 - 1 } else { a as i64 })
                    .collect();
                k = at;
                Step::Transpose(part)
            }
            "Squeeze" => {
                let (axes, form) = axes_of(graph, un)?;
                let a = normalize(&axes, rank)?;
                if a.is_empty() || a.contains(&k) {
                    return None;
                }
                let part = a
                    .iter()
                    .map(|&x| if x > k { x as i64 - 1 } else { x as i64 })
                    .collect();
                k -= a.iter().filter(|&&x| x < k).count();
                rank -= a.len();
                Step::Squeeze(part, form)
            }
            "Unsqueeze" => {
                let (axes, form) = axes_of(graph, un)?;
                let out_rank = rank + axes.len();
                let a = normalize(&axes, out_rank)?;
                // The part axis is the k-th position not inserted.
                let at = (0..out_rank).filter(|p| !a.contains(p)).nth(k)?;
                let part = a
                    .iter()
                    .map(|&x| if x > at { x as i64 - 1 } else { x as i64 })
                    .collect();
                k = at;
                rank = out_rank;
                Step::Unsqueeze(part, form)
            }
            _ => break,
        };
        steps.push(step);
        names.push(un.name.clone());
        erase.push(u);
        v = un.output(0)?;
    }
    let (to, chosen) = select(graph, users, v, k, rank, parts)?;
    erase.extend(chosen);
    let width = usize::try_from(c).ok()? / parts;
    let parts = to
        .into_iter()
        .enumerate()
        .filter(|(_, to)| !to.is_empty())
        .map(|(i, to)| Part {
            from: i * width,
            width,
            to,
        })
        .collect();
    Some(Fused {
        x,
        weight: wv,
        bias,
        shape: Some(shape),
        steps,
        parts,
        erase,
        names,
    })
}

/// Column slices of `v` (the last axis, `c` wide) that all its readers take: one `Split` of that
/// axis, or `Slice`s of it (constant bounds, step 1). At least two parts.
fn column_parts(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    v: ValueId,
    c: i64,
) -> Option<(Vec<Part>, Vec<NodeId>)> {
    if graph.outputs.contains(&v) {
        return None;
    }
    let rank = graph.value(v).ty.as_tensor()?.rank()?;
    let last = rank.checked_sub(1)?;
    let readers = users.get(v.index())?;
    let (mut parts, mut erase) = (Vec::new(), Vec::new());
    for &(r, slot) in readers {
        let rn = graph.node(r);
        if !is_plain(rn) || slot != 0 {
            return None;
        }
        match rn.op_type.as_str() {
            "Split" if readers.len() == 1 => {
                if normalize(&[rn.attr_int("axis").unwrap_or(0)], rank)? != [last] {
                    return None;
                }
                let n = i64::try_from(rn.outputs.len()).ok()?;
                let sizes = match rn.input(1) {
                    Some(t) => graph.constant_ints(t)?,
                    None => match rn.attr_ints("split") {
                        Some(s) => s.to_vec(),
                        None if n > 0 && c % n == 0 => vec![c / n; rn.outputs.len()],
                        None => return None,
                    },
                };
                if sizes.len() != rn.outputs.len() || sizes.iter().any(|&x| x <= 0) {
                    return None;
                }
                if sizes.iter().sum::<i64>() != c {
                    return None;
                }
                let mut from = 0usize;
                for (o, &w) in rn.outputs.iter().zip(&sizes) {
                    let width = usize::try_from(w).ok()?;
                    parts.push(Part {
                        from,
                        width,
                        to: vec![(*o)?],
                    });
                    from += width;
                }
            }
            "Slice" => {
                let ints = |k: usize| rn.input(k).map(|x| graph.constant_ints(x));
                let (starts, ends, axes) = (ints(1)??, ints(2)??, ints(3)??);
                let steps = ints(4).unwrap_or(Some(vec![1]))?;
                if starts.len() != 1 || ends.len() != 1 || steps != [1] {
                    return None;
                }
                if normalize(&axes, rank)? != [last] {
                    return None;
                }
                let norm = |x: i64| (if x < 0 { x + c } else { x }).clamp(0, c);
                let (b, e) = (norm(starts[0]), norm(ends[0]));
                if e <= b {
                    return None;
                }
                parts.push(Part {
                    from: usize::try_from(b).ok()?,
                    width: usize::try_from(e - b).ok()?,
                    to: vec![rn.output(0)?],
                });
            }
            _ => return None,
        }
        erase.push(r);
    }
    (parts.len() >= 2).then_some((parts, erase))
}

/// The selection of the parts from `v` along axis `k` (of `rank`): a `Split` into ones whose
/// outputs are each squeezed at `k`, `Gather`s of scalar indices at `k`, or `Slice`s of one index
/// at `k`, each squeezed there. Returns the values that receive each part and the nodes that go.
fn select(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    v: ValueId,
    k: usize,
    rank: usize,
    parts: usize,
) -> Option<(Vec<Vec<ValueId>>, Vec<NodeId>)> {
    if graph.outputs.contains(&v) {
        return None;
    }
    let readers = users.get(v.index())?;
    let mut to = vec![Vec::new(); parts];
    let mut erase = Vec::new();
    match readers.as_slice() {
        [(s, 0)] if graph.node(*s).op_type == "Split" && is_plain(graph.node(*s)) => {
            let split = graph.node(*s);
            let axis = normalize(&[split.attr_int("axis").unwrap_or(0)], rank)?;
            if axis != [k] || split.outputs.len() != parts {
                return None;
            }
            let sizes = match split.input(1) {
                Some(t) => Some(graph.constant_ints(t)?),
                None => split.attr_ints("split").map(|s| s.to_vec()),
            };
            if sizes.is_some_and(|s| s.len() != parts || s.iter().any(|&x| x != 1)) {
                return None;
            }
            erase.push(*s);
            for (i, o) in split.outputs.iter().enumerate() {
                let o = (*o)?;
                let (q, 0) = only_user(graph, users, o)? else {
                    return None;
                };
                to[i].push(squeezed_at(graph, q, k, rank)?);
                erase.push(q);
            }
        }
        readers => {
            for &(g, slot) in readers {
                let gn = graph.node(g);
                if !is_plain(gn) || slot != 0 || gn.outputs.len() != 1 {
                    return None;
                }
                match gn.op_type.as_str() {
                    "Gather" => {
                        if normalize(&[gn.attr_int("axis").unwrap_or(0)], rank)? != [k] {
                            return None;
                        }
                        if !graph.constant(gn.input(1)?)?.dims.is_empty() {
                            return None;
                        }
                        let i = *graph.constant_ints(gn.input(1)?)?.first()?;
                        let i = if i < 0 { i + parts as i64 } else { i };
                        let i = usize::try_from(i).ok().filter(|&i| i < parts)?;
                        to[i].push(gn.output(0)?);
                        erase.push(g);
                    }
                    // The dynamo exporter's unbind: Slice [i, i + 1) on the axis, Squeeze it.
                    "Slice" => {
                        let i = slice_of_one(graph, gn, k, rank, parts)?;
                        let (q, 0) = only_user(graph, users, gn.output(0)?)? else {
                            return None;
                        };
                        to[i].push(squeezed_at(graph, q, k, rank)?);
                        erase.extend([g, q]);
                    }
                    _ => return None,
                }
            }
        }
    }
    if to.iter().all(Vec::is_empty) {
        return None;
    }
    Some((to, erase))
}

/// The output of `q` when it is a Squeeze of exactly axis `k` (of `rank`).
fn squeezed_at(graph: &Graph, q: NodeId, k: usize, rank: usize) -> Option<ValueId> {
    let sq = graph.node(q);
    if sq.op_type != "Squeeze" || !is_plain(sq) {
        return None;
    }
    let (axes, _) = axes_of(graph, sq)?;
    (normalize(&axes, rank)? == [k]).then_some(())?;
    sq.output(0)
}

/// The part a Slice (opset 10+: constant starts, ends, axes, steps inputs) takes when it takes
/// exactly one index `[i, i + 1)` of axis `k`.
fn slice_of_one(graph: &Graph, node: &Node, k: usize, rank: usize, parts: usize) -> Option<usize> {
    let ints = |slot: usize| node.input(slot).map(|v| graph.constant_ints(v));
    let (starts, ends) = (ints(1)??, ints(2)??);
    let axes = ints(3).unwrap_or(Some(vec![0]))?;
    let steps = ints(4).unwrap_or(Some(vec![1]))?;
    if starts.len() != 1 || ends.len() != 1 || steps != [1] || normalize(&axes, rank)? != [k] {
        return None;
    }
    let n = parts as i64;
    let norm = |x: i64| (if x < 0 { x + n } else { x }).clamp(0, n);
    let (b, e) = (norm(starts[0]), norm(ends[0]));
    (e == b + 1).then_some(b as usize)
}

/// Columns `[from, from + width)` of a row-major `rows x cols` matrix.
fn columns(data: &[f32], cols: usize, from: usize, width: usize) -> Vec<f32> {
    data.chunks_exact(cols.max(1))
        .flat_map(|row| row[from..from + width].iter().copied())
        .collect()
}

fn axes_operand(
    graph: &mut Graph,
    node: &mut Node,
    names: &mut HashSet<String>,
    stem: &str,
    axes: &[i64],
    form: AxesForm,
) {
    match form {
        AxesForm::Attr => node.set_attr("axes", AttrValue::Ints(axes.to_vec())),
        AxesForm::Input => {
            let name = fresh_name(names, &format!("{stem}_axes"), 0);
            let t = Tensor::from_i64(vec![axes.len() as i64], axes);
            let c = add_constant(graph, name, t);
            node.inputs.push(Some(c));
        }
    }
}

/// Build the parts and erase the fused nodes; `bias` is the bias's name, data and operand order.
/// `None` (nothing changed) when the weight cannot be read.
fn rewrite(
    graph: &mut Graph,
    f: &Fused,
    bias: Option<(String, Vec<f32>, bool)>,
    names: &mut HashSet<String>,
) -> Option<()> {
    let w = constant_through(graph, f.weight)?;
    let (rows, cols) = (
        usize::try_from(w.dims[0]).ok()?,
        usize::try_from(w.dims[1]).ok()?,
    );
    let wdata = w.to_f32().ok()?;
    if wdata.len() != rows * cols {
        return None;
    }
    // Every part's block must be inside the weight and the bias (checked before anything changes).
    let inside = |p: &Part| p.from + p.width <= cols;
    if !f.parts.iter().all(inside) || bias.as_ref().is_some_and(|b| b.1.len() != cols) {
        return None;
    }
    let wname = graph.value(f.weight).name.clone();
    // Copy what the nodes to be replaced carry before erasing them: the Reshape and the chain.
    let off = if f.bias.is_some() { 2 } else { 1 };
    let templates: Vec<Node> = match f.shape {
        Some(_) => f.erase[off..off + 1 + f.steps.len()]
            .iter()
            .map(|&n| graph.node(n).clone())
            .collect(),
        None => Vec::new(),
    };
    for &n in &f.erase {
        graph.erase_node(n);
    }
    let node_name = |names: &mut HashSet<String>, base: &str, op: &str, i: usize| {
        let stem = if base.is_empty() {
            op.to_lowercase()
        } else {
            base.to_string()
        };
        fresh_name(names, &format!("{stem}_part"), i)
    };
    let new_value = |graph: &mut Graph, names: &mut HashSet<String>, stem: &str| {
        let name = fresh_name(names, &format!("{stem}_out"), 0);
        graph.add_value(Value::new(name, Type::Unknown, ValueDef::Undefined))
    };
    for (i, part) in f.parts.iter().enumerate() {
        let Some((&first, rest)) = part.to.split_first() else {
            continue;
        };
        let (from, width) = (part.from, part.width);
        let wi = Tensor::from_f32(
            vec![rows as i64, width as i64],
            &columns(&wdata, cols, from, width),
        );
        let wn = fresh_name(names, &format!("{wname}_part"), i);
        let wv = add_constant(graph, wn, wi);
        // MatMul.
        let mut stages: Vec<Node> = Vec::new();
        let mut mm = Node::new("MatMul");
        mm.name = node_name(names, &f.names[0], "MatMul", i);
        mm.inputs = vec![Some(f.x), Some(wv)];
        stages.push(mm);
        if let Some((bname, b, first_operand)) = &bias {
            let bi = Tensor::from_f32(vec![width as i64], &b[from..from + width]);
            let bn = fresh_name(names, &format!("{bname}_part"), i);
            let bv = add_constant(graph, bn, bi);
            let mut add = Node::new("Add");
            add.name = node_name(names, &f.names[1], "Add", i);
            add.inputs = if *first_operand {
                vec![Some(bv), None]
            } else {
                vec![None, Some(bv)]
            };
            stages.push(add);
        }
        if let (Some(shape), Some(reshape)) = (&f.shape, templates.first()) {
            let mut rs = reshape.clone();
            rs.name = node_name(names, &f.names[2], "Reshape", i);
            let sn = fresh_name(names, &format!("{}_shape", rs.name), 0);
            let sv = add_constant(graph, sn, Tensor::from_i64(vec![shape.len() as i64], shape));
            rs.inputs = vec![None, Some(sv)];
            stages.push(rs);
        }
        for (s, (step, t)) in f.steps.iter().zip(templates.iter().skip(1)).enumerate() {
            let mut nd = t.clone();
            nd.name = node_name(names, &f.names[3 + s], &t.op_type, i);
            nd.inputs = vec![None];
            match step {
                Step::Identity => {}
                Step::Transpose(p) => nd.set_attr("perm", AttrValue::Ints(p.clone())),
                Step::Squeeze(a, form) | Step::Unsqueeze(a, form) => {
                    nd.attrs.retain(|x| x.name != "axes");
                    let stem = nd.name.clone();
                    axes_operand(graph, &mut nd, names, &stem, a, *form);
                }
            }
            stages.push(nd);
        }
        // Wire the stages: each reads the previous one's output in its empty data slot.
        let mut prev: Option<ValueId> = None;
        let last = stages.len() - 1;
        for (s, mut nd) in stages.into_iter().enumerate() {
            if let Some(p) = prev {
                if let Some(slot) = nd.inputs.iter_mut().find(|x| x.is_none()) {
                    *slot = Some(p);
                }
            }
            let out = if s == last {
                first
            } else {
                let stem = nd.name.clone();
                new_value(graph, names, &stem)
            };
            nd.outputs = vec![Some(out)];
            graph.add_node(nd);
            prev = Some(out);
        }
        for &d in rest {
            let mut id = Node::new("Identity");
            id.name = fresh_name(names, &format!("{}_copy", graph.value(d).name), 0);
            id.inputs = vec![Some(first)];
            id.outputs = vec![Some(d)];
            graph.add_node(id);
        }
    }
    Some(())
}
