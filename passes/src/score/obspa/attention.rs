//! Attention Q/K head dims: the channels no layer consumes, scored by what removing them does to
//! the attention output, in a basis where that is small.
//!
//! Q/K head dims meet only in the score MatMul `Q K^T`, so no weight's input axis carries them
//! and the OBS search has nothing to re-fit. Per head the logits are `x_q Wq Wk^T x_k^T`: any
//! invertible `G` (per head) with `Wq -> Wq G` and `Wk -> Wk G^-T` (biases alike) leaves them,
//! and so the model, unchanged. With `Aq^T C_q Aq = Ra^T Ra` and `Ak^T C_k Ak = Rb^T Rb`
//! (`A = [W; b]`, `C`: the Hessians of the projections' inputs extended by a constant 1) and the
//! SVD `Ra Rb^T = U S V^T`, the choice
//! `G = Rb^T V S^-1/2` (so `G^-T = Rb^-1 V S^1/2`) makes head dim `j` carry the `j`-th singular
//! direction of the whitened bilinear form, balanced between Q and K: dropping the last dims is
//! then the best low-rank cut of each head's logits (for independent query and key inputs).
//!
//! A channel's score is measured, not estimated: on recorded calibration batches, the Q side is
//! cut to the first `n - r` directions of every head (`Y -> Y G P_r G^-1` where the projection's
//! columns are still per column) and the nodes from there to the next consumer (the output
//! projection: score MatMul, scaling, mask, Softmax, `P V`, layout ops) are evaluated again. The
//! loss is `1/N ||dZ Wo^T||^2`, in the units of the OBS losses of `Wo`; with `normalize=relative`
//! it is divided by the same output energy as `Wo`'s own scores. Channel `n - r` gets the loss of
//! cutting `r` dims (a running maximum), so scores grow along the cut order and `prune` removes
//! the last directions. The rotation is written into the model by the score pass itself (the
//! model computes the same function), so the scores hold whatever passes run before `prune`.

use super::layer::Consumer;
use super::math::{self, HessianSum};
use crate::group::GroupAnalysis;
pub(super) use crate::transforms::only_user;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayD, IxDyn};
use rayon::prelude::*;
use spa_ir::interp::{eval_node, Observer, Value};
use spa_ir::ops::binary_einsum;
use spa_ir::{Graph, Model, NodeId, ValueId};
use std::collections::HashMap;

/// Calibration rows (query positions) recorded per site for the measurement.
pub const RECORD_ROWS: usize = 2048;

/// One projection (`x W + b`) feeding a side of the score MatMul.
#[derive(Clone, Debug)]
pub struct Side {
    pub node: NodeId,
    pub weight: ValueId,
    pub bias: Option<ValueId>,
    /// The value after the bias (and scalar Muls): still one column per weight column.
    pub point: ValueId,
    /// Layout nodes from `point` to the score MatMul, with the input slot the path enters.
    pub path: Vec<(NodeId, usize)>,
    /// Per weight column: (head, head dim).
    pub pos: Vec<(usize, usize)>,
    pub rows_in: usize,
}

/// A score MatMul whose contracted axis carries a prunable space no layer consumes.
#[derive(Clone, Debug)]
pub struct Site {
    /// Index into `groups.spaces`.
    pub space: usize,
    pub q: Side,
    pub k: Side,
    /// The score MatMul and the nodes after it up to the consumer, with the slot the path
    /// enters.
    pub chain: Vec<(NodeId, usize)>,
    /// Index into the consumer list (the output projection).
    pub consumer: usize,
    pub heads: usize,
    pub dim: usize,
}

pub(super) const LAYOUT: [&str; 6] = [
    "Transpose",
    "Reshape",
    "Identity",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
];

fn numel(graph: &Graph, v: ValueId) -> Option<usize> {
    let t = graph.constant(v)?;
    t.dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))
}

/// Whether `v` holds one element: a constant, or a computed value (`sqrt(1 / sqrt(d))`, as
/// torchvision and timm exports compute the attention scale) whose type says so.
fn is_scalar(graph: &Graph, v: ValueId) -> bool {
    if graph.constant(v).is_some() {
        return numel(graph, v) == Some(1);
    }
    graph
        .value(v)
        .ty
        .as_tensor()
        .and_then(|t| t.shape.as_ref())
        .is_some_and(|s| s.iter().all(|a| a.dim.known() == Some(1)))
}

/// Per position of an axis with term `term`: (head, head dim), where the head dim is `atom`'s
/// channel and the head that of the term's one other atom (head 0 where there is none).
pub(super) fn positions(
    groups: &GroupAnalysis,
    term: &crate::group::AtomTerm,
    atom: usize,
) -> Option<Vec<(usize, usize)>> {
    let dims = crate::score::channel_map(groups, term, atom)?;
    let mut atoms = Vec::new();
    term.atoms(&mut atoms);
    atoms.sort_unstable();
    atoms.dedup();
    let others: Vec<usize> = atoms.into_iter().filter(|&a| a != atom).collect();
    let heads: Vec<Option<u32>> = match others.as_slice() {
        [] => vec![Some(0); dims.len()],
        [h] => crate::score::channel_map(groups, term, *h)?,
        _ => return None,
    };
    if heads.len() != dims.len() {
        return None;
    }
    heads
        .iter()
        .zip(&dims)
        .map(|(h, d)| Some(((*h)? as usize, (*d)? as usize)))
        .collect()
}

