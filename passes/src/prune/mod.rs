//! `prune`: remove (or, with `mode=mask`, zero) the least important channels of every prunable
//! group. Every member is rewritten: constants are sliced along the group's axes, value types
//! shrink, and the parameters that encode sizes are recomputed (Reshape/Expand shape constants,
//! Split sizes, Slice bounds, grouped-conv `group`, Resize sizes).

pub mod compensate;
pub mod refit;
pub mod report;
pub mod slice;
pub mod target;

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::group::{glob_match, patterns, AtomTerm, GroupAnalysis};
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use crate::score::Scores;
use rayon::prelude::*;
use spa_ir::{AttrValue, Dim, Graph, Model, Tensor, Type, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};

pub static INFO: PassInfo = PassInfo {
    name: "prune",
    summary: "Remove (or mask) the least important channels of every prunable group",
    options: &[
        OptionDecl {
            name: "ratio",
            kind: OptionKind::Float,
            default: "0.5",
            help: "fraction of each group's channels to remove",
        },
        OptionDecl {
            name: "global",
            kind: OptionKind::Bool,
            default: "false",
            help: "one threshold over all groups' scores (normalize scores for this) instead of the same ratio per group",
        },
        OptionDecl {
            name: "round-to",
            kind: OptionKind::UInt,
            default: "1",
            help: "keep a multiple of this many channels per group (rounded up)",
        },
        OptionDecl {
            name: "min-channels",
            kind: OptionKind::UInt,
            default: "1",
            help: "keep at least this many channels per group",
        },
        OptionDecl {
            name: "max-ratio",
            kind: OptionKind::Float,
            default: "1",
            help: "remove at most this fraction of any group",
        },
        OptionDecl {
            name: "protect",
            kind: OptionKind::Str,
            default: "",
            help: "groups with a member value whose name matches (globs, comma-separated) are kept whole",
        },
        OptionDecl {
            name: "exact-only",
            kind: OptionKind::Bool,
            default: "false",
            help: "leave groups whose removal changes normalization statistics (inexact) alone",
        },
        OptionDecl {
            name: "refit-norms",
            kind: OptionKind::Bool,
            default: "true",
            help: "after score{criterion=obspa,data=FILE}: re-fit the scale and shift of each LayerNorm, in graph order, to the unpruned model's outputs on the first 128 calibration samples (see docs/obspa.md); false leaves them as they are",
        },
        OptionDecl {
            name: "mode",
            kind: OptionKind::Enum(&["remove", "mask"]),
            default: "remove",
            help: "remove channels, or zero them and keep shapes",
        },
        OptionDecl {
            name: "heads",
            kind: OptionKind::Enum(&["false", "true", "dims"]),
            default: "false",
            help: "for spaces that are products (attention heads x head dims, channel-shuffle groups): false prunes both factors, true only whole heads (outer factors), dims only equal slices of every head (inner factors)",
        },
        OptionDecl {
            name: "target-flops",
            kind: OptionKind::Float,
            default: "0",
            help: "keep this fraction (0 < F <= 1) of the original FLOPs: bisection on one global threshold over the scores (normalize them, or use lamp), within 1% or the nearest reachable value, which is reported; 0 = off; excludes ratio and target-params",
        },
        OptionDecl {
            name: "target-params",
            kind: OptionKind::Float,
            default: "0",
            help: "keep this fraction (0 < P <= 1) of the original parameters, like target-flops; 0 = off",
        },
    ],
    create: |opts: &Options| {
        let ratio = opts.float("ratio");
        let max_ratio = opts.float("max-ratio");
        for (name, v) in [("ratio", ratio), ("max-ratio", max_ratio)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(PassError::BadOption {
                    pass: "prune".into(),
                    option: name.into(),
                    expected: "a number between 0 and 1".into(),
                    value: v.to_string(),
                });
            }
        }
        let target = parse_target(opts)?;
        Ok(Box::new(Prune {
            target,
            ratio,
            global: opts.bool("global"),
            round_to: opts.int("round-to").max(1) as usize,
            min_channels: opts.int("min-channels").max(0) as usize,
            max_ratio,
            protect: patterns(opts.str("protect")),
            exact_only: opts.bool("exact-only"),
            mask: opts.str("mode") == "mask",
            refit_norms: opts.bool("refit-norms"),
            heads: opts.str("heads").to_string(),
        }))
    },
};

