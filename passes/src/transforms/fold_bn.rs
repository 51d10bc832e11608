//! `fold-bn`: fold inference-mode BatchNormalization, and per-channel affine `Mul`/`Add` by
//! constants, into the preceding Conv, ConvTranspose or Gemm with constant f32 weights.
//!
//! A per-channel affine map `y = s * x + t` after a layer with output channel `o` is the same
//! layer with its weights for `o` scaled by `s[o]` and its bias `b[o]` replaced by
//! `s[o] * b[o] + t[o]`. For BatchNormalization `s = gamma / sqrt(var + eps)`,
//! `t = beta - mean * s`. The layer's output must have no other reader (else the unscaled value is
//! still needed). New weights are new constants: a weight shared with another node is not changed.

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use crate::transforms::dce::eliminate_dead_code;
use spa_ir::{DType, Graph, Model, NodeId, Tensor, ValueDef, ValueId};
use std::collections::HashSet;

pub static INFO: PassInfo = PassInfo {
    name: "fold-bn",
    summary: "Fold BatchNormalization and per-channel Mul/Add by constants into the preceding Conv, ConvTranspose or Gemm",
    options: &[],
    create: |_| Ok(Box::new(FoldBn)),
};

struct FoldBn;

/// The affine map to fold, per output channel.
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

fn f32_const(graph: &Graph, v: Option<ValueId>) -> Option<Vec<f32>> {
    let t = graph.constant(v?)?;
    if t.dtype != DType::F32 {
        return None;
    }
    t.to_f32().ok()
}

fn rank_of(graph: &Graph, v: ValueId) -> Option<usize> {
    graph.value(v).ty.as_tensor().and_then(|t| t.rank())
}

/// The per-channel vector of a broadcast constant for an output of rank `rank` with `c` channels
/// on axis 1: a scalar, or dims `[c, 1, ...]` (optionally with leading 1s) reaching axis 1.
fn per_channel(t: &Tensor, rank: usize, c: usize) -> Option<Vec<f32>> {
    if t.dtype != DType::F32 || t.dims.len() > rank {
        return None;
    }
    let v = t.to_f32().ok()?;
    if v.len() == 1 {
        return Some(vec![v[0]; c]);
    }
    // Align right: axis k of the constant is axis k + (rank - len) of the output.
    let off = rank - t.dims.len();
    for (k, &d) in t.dims.iter().enumerate() {
        let axis = k + off;
        let want = if axis == 1 { c as i64 } else { 1 };
        if d != want {
            return None;
        }
    }
    if off > 1 || v.len() != c {
        return None;
    }
    Some(v)
}

/// The affine map a node applies per channel of its first input, if it is foldable.
fn affine_of(graph: &Graph, id: NodeId, channels: usize) -> Option<(ValueId, Affine)> {
    let node = graph.node(id);
    if !node.canonical_domain().is_empty() {
        return None;
    }
    let x = (*node.inputs.first()?)?;
    match node.op_type.as_str() {
        "BatchNormalization" => {
            if node.attr_int("training_mode").unwrap_or(0) != 0
                || node.outputs.iter().skip(1).flatten().next().is_some()
            {
                return None;
            }
            let eps = node.attr_float("epsilon").unwrap_or(1e-5);
            let gamma = f32_const(graph, *node.inputs.get(1)?)?;
            let beta = f32_const(graph, *node.inputs.get(2)?)?;
            let mean = f32_const(graph, *node.inputs.get(3)?)?;
            let var = f32_const(graph, *node.inputs.get(4)?)?;
            if [gamma.len(), beta.len(), mean.len(), var.len()] != [channels; 4] {
                return None;
            }
            let scale: Vec<f32> = gamma
                .iter()
                .zip(&var)
                .map(|(g, v)| g / (v + eps).sqrt())
                .collect();
            let shift = beta
                .iter()
                .zip(&mean)
                .zip(&scale)
                .map(|((b, m), s)| b - m * s)
                .collect();
            Some((x, Affine { scale, shift }))
        }
        "Mul" | "Add" => {
            if node.inputs.len() != 2 {
                return None;
            }
            let (x, c) = match (node.inputs[0], node.inputs[1]) {
                (Some(a), Some(b)) if graph.constant(b).is_some() => (a, b),
                (Some(a), Some(b)) if graph.constant(a).is_some() => (b, a),
                _ => return None,
            };
            let rank = rank_of(graph, x)?;
            let v = per_channel(graph.constant(c)?, rank, channels)?;
            let a = if node.op_type == "Mul" {
                Affine {
                    scale: v,
                    shift: vec![0.0; channels],
                }
            } else {
                Affine {
                    scale: vec![1.0; channels],
                    shift: v,
                }
            };
            Some((x, a))
        }
        _ => None,
    }
}

