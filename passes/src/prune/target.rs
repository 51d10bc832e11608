//! `target-flops` and `target-params`: find the global score threshold whose pruned model keeps
//! a given fraction of the original FLOPs or parameters.
//!
//! The cost of a candidate selection is computed from the IR, not guessed: every node whose
//! operands carry a pruned channel space is costed again by its op's cost function with the axis
//! sizes the selection leaves (a Conv between two pruned groups shrinks with both, a depthwise
//! Conv with one, a `cat` axis by the parts kept), and every float constant's element count is
//! recomputed the same way. The removal count per group is monotone in the threshold, so the cost
//! is too, and a bisection over the sorted distinct scores finds the threshold closest to the
//! target. Targets are reached within the granularity of one threshold step; the nearest
//! reachable value is what the pass reports when that is more than 1% away.

use super::Prune;
use crate::group::{AtomTerm, GroupAnalysis};
use spa_ir::ops::{lookup_node, CostCtx};
use spa_ir::{Axis, Dim, Model, NodeId, TensorType, Type, ValueId};
use std::collections::{HashMap, HashSet};

/// What a target counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Flops,
    Params,
}

impl TargetKind {
    pub fn option(self) -> &'static str {
        match self {
            TargetKind::Flops => "target-flops",
            TargetKind::Params => "target-params",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            TargetKind::Flops => "FLOPs",
            TargetKind::Params => "params",
        }
    }
}

/// Keep this fraction (0 < keep <= 1) of the original FLOPs or params.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    pub kind: TargetKind,
    pub keep: f64,
}

/// How close a target must be met before the nearest reachable value is reported instead.
pub const TOLERANCE: f64 = 0.01;

/// The threshold found for a target.
#[derive(Clone, Debug, PartialEq)]
pub struct Solved {
    pub target: Target,
    /// Eligible channels scoring at or below this are removed (`None`: none is).
    pub threshold: Option<f64>,
    /// The fraction kept, as the cost model predicts it.
    pub estimate: f64,
}

impl Solved {
    /// Is `achieved` within [`TOLERANCE`] (relative) of the target?
    pub fn reached(&self, achieved: f64) -> bool {
        (achieved - self.target.keep).abs() <= TOLERANCE * self.target.keep
    }

    /// The report entry (JSON object).
    pub fn to_json(&self, achieved: f64) -> String {
        format!(
            "{{\"kind\": \"{}\", \"keep\": {}, \"achieved\": {:.6}, \"estimate\": {:.6}, \"reached\": {}, \"threshold\": {}}}",
            self.target.kind.option(),
            self.target.keep,
            achieved,
            self.estimate,
            self.reached(achieved),
            match self.threshold {
                Some(t) if t.is_finite() => format!("{t}"),
                _ => "null".into(),
            }
        )
    }
}

/// One value whose axes may shrink: its type before pruning and the terms of its channel axes.
struct Shrinkable {
    ty: TensorType,
    axes: Vec<(usize, AtomTerm)>,
}

/// FLOPs and params of the model as functions of the channels kept per space.
pub struct CostModel<'m> {
    model: &'m Model,
    /// Types as the cost of the whole model sees them (inferred, else declared).
    inferred: Option<spa_ir::infer::InferResult>,
    /// Atom of each space.
    space_atoms: Vec<usize>,
    /// Original size of every atom.
    atom_sizes: Vec<u64>,
    values: HashMap<ValueId, Shrinkable>,
    /// Main-graph nodes with an operand that may shrink.
    nodes: Vec<NodeId>,
    /// Float constants that may shrink, with their dims.
    constants: Vec<(ValueId, Vec<i64>)>,
    flops_total: f64,
    params_total: f64,
    /// The part of each total the model recomputes, at full size.
    flops_base: f64,
    params_base: f64,
}

fn term_size(t: &AtomTerm, size: &dyn Fn(usize) -> u64) -> u64 {
    match t {
        AtomTerm::Atom(a) => size(*a),
        AtomTerm::Cat(xs) => xs.iter().map(|x| term_size(x, size)).sum(),
        AtomTerm::Prod(xs) => xs.iter().map(|x| term_size(x, size)).product(),
    }
}

