//! `fpgm`: filter pruning via geometric median (He et al. 2019). For every producer weight of a
//! group (Conv, ConvTranspose with one group, Gemm, MatMul: the axis that makes output channels),
//! the score of a filter is the sum of its Euclidean distances to every other filter of the same
//! tensor, FPGM's stand-in for the distance to the geometric median: filters near the median are
//! the most replaceable. Scores are reduced over the group's producers. Groups with no producer
//! weight (only norm parameters or consumer slices) fall back to the group L2 magnitude.

use super::{Criterion, MemberScores, MemberView};
use crate::error::PassError;
use rayon::prelude::*;
use spa_ir::{Graph, NodeId};

pub struct Fpgm;

/// The output-channel axis of input `i` of node `n` when that input is a producer weight.
fn producer_axis(graph: &Graph, n: NodeId, i: usize, rank: usize) -> Option<usize> {
    let node = graph.node(n);
    match (node.op_type.as_str(), i) {
        ("Conv", 1) if rank >= 2 => Some(0),
        ("ConvTranspose", 1) if rank >= 2 && node.attr_int("group").unwrap_or(1) == 1 => Some(1),
        ("Gemm", 1) if rank == 2 => Some(if node.attr_int("transB").unwrap_or(0) != 0 {
            0
        } else {
            1
        }),
        ("MatMul", 1) if rank >= 2 => Some(rank - 1),
        _ => None,
    }
}

/// Sum of Euclidean distances from each filter (slice of `values` along `axis` of `dims`) to
/// every other one.
pub fn distance_sums(values: &[f32], dims: &[usize], axis: usize) -> Vec<f64> {
    let n = dims.get(axis).copied().unwrap_or(0);
    let outer: usize = dims[..axis.min(dims.len())].iter().product();
    let inner: usize = dims.get(axis + 1..).map_or(1, |d| d.iter().product());
    let d = outer * inner;
    if n == 0 || values.len() != n * d {
        return vec![0.0; n];
    }
    // Filters as contiguous rows.
    let filters: Vec<f32> = if outer == 1 {
        values.to_vec()
    } else {
        let mut f = vec![0f32; n * d];
        for o in 0..outer {
            for c in 0..n {
                let src = &values[(o * n + c) * inner..(o * n + c + 1) * inner];
                f[c * d + o * inner..c * d + (o + 1) * inner].copy_from_slice(src);
            }
        }
        f
    };
    let row = |c: usize| &filters[c * d..(c + 1) * d];
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum::<f64>()
    };
    let norms: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|c| dot(row(c), row(c)))
        .collect();
    // Each pair once: |a-b|^2 = |a|^2 + |b|^2 - 2 a.b, with products summed in f64.
    (0..n)
        .into_par_iter()
        .fold(
            || vec![0.0f64; n],
            |mut acc, c| {
                let a = row(c);
                for j in c + 1..n {
                    let sq = norms[c] + norms[j] - 2.0 * dot(a, row(j));
                    let dist = sq.max(0.0).sqrt();
                    acc[c] += dist;
                    acc[j] += dist;
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f64; n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

impl Criterion for Fpgm {
    fn name(&self) -> &'static str {
        "fpgm"
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
        let rank = m.tensor.dims.len();
        let producer = !m.users.is_empty()
            && m.users
                .iter()
                .all(|&(n, i)| producer_axis(m.graph, n, i, rank) == Some(m.axis));
        if !producer {
            return Ok(MemberScores::Fallback);
        }
        let values = m.tensor.to_f32().map_err(|source| PassError::Ir {
            pass: "score".into(),
            source,
        })?;
        let dims: Vec<usize> = m.tensor.dims.iter().map(|&d| d.max(0) as usize).collect();
        Ok(MemberScores::Positions(distance_sums(
            &values, &dims, m.axis,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_sums_by_hand() {
        // Three filters of two weights on axis 0: (0,0), (3,4), (6,8).
        // Distances: d01 = 5, d02 = 10, d12 = 5.
        let s = distance_sums(&[0.0, 0.0, 3.0, 4.0, 6.0, 8.0], &[3, 2], 0);
        assert_eq!(s, vec![15.0, 10.0, 15.0]);
        // The same filters as columns of a [2, 3] matrix (Gemm without transB, MatMul).
        let s = distance_sums(&[0.0, 3.0, 6.0, 0.0, 4.0, 8.0], &[2, 3], 1);
        assert_eq!(s, vec![15.0, 10.0, 15.0]);
    }

    #[test]
    fn distance_sums_inner_axis_of_4d() {
        // dims [2, 2, 1, 1] along axis 1 (ConvTranspose output channels): filter c is
        // (w[0,c], w[1,c]) = (1, 3) and (2, 5): distance sqrt(1 + 4).
        let s = distance_sums(&[1.0, 2.0, 3.0, 5.0], &[2, 2, 1, 1], 1);
        let d = 5f64.sqrt();
        assert!(
            (s[0] - d).abs() < 1e-12 && (s[1] - d).abs() < 1e-12,
            "{s:?}"
        );
        // Identical filters are at distance 0; a wrong length gives zeros rather than a panic.
        assert_eq!(distance_sums(&[1.0, 1.0], &[2, 1], 0), vec![0.0, 0.0]);
        assert_eq!(distance_sums(&[1.0], &[2, 1], 0), vec![0.0, 0.0]);
    }
}