fn new_const(graph: &mut Graph, base: &str, t: Tensor, names: &mut HashSet<String>) -> ValueId {
    // Folding twice into one layer keeps one suffix.
    let base = match base.rfind("_folded_") {
        Some(i) if base[i + 8..].bytes().all(|b| b.is_ascii_digit()) => &base[..i],
        _ => base,
    };
    let name = super::fresh_name(names, &format!("{base}_folded_"), 0);
    super::add_constant(graph, name, t)
}

/// Try to fold the affine node `id` into the producer of its input; true if folded.
fn fold_one(
    graph: &mut Graph,
    id: NodeId,
    users: &[Vec<(NodeId, usize)>],
    names: &mut HashSet<String>,
) -> Option<bool> {
    let node = graph.node(id);
    let y = (*node.outputs.first()?)?;
    let x = (*node.inputs.first()?)?;
    // The affine input could be the second operand of Mul/Add; find the non-constant one.
    let x = if graph.constant(x).is_some() {
        (*node.inputs.get(1)?)?
    } else {
        x
    };
    let ValueDef::Node(p, 0) = graph.value(x).def else {
        return Some(false);
    };
    if users[x.index()].len() != 1 || graph.outputs.contains(&x) {
        return Some(false);
    }
    let prod = graph.node(p);
    if !prod.canonical_domain().is_empty() || prod.outputs.len() != 1 {
        return Some(false);
    }
    let op = prod.op_type.clone();
    let w_id = (*prod.inputs.get(1)?)?;
    let w = graph.constant(w_id)?;
    if w.dtype != DType::F32 {
        return Some(false);
    }
    let wdims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
    let group = prod.attr_int("group").unwrap_or(1).max(1) as usize;
    let trans_b = prod.attr_int("transB").unwrap_or(0) != 0;
    let channels = match op.as_str() {
        "Conv" => *wdims.first()?,
        "ConvTranspose" => wdims.get(1)? * group,
        "Gemm" => {
            if rank_of(graph, x) != Some(2) {
                return Some(false);
            }
            if trans_b {
                *wdims.first()?
            } else {
                *wdims.get(1)?
            }
        }
        _ => return Some(false),
    };
    let Some((_, aff)) = affine_of(graph, id, channels) else {
        return Some(false);
    };
    let mut wv = w.to_f32().ok()?;
    let bias_id = prod.inputs.get(2).copied().flatten();
    let mut bias = match bias_id {
        Some(b) => {
            let t = graph.constant(b)?;
            if t.dtype != DType::F32 {
                return Some(false);
            }
            let v = t.to_f32().ok()?;
            if v.len() == channels {
                v
            } else if v.len() == 1 {
                vec![v[0]; channels]
            } else {
                return Some(false);
            }
        }
        None => vec![0.0; channels],
    };
    let mut attrs = prod.attrs.clone();
    if op == "Gemm" {
        // y = alpha * A B' + beta * C: fold beta into the new bias, keep alpha.
        let beta = prod.attr_float("beta").unwrap_or(1.0);
        for b in bias.iter_mut() {
            *b *= beta;
        }
        attrs.retain(|a| a.name != "beta");
    }
    // Scale weights per output channel.
    let total = wv.len();
    match op.as_str() {
        "Conv" => {
            let per = total / channels.max(1);
            for (o, chunk) in wv.chunks_mut(per.max(1)).enumerate() {
                let s = *aff.scale.get(o)?;
                chunk.iter_mut().for_each(|w| *w *= s);
            }
        }
        "ConvTranspose" => {
            // W: [Cin, Cout/g, k...]; output channel of (ci, j) is (ci / (Cin/g)) * (Cout/g) + j.
            let cin = *wdims.first()?;
            let cpg = *wdims.get(1)?;
            let k: usize = wdims.iter().skip(2).product();
            let in_per_group = (cin / group).max(1);
            for ci in 0..cin {
                for j in 0..cpg {
                    let o = (ci / in_per_group) * cpg + j;
                    let s = *aff.scale.get(o)?;
                    let start = (ci * cpg + j) * k;
                    wv.get_mut(start..start + k)?
                        .iter_mut()
                        .for_each(|w| *w *= s);
                }
            }
        }
        _ => {
            // Gemm: B is [K, N] (or [N, K] with transB); channel n is a column (row).
            let (r, c) = (*wdims.first()?, *wdims.get(1)?);
            for i in 0..r {
                for j in 0..c {
                    let n = if trans_b { i } else { j };
                    *wv.get_mut(i * c + j)? *= *aff.scale.get(n)?;
                }
            }
        }
    }
    for (o, b) in bias.iter_mut().enumerate() {
        *b = *b * aff.scale.get(o)? + aff.shift.get(o)?;
    }
    let wname = graph.value(w_id).name.clone();
    let new_w = Tensor::from_f32(w.dims.clone(), &wv);
    let new_w = new_const(graph, &wname, new_w, names);
    let bname = bias_id
        .map(|b| graph.value(b).name.clone())
        .unwrap_or_else(|| format!("{wname}_bias"));
    let new_b = new_const(
        graph,
        &bname,
        Tensor::from_f32(vec![channels as i64], &bias),
        names,
    );
    let prod = graph.node_mut(p);
    prod.attrs = attrs;
    prod.inputs[1] = Some(new_w);
    if prod.inputs.len() < 3 {
        prod.inputs.resize(3, None);
    }
    prod.inputs[2] = Some(new_b);
    // The producer now computes the affine node's output: it takes over `y`.
    prod.outputs[0] = Some(y);
    graph.erase_node(id);
    graph.value_mut(y).def = ValueDef::Node(p, 0);
    graph.erase_value(x);
    Some(true)
}