impl<'m> CostModel<'m> {
    pub fn new(model: &'m Model, groups: &GroupAnalysis) -> CostModel<'m> {
        let g = &model.graph;
        let inferred = spa_ir::infer::infer_types(model).ok();
        let ty_of = |v: ValueId| -> Option<TensorType> {
            inferred
                .as_ref()
                .and_then(|r| r.ty(v))
                .or_else(|| g.try_value(v).map(|x| &x.ty))
                .and_then(Type::as_tensor)
                .cloned()
        };
        let channel_atoms: HashSet<usize> = groups.spaces.iter().copied().collect();
        let mut by_value: HashMap<ValueId, Vec<(usize, AtomTerm)>> = HashMap::new();
        for (&(v, k), t) in &groups.terms {
            let mut atoms = Vec::new();
            t.atoms(&mut atoms);
            if atoms.iter().any(|a| channel_atoms.contains(a)) && g.try_value(v).is_some() {
                by_value.entry(v).or_default().push((k, t.clone()));
            }
        }
        let values: HashMap<ValueId, Shrinkable> = by_value
            .into_iter()
            .filter_map(|(v, axes)| {
                Some((
                    v,
                    Shrinkable {
                        ty: ty_of(v)?,
                        axes,
                    },
                ))
            })
            .collect();
        let nodes: Vec<NodeId> = g
            .node_ids()
            .filter(|&n| {
                let node = g.node(n);
                node.inputs
                    .iter()
                    .chain(&node.outputs)
                    .flatten()
                    .any(|v| values.contains_key(v))
            })
            .collect();
        let mut constants: Vec<(ValueId, Vec<i64>)> = values
            .keys()
            .filter_map(|&v| {
                let t = g.constant(v)?;
                t.dtype.is_float().then(|| (v, t.dims.clone()))
            })
            .collect();
        constants.sort_by_key(|(v, _)| v.index());
        let total = super::report::measure(model);
        let mut cm = CostModel {
            model,
            inferred,
            space_atoms: groups.spaces.clone(),
            atom_sizes: groups.atoms.iter().map(|a| a.size.unwrap_or(0)).collect(),
            values,
            nodes,
            constants,
            flops_total: total.flops as f64,
            params_total: total.params as f64,
            flops_base: 0.0,
            params_base: 0.0,
        };
        let full: Vec<usize> = cm
            .space_atoms
            .iter()
            .map(|&a| cm.atom_sizes[a] as usize)
            .collect();
        let (f, p) = cm.recomputed(&full);
        cm.flops_base = f;
        cm.params_base = p;
        cm
    }

    /// FLOPs and params of the nodes and constants that may shrink, with `kept` channels per
    /// space.
    fn recomputed(&self, kept: &[usize]) -> (f64, f64) {
        let mut size_of: Vec<u64> = self.atom_sizes.clone();
        for (&a, &k) in self.space_atoms.iter().zip(kept) {
            if let Some(s) = size_of.get_mut(a) {
                *s = k as u64;
            }
        }
        let size = |a: usize| size_of.get(a).copied().unwrap_or(0);
        let shrunk: HashMap<ValueId, TensorType> = self
            .values
            .iter()
            .map(|(&v, s)| {
                let mut ty = s.ty.clone();
                if let Some(shape) = ty.shape.as_mut() {
                    for (k, t) in &s.axes {
                        if let Some(ax) = shape.get_mut(*k) {
                            *ax = Axis::from(Dim::Known(term_size(t, &size) as i64));
                        }
                    }
                }
                (v, ty)
            })
            .collect();
        let g = &self.model.graph;
        let opset = self.model.opset("").unwrap_or(spa_ir::infer::DEFAULT_OPSET);
        let inferred_or_declared = |v: ValueId| -> Option<&TensorType> {
            shrunk.get(&v).or_else(|| {
                self.inferred
                    .as_ref()
                    .and_then(|r| r.ty(v))
                    .or_else(|| g.try_value(v).map(|x| &x.ty))
                    .and_then(Type::as_tensor)
            })
        };
        let mut flops = 0.0;
        for &n in &self.nodes {
            let node = g.node(n);
            let Some(op) = lookup_node(node) else {
                continue;
            };
            let cx = CostCtx::of_node(node, g, opset, inferred_or_declared);
            flops += op.cost(&cx).flops as f64;
        }
        let mut params = 0.0;
        for (v, dims) in &self.constants {
            let mut n = 1.0;
            for (k, &d) in dims.iter().enumerate() {
                let axis = self
                    .values
                    .get(v)
                    .and_then(|s| s.axes.iter().find(|(a, _)| *a == k));
                n *= match axis {
                    Some((_, t)) => term_size(t, &size) as f64,
                    None => d.max(0) as f64,
                };
            }
            params += n;
        }
        (flops, params)
    }

    /// The fraction of the original FLOPs or params kept with `kept` channels per space.
    pub fn fraction(&self, kind: TargetKind, kept: &[usize]) -> f64 {
        let (f, p) = self.recomputed(kept);
        let (total, base, now) = match kind {
            TargetKind::Flops => (self.flops_total, self.flops_base, f),
            TargetKind::Params => (self.params_total, self.params_base, p),
        };
        if total <= 0.0 {
            return 1.0;
        }
        ((total - base + now) / total).max(0.0)
    }
}

/// Channels removed per space when every eligible channel scoring at or below `threshold` goes.
pub fn remove_counts(
    eligible: &[bool],
    sizes: &[usize],
    score_of: &dyn Fn(usize, usize) -> f64,
    threshold: Option<f64>,
) -> Vec<usize> {
    sizes
        .iter()
        .enumerate()
        .map(|(s, &n)| match threshold {
            Some(t) if eligible.get(s).copied().unwrap_or(false) => {
                (0..n).filter(|&c| score_of(s, c) <= t).count()
            }
            _ => 0,
        })
        .collect()
}

impl Prune {
    /// Channels kept per space for a threshold, after the per-group limits.
    fn kept_counts(
        &self,
        eligible: &[bool],
        sizes: &[usize],
        score_of: &dyn Fn(usize, usize) -> f64,
        threshold: Option<f64>,
    ) -> Vec<usize> {
        remove_counts(eligible, sizes, score_of, threshold)
            .into_iter()
            .zip(sizes)
            .zip(eligible)
            .map(|((r, &n), &e)| if e { self.keep_count(n, r) } else { n })
            .collect()
    }