/// A projection of space `atom` channels: MatMul with a constant 2-D float weight whose output
/// axis carries `atom` (and at most one other space, the heads), followed to a score MatMul.
pub(super) fn side(
    model: &Model,
    groups: &GroupAnalysis,
    users: &[Vec<(NodeId, usize)>],
    n: NodeId,
    atom: usize,
) -> Option<(Side, NodeId, usize)> {
    let graph = &model.graph;
    let node = graph.node(n);
    if node.op_type != "MatMul" || !node.canonical_domain().is_empty() {
        return None;
    }
    let (x, wv) = (node.input(0)?, node.input(1)?);
    let w = graph.constant(wv)?;
    if graph.constant(x).is_some() || w.dims.len() != 2 || w.dtype != spa_ir::DType::F32 {
        return None;
    }
    if users.get(wv.index()).is_none_or(|u| u.len() != 1) {
        return None;
    }
    let (rows_in, cols) = (
        usize::try_from(w.dims[0]).ok()?,
        usize::try_from(w.dims[1]).ok()?,
    );
    let pos = positions(groups, groups.terms.get(&(wv, 1))?, atom)?;
    if pos.len() != cols {
        return None;
    }
    let mut v = node.output(0)?;
    let mut point = v;
    let mut bias = None;
    let mut path = Vec::new();
    // torchvision's MultiheadAttention, split: bias, five layout ops to the part, three to the
    // heads, the scale.
    for _ in 0..16 {
        let (u, slot) = only_user(graph, users, v)?;
        let un = graph.node(u);
        if !un.canonical_domain().is_empty() {
            return None;
        }
        let other = un.inputs.iter().flatten().copied().find(|&i| i != v);
        let out = un.output(0)?;
        match un.op_type.as_str() {
            "Add" if path.is_empty() && bias.is_none() => {
                let b = other?;
                if numel(graph, b)? != cols || graph.constant(b)?.dtype != spa_ir::DType::F32 {
                    return None;
                }
                if users.get(b.index()).is_none_or(|u| u.len() != 1) {
                    return None;
                }
                bias = Some(b);
                point = out;
            }
            "Mul" | "Div" if other.is_some_and(|o| is_scalar(graph, o)) && slot == 0 => {
                if path.is_empty() {
                    point = out;
                } else {
                    path.push((u, slot));
                }
            }
            "MatMul" | "Einsum"
                if un
                    .inputs
                    .iter()
                    .flatten()
                    .all(|&i| graph.constant(i).is_none())
                    && (un.op_type == "MatMul" || binary_einsum(un).is_some()) =>
            {
                let s = Side {
                    node: n,
                    weight: wv,
                    bias,
                    point,
                    path,
                    pos,
                    rows_in,
                };
                return Some((s, u, slot));
            }
            op if LAYOUT.contains(&op) && slot == 0 => path.push((u, slot)),
            _ => return None,
        }
        v = out;
    }
    None
}

/// Whether `a, b -> out` is a batched `Q K^T`: both end in the one contracted label, differ
/// in one other position (the query and key rows) and agree everywhere else (batch axes, heads),
/// and the output keeps every other label once.
pub(super) fn is_score_einsum([a, b, out]: &[Vec<char>; 3]) -> bool {
    let n = a.len();
    if n < 2 || b.len() != n || a[n - 1] != b[n - 1] || out.contains(&a[n - 1]) {
        return false;
    }
    let differ: Vec<usize> = (0..n - 1).filter(|&i| a[i] != b[i]).collect();
    let [p] = differ[..] else { return false };
    let mut kept: Vec<char> = a[..n - 1].to_vec();
    kept.push(b[p]);
    !b.contains(&a[p])
        && !a.contains(&b[p])
        && out.len() == n
        && kept.iter().all(|c| out.contains(c))
}

/// Whether `a, b -> out` is a batched `P V`: `b`'s last label (V's head dim) is kept and not in
/// `a`, one label of both (the key positions) is contracted, every other label of `b` is a batch
/// axis of both and of the output, and `a`'s own label (the query rows) is kept.
pub(super) fn is_mix_einsum([a, b, out]: &[Vec<char>; 3]) -> bool {
    let n = b.len();
    if n < 2 || a.len() != n || a.contains(&b[n - 1]) || !out.contains(&b[n - 1]) {
        return false;
    }
    let contracted: Vec<char> = b
        .iter()
        .copied()
        .filter(|c| a.contains(c) && !out.contains(c))
        .collect();
    let rows: Vec<char> = a.iter().copied().filter(|c| !b.contains(c)).collect();
    let ([_], [r]) = (&contracted[..], &rows[..]) else {
        return false;
    };
    let batch_ok = b[..n - 1]
        .iter()
        .all(|c| contracted.contains(c) || (a.contains(c) && out.contains(c)));
    batch_ok && out.contains(r) && out.len() == n
}