/// Fold every foldable BatchNormalization / per-channel Mul or Add; returns how many.
pub fn fold_bn(model: &mut Model) -> Result<usize, spa_ir::IrError> {
    let graph = &mut model.graph;
    let mut names: HashSet<String> = graph
        .value_ids()
        .map(|v| graph.value(v).name.clone())
        .collect();
    let mut folded = 0;
    loop {
        let users = graph.users();
        let order = graph.topo_order()?;
        let mut changed = false;
        for id in order {
            if graph.try_node(id).is_none() {
                continue;
            }
            let op = graph.node(id).op_type.as_str();
            if !matches!(op, "BatchNormalization" | "Mul" | "Add") {
                continue;
            }
            if fold_one(graph, id, &users, &mut names) == Some(true) {
                // Only the folded pair changed: the producer now defines the affine node's
                // output, whose readers are unchanged, so `users` stays valid for later nodes.
                folded += 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if folded > 0 {
        eliminate_dead_code(graph)?;
    }
    Ok(folded)
}

impl Pass for FoldBn {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let before = model.graph.num_nodes();
        let folded = fold_bn(model).map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        cx.stat("nodes before", before);
        cx.stat("nodes after", model.graph.num_nodes());
        cx.stat("folded", folded);
        Ok(if folded == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}
