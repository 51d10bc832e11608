//! OBS compensation after `score{criterion=obspa}`: before channels are sliced away, the kept
//! input columns of every consumer layer are re-fitted to the removed ones,
//! `dW = -W_:,Q (Hinv_QQ)^-1 Hinv_Q,:`, with `Q` every removed input column of the layer (of all
//! groups at once) and `Hinv` the inverse Hessian the score pass stored. Removed columns become
//! zero, so `mode=mask` gives the same function as `mode=remove`.

use super::{keep_map, positions};
use crate::group::GroupAnalysis;
use crate::score::obspa::Compensation;
use spa_ir::{AttrValue, DType, Graph, Model, Tensor, ValueDef, ValueId};

/// What was done, for statistics and warnings.
#[derive(Debug, Default)]
pub struct Compensated {
    pub layers: usize,
    /// Layers left alone, with the reason.
    pub skipped: Vec<String>,
}

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
    let graph = &mut model.graph;
    for layer in &comp.layers {
        let c = &layer.consumer;
        let Some(term) = groups.terms.get(&(c.weight, c.in_axis)) else {
            continue;
        };
        let kept_pos = positions(groups, &keep, term);
        if kept_pos.len() >= c.inputs {
            continue;
        }
        let q: Vec<usize> = (0..c.inputs)
            .filter(|p| kept_pos.binary_search(&(*p as u64)).is_err())
            .flat_map(|p| (0..c.kernel).map(move |k| p * c.kernel + k))
            .collect();
        let label = graph.node(c.node).label();
        let Some(t) = graph.constant(c.weight) else {
            continue;
        };
        if t.dtype != DType::F32 {
            done.skipped.push(format!(
                "node '{label}': weight is {}, only f32 weights are compensated",
                t.dtype
            ));
            continue;
        }
        let Ok(mut w) = t.to_f32() else {
            done.skipped
                .push(format!("node '{label}': weight is unreadable"));
            continue;
        };
        let Some(mats) = c.matrices(&w) else {
            continue;
        };
        let fitted: Result<Vec<_>, _> = mats
            .iter()
            .zip(&layer.hinv)
            .map(|(m, h)| h.compensate(m.view(), &q))
            .collect();
        match fitted {
            Ok(f) if f.len() == mats.len() => c.write(&f, &mut w),
            Ok(_) => continue,
            Err(e) => {
                done.skipped.push(format!("node '{label}': {e}"));
                continue;
            }
        }
        replace_f32(graph, c.weight, &w);
        done.layers += 1;
    }
    done
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