/// The attention sites of prunable spaces no consumer reads (`unconsumed[s]` true).
pub fn find_sites(
    model: &Model,
    groups: &GroupAnalysis,
    consumers: &[Consumer],
    unconsumed: &[bool],
) -> Vec<Site> {
    let graph = &model.graph;
    let users = graph.users();
    let mut sites = Vec::new();
    for (s, &a) in groups.spaces.iter().enumerate() {
        if !unconsumed.get(s).copied().unwrap_or(false) || !groups.atoms[a].prunable() {
            continue;
        }
        let Some(dim) = groups.atoms[a].size.map(|d| d as usize).filter(|&d| d > 0) else {
            continue;
        };
        // Sides by score MatMul and slot.
        let mut by_score: HashMap<NodeId, [Option<Side>; 2]> = HashMap::new();
        for n in graph.node_ids() {
            if let Some((sd, score, slot)) = side(model, groups, &users, n, a) {
                if slot < 2 {
                    by_score.entry(score).or_default()[slot] = Some(sd);
                }
            }
        }
        let mut scores: Vec<_> = by_score.into_iter().collect();
        scores.sort_by_key(|(n, _)| n.0);
        for (score, [q, k]) in scores {
            let (Some(q), Some(k)) = (q, k) else { continue };
            let sn = graph.node(score);
            if sn.op_type == "Einsum"
                && !(binary_einsum(sn).is_some_and(|t| is_score_einsum(&t))
                    && (0..2).all(|slot| last_axis_is(graph, groups, score, slot, a)))
            {
                continue;
            }
            let heads = q.pos.iter().map(|p| p.0 + 1).max().unwrap_or(0);
            if heads == 0
                || q.pos.len() != heads * dim
                || k.pos.len() != q.pos.len()
                || k.pos.iter().map(|p| p.0 + 1).max() != Some(heads)
            {
                continue;
            }
            let Some((chain, consumer)) = chain_to_consumer(graph, &users, consumers, score) else {
                continue;
            };
            sites.push(Site {
                space: s,
                q,
                k,
                chain,
                consumer,
                heads,
                dim,
            });
        }
    }
    sites
}

/// Whether the last axis of input `slot` of `node` carries space `atom` alone.
pub(super) fn last_axis_is(
    graph: &Graph,
    groups: &GroupAnalysis,
    node: NodeId,
    slot: usize,
    atom: usize,
) -> bool {
    graph
        .node(node)
        .input(slot)
        .and_then(|x| {
            let rank = graph.value(x).ty.as_tensor()?.rank()?;
            groups.terms.get(&(x, rank.checked_sub(1)?))
        })
        .is_some_and(|t| matches!(t, crate::group::AtomTerm::Atom(x) if *x == atom))
}

/// From the score MatMul (slot 0 entered) through single-user nodes to a consumer reading the
/// path's value as its layer input.
fn chain_to_consumer(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    consumers: &[Consumer],
    score: NodeId,
) -> Option<(Vec<(NodeId, usize)>, usize)> {
    let mut chain = vec![(score, 0)];
    let mut v = graph.node(score).output(0)?;
    for _ in 0..12 {
        let (u, slot) = only_user(graph, users, v)?;
        let un = graph.node(u);
        if !un.canonical_domain().is_empty() || un.outputs.len() != 1 {
            return None;
        }
        if un.inputs.iter().flatten().filter(|&&i| i == v).count() != 1 {
            return None;
        }
        if let Some(i) = consumers.iter().position(|c| c.node == u) {
            return (slot == 0).then_some((chain, i));
        }
        chain.push((u, slot));
        v = un.output(0)?;
    }
    None
}

/// What a site records from one calibration batch.
#[derive(Clone, Default)]
struct Batch {
    point: Option<Value>,
    inputs: HashMap<NodeId, Vec<Option<Value>>>,
    z: Option<Value>,
    /// The rows that count, by index (the padding mask's nonzero positions), when there is a mask.
    keep: Option<Vec<usize>>,
}

/// Records, per site, the values the measurement re-evaluates, for the first
/// [`RECORD_ROWS`] rows.
///
/// With a padding `mask` (a graph input, `[batch, positions]`), the rows at its zero positions
/// are left out of the measurement and of the row count; the mask of a batch is read where a
/// node of the model consumes it.
pub struct Recorder<'s> {
    sites: &'s [Site],
    consumer_nodes: Vec<NodeId>,
    current: Vec<Batch>,
    done: Vec<Vec<Batch>>,
    rows: Vec<usize>,
    mask: Option<ValueId>,
    keep: Option<Vec<bool>>,
}