/// `target-flops` / `target-params`: at most one, in (0, 1], and not with a non-default `ratio`.
/// Judged by value, not by whether `ratio` was written: `--dump-pass-pipeline` prints every option
/// explicitly (`ratio=0.5` included), and its output must run as a pipeline again.
fn parse_target(opts: &Options) -> Result<Option<target::Target>, PassError> {
    let bad = |option: &str, expected: &str, value: String| PassError::BadOption {
        pass: "prune".into(),
        option: option.into(),
        expected: expected.into(),
        value,
    };
    let mut found = None;
    for kind in [target::TargetKind::Flops, target::TargetKind::Params] {
        let keep = opts.float(kind.option());
        if keep == 0.0 {
            continue;
        }
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(bad(
                kind.option(),
                "a fraction to keep, 0 < F <= 1 (0 = off)",
                keep.to_string(),
            ));
        }
        if let Some(t) = found.replace(target::Target { kind, keep }) {
            return Err(bad(
                kind.option(),
                &format!("no other target ({} is given)", t.kind.option()),
                keep.to_string(),
            ));
        }
    }
    if let Some(t) = found {
        if opts.float("ratio") != 0.5 {
            return Err(bad(
                "ratio",
                &format!(
                    "to be left at its default: {} sets the amount to prune",
                    t.kind.option()
                ),
                opts.float("ratio").to_string(),
            ));
        }
    }
    Ok(found)
}

pub struct Prune {
    /// A FLOPs or params target (replaces `ratio`; implies one global threshold).
    pub target: Option<target::Target>,
    pub ratio: f64,
    pub global: bool,
    pub round_to: usize,
    pub min_channels: usize,
    pub max_ratio: f64,
    pub protect: Vec<String>,
    pub exact_only: bool,
    pub mask: bool,
    pub heads: String,
    /// Re-fit LayerNorms after an obspa compensation with calibration data ([`refit`]).
    pub refit_norms: bool,
}

impl Prune {
    /// How many channels of a group of `n` to keep when `want_remove` are asked to go.
    fn keep_count(&self, n: usize, want_remove: usize) -> usize {
        let max_remove = (n as f64 * self.max_ratio).floor() as usize;
        let mut keep = n - want_remove.min(max_remove);
        keep = keep.max(self.min_channels.min(n)).max(1.min(n));
        if self.round_to > 1 {
            keep = keep.div_ceil(self.round_to) * self.round_to;
        }
        keep.min(n)
    }

    /// Kept channel indices (ascending) for every space, and the threshold a target found.
    fn select(
        &self,
        model: &Model,
        groups: &GroupAnalysis,
        scores: &Scores,
    ) -> (Vec<Vec<u64>>, Option<target::Solved>) {
        let g = &model.graph;
        let eligible: Vec<bool> = groups
            .spaces
            .iter()
            .map(|&a| {
                let atom = &groups.atoms[a];
                atom.prunable()
                    && (!self.exact_only || atom.inexact.is_empty())
                    && !atom
                        .members
                        .iter()
                        .any(|&(v, _)| self.protect.iter().any(|p| glob_match(p, &g.value(v).name)))
            })
            .collect();
        let (outer, inner) = factor_roles(groups);
        let eligible: Vec<bool> = groups
            .spaces
            .iter()
            .zip(eligible)
            .map(|(&a, e)| {
                e && match self.heads.as_str() {
                    "true" => !inner.contains(&a),
                    "dims" => !outer.contains(&a),
                    _ => true,
                }
            })
            .collect();
        let sizes: Vec<usize> = groups
            .spaces
            .iter()
            .map(|&a| groups.atoms[a].size.unwrap_or(0) as usize)
            .collect();
        let score_of = |s: usize, c: usize| -> f64 {
            scores
                .per_space
                .get(s)
                .and_then(|v| v.get(c))
                .copied()
                .unwrap_or(0.0)
        };
        // How many to remove per space.
        let mut remove: Vec<usize> = vec![0; sizes.len()];
        let mut solved = None;
        if let Some(t) = self.target {
            let cost = target::CostModel::new(model, groups);
            let s = self.solve_target(t, &cost, &eligible, &sizes, &score_of);
            remove = target::remove_counts(&eligible, &sizes, &score_of, s.threshold);
            solved = Some(s);
        } else if self.global {
            let mut all: Vec<f64> = Vec::new();
            for (s, &n) in sizes.iter().enumerate() {
                if eligible[s] {
                    all.extend((0..n).map(|c| score_of(s, c)));
                }
            }
            all.sort_by(|a, b| a.total_cmp(b));
            let k = (all.len() as f64 * self.ratio).floor() as usize;
            if k > 0 {
                let threshold = all[k - 1];
                for (s, &n) in sizes.iter().enumerate() {
                    if eligible[s] {
                        remove[s] = (0..n).filter(|&c| score_of(s, c) <= threshold).count();
                    }
                }
            }
        } else {
            for (s, &n) in sizes.iter().enumerate() {
                if eligible[s] {
                    remove[s] = (n as f64 * self.ratio).floor() as usize;
                }
            }
        }
        let kept = sizes
            .iter()
            .enumerate()
            .map(|(s, &n)| {
                let keep = if eligible[s] {
                    self.keep_count(n, remove[s])
                } else {
                    n
                };
                let mut order: Vec<usize> = (0..n).collect();
                // Most important first; ties keep the lower index.
                order.sort_by(|&a, &b| score_of(s, b).total_cmp(&score_of(s, a)).then(a.cmp(&b)));
                let mut kept: Vec<u64> = order[..keep].iter().map(|&c| c as u64).collect();
                kept.sort_unstable();
                kept
            })
            .collect();
        (kept, solved)
    }
}

