//! `activation`: mean |activation| of each channel over the calibration batch.
//!
//! The activations looked at are what the group's consumers read (the input of every Conv, Gemm
//! or MatMul whose weight's input-channel axis carries the group); for a group without such a
//! consumer, every computed value whose axis carries the group. A channel's score is the mean of
//! |x| over its positions (batch, spatial, tokens), averaged over the values looked at. Groups with
//! no computed member (pinned to inputs, or never computed) are scored by `l2` magnitude.

use super::obspa::{collect, fallback, layer};
use super::{channel_map, Scores};
use crate::calib::CalibBatch;
use crate::error::PassError;
use crate::group::GroupAnalysis;
use spa_ir::{Model, ValueDef, ValueId};

/// Statistics of a scoring run: (name, count) pairs for `--pass-statistics`.
type Stats = Vec<(&'static str, usize)>;

pub(super) fn scores(
    model: &Model,
    groups: &GroupAnalysis,
    batch: &CalibBatch,
) -> Result<(Scores, Stats), PassError> {
    let graph = &model.graph;
    let computed = |v: ValueId| matches!(graph.value(v).def, ValueDef::Node(..));
    let consumers = layer::find_consumers(model, groups);
    // The (value, axis) pairs to watch for each space.
    let watch: Vec<Vec<(ValueId, usize)>> = groups
        .spaces
        .iter()
        .map(|&a| {
            let n = groups.atoms[a].size.unwrap_or(0) as usize;
            let mut w: Vec<(ValueId, usize)> = consumers
                .iter()
                .filter(|c| {
                    layer::channel_blocks(groups, c, a, n)
                        .is_some_and(|b| b.iter().any(|q| !q.is_empty()))
                })
                .filter_map(|c| {
                    let x = graph.node(c.node).input(0)?;
                    let rank = graph.value(x).ty.as_tensor()?.rank()?;
                    let axis = match c.kind {
                        layer::LayerKind::Conv { .. } => 1,
                        layer::LayerKind::Gemm { trans_a: true, .. } => 0,
                        _ => rank.checked_sub(1)?,
                    };
                    Some((x, axis))
                })
                .filter(|&(v, k)| computed(v) && mentions(groups, v, k, a))
                .collect();
            if w.is_empty() {
                w = groups.atoms[a]
                    .members
                    .iter()
                    .copied()
                    .filter(|&(v, _)| computed(v))
                    .collect();
            }
            w.sort_unstable_by_key(|&(v, k)| (v.0, k));
            w.dedup();
            w
        })
        .collect();
    let mut all: Vec<(ValueId, usize)> = watch.iter().flatten().copied().collect();
    all.sort_unstable_by_key(|&(v, k)| (v.0, k));
    all.dedup();
    let collected = collect::collect(
        model,
        batch,
        &consumers,
        &[],
        &all,
        &[],
        None,
        &mut spa_ir::interp::NoObserver,
    )
    .map_err(|message| PassError::Failed {
        pass: "score".into(),
        message,
    })?;
    let l2 = fallback(model, groups)?;
    let mut by_activation = 0;
    let per_space = watch
        .iter()
        .enumerate()
        .map(|(s, w)| {
            let a = groups.spaces[s];
            let n = groups.atoms[a].size.unwrap_or(0) as usize;
            let mut acc = vec![0.0; n];
            let mut used = 0usize;
            for key in w {
                let (Some((sums, count)), Some(term)) =
                    (collected.activations.get(key), groups.terms.get(key))
                else {
                    continue;
                };
                let Some(map) = channel_map(groups, term, a) else {
                    continue;
                };
                if map.len() != sums.len() || *count == 0 {
                    continue;
                }
                let mut per = vec![0.0; n];
                let mut positions = vec![0u64; n];
                for (&sum, ch) in sums.iter().zip(&map) {
                    if let Some(c) = ch.map(|c| c as usize).filter(|&c| c < n) {
                        per[c] += sum;
                        positions[c] += count;
                    }
                }
                for ((a, p), k) in acc.iter_mut().zip(per).zip(positions) {
                    if k > 0 {
                        *a += p / k as f64;
                    }
                }
                used += 1;
            }
            if used == 0 {
                return l2.per_space.get(s).cloned().unwrap_or_else(|| vec![0.0; n]);
            }
            by_activation += 1;
            acc.iter_mut().for_each(|x| *x /= used as f64);
            acc
        })
        .collect();
    let stats = vec![
        ("values observed", all.len()),
        ("groups scored by activation", by_activation),
        (
            "groups scored by l2 (nothing observed)",
            groups.spaces.len() - by_activation,
        ),
    ];
    Ok((
        Scores {
            criterion: "activation".into(),
            per_space,
        },
        stats,
    ))
}

/// Does the term of axis `k` of `v` mention atom `a`?
fn mentions(groups: &GroupAnalysis, v: ValueId, k: usize, a: usize) -> bool {
    groups.terms.get(&(v, k)).is_some_and(|t| {
        let mut atoms = Vec::new();
        t.atoms(&mut atoms);
        atoms.contains(&a)
    })
}