impl<'s> Recorder<'s> {
    pub fn new(sites: &'s [Site], consumers: &[Consumer], mask: Option<ValueId>) -> Recorder<'s> {
        Recorder {
            sites,
            consumer_nodes: sites.iter().map(|s| consumers[s.consumer].node).collect(),
            current: vec![Batch::default(); sites.len()],
            done: vec![Vec::new(); sites.len()],
            rows: vec![0; sites.len()],
            mask,
            keep: None,
        }
    }
}

impl Observer for Recorder<'_> {
    fn observe(&mut self, graph: &Graph, node: NodeId, ins: &[Option<&Value>], outs: &[Value]) {
        let nd = graph.node(node);
        if let Some(m) = self.mask {
            if let Some(Some(v)) = nd
                .inputs
                .iter()
                .position(|x| *x == Some(m))
                .and_then(|k| ins.get(k))
            {
                self.keep = Some(super::collect::unmasked(v));
            }
        }
        for (i, site) in self.sites.iter().enumerate() {
            if self.rows[i] >= RECORD_ROWS {
                continue;
            }
            if let Some(k) = nd.outputs.iter().position(|o| *o == Some(site.q.point)) {
                self.current[i].point = outs.get(k).cloned();
            }
            // The input on the path is recomputed by the measurement: only the others are kept
            // (the attention probabilities of every head would otherwise be copied once per node
            // between the score product and `P V`).
            if let Some(&(_, slot)) = site
                .q
                .path
                .iter()
                .chain(&site.chain)
                .find(|&&(n, _)| n == node)
            {
                let kept = ins
                    .iter()
                    .enumerate()
                    .map(|(k, x)| if k == slot { None } else { x.cloned() })
                    .collect();
                self.current[i].inputs.insert(node, kept);
            }
            if node == self.consumer_nodes[i] {
                let z = ins.first().copied().flatten().cloned();
                let cols = z
                    .as_ref()
                    .and_then(|z| z.shape().last().copied())
                    .unwrap_or(0);
                let b = std::mem::take(&mut self.current[i]);
                if let (Some(z), true) = (z, cols > 0) {
                    let rows = z.len() / cols;
                    let keep: Option<Vec<usize>> = self
                        .keep
                        .as_ref()
                        .filter(|k| k.len() == rows)
                        .map(|k| (0..rows).filter(|&r| k[r]).collect());
                    self.rows[i] += keep.as_ref().map_or(rows, Vec::len);
                    self.done[i].push(Batch {
                        z: Some(z),
                        keep,
                        ..b
                    });
                }
            }
        }
    }
}

