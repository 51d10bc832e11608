//! Attention V/O head dims, re-based per head before the OBS search of the output projection.
//!
//! Per head the attention output is `P_h (x Wv_h + bv_h) Wo_h`, and `P_h` mixes tokens, not
//! columns: any invertible `G_h` with `Wv_h -> Wv_h G_h`, `bv_h -> bv_h G_h` and
//! `Wo_h -> G_h^-1 Wo_h` leaves the model unchanged. A V head-dim channel is one index in every
//! head but an unrelated direction in each, so removing it cuts an arbitrary direction per head.
//! With `H_h` the head's block of the output projection's input Hessian, `R^T R = H_h` and the
//! SVD `R Wo_h = U S V^T`, the choice `G_h = R^-1 U` whitens the head's output (`G^T H_h G = I`)
//! and orders its dims by `S`: head dim `j` carries the `j`-th strongest direction of every
//! head, and cutting a head's last `r` dims alone loses the sum of its last `r` values of `S^2`,
//! the least any `r`-dim cut of that head can lose. The OBS search of `Wo` then runs in that
//! basis: its Hessian and weight are transformed (`G^T H G`, `G^-1 Wo`; the output energy is
//! unchanged), and the score pass writes the new `Wv`, `bv` and `Wo` into the model, as it does
//! for the Q/K bases ([`super::attention`]).

use super::attention::{self, head_columns, only_user, upper_solve, Side, LAYOUT};
use super::layer::{Consumer, LayerKind};
use super::math::{self, HessianSum};
use crate::group::GroupAnalysis;
use ndarray::Array2;
use spa_ir::{Graph, Model, NodeId};

/// A V projection whose head dims an output projection consumes.
#[derive(Clone, Debug)]
pub struct ValueSite {
    pub v: Side,
    /// Index into the consumer list (the output projection).
    pub consumer: usize,
    /// Per row of the output projection's weight: (head, head dim).
    pub rows: Vec<(usize, usize)>,
    pub heads: usize,
    pub dim: usize,
}

/// From the `P V` MatMul through layout ops to the consumer that reads the result as its layer
/// input.
fn to_consumer(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    consumers: &[Consumer],
    pv: NodeId,
) -> Option<usize> {
    let mut v = graph.node(pv).output(0)?;
    for _ in 0..8 {
        let (u, slot) = only_user(graph, users, v)?;
        if let Some(i) = consumers.iter().position(|c| c.node == u) {
            return (slot == 0).then_some(i);
        }
        let un = graph.node(u);
        if !un.canonical_domain().is_empty() || slot != 0 || !LAYOUT.contains(&un.op_type.as_str())
        {
            return None;
        }
        v = un.output(0)?;
    }
    None
}

/// Whether `pos` lists every (head, dim) of `heads x dim` exactly once.
fn covers(pos: &[(usize, usize)], heads: usize, dim: usize) -> bool {
    let mut seen = vec![false; heads * dim];
    pos.len() == heads * dim
        && pos
            .iter()
            .all(|&(h, d)| h < heads && d < dim && !std::mem::replace(&mut seen[h * dim + d], true))
}

/// The V projections of prunable head-dim spaces that a used MatMul consumer (`used`, sorted)
/// reads through `P V` and layout ops.
pub fn find_value_sites(
    model: &Model,
    groups: &GroupAnalysis,
    consumers: &[Consumer],
    used: &[usize],
) -> Vec<ValueSite> {
    let graph = &model.graph;
    let users = graph.users();
    let mut sites = Vec::new();
    for &a in &groups.spaces {
        if !groups.atoms[a].prunable() {
            continue;
        }
        let Some(dim) = groups.atoms[a].size.map(|d| d as usize).filter(|&d| d > 1) else {
            continue;
        };
        for n in graph.node_ids() {
            // V is the right operand of `P V`: its head-dim axis is kept, tokens contracted.
            let Some((v, pv, 1)) = attention::side(model, groups, &users, n, a) else {
                continue;
            };
            // ... and `a` alone is V's last axis there (not the heads, a batch axis); an Einsum
            // must compute `P V` per batch axis.
            let pn = graph.node(pv);
            if !attention::last_axis_is(graph, groups, pv, 1, a)
                || (pn.op_type == "Einsum"
                    && !spa_ir::ops::binary_einsum(pn)
                        .is_some_and(|t| attention::is_mix_einsum(&t)))
            {
                continue;
            }
            let Some(i) = to_consumer(graph, &users, consumers, pv) else {
                continue;
            };
            let c = &consumers[i];
            // The rows of a MatMul's or a Gemm's (untransposed) first input are the layer inputs.
            let rows_in = matches!(
                c.kind,
                LayerKind::MatMul | LayerKind::Gemm { trans_a: false, .. }
            );
            if used.binary_search(&i).is_err() || !rows_in || c.subs != 1 {
                continue;
            }
            let Some(rows) = groups
                .terms
                .get(&(c.weight, c.in_axis))
                .and_then(|t| attention::positions(groups, t, a))
            else {
                continue;
            };
            let heads = v.pos.iter().map(|p| p.0 + 1).max().unwrap_or(0);
            if heads == 0
                || rows.len() != c.cols()
                || !covers(&v.pos, heads, dim)
                || !covers(&rows, heads, dim)
            {
                continue;
            }
            sites.push(ValueSite {
                v,
                consumer: i,
                rows,
                heads,
                dim,
            });
        }
    }
    sites
}

