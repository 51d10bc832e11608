//! OBS compensation after `score{criterion=obspa}`: before channels are sliced away, the kept
//! input columns of every consumer layer are re-fitted to the removed ones,
//! `dW = -W_:,Q (Hinv_QQ)^-1 Hinv_Q,:`, with `Q` every removed input column of the layer (of all
//! groups at once) and `Hinv` the inverse Hessian the score pass stored. Removed columns become
//! zero, so `mode=mask` gives the same function as `mode=remove`.

use super::{keep_map, positions};
use crate::group::GroupAnalysis;
use crate::score::obspa::{CompensatedLayer, Compensation};
use rayon::prelude::*;
use spa_ir::{AttrValue, DType, Graph, Model, Tensor, ValueDef, ValueId};
use std::collections::HashMap;

/// What was done, for statistics and warnings.
#[derive(Debug, Default)]
pub struct Compensated {
    pub layers: usize,
    /// Layers left alone, with the reason.
    pub skipped: Vec<String>,
}

/// One layer's re-fitted weight data, or why it was left alone.
type Refit = Result<(ValueId, Vec<f32>), String>;

/// Re-fit every consumer in `comp` for the channels `kept` (per space) removes.
pub fn apply(
    model: &mut Model,
    groups: &GroupAnalysis,
    kept: &[Vec<u64>],
    comp: &Compensation,
) -> Compensated {
    let mut done = Compensated::default();
    let keep = keep_map(groups, kept);
    if keep.is_empty() {
        return done;
    }
    // Each layer's re-fit reads only its own weight and inverse Hessian (obspa takes as
    // consumers only layers whose weight has no other user, so no two layers share one:
    // `tests/passes/prune/obspa_shared_weight.spa`): they run in parallel (each re-fit's products
    // are parallel too, but its gathers and conversions are not), and the new weights are
    // written afterwards in layer order.
    let graph = &model.graph;
    let fitted: Vec<Option<Refit>> = comp
        .layers
        .par_iter()
        .map(|layer| refit(graph, groups, &keep, layer))
        .collect();
    for r in fitted.into_iter().flatten() {
        match r {
            Ok((v, w)) => {
                replace_f32(&mut model.graph, v, &w);
                done.layers += 1;
            }
            Err(e) => done.skipped.push(e),
        }
    }
    done
}

/// The re-fitted weight data of one layer (`None`: nothing to do).
fn refit(
    graph: &Graph,
    groups: &GroupAnalysis,
    keep: &HashMap<usize, &[u64]>,
    layer: &CompensatedLayer,
) -> Option<Refit> {
    let c = &layer.consumer;
    let term = groups.terms.get(&(c.weight, c.in_axis))?;
    let kept_pos = positions(groups, keep, term);
    if kept_pos.len() >= c.inputs {
        return None;
    }
    let q: Vec<usize> = (0..c.inputs)
        .filter(|p| kept_pos.binary_search(&(*p as u64)).is_err())
        .flat_map(|p| (0..c.kernel).map(move |k| p * c.kernel + k))
        .collect();
    let label = graph.node(c.node).label();
    let t = graph.constant(c.weight)?;
    if t.dtype != DType::F32 {
        return Some(Err(format!(
            "node '{label}': weight is {}, only f32 weights are compensated",
            t.dtype
        )));
    }
    let Ok(mut w) = t.to_f32() else {
        return Some(Err(format!("node '{label}': weight is unreadable")));
    };
    let mats = c.matrices(&w)?;
    let fitted: Result<Vec<_>, _> = mats
        .iter()
        .zip(&layer.hinv)
        .map(|(m, h)| h.compensate(m.view(), &q))
        .collect();
    match fitted {
        Ok(f) if f.len() == mats.len() => {
            c.write(&f, &mut w);
            Some(Ok((c.weight, w)))
        }
        Ok(_) => None,
        Err(e) => Some(Err(format!("node '{label}': {e}"))),
    }
}

/// Replace the data of the f32 constant `v` (an initializer or a `Constant` node), keeping its
/// dims, name, doc string and metadata.
pub(crate) fn replace_f32(graph: &mut Graph, v: ValueId, data: &[f32]) {
    let Some(t) = graph.constant(v) else {
        return;
    };
    let mut new = Tensor::from_f32(t.dims.clone(), data);
    new.name = t.name.clone();
    new.doc_string = t.doc_string.clone();
    new.metadata_props = t.metadata_props.clone();
    if graph.value(v).init.is_some() {
        graph.value_mut(v).init = Some(new);
    } else if let ValueDef::Node(n, 0) = graph.value(v).def {
        graph.node_mut(n).set_attr("value", AttrValue::Tensor(new));
    }
}