    /// Bisection over the distinct scores of eligible channels for the threshold whose
    /// selection keeps the fraction closest to the target (ties go to the larger model).
    pub fn solve_target(
        &self,
        target: Target,
        cost: &CostModel<'_>,
        eligible: &[bool],
        sizes: &[usize],
        score_of: &dyn Fn(usize, usize) -> f64,
    ) -> Solved {
        let mut candidates: Vec<f64> = Vec::new();
        for (s, &n) in sizes.iter().enumerate() {
            if eligible.get(s).copied().unwrap_or(false) {
                candidates.extend((0..n).map(|c| score_of(s, c)).filter(|x| !x.is_nan()));
            }
        }
        candidates.sort_by(|a, b| a.total_cmp(b));
        candidates.dedup();
        let at = |i: Option<usize>| -> f64 {
            let t = i.and_then(|i| candidates.get(i).copied());
            cost.fraction(target.kind, &self.kept_counts(eligible, sizes, score_of, t))
        };
        // Invariant: the selection at `lo` keeps at least the target (nothing removed does).
        let mut lo: Option<usize> = None;
        let mut lo_value = at(None);
        let (mut left, mut right) = (0usize, candidates.len());
        // Find the largest index whose selection keeps at least the target.
        while left < right {
            let mid = left + (right - left) / 2;
            let v = at(Some(mid));
            if v >= target.keep {
                lo = Some(mid);
                lo_value = v;
                left = mid + 1;
            } else {
                right = mid;
            }
        }
        let next = lo.map_or(0, |i| i + 1);
        let (mut best, mut best_value) = (lo, lo_value);
        if next < candidates.len() {
            let v = at(Some(next));
            if (target.keep - v).abs() < (lo_value - target.keep).abs() {
                best = Some(next);
                best_value = v;
            }
        }
        Solved {
            target,
            threshold: best.and_then(|i| candidates.get(i).copied()),
            estimate: best_value,
        }
    }
}

impl Prune {
    /// Put a target's outcome in the report; warn when the nearest reachable value is more
    /// than 1% away. The achieved fraction is measured on the rewritten model (`mode=mask` keeps
    /// shapes, so there it is the cost model's estimate).
    pub fn report_target(
        &self,
        solved: &Solved,
        rep: &mut super::report::Report,
        cx: &mut crate::manager::PassContext<'_>,
    ) {
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let achieved = if self.mask {
            solved.estimate
        } else {
            match solved.target.kind {
                TargetKind::Flops => ratio(rep.flops_after, rep.flops_before),
                TargetKind::Params => ratio(rep.params_after, rep.params_before),
            }
        };
        let t = solved.target;
        let outcome = if solved.reached(achieved) {
            "reached".to_string()
        } else {
            cx.warn(format!(
                "{}={} is not reachable within 1% with one global threshold; the nearest reachable keeps {:.4} of the {}",
                t.kind.option(),
                t.keep,
                achieved,
                t.kind.what()
            ));
            "not reachable, nearest".to_string()
        };
        cx.stat(&format!("{} kept", t.kind.what()), format!("{achieved:.4}"));
        rep.extra_lines.push(format!(
            "{}={}: {outcome} {:.4}{}",
            t.kind.option(),
            t.keep,
            achieved,
            if self.mask {
                " (estimated: mask keeps shapes)"
            } else {
                ""
            }
        ));
        rep.extra_json
            .push(("target".into(), solved.to_json(achieved)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reached_is_relative() {
        let s = Solved {
            target: Target {
                kind: TargetKind::Flops,
                keep: 0.5,
            },
            threshold: None,
            estimate: 0.5,
        };
        assert!(s.reached(0.504));
        assert!(!s.reached(0.506));
        assert!(s.to_json(0.5).contains("\"reached\": true"));
    }

    #[test]
    fn remove_counts_respect_eligibility() {
        let scores = [[0.1, 0.5, 0.3], [0.2, 0.05, 0.9]];
        let score_of = |s: usize, c: usize| scores[s][c];
        assert_eq!(
            remove_counts(&[true, true], &[3, 3], &score_of, Some(0.3)),
            vec![2, 2]
        );
        assert_eq!(
            remove_counts(&[true, false], &[3, 3], &score_of, Some(0.3)),
            vec![2, 0]
        );
        assert_eq!(
            remove_counts(&[true, true], &[3, 3], &score_of, None),
            vec![0, 0]
        );
    }
}