/// Atoms that are the outermost factor of a product of channel spaces (heads) and atoms that are
/// an inner factor (head dims).
fn factor_roles(groups: &GroupAnalysis) -> (HashSet<usize>, HashSet<usize>) {
    let mut outer = HashSet::new();
    let mut inner = HashSet::new();
    fn walk(
        g: &GroupAnalysis,
        t: &AtomTerm,
        outer: &mut HashSet<usize>,
        inner: &mut HashSet<usize>,
    ) {
        match t {
            AtomTerm::Atom(_) => {}
            AtomTerm::Cat(xs) => xs.iter().for_each(|x| walk(g, x, outer, inner)),
            AtomTerm::Prod(xs) => {
                let channels: Vec<usize> = xs
                    .iter()
                    .filter_map(|x| match x {
                        AtomTerm::Atom(a) if g.atoms[*a].space.is_some() => Some(*a),
                        _ => None,
                    })
                    .collect();
                if channels.len() >= 2 {
                    outer.insert(channels[0]);
                    inner.extend(channels[1..].iter().copied());
                }
                xs.iter().for_each(|x| walk(g, x, outer, inner));
            }
        }
    }
    for t in groups.terms.values() {
        walk(groups, t, &mut outer, &mut inner);
    }
    (outer, inner)
}

/// Kept positions of an axis with term `t`, given kept channels per atom (`None`: all).
/// The kept channels of every space that loses some, by atom.
fn keep_map<'k>(groups: &GroupAnalysis, kept: &'k [Vec<u64>]) -> HashMap<usize, &'k [u64]> {
    let mut keep = HashMap::new();
    for (s, k) in kept.iter().enumerate() {
        if let Some(&a) = groups.spaces.get(s) {
            if (k.len() as u64) < groups.atoms[a].size.unwrap_or(0) {
                keep.insert(a, k.as_slice());
            }
        }
    }
    keep
}

fn positions(groups: &GroupAnalysis, keep: &HashMap<usize, &[u64]>, t: &AtomTerm) -> Vec<u64> {
    let size = |a: usize| groups.atoms[a].size.unwrap_or(0);
    match t {
        AtomTerm::Atom(a) => match keep.get(a) {
            Some(k) => k.to_vec(),
            None => (0..size(*a)).collect(),
        },
        AtomTerm::Cat(xs) => {
            let mut out = Vec::new();
            let mut offset = 0;
            for x in xs {
                out.extend(positions(groups, keep, x).into_iter().map(|p| p + offset));
                offset += term_size(groups, x);
            }
            out
        }
        AtomTerm::Prod(xs) => {
            let mut out: Vec<u64> = vec![0];
            for x in xs {
                let n = term_size(groups, x);
                let inner = positions(groups, keep, x);
                out = out
                    .iter()
                    .flat_map(|&o| inner.iter().map(move |&i| o * n + i))
                    .collect();
            }
            out
        }
    }
}

