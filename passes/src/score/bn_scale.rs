//! `bn-scale`: network slimming (Liu et al. 2017). The score of a channel is `|gamma|`, the
//! scale of the BatchNormalization(s) in its group, reduced across them. Groups with no
//! BatchNormalization fall back to the group L2 magnitude (the default criterion), and the score
//! pass warns how many prunable groups did; rank globally only with `normalize=mean|max` then, since
//! the two kinds of score have different scales.

use super::{Criterion, MemberScores, MemberView};
use crate::error::PassError;
use crate::group::GroupAnalysis;
use spa_ir::{Graph, Model, NodeId, ValueId};

pub struct BnScale;

/// Is `v` (with these users) the scale (input 1) of BatchNormalization nodes only?
fn is_bn_scale(graph: &Graph, users: &[(NodeId, usize)]) -> bool {
    !users.is_empty()
        && users
            .iter()
            .all(|&(n, i)| i == 1 && graph.node(n).op_type == "BatchNormalization")
}

impl Criterion for BnScale {
    fn name(&self) -> &'static str {
        "bn-scale"
    }

    /// The fallback is L2: sum of squares, then the square root.
    fn element(&self, w: f32) -> f64 {
        let w = w as f64;
        w * w
    }

    fn finish(&self, sum: f64) -> f64 {
        sum.sqrt()
    }

    fn member(&self, m: &MemberView<'_>) -> Result<MemberScores, PassError> {
        if m.axis != 0 || m.tensor.dims.len() != 1 || !is_bn_scale(m.graph, m.users) {
            return Ok(MemberScores::Fallback);
        }
        let gamma = m.tensor.to_f32().map_err(|source| PassError::Ir {
            pass: "score".into(),
            source,
        })?;
        Ok(MemberScores::Positions(
            gamma.iter().map(|&g| (g as f64).abs()).collect(),
        ))
    }

    fn check(&self, model: &Model, groups: &GroupAnalysis) -> Vec<String> {
        let g = &model.graph;
        let users = g.users();
        let has_bn = |members: &[(ValueId, usize)]| {
            members.iter().any(|&(v, k)| {
                k == 0
                    && g.constant(v).is_some()
                    && users
                        .get(v.index())
                        .is_some_and(|u| is_bn_scale(g, u.as_slice()))
            })
        };
        let prunable: Vec<usize> = groups
            .spaces
            .iter()
            .copied()
            .filter(|&a| groups.atoms[a].prunable())
            .collect();
        let without = prunable
            .iter()
            .filter(|&&a| !has_bn(&groups.atoms[a].members))
            .count();
        if without == 0 {
            return Vec::new();
        }
        vec![format!(
            "bn-scale: {without} of {} prunable groups have no BatchNormalization; they are scored by l2 (group L2 magnitude)",
            prunable.len()
        )]
    }
}