impl Recorder<'_> {
    pub fn into_batches(self) -> Vec<Vec<RecordedBatch>> {
        self.done
            .into_iter()
            .map(|bs| {
                bs.into_iter()
                    .filter_map(|b| {
                        Some(RecordedBatch {
                            point: b.point?,
                            inputs: b.inputs,
                            z: b.z?,
                            keep: b.keep,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// One recorded batch of a site.
pub struct RecordedBatch {
    point: Value,
    inputs: HashMap<NodeId, Vec<Option<Value>>>,
    z: Value,
    /// The rows that count, by index (all when `None`).
    keep: Option<Vec<usize>>,
}

impl RecordedBatch {
    /// Rows of the attention output that count.
    fn rows(&self) -> usize {
        match &self.keep {
            Some(k) => k.len(),
            None => self.z.len() / self.z.shape().last().copied().unwrap_or(1).max(1),
        }
    }
}

/// The per-head bases: `g[h]` (applied to Q's columns of head `h`) and `gt[h] = G^-T` (to K's).
pub struct Basis {
    pub g: Vec<Array2<f64>>,
    pub gt: Vec<Array2<f64>>,
}

/// Columns of head `h`, in head-dim order.
pub(super) fn head_columns(pos: &[(usize, usize)], heads: usize, dim: usize) -> Vec<Vec<usize>> {
    let mut cols = vec![vec![usize::MAX; dim]; heads];
    for (c, &(h, d)) in pos.iter().enumerate() {
        if let Some(x) = cols.get_mut(h).and_then(|v| v.get_mut(d)) {
            *x = c;
        }
    }
    cols
}

/// Upper `R` with `R^T R = A^T C A` (a tiny ridge keeps dead directions factorable).
fn whitened_factor(a: &Array2<f64>, c: &Array2<f64>) -> Result<Array2<f64>, math::MathError> {
    let mut gram = a.t().dot(&c.dot(a));
    let n = gram.nrows().max(1) as f64;
    let ridge = 1e-10 * (gram.diag().sum() / n).max(1e-30);
    gram.diag_mut().iter_mut().for_each(|x| *x += ridge);
    Ok(math::cholesky(&gram)?.reversed_axes())
}

/// A projection's weight and bias (if any), as `f32` data.
pub struct Projection<'a> {
    pub weight: &'a [f32],
    pub bias: Option<&'a [f32]>,
    /// Its input's Hessian sums.
    pub hessian: &'a HessianSum,
}

/// The bases of a site from the two projections and their input Hessians. The bilinear form is
/// the one with the biases: `[x 1] [Wq; bq] [Wk; bk]^T [x 1]^T`, whitened by the Hessians of
/// `[x 1]`.
pub fn basis(
    site: &Site,
    q: &Projection<'_>,
    k: &Projection<'_>,
) -> Result<Basis, math::MathError> {
    let (hq, hk) = (q.hessian.with_bias(), k.hessian.with_bias());
    let mut g = Vec::with_capacity(site.heads);
    let mut gt = Vec::with_capacity(site.heads);
    let qc = head_columns(&site.q.pos, site.heads, site.dim);
    let kc = head_columns(&site.k.pos, site.heads, site.dim);
    let wcols = site.q.pos.len();
    for h in 0..site.heads {
        // `[W; b]` restricted to the head's columns, `(rows + 1) x dim`.
        let take = |p: &Projection<'_>, cols: &[usize], rows: usize| {
            Array2::from_shape_fn((rows + 1, site.dim), |(r, j)| {
                let v = if r < rows {
                    p.weight.get(r * wcols + cols[j])
                } else {
                    p.bias.and_then(|b| b.get(cols[j]))
                };
                v.copied().unwrap_or(0.0) as f64
            })
        };
        let aq = take(q, &qc[h], site.q.rows_in);
        let ak = take(k, &kc[h], site.k.rows_in);
        let ra = whitened_factor(&aq, &hq)?;
        let rb = whitened_factor(&ak, &hk)?;
        let (v, sv) = jacobi_right(&ra.dot(&rb.t()));
        let top = sv.first().copied().unwrap_or(0.0);
        let d: Vec<f64> = sv
            .iter()
            .map(|&x| x.max(top * 1e-9).max(1e-300).sqrt())
            .collect();
        // G = Rb^T V D^-1, G^-T = Rb^-1 V D.
        let mut gh = rb.t().dot(&v);
        let mut gth = upper_solve(&rb, &v);
        for (j, &dj) in d.iter().enumerate() {
            gh.column_mut(j).mapv_inplace(|x| x / dj);
            gth.column_mut(j).mapv_inplace(|x| x * dj);
        }
        g.push(gh);
        gt.push(gth);
    }
    Ok(Basis { g, gt })
}

/// `R^-1 B` for upper-triangular `R`.
pub(super) fn upper_solve(r: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let n = r.nrows();
    let mut x = b.clone();
    for c in 0..x.ncols() {
        for i in (0..n).rev() {
            let mut acc = x[(i, c)];
            for k in i + 1..n {
                acc -= r[(i, k)] * x[(k, c)];
            }
            x[(i, c)] = if r[(i, i)] != 0.0 {
                acc / r[(i, i)]
            } else {
                0.0
            };
        }
    }
    x
}

/// One-sided Jacobi: orthogonal `V` and singular values `s` (descending) with `M V = U diag(s)`.
pub fn jacobi_right(m: &Array2<f64>) -> (Array2<f64>, Vec<f64>) {
    let n = m.ncols();
    let mut a = m.clone();
    let mut v = Array2::<f64>::eye(n);
    for _ in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (cp, cq) = (a.column(p), a.column(q));
                let alpha = cp.dot(&cp);
                let beta = cq.dot(&cq);
                let gamma = cp.dot(&cq);
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let sn = c * t;
                for mat in [&mut a, &mut v] {
                    for r in 0..mat.nrows() {
                        let (x, y) = (mat[(r, p)], mat[(r, q)]);
                        mat[(r, p)] = c * x - sn * y;
                        mat[(r, q)] = sn * x + c * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..n)
        .map(|j| a.column(j).dot(&a.column(j)).sqrt())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| norms[y].total_cmp(&norms[x]).then(x.cmp(&y)));
    let vs = Array2::from_shape_fn((n, n), |(r, j)| v[(r, order[j])]);
    (vs, order.iter().map(|&j| norms[j]).collect())
}

/// `x (rows x cols, row-major over the last axis)` with each head's columns multiplied by `t[h]`.
fn transform_columns(
    x: &ArrayD<f32>,
    cols_of: &[Vec<usize>],
    t: &[Array2<f64>],
) -> Option<ArrayD<f32>> {
    let cols = *x.shape().last()?;
    let rows = x.len() / cols.max(1);
    let flat = x.as_standard_layout();
    let m = flat.view().into_shape_with_order((rows, cols)).ok()?;
    let mut out = m.to_owned();
    for (h, hc) in cols_of.iter().enumerate() {
        let th = t.get(h)?.mapv(|v| v as f32);
        match hc.first() {
            // A head's columns side by side (the usual layout): the product reads and writes
            // them in place (the same products as through a gathered copy).
            Some(&c0) if hc.iter().enumerate().all(|(j, &c)| c == c0 + j) => {
                let cs = s![.., c0..c0 + hc.len()];
                general_mat_mul(1.0, &m.slice(cs), &th, 0.0, &mut out.slice_mut(cs));
            }
            _ => {
                let sub = Array2::from_shape_fn((rows, hc.len()), |(r, j)| m[(r, hc[j])]);
                let y = sub.dot(&th);
                for (j, &c) in hc.iter().enumerate() {
                    out.column_mut(c).assign(&y.column(j));
                }
            }
        }
    }
    out.into_shape_with_order(IxDyn(x.shape())).ok()
}

/// `||dz Wo^T||^2` over the rows of `dz`, the loss in the output projection's units.
enum OutputMetric {
    /// `Wo^T`: the product as it is.
    Direct(Array2<f32>),
    /// The lower Cholesky factor `L` of `Wo^T Wo`: `||dz Wo^T||^2 = ||dz L||^2`, and `dz L` is a
    /// triangular product, about half the work of `dz Wo^T` when `Wo` is square.
    Factor(Array2<f32>),
}

impl OutputMetric {
    fn new(wo: &Array2<f64>) -> OutputMetric {
        let (out, cols) = wo.dim();
        // The triangular product costs about `(cols + TRI_NB) / 2` per element of `dz` (its
        // diagonal blocks are full), the direct one `out`.
        if 2 * out > cols + math::TRI_NB {
            let mut m = Array2::<f64>::zeros((cols, cols));
            math::par_gemm(1.0, &wo.t(), &wo.view(), 0.0, &mut m.view_mut());
            // A rank-deficient `Wo` (fewer independent rows than columns) has no factor.
            if let Ok(l) = math::cholesky_owned(m) {
                return OutputMetric::Factor(l.mapv(|v| v as f32));
            }
        }
        OutputMetric::Direct(wo.t().mapv(|v| v as f32))
    }

    fn loss(&self, dz: ndarray::ArrayView2<'_, f32>) -> f64 {
        let y = match self {
            OutputMetric::Direct(wt) => dz.dot(wt),
            OutputMetric::Factor(l) => math::mul_lower(dz, l.view(), false),
        };
        y.iter().map(|&x| (x as f64) * (x as f64)).sum()
    }
}

/// The measured loss of cutting `r = 1..=dim` directions from every head (index `r - 1`), in
/// OBS units (`1/N ||dZ Wo^T||^2`), from the recorded batches.
pub fn measure(
    model: &Model,
    site: &Site,
    basis: &Basis,
    batches: &[RecordedBatch],
    wo: &Array2<f64>,
) -> Result<Vec<f64>, String> {
    let graph = &model.graph;
    let qc = head_columns(&site.q.pos, site.heads, site.dim);
    let metric = OutputMetric::new(wo);
    let mut nodes: Vec<(NodeId, usize)> = site.q.path.clone();
    nodes.extend(site.chain.iter().copied());
    let rows: usize = batches.iter().map(RecordedBatch::rows).sum();
    if rows == 0 {
        return Err("no calibration rows were recorded".into());
    }
    let losses = (1..=site.dim)
        .into_par_iter()
        .map(|r| {
            let keep = site.dim - r;
            // T_r = G P_r G^-1 per head, G^-1 = (G^-T)^T.
            let t: Vec<Array2<f64>> = (0..site.heads)
                .map(|h| {
                    let g = basis.g[h].slice(s![.., ..keep]);
                    let gi = basis.gt[h].slice(s![.., ..keep]);
                    g.dot(&gi.t())
                })
                .collect();
            let mut loss = 0.0f64;
            for b in batches {
                let point = b
                    .point
                    .as_f32()
                    .ok_or_else(|| "the Q projection is not f32".to_string())?;
                let mut v = Value::f32(
                    transform_columns(point, &qc, &t)
                        .ok_or_else(|| "the Q projection has an unexpected shape".to_string())?,
                );
                for &(n, slot) in &nodes {
                    let ins = b.inputs.get(&n).ok_or_else(|| {
                        format!("node '{}' was not recorded", graph.node(n).label())
                    })?;
                    let refs: Vec<Option<&Value>> = ins
                        .iter()
                        .enumerate()
                        .map(|(i, x)| if i == slot { Some(&v) } else { x.as_ref() })
                        .collect();
                    let out = eval_node(model, graph, n, &refs).map_err(|e| e.to_string())?;
                    v = out.into_iter().next().ok_or("a node gave no output")?;
                }
                let (Some(zn), Some(z0)) = (v.as_f32(), b.z.as_f32()) else {
                    return Err("the attention output is not f32".into());
                };
                if zn.shape() != z0.shape() {
                    return Err("the re-evaluated attention output changed shape".into());
                }
                let cols = wo.ncols();
                let dz = (zn - z0)
                    .into_shape_with_order((z0.len() / cols.max(1), cols))
                    .map_err(|e| e.to_string())?;
                // Padding rows are dropped before the product.
                let dz = match &b.keep {
                    Some(k) => dz.select(ndarray::Axis(0), k),
                    None => dz,
                };
                loss += metric.loss(dz.view());
            }
            Ok(loss / rows as f64)
        })
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(losses)
}

/// Scores of a site's channels from the losses of [`measure`]: channel `dim - r` gets the loss
/// of cutting `r` directions, kept non-decreasing along the cut order.
pub fn scores(losses: &[f64]) -> Vec<f64> {
    let n = losses.len();
    let mut out = vec![0.0; n];
    let mut acc = 0.0f64;
    for (r, &l) in losses.iter().enumerate() {
        acc = acc.max(l);
        out[n - 1 - r] = acc;
    }
    out
}

/// The rotated weight (or bias) data: head columns multiplied by `t[h]`.
pub fn rotate(
    data: &[f32],
    pos: &[(usize, usize)],
    heads: usize,
    dim: usize,
    t: &[Array2<f64>],
) -> Option<Vec<f32>> {
    let cols = pos.len();
    let a = ArrayD::from_shape_vec(IxDyn(&[data.len() / cols.max(1), cols]), data.to_vec()).ok()?;
    let out = transform_columns(&a, &head_columns(pos, heads, dim), t)?;
    Some(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1;
        Array2::from_shape_fn((rows, cols), |_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
    }

    #[test]
    fn jacobi_gives_an_orthogonal_basis_of_decreasing_singular_directions() {
        for (n, seed) in [(1, 1), (5, 2), (16, 3)] {
            let m = pseudo_random(n, n, seed);
            let (v, s) = jacobi_right(&m);
            let vtv = v.t().dot(&v);
            let mv = m.dot(&v);
            let gram = mv.t().dot(&mv);
            for i in 0..n {
                for j in 0..n {
                    let id = if i == j { 1.0 } else { 0.0 };
                    assert!((vtv[(i, j)] - id).abs() < 1e-10, "V not orthogonal");
                    let want = if i == j { s[i] * s[i] } else { 0.0 };
                    assert!(
                        (gram[(i, j)] - want).abs() < 1e-9,
                        "M V columns not orthogonal"
                    );
                }
            }
            assert!(s.windows(2).all(|w| w[0] >= w[1]), "not descending: {s:?}");
        }
    }

    /// A site over `heads` heads of `dim` dims, columns head-major.
    fn site(rows_in: usize, heads: usize, dim: usize) -> Site {
        let side = Side {
            node: NodeId(0),
            weight: ValueId(0),
            bias: None,
            point: ValueId(0),
            path: Vec::new(),
            pos: (0..heads * dim).map(|c| (c / dim, c % dim)).collect(),
            rows_in,
        };
        Site {
            space: 0,
            q: side.clone(),
            k: side,
            chain: Vec::new(),
            consumer: 0,
            heads,
            dim,
        }
    }

    fn hessian_of(x: &Array2<f64>) -> HessianSum {
        let mut h = HessianSum::new(x.ncols());
        h.xtx = x.t().dot(x);
        h.colsum = x.sum_axis(ndarray::Axis(0)).to_vec();
        h.rows = x.nrows() as u64;
        h
    }

    #[test]
    fn the_basis_keeps_the_logits_and_orders_and_balances_the_whitened_directions() {
        let (rows_in, heads, dim) = (7, 2, 3);
        let st = site(rows_in, heads, dim);
        let wq = pseudo_random(rows_in, heads * dim, 11);
        let wk = pseudo_random(rows_in, heads * dim, 12);
        let (xq, xk) = (
            pseudo_random(40, rows_in, 13),
            pseudo_random(40, rows_in, 14),
        );
        let f = |a: &Array2<f64>| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let (hq, hk) = (hessian_of(&xq), hessian_of(&xk));
        let (bq, bk) = (
            pseudo_random(1, heads * dim, 15),
            pseudo_random(1, heads * dim, 16),
        );
        let (fq, fk, fbq, fbk) = (f(&wq), f(&wk), f(&bq), f(&bk));
        let proj = |w, b, h| Projection {
            weight: w,
            bias: Some(b),
            hessian: h,
        };
        let b = basis(&st, &proj(&fq, &fbq, &hq), &proj(&fk, &fbk, &hk)).unwrap();
        // `[W; b]` before and after, with the bias as the last row.
        let aug = |w: &[f32], b: &[f32]| {
            let mut v = w.to_vec();
            v.extend_from_slice(b);
            Array2::from_shape_fn((rows_in + 1, heads * dim), |(r, c)| {
                v[r * heads * dim + c] as f64
            })
        };
        let (wq, wk) = (aug(&fq, &fbq), aug(&fk, &fbk));
        let rot = |w: &[f32], t: &[Array2<f64>]| rotate(w, &st.q.pos, heads, dim, t).unwrap();
        let rq = aug(&rot(&fq, &b.g), &rot(&fbq, &b.g));
        let rk = aug(&rot(&fk, &b.gt), &rot(&fbk, &b.gt));
        let (cq, ck) = (hq.with_bias(), hk.with_bias());
        for h in 0..heads {
            let cols = s![.., h * dim..(h + 1) * dim];
            // Same bilinear form per head.
            let before = wq.slice(cols).dot(&wk.slice(cols).t());
            let after = rq.slice(cols).dot(&rk.slice(cols).t());
            assert!((&before - &after).iter().all(|d| d.abs() < 1e-4));
            // Whitened Q and K directions: orthogonal, equal norms, decreasing.
            let gq = rq.slice(cols).t().dot(&cq).dot(&rq.slice(cols));
            let gk = rk.slice(cols).t().dot(&ck).dot(&rk.slice(cols));
            for i in 0..dim {
                for j in 0..dim {
                    let scale = gq[(0, 0)].abs().max(1e-12);
                    if i != j {
                        assert!(
                            gq[(i, j)].abs() / scale < 1e-4,
                            "Q directions not orthogonal"
                        );
                        assert!(
                            gk[(i, j)].abs() / scale < 1e-4,
                            "K directions not orthogonal"
                        );
                    }
                }
                assert!(
                    (gq[(i, i)] - gk[(i, i)]).abs() / gq[(0, 0)] < 1e-4,
                    "not balanced"
                );
                if i > 0 {
                    assert!(gq[(i, i)] <= gq[(i - 1, i - 1)] * (1.0 + 1e-6));
                }
            }
        }
    }

    #[test]
    fn the_output_metric_is_the_squared_projected_output() {
        // A square Wo (through the factor), a wide one, and a tall one with a zero column
        // (`Wo^T Wo` singular: no factor), the last two directly.
        let dz = pseudo_random(50, 200, 3).mapv(|v| v as f32);
        for (out, seed) in [(200usize, 4u64), (60, 5), (260, 6)] {
            let mut wo = pseudo_random(out, 200, seed);
            if out == 260 {
                wo.column_mut(17).fill(0.0);
            }
            let metric = OutputMetric::new(&wo);
            assert_eq!(
                matches!(metric, OutputMetric::Factor(_)),
                out == 200,
                "{out} rows"
            );
            let want: f64 = dz.mapv(f64::from).dot(&wo.t()).iter().map(|v| v * v).sum();
            let got = metric.loss(dz.view());
            assert!(
                (got - want).abs() <= 1e-5 * want,
                "{out} rows: {got} vs {want}"
            );
        }
    }

    #[test]
    fn head_columns_side_by_side_or_interleaved_transform_alike() {
        // Heads side by side take the in-place product, interleaved ones the gathered copy:
        // the same numbers, bit for bit, at the permuted columns.
        let (rows, heads, dim) = (30, 3, 4);
        let x = pseudo_random(rows, heads * dim, 21).mapv(|v| v as f32);
        let t: Vec<Array2<f64>> = (0..heads)
            .map(|h| pseudo_random(dim, dim, 22 + h as u64))
            .collect();
        let side: Vec<Vec<usize>> = (0..heads)
            .map(|h| (0..dim).map(|d| h * dim + d).collect())
            .collect();
        let inter: Vec<Vec<usize>> = (0..heads)
            .map(|h| (0..dim).map(|d| d * heads + h).collect())
            .collect();
        let mut xi = x.clone();
        for h in 0..heads {
            for d in 0..dim {
                xi.column_mut(inter[h][d]).assign(&x.column(side[h][d]));
            }
        }
        let a = transform_columns(&x.into_dyn(), &side, &t).unwrap();
        let b = transform_columns(&xi.into_dyn(), &inter, &t).unwrap();
        for r in 0..rows {
            for h in 0..heads {
                for d in 0..dim {
                    let (p, q) = (a[[r, side[h][d]]], b[[r, inter[h][d]]]);
                    assert_eq!(p.to_bits(), q.to_bits(), "{r} {h} {d}");
                }
            }
        }
    }

    #[test]
    fn scores_grow_along_the_cut_order() {
        // Losses of cutting 1, 2, 3, 4 directions (a noisy measurement may dip).
        let s = scores(&[0.1, 0.3, 0.25, 0.9]);
        assert_eq!(s, vec![0.9, 0.3, 0.3, 0.1]);
    }

    fn einsum_node(eq: &str) -> spa_ir::Node {
        let mut node = spa_ir::Node::new("Einsum");
        node.inputs = vec![None, None];
        node.set_attr(
            "equation",
            spa_ir::AttrValue::String(eq.as_bytes().to_vec().into()),
        );
        node
    }

    fn terms(eq: &str) -> [Vec<char>; 3] {
        binary_einsum(&einsum_node(eq)).unwrap_or_else(|| panic!("{eq} not parsed"))
    }

    #[test]
    fn einsum_forms_of_attention() {
        for eq in [
            "bhid,bhjd->bhij",
            "bnhd,bmhd->bhnm",
            "b i d, b j d -> b j i",
        ] {
            assert!(is_score_einsum(&terms(eq)), "{eq}");
        }
        // Heads crossed, the head dim kept, the head dim not last, two labels contracted.
        for eq in [
            "bhid,bgjd->bhgij",
            "bhid,bhjd->bhijd",
            "bhid,bhdj->bhij",
            "bhid,bhid->bh",
        ] {
            assert!(!is_score_einsum(&terms(eq)), "{eq}");
        }
        for eq in ["bhij,bhjd->bhid", "bhnm,bmhe->bnhe"] {
            assert!(is_mix_einsum(&terms(eq)), "{eq}");
        }
        // Heads summed, keys kept, V's dim in P, no query rows.
        for eq in [
            "bhij,bhjd->bid",
            "bhij,bhjd->bhijd",
            "bhid,bhjd->bhid",
            "bhj,bhjd->bhd",
        ] {
            assert!(!is_mix_einsum(&terms(eq)), "{eq}");
        }
        for eq in ["...id,...jd->...ij", "bid,bjd", "bii,bjd->bij"] {
            assert!(binary_einsum(&einsum_node(eq)).is_none(), "{eq}");
        }
    }
}