fn term_size(groups: &GroupAnalysis, t: &AtomTerm) -> u64 {
    match t {
        AtomTerm::Atom(a) => groups.atoms[*a].size.unwrap_or(0),
        AtomTerm::Cat(xs) => xs.iter().map(|x| term_size(groups, x)).sum(),
        AtomTerm::Prod(xs) => xs.iter().map(|x| term_size(groups, x)).product(),
    }
}

/// An axis and the positions kept on it.
type AxisKeep<'a> = (usize, &'a Vec<u64>);

/// Apply kept channels: slice or mask constants, shrink types, fix size parameters.
pub fn apply(
    model: &mut Model,
    groups: &GroupAnalysis,
    kept: &[Vec<u64>],
    mask: bool,
) -> Result<usize, spa_ir::IrError> {
    let mut keep: HashMap<usize, &[u64]> = HashMap::new();
    for (s, k) in kept.iter().enumerate() {
        let a = groups.spaces[s];
        if (k.len() as u64) < groups.atoms[a].size.unwrap_or(0) {
            keep.insert(a, k);
        }
    }
    if keep.is_empty() {
        return Ok(0);
    }
    let graph = &mut model.graph;
    // Kept positions of every changed axis.
    let mut changed: HashMap<(ValueId, usize), Vec<u64>> = HashMap::new();
    for (&(v, k), t) in &groups.terms {
        let mut atoms = Vec::new();
        t.atoms(&mut atoms);
        if atoms.iter().any(|a| keep.contains_key(a)) && graph.try_value(v).is_some() {
            changed.insert((v, k), positions(groups, &keep, t));
        }
    }
    let old_dims: HashMap<ValueId, Vec<i64>> = changed
        .keys()
        .map(|&(v, _)| v)
        .chain(graph.value_ids())
        .filter_map(|v| {
            let d = graph.value(v).ty.as_tensor()?.shape.as_ref()?;
            Some((v, d.iter().map(|a| a.dim.known().unwrap_or(-1)).collect()))
        })
        .collect();
    let mut by_value: HashMap<ValueId, Vec<(usize, &Vec<u64>)>> = HashMap::new();
    for ((v, k), p) in &changed {
        by_value.entry(*v).or_default().push((*k, p));
    }
    // Constants (initializers and Constant nodes) are sliced or masked, in parallel.
    let slice_one = |t: &Tensor, axes: &[AxisKeep]| -> Result<Tensor, spa_ir::IrError> {
        if !mask {
            let axes: Vec<(usize, &[u64])> = axes.iter().map(|&(k, p)| (k, p.as_slice())).collect();
            return slice::take_axes(t, &axes);
        }
        let mut t = t.clone();
        for &(k, p) in axes {
            t = slice::mask(&t, k, p)?;
        }
        Ok(t)
    };
    let g: &Graph = graph;
    let jobs: Vec<(ValueId, &[AxisKeep])> = by_value
        .iter()
        .map(|(&v, axes)| (v, axes.as_slice()))
        .collect();
    let sliced: Vec<(ValueId, Option<Tensor>)> = jobs
        .par_iter()
        .map(|&(v, axes)| {
            let t = g.value(v).init.as_ref().or_else(|| match g.value(v).def {
                ValueDef::Node(n, 0) if g.node(n).op_type == "Constant" => {
                    g.node(n).attr_tensor("value")
                }
                _ => None,
            });
            t.map(|t| slice_one(t, axes)).transpose().map(|t| (v, t))
        })
        .collect::<Result<_, _>>()?;
    for (v, new) in sliced {
        let Some(new) = new else { continue };
        if graph.value(v).init.is_some() {
            graph.value_mut(v).init = Some(new);
        } else if let ValueDef::Node(n, 0) = graph.value(v).def {
            graph.node_mut(n).set_attr("value", AttrValue::Tensor(new));
        }
    }
    if mask {
        return Ok(changed.len());
    }
    // Types shrink.
    for (&v, axes) in &by_value {
        if let Some(t) = graph.value_mut(v).ty.as_tensor_mut() {
            if let Some(shape) = t.shape.as_mut() {
                for &(k, p) in axes {
                    if let Some(ax) = shape.get_mut(k) {
                        ax.dim = Dim::Known(p.len() as i64);
                    }
                }
            }
        }
    }
    fix_parameters(
        graph,
        &old_dims,
        &changed,
        model
            .opset_imports
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(17),
    )?;
    for (s, k) in kept.iter().enumerate() {
        if let Some(space) = model.spaces.get_mut(s) {
            space.size = k.len() as u64;
        }
    }
    Ok(changed.len())
}