/// Per head: `g[h] = G_h` (for V's columns) and `gi[h] = G_h^-1` (for `Wo`'s rows).
pub struct ValueBasis {
    pub g: Vec<Array2<f64>>,
    pub gi: Vec<Array2<f64>>,
    /// Per head, the values of `S` (descending).
    pub s: Vec<Vec<f64>>,
}

/// The bases of a site from the output projection's input Hessian sums and its weight
/// (`outputs x inputs`).
pub fn value_basis(
    site: &ValueSite,
    hessian: &HessianSum,
    wo: &Array2<f64>,
) -> Result<ValueBasis, math::MathError> {
    let rc = head_columns(&site.rows, site.heads, site.dim);
    let (mut g, mut gi, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for cols in &rc {
        let d = cols.len();
        let mut hh = Array2::from_shape_fn((d, d), |(i, j)| hessian.xtx[(cols[i], cols[j])]);
        let ridge = 1e-10 * (hh.diag().sum() / d.max(1) as f64).max(1e-30);
        hh.diag_mut().iter_mut().for_each(|x| *x += ridge);
        // Only a tiny ridge: a singular block is a head whose outputs span fewer dims than it
        // has on the calibration data, which `damp` would hide, not fix.
        let r = math::cholesky(&hh)
            .map_err(|_| math::MathError::SingularHead {
                dim: d,
                rows: hessian.rows,
            })?
            .reversed_axes();
        // The left singular vectors of `M = R Wo_h` are the right ones of `L^T`, with
        // `L L^T = M M^T` (d x d, cheaper than `M^T`: outputs x d).
        let woh = Array2::from_shape_fn((d, wo.nrows()), |(j, o)| wo[(o, cols[j])]);
        let m = r.dot(&woh);
        let mut mmt = m.dot(&m.t());
        let ridge = 1e-12 * (mmt.diag().sum() / d.max(1) as f64).max(1e-30);
        mmt.diag_mut().iter_mut().for_each(|x| *x += ridge);
        let (u, sv) = attention::jacobi_right(&math::cholesky(&mmt)?.reversed_axes());
        g.push(upper_solve(&r, &u));
        gi.push(u.t().dot(&r));
        s.push(sv);
    }
    Ok(ValueBasis { g, gi, s })
}

/// `m` with each head's columns multiplied by its matrix: `m[:, cols[h]] <- m[:, cols[h]] t[h]`.
fn mul_head_columns(m: &Array2<f64>, cols: &[Vec<usize>], t: &[Array2<f64>]) -> Array2<f64> {
    let mut out = m.clone();
    for (hc, th) in cols.iter().zip(t) {
        let sub = Array2::from_shape_fn((m.nrows(), hc.len()), |(r, j)| m[(r, hc[j])]);
        let y = sub.dot(th);
        for (j, &c) in hc.iter().enumerate() {
            out.column_mut(c).assign(&y.column(j));
        }
    }
    out
}

/// The Hessian sums of the output projection's input in the new basis: `G^T H G` and `G^T sum`,
/// with `G` block-diagonal over the heads (at the rows of `site.rows`).
pub fn transform_hessian(site: &ValueSite, basis: &ValueBasis, sum: &mut HessianSum) {
    let rc = head_columns(&site.rows, site.heads, site.dim);
    // (H G)^T = G^T H, then its columns times G.
    let gth = mul_head_columns(&sum.xtx, &rc, &basis.g).reversed_axes();
    sum.xtx = mul_head_columns(&gth, &rc, &basis.g);
    let row = Array2::from_shape_fn((1, sum.colsum.len()), |(_, j)| sum.colsum[j]);
    sum.colsum = mul_head_columns(&row, &rc, &basis.g).into_iter().collect();
}

/// The output projection's weight (`outputs x inputs`) in the new basis: `Wo -> G^-1 Wo`, that
/// is, each head's input columns multiplied by `G_h^-T`.
pub fn transform_weight(site: &ValueSite, basis: &ValueBasis, w: &mut Array2<f64>) {
    let rc = head_columns(&site.rows, site.heads, site.dim);
    let git: Vec<Array2<f64>> = basis.gi.iter().map(|g| g.t().to_owned()).collect();
    *w = mul_head_columns(w, &rc, &git);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::obspa::attention::Side;
    use spa_ir::{NodeId, ValueId};

    /// A site of 2 heads x 3 dims, the heads' rows interleaved (row `2 d + h`).
    fn site() -> ValueSite {
        let rows: Vec<(usize, usize)> = (0..6).map(|r| (r % 2, r / 2)).collect();
        ValueSite {
            v: Side {
                node: NodeId(0),
                weight: ValueId(0),
                bias: None,
                point: ValueId(0),
                path: Vec::new(),
                pos: rows.clone(),
                rows_in: 4,
            },
            consumer: 0,
            rows,
            heads: 2,
            dim: 3,
        }
    }

    /// Pseudo-random values in [-0.5, 0.5) (xorshift).
    fn data(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Array2::from_shape_fn((rows, cols), |_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
    }

    /// The sums of `z`'s rows, in f64 (the collected sums are of f32 Gram blocks).
    fn sums(z: &Array2<f64>) -> HessianSum {
        let mut s = HessianSum::new(z.ncols());
        s.xtx = z.t().dot(z);
        s.colsum = (0..z.ncols()).map(|c| z.column(c).sum()).collect();
        s.rows = z.nrows() as u64;
        s
    }

    #[test]
    fn a_head_with_fewer_independent_rows_than_dims_is_reported_as_such() {
        // 2 rows of head outputs for heads of 3 dims: every head block has rank 2, and the f32
        // Gram products leave its null direction slightly negative (here -1e-6 of the mean).
        let z = data(2, 6, 3);
        let mut sum = sums(&z);
        let eps = 1e-6 * sum.xtx.diag().mean().unwrap_or(1.0);
        sum.xtx.diag_mut().iter_mut().for_each(|x| *x -= eps);
        let err = value_basis(&site(), &sum, &data(5, 6, 4))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "a head's outputs span fewer than its 3 dims on the 2 calibration rows (more \
                 samples may help)"
            )
        );
    }

    #[test]
    fn the_basis_keeps_the_output_whitens_each_head_and_orders_its_dims() {
        let site = site();
        // Head outputs z (40 x 6) and an output projection (5 outputs x 6 inputs).
        let z = data(40, 6, 1);
        let wo = data(5, 6, 2);
        let sum = sums(&z);
        let basis = value_basis(&site, &sum, &wo).unwrap();
        let rc = head_columns(&site.rows, 2, 3);
        // z' = z G (per head), w' = w G^-T: the same output z w^T.
        let z2 = mul_head_columns(&z, &rc, &basis.g);
        let mut w2 = wo.clone();
        transform_weight(&site, &basis, &mut w2);
        let (y, y2) = (z.dot(&wo.t()), z2.dot(&w2.t()));
        assert!((&y - &y2).iter().all(|d| d.abs() < 1e-9));
        // The transformed Hessian is that of z', and its head blocks are the identity.
        let mut t = sum.clone();
        transform_hessian(&site, &basis, &mut t);
        let direct = z2.t().dot(&z2);
        let err = (&t.xtx - &direct)
            .iter()
            .fold(0.0f64, |m, d| m.max(d.abs()));
        assert!(err < 1e-9, "{err}");
        for cols in &rc {
            for (i, &a) in cols.iter().enumerate() {
                for (j, &b) in cols.iter().enumerate() {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (t.xtx[(a, b)] - want).abs() < 1e-6,
                        "{a},{b}: {}",
                        t.xtx[(a, b)]
                    );
                }
            }
        }
        let colsum: Vec<f64> = (0..6).map(|c| z2.column(c).sum()).collect();
        assert!(t
            .colsum
            .iter()
            .zip(&colsum)
            .all(|(a, b)| (a - b).abs() < 1e-8));
        // Each head's dims carry decreasing output energy: ||w'_:,j||^2 = S_j^2.
        for (cols, s) in rc.iter().zip(&basis.s) {
            let e: Vec<f64> = cols
                .iter()
                .map(|&c| w2.column(c).dot(&w2.column(c)))
                .collect();
            for (j, (&ej, &sj)) in e.iter().zip(s).enumerate() {
                assert!((ej - sj * sj).abs() < 1e-8 * (1.0 + ej), "dim {j}");
            }
            assert!(e.windows(2).all(|p| p[0] >= p[1] - 1e-12), "{e:?}");
        }
    }

    #[test]
    fn cutting_the_last_dims_loses_no_more_than_cutting_any_original_dims() {
        let site = site();
        let z = data(50, 6, 3);
        let wo = data(4, 6, 4);
        let sum = sums(&z);
        let basis = value_basis(&site, &sum, &wo).unwrap();
        let mut t = sum.clone();
        transform_hessian(&site, &basis, &mut t);
        let mut w2 = wo.clone();
        transform_weight(&site, &basis, &mut w2);
        let loss = |s: &HessianSum, w: &Array2<f64>, q: &[usize]| {
            let hinv = math::spd_inverse(&s.hessian(0.0)).unwrap();
            math::saliency(w.view(), &hinv, q).unwrap()
        };
        // Dim 2 of both heads (rows 4 and 5), in the new basis against every original dim.
        let rotated = loss(&t, &w2, &[4, 5]);
        for d in 0..3 {
            let orig = loss(&sum, &wo, &[2 * d, 2 * d + 1]);
            assert!(rotated <= orig + 1e-9, "dim {d}: {rotated} > {orig}");
        }
        assert!(rotated > 0.0);
    }
}