fn dims_of(graph: &Graph, v: Option<ValueId>) -> Option<Vec<i64>> {
    let t = graph.value(v?).ty.as_tensor()?;
    Some(
        t.shape
            .as_ref()?
            .iter()
            .map(|a| a.dim.known().unwrap_or(-1))
            .collect(),
    )
}

/// Point input `i` of node `n` at a new constant holding `values` (a fresh value, so that a
/// constant shared with other nodes is left alone).
fn set_int_input(
    graph: &mut Graph,
    taken: &mut HashSet<String>,
    n: spa_ir::NodeId,
    i: usize,
    values: &[i64],
) {
    let Some(old) = graph.node(n).input(i) else {
        return;
    };
    let old_val = graph.value(old);
    let dtype = graph
        .constant(old)
        .map(|t| t.dtype)
        .unwrap_or(spa_ir::DType::I64);
    let dims = match graph.constant(old) {
        Some(t) if t.num_elements() == Some(values.len() as u64) => t.dims.clone(),
        _ => vec![values.len() as i64],
    };
    let mut t = match dtype {
        spa_ir::DType::I32 => {
            let raw: Vec<u8> = values
                .iter()
                .flat_map(|&x| (x as i32).to_le_bytes())
                .collect();
            Tensor::from_raw(dtype, dims.clone(), raw.into())
        }
        _ => Tensor::from_i64(dims.clone(), values),
    };
    let base = format!("{}_pruned", old_val.name);
    let mut name = base.clone();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    t.name = name.clone();
    taken.insert(name.clone());
    let mut val = spa_ir::Value::new(name, Type::tensor(t.dtype, &dims), ValueDef::Const);
    val.init = Some(t);
    let id = graph.add_value(val);
    graph.node_mut(n).inputs[i] = Some(id);
}

fn fix_parameters(
    graph: &mut Graph,
    old_dims: &HashMap<ValueId, Vec<i64>>,
    changed: &HashMap<(ValueId, usize), Vec<u64>>,
    opset: i64,
) -> Result<(), spa_ir::IrError> {
    let mut taken: HashSet<String> = graph
        .value_ids()
        .map(|v| graph.value(v).name.clone())
        .collect();
    let changed_values: HashSet<ValueId> = changed.keys().map(|&(v, _)| v).collect();
    let ids: Vec<_> = graph.node_ids().collect();
    for n in ids {
        let node = graph.node(n);
        let touched = node
            .inputs
            .iter()
            .chain(node.outputs.iter())
            .flatten()
            .any(|v| changed_values.contains(v));
        if !touched || !node.canonical_domain().is_empty() {
            continue;
        }
        let out0 = node.output(0);
        let in0 = node.input(0);
        let new_out = dims_of(graph, out0);
        let new_in = dims_of(graph, in0);
        let old_in = in0.and_then(|v| old_dims.get(&v).cloned());
        match node.op_type.as_str() {
            "Reshape" => {
                let (Some(shape_v), Some(new_out), Some(new_in)) = (node.input(1), new_out, new_in)
                else {
                    continue;
                };
                let Some(old) = graph.constant_ints(shape_v) else {
                    continue;
                };
                let allowzero = node.attr_int("allowzero").unwrap_or(0) != 0;
                let mut s = old.clone();
                for (k, e) in s.iter_mut().enumerate() {
                    let Some(&want) = new_out.get(k) else {
                        continue;
                    };
                    let fine = (*e == -1)
                        || (*e == 0 && !allowzero && new_in.get(k) == Some(&want))
                        || *e == want;
                    if !fine {
                        *e = want;
                    }
                }
                if s != old {
                    set_int_input(graph, &mut taken, n, 1, &s);
                }
            }
            "Expand" => {
                let (Some(shape_v), Some(new_out)) = (node.input(1), new_out) else {
                    continue;
                };
                let Some(old) = graph.constant_ints(shape_v) else {
                    continue;
                };
                let off = new_out.len().saturating_sub(old.len());
                let mut s = old.clone();
                for (k, e) in s.iter_mut().enumerate() {
                    if let Some(&want) = new_out.get(off + k) {
                        if *e != 1 && *e != want {
                            *e = want;
                        }
                    }
                }
                if s != old {
                    set_int_input(graph, &mut taken, n, 1, &s);
                }
            }
            "Split" => {
                let Some(r) = new_in.as_ref().map(|d| d.len()) else {
                    continue;
                };
                let axis = node.attr_int("axis").unwrap_or(0);
                let axis = if axis < 0 { axis + r as i64 } else { axis } as usize;
                let sizes: Option<Vec<i64>> = node
                    .outputs
                    .iter()
                    .map(|o| dims_of(graph, *o).and_then(|d| d.get(axis).copied()))
                    .collect();
                let Some(sizes) = sizes else { continue };
                if opset < 13 || node.attr("split").is_some() {
                    graph.node_mut(n).set_attr("split", AttrValue::Ints(sizes));
                } else if node.input(1).is_some() {
                    set_int_input(graph, &mut taken, n, 1, &sizes);
                } else if sizes.windows(2).any(|w| w[0] != w[1]) {
                    // num_outputs splits evenly; uneven sizes need the explicit input.
                    let mut t = Tensor::from_i64(vec![sizes.len() as i64], &sizes);
                    let name = format!("{}_split_sizes", graph.node(n).label());
                    t.name = name.clone();
                    let mut val =
                        spa_ir::Value::new(name, Type::tensor(t.dtype, &t.dims), ValueDef::Const);
                    val.init = Some(t);
                    let id = graph.add_value(val);
                    let node = graph.node_mut(n);
                    node.attrs.retain(|a| a.name != "num_outputs");
                    if node.inputs.len() < 2 {
                        node.inputs.resize(2, None);
                    }
                    node.inputs[1] = Some(id);
                }
            }
            "Slice" if opset >= 10 => {
                let (Some(old_in), Some(in0)) = (old_in, in0) else {
                    continue;
                };
                let r = old_in.len();
                let get = |i: usize| node.input(i).and_then(|v| graph.constant_ints(v));
                let (Some(starts), Some(ends)) = (get(1), get(2)) else {
                    continue;
                };
                let axes = match node.input(3) {
                    Some(_) => match get(3) {
                        Some(a) => a,
                        None => continue,
                    },
                    None => (0..starts.len() as i64).collect(),
                };
                let (mut ns, mut ne) = (starts.clone(), ends.clone());
                for (i, &a) in axes.iter().enumerate() {
                    let a = if a < 0 { a + r as i64 } else { a } as usize;
                    let Some(kept) = changed.get(&(in0, a)) else {
                        continue;
                    };
                    let d = old_in[a];
                    let clamp = |v: i64| if v < 0 { (v + d).max(0) } else { v.min(d) };
                    let (s, e) = (clamp(starts[i]), clamp(ends[i]));
                    ns[i] = kept.partition_point(|&p| (p as i64) < s) as i64;
                    if ends[i] < d || ends[i] < 0 {
                        ne[i] = kept.partition_point(|&p| (p as i64) < e) as i64;
                    }
                }
                if ns != starts {
                    set_int_input(graph, &mut taken, n, 1, &ns);
                }
                if ne != ends {
                    set_int_input(graph, &mut taken, n, 2, &ne);
                }
            }
            "Gather" => {
                // Contiguous index ranges (the only gathers whose axis can shrink): recompute.
                let (Some(old_in), Some(in0)) = (old_in, in0) else {
                    continue;
                };
                let r = old_in.len() as i64;
                let a = node.attr_int("axis").unwrap_or(0);
                let a = if a < 0 { a + r } else { a } as usize;
                let (Some(kept), Some(idx_v)) = (changed.get(&(in0, a)), node.input(1)) else {
                    continue;
                };
                let Some(idx) = graph.constant_ints(idx_v) else {
                    continue;
                };
                let len = old_in[a];
                let idx: Vec<i64> = idx
                    .iter()
                    .map(|&i| if i < 0 { i + len } else { i })
                    .collect();
                let (Some(&s), Some(&last)) = (idx.first(), idx.last()) else {
                    continue;
                };
                let new_s = kept.partition_point(|&p| (p as i64) < s) as i64;
                let new_e = kept.partition_point(|&p| (p as i64) <= last) as i64;
                let new: Vec<i64> = (new_s..new_e).collect();
                if new != idx {
                    set_int_input(graph, &mut taken, n, 1, &new);
                }
            }
            "Conv" | "ConvTranspose" => {
                let w = dims_of(graph, node.input(1));
                let group = node.attr_int("group").unwrap_or(1);
                if group == 1 {
                    continue;
                }
                let new_group = match (node.op_type.as_str(), w, new_in, new_out) {
                    ("Conv", Some(w), Some(x), _) if w.len() > 1 && w[1] > 0 => x[1] / w[1],
                    ("ConvTranspose", Some(w), _, Some(y)) if w.len() > 1 && w[1] > 0 => {
                        y[1] / w[1]
                    }
                    _ => continue,
                };
                if new_group != group {
                    graph
                        .node_mut(n)
                        .set_attr("group", AttrValue::Int(new_group));
                }
            }
            "Resize" => {
                if let (Some(sv), Some(new_out)) = (node.input(3), new_out) {
                    if graph.constant(sv).is_some() {
                        set_int_input(graph, &mut taken, n, 3, &new_out);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Pass for Prune {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let ir = |source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        };
        let groups = cx.analyses.get::<GroupAnalysis>(model)?.clone();
        if !cx.analyses.is_cached::<Scores>() {
            let scores = crate::score::score(
                model,
                &groups,
                &crate::score::l2_criterion(),
                crate::score::Reduce::Sum,
                // A target ranks across groups: scale-free scores.
                match self.target {
                    Some(_) => crate::score::Normalize::Mean,
                    None => crate::score::Normalize::None,
                },
            )?;
            cx.analyses.insert(scores);
        }
        let scores = cx.analyses.get::<Scores>(model)?.clone();
        let before = report::measure(model);
        let (kept, solved) = self.select(model, &groups, &scores);
        let prunable = groups
            .spaces
            .iter()
            .filter(|&&a| groups.atoms[a].prunable())
            .count();
        if prunable == 0 {
            cx.warn("every channel group is pinned; the model is unchanged");
        }
        let mut refit: Option<(Model, refit::NormRefit)> = None;
        if cx.analyses.is_cached::<crate::score::obspa::Compensation>() {
            let comp = cx
                .analyses
                .get::<crate::score::obspa::Compensation>(model)?;
            if let Some(r) = comp.refit.as_ref().filter(|_| self.refit_norms) {
                refit = Some((model.clone(), r.clone()));
            }
            let done = compensate::apply(model, &groups, &kept, comp);
            cx.stat("layers compensated", done.layers);
            done.skipped.into_iter().for_each(|w| cx.warn(w));
        }
        let axes = apply(model, &groups, &kept, self.mask).map_err(ir)?;
        if !self.mask {
            crate::transforms::dce::eliminate_dead_code(&mut model.graph).map_err(ir)?;
            spa_ir::infer::infer_model(model, &spa_ir::infer::InferOptions::default())
                .map_err(ir)?;
        }
        if let Some((original, r)) = refit {
            let keep = keep_map(&groups, &kept);
            let kept_of = |v: ValueId| Some(positions(&groups, &keep, groups.terms.get(&(v, 0))?));
            match refit::refit_norms(&original, model, &r, &kept_of) {
                Ok(n) => cx.stat("LayerNorms re-fitted", n),
                Err(e) => cx.warn(format!("LayerNorms keep their scale and shift: {e}")),
            }
        }
        let after = report::measure(model);
        let mut rep = report::Report::new(model, &groups, &kept, before, after);
        if let Some(solved) = &solved {
            self.report_target(solved, &mut rep, cx);
        }
        cx.stat("axes rewritten", axes);
        cx.stat("params before", rep.params_before);
        cx.stat("params after", rep.params_after);
        cx.stat("flops before", rep.flops_before);
        cx.stat("flops after", rep.flops_after);
        cx.note(rep.table());
        cx.report(rep.to_json());
        Ok(if axes == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}
