//! The Optimal Brain Surgeon algebra behind `obspa`, independent of any graph.
//!
//! A layer computes `y = W x` with `W` of shape `rows x cols` (rows = outputs). With layer-input
//! Hessian `H = 2/N X^T X` (rows of `X` are inputs `x`) and `Hinv = H^-1`, removing the column
//! block `Q` and re-fitting the other columns costs
//! `E_Q = 1/2 sum_rows w_Q (Hinv_QQ)^-1 w_Q^T`, and the re-fit is
//! `dW = -W_:,Q (Hinv_QQ)^-1 Hinv_Q,:`; the inverse Hessian of the remaining columns is the Schur
//! complement `Hinv - Hinv_:,Q (Hinv_QQ)^-1 Hinv_Q,:`. Everything is `f64`.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum MathError {
    #[error("the Hessian is not positive definite (pivot {pivot}); increase damp")]
    NotPositiveDefinite { pivot: usize },
    #[error("a weight matrix is {rows}x{cols} but the Hessian is {dim}x{dim}")]
    Shape {
        rows: usize,
        cols: usize,
        dim: usize,
    },
}

/// Running `X^T X` over batches of layer inputs.
#[derive(Clone, Debug)]
pub struct HessianSum {
    pub xtx: Array2<f64>,
    pub rows: u64,
}

impl HessianSum {
    pub fn new(dim: usize) -> HessianSum {
        HessianSum {
            xtx: Array2::zeros((dim, dim)),
            rows: 0,
        }
    }

    pub fn dim(&self) -> usize {
        self.xtx.nrows()
    }

    /// Add the rows of `x` (`n x dim`). The product is formed in `f32` (one block of rows at a
    /// time) and summed in `f64`.
    pub fn add(&mut self, x: ArrayView2<'_, f32>) {
        if x.ncols() != self.dim() || x.nrows() == 0 {
            return;
        }
        let g = x.t().dot(&x);
        self.add_gram(&g, x.nrows() as u64);
    }

    /// Add a precomputed `X^T X` of `rows` rows.
    pub fn add_gram(&mut self, g: &Array2<f32>, rows: u64) {
        if g.dim() == self.xtx.dim() {
            self.xtx.zip_mut_with(g, |a, &b| *a += b as f64);
            self.rows += rows;
        }
    }

    /// Merge another partial sum (from another thread).
    pub fn merge(&mut self, other: &HessianSum) {
        if other.dim() == self.dim() {
            self.xtx += &other.xtx;
            self.rows += other.rows;
        }
    }

    /// `H = 2/N X^T X`, damped: `H += damp * mean(diag H) * I` (an all-zero diagonal gets `damp`).
    pub fn hessian(&self, damp: f64) -> Array2<f64> {
        let n = self.rows.max(1) as f64;
        let mut h = self.xtx.mapv(|v| 2.0 * v / n);
        let d = h.nrows().max(1) as f64;
        let mean = h.diag().sum() / d;
        let add = if mean > 0.0 {
            damp * mean
        } else {
            damp.max(1e-8)
        };
        h.diag_mut().iter_mut().for_each(|x| *x += add);
        h
    }
}

/// Lower Cholesky factor `L` of a symmetric positive definite matrix (`h = L L^T`).
pub fn cholesky(h: &Array2<f64>) -> Result<Array2<f64>, MathError> {
    let n = h.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let (li, lj) = (l.row(i), l.row(j));
            let dot: f64 = match (li.as_slice(), lj.as_slice()) {
                (Some(a), Some(b)) => a[..j].iter().zip(&b[..j]).map(|(x, y)| x * y).sum(),
                _ => (0..j).map(|k| li[k] * lj[k]).sum(),
            };
            let s = h[[i, j]] - dot;
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return Err(MathError::NotPositiveDefinite { pivot: i });
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    Ok(l)
}

/// Inverse of a symmetric positive definite matrix, through its Cholesky factor:
/// `H^-1 = L^-T L^-1`.
pub fn spd_inverse(h: &Array2<f64>) -> Result<Array2<f64>, MathError> {
    let l = cholesky(h)?;
    let n = l.nrows();
    // M = L^-1, row by row: M_i = (e_i - sum_{k<i} L_ik M_k) / L_ii (rows are contiguous).
    let mut m = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        let mut row = vec![0.0; i + 1];
        row[i] = 1.0;
        for k in 0..i {
            let lik = l[[i, k]];
            if lik != 0.0 {
                let mk = m.row(k);
                for (r, &v) in row.iter_mut().zip(mk.iter().take(k + 1)) {
                    *r -= lik * v;
                }
            }
        }
        let d = l[[i, i]];
        for (j, v) in row.into_iter().enumerate() {
            m[[i, j]] = v / d;
        }
    }
    Ok(m.t().dot(&m))
}

/// Solve `A Z = B` for a small symmetric positive definite `A` (`q x q`), `B` is `q x k`.
fn spd_solve(a: &Array2<f64>, b: &Array2<f64>) -> Result<Array2<f64>, MathError> {
    let l = match cholesky(a) {
        Ok(l) => l,
        Err(_) => {
            // Removed-and-restored columns can leave a numerically singular block: jitter it.
            let q = a.nrows().max(1) as f64;
            let jitter = 1e-10 * (a.diag().sum().abs() / q).max(1e-300);
            let mut a = a.clone();
            a.diag_mut().iter_mut().for_each(|x| *x += jitter);
            cholesky(&a)?
        }
    };
    let q = l.nrows();
    let mut z = b.clone();
    for col in 0..z.ncols() {
        // Forward: L y = b; back: L^T z = y.
        for i in 0..q {
            let s: f64 = (0..i).map(|k| l[[i, k]] * z[[k, col]]).sum();
            z[[i, col]] = (z[[i, col]] - s) / l[[i, i]];
        }
        for i in (0..q).rev() {
            let s: f64 = (i + 1..q).map(|k| l[[k, i]] * z[[k, col]]).sum();
            z[[i, col]] = (z[[i, col]] - s) / l[[i, i]];
        }
    }
    Ok(z)
}

fn check(w: &ArrayView2<'_, f64>, hinv: &Array2<f64>) -> Result<(), MathError> {
    if w.ncols() != hinv.nrows() || hinv.nrows() != hinv.ncols() {
        return Err(MathError::Shape {
            rows: w.nrows(),
            cols: w.ncols(),
            dim: hinv.nrows(),
        });
    }
    Ok(())
}

/// `E_Q = 1/2 sum_rows w_Q (Hinv_QQ)^-1 w_Q^T`: the increase of the layer's loss when the columns
/// `q` are removed and the others re-fitted.
pub fn saliency(w: ArrayView2<'_, f64>, hinv: &Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
    check(&w, hinv)?;
    if q.is_empty() {
        return Ok(0.0);
    }
    let hqq = hinv.select(Axis(0), q).select(Axis(1), q);
    let wq_t = w
        .select(Axis(1), q)
        .reversed_axes()
        .as_standard_layout()
        .to_owned();
    let z = spd_solve(&hqq, &wq_t)?;
    Ok(0.5 * (&wq_t * &z).sum())
}

/// Remove the columns `q`: re-fit the other columns of `w` (`w += dW`), zero the removed ones,
/// and downdate `hinv` to the inverse Hessian of the remaining columns. Returns `E_Q`.
pub fn remove(w: &mut Array2<f64>, hinv: &mut Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
    let e = saliency(w.view(), hinv, q)?;
    if q.is_empty() {
        return Ok(0.0);
    }
    let hqq = hinv.select(Axis(0), q).select(Axis(1), q);
    // K = Hinv_QQ^-1 Hinv_Q,:  (q x cols)
    let hq = hinv.select(Axis(0), q);
    let k = spd_solve(&hqq, &hq)?;
    let wq = w.select(Axis(1), q);
    // dW = -W_:,Q K;  Hinv -= Hinv_:,Q K.
    ndarray::linalg::general_mat_mul(-1.0, &wq, &k, 1.0, w);
    let hcol = hq.t().to_owned();
    ndarray::linalg::general_mat_mul(-1.0, &hcol, &k, 1.0, hinv);
    for &c in q {
        w.column_mut(c).fill(0.0);
        hinv.column_mut(c).fill(0.0);
        hinv.row_mut(c).fill(0.0);
    }
    Ok(e)
}

/// One layer as seen by the greedy search: weights, inverse Hessian, and the columns of each
/// channel (possibly none).
#[derive(Clone, Debug)]
pub struct Layer {
    pub w: Array2<f64>,
    pub hinv: Array2<f64>,
    pub blocks: Vec<Vec<usize>>,
}

/// Joint greedy removal over layers that share channels: at each step the channels whose
/// removal from every layer costs least (summed saliency) go, all layers are re-fitted and
/// downdated, and the next step sees the updated weights. Steps remove `ceil(n / max_steps)`
/// channels at once (exact one-at-a-time greedy when `n <= max_steps`).
///
/// Returns each channel's score: the loss accumulated by the removals before its step plus its
/// own saliency at that step. Scores grow along the greedy order (removing a superset never costs
/// less), so ranking by score reproduces the order; the last channel is never removed and scores
/// the loss of removing every channel but it plus its own.
pub fn greedy_scores(
    layers: &mut [Layer],
    channels: usize,
    max_steps: usize,
) -> Result<Vec<f64>, MathError> {
    let mut score = vec![0.0; channels];
    let mut alive: Vec<usize> = (0..channels).collect();
    let batch = channels.div_ceil(max_steps.max(1)).max(1);
    let mut total = 0.0;
    while !alive.is_empty() {
        let sal: Vec<f64> = alive
            .par_iter()
            .map(|&c| {
                layers.iter().try_fold(0.0, |acc, l| match l.blocks.get(c) {
                    Some(q) if !q.is_empty() => Ok(acc + saliency(l.w.view(), &l.hinv, q)?),
                    _ => Ok(acc),
                })
            })
            .collect::<Result<_, MathError>>()?;
        let mut order: Vec<usize> = (0..alive.len()).collect();
        order.sort_by(|&a, &b| sal[a].total_cmp(&sal[b]).then(alive[a].cmp(&alive[b])));
        let take = batch.min(alive.len());
        let step: Vec<usize> = order[..take].iter().map(|&i| alive[i]).collect();
        for &i in &order[..take] {
            score[alive[i]] = total + sal[i];
        }
        if take == alive.len() {
            break;
        }
        let joint: f64 = layers
            .par_iter_mut()
            .map(|l| {
                let q: Vec<usize> = step
                    .iter()
                    .filter_map(|&c| l.blocks.get(c))
                    .flatten()
                    .copied()
                    .collect();
                remove(&mut l.w, &mut l.hinv, &q)
            })
            .collect::<Result<Vec<f64>, _>>()?
            .into_iter()
            .sum();
        total += joint;
        alive.retain(|c| !step.contains(c));
    }
    Ok(score)
}

/// The compensated weights after removing columns `q` at once (the re-fit of the kept columns;
/// the removed ones are zero).
pub fn compensate(
    w: ArrayView2<'_, f64>,
    hinv: &Array2<f64>,
    q: &[usize],
) -> Result<Array2<f64>, MathError> {
    let mut w = w.to_owned();
    let mut h = hinv.clone();
    remove(&mut w, &mut h, q)?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    /// Deterministic pseudo-normal matrix.
    fn randn(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        Array2::from_shape_fn((rows, cols), |_| (0..4).map(|_| next()).sum::<f64>())
    }

    fn rel(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        let d = (a - b).mapv(|x| x * x).sum().sqrt();
        d / b.mapv(|x| x * x).sum().sqrt().max(1e-300)
    }

    /// Least squares: B = argmin ||X_K B - X W^T||, for the kept columns K.
    fn least_squares(x: &Array2<f64>, w: &Array2<f64>, kept: &[usize]) -> Array2<f64> {
        let xk = x.select(Axis(1), kept);
        let a = xk.t().dot(&xk);
        let b = xk.t().dot(&x.dot(&w.t()));
        let inv = spd_inverse(&a).unwrap();
        let bk = inv.dot(&b); // kept x rows
        let mut full = Array2::zeros(w.raw_dim());
        for (i, &k) in kept.iter().enumerate() {
            full.column_mut(k).assign(&bk.row(i));
        }
        full
    }

    fn layer_hinv(x: &Array2<f64>) -> Array2<f64> {
        let mut acc = HessianSum::new(x.ncols());
        acc.add(x.mapv(|v| v as f32).view());
        // Exact (f64) sum for the algebra tests.
        acc.xtx = x.t().dot(x);
        spd_inverse(&acc.hessian(0.0)).unwrap()
    }

    #[test]
    fn inverse_is_inverse() {
        let x = randn(40, 7, 1);
        let h = x.t().dot(&x);
        let inv = spd_inverse(&h).unwrap();
        let eye = Array2::<f64>::eye(7);
        assert!(rel(&h.dot(&inv), &eye) < 1e-10);
        let mut bad = h.clone();
        bad[[3, 3]] = -1.0;
        assert!(matches!(
            spd_inverse(&bad),
            Err(MathError::NotPositiveDefinite { .. })
        ));
    }

    #[test]
    fn compensation_equals_least_squares() {
        for (seed, rows, cols, q) in [
            (1u64, 5usize, 12usize, vec![3usize, 4, 5]),
            (2, 3, 9, vec![0]),
            (3, 8, 16, vec![1, 7, 8, 15]),
        ] {
            let n = 64;
            let x = randn(n, cols, seed);
            let w = randn(rows, cols, seed + 100);
            let hinv = layer_hinv(&x);
            let got = compensate(w.view(), &hinv, &q).unwrap();
            let kept: Vec<usize> = (0..cols).filter(|c| !q.contains(c)).collect();
            let want = least_squares(&x, &w, &kept);
            assert!(rel(&got, &want) < 1e-6, "seed {seed}: {}", rel(&got, &want));
            // The saliency is the increase of the squared error: 1/N ||X (W' - W)^T||^2.
            let e = saliency(w.view(), &hinv, &q).unwrap();
            let err = x.dot(&(&got - &w).t()).mapv(|v| v * v).sum() / n as f64;
            assert!((e - err).abs() <= 1e-8 * err.max(1e-12), "{e} vs {err}");
        }
    }

    #[test]
    fn sequential_removal_equals_joint_removal() {
        // OBS removals compose: q1 then q2 (with the downdate) is the same re-fit as q1 + q2.
        let x = randn(50, 10, 4);
        let w = randn(4, 10, 5);
        let hinv = layer_hinv(&x);
        let (mut w1, mut h1) = (w.clone(), hinv.clone());
        let e1 = remove(&mut w1, &mut h1, &[2, 3]).unwrap();
        let e2 = remove(&mut w1, &mut h1, &[7]).unwrap();
        let joint = compensate(w.view(), &hinv, &[2, 3, 7]).unwrap();
        assert!(rel(&w1, &joint) < 1e-9);
        let ej = saliency(w.view(), &hinv, &[2, 3, 7]).unwrap();
        assert!((e1 + e2 - ej).abs() < 1e-9 * ej);
    }

    #[test]
    fn greedy_scores_follow_the_loss() {
        // Two layers share 4 channels of 2 columns each; channel 2 has tiny weights in both.
        let x1 = randn(60, 8, 6);
        let x2 = randn(60, 8, 7);
        let mut w1 = randn(3, 8, 8);
        let mut w2 = randn(5, 8, 9);
        for c in [4, 5] {
            w1.column_mut(c).mapv_inplace(|v| v * 1e-3);
            w2.column_mut(c).mapv_inplace(|v| v * 1e-3);
        }
        let blocks: Vec<Vec<usize>> = (0..4).map(|c| vec![2 * c, 2 * c + 1]).collect();
        let mut layers = vec![
            Layer {
                w: w1.clone(),
                hinv: layer_hinv(&x1),
                blocks: blocks.clone(),
            },
            Layer {
                w: w2.clone(),
                hinv: layer_hinv(&x2),
                blocks,
            },
        ];
        let scores = greedy_scores(&mut layers.clone(), 4, 64).unwrap();
        let lowest = (0..4)
            .min_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        assert_eq!(lowest, 2);
        // The two lowest scores: the second is the joint loss of removing both (plus nothing).
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let q: Vec<usize> = order[..2]
            .iter()
            .flat_map(|&c| [2 * c, 2 * c + 1])
            .collect();
        let joint: f64 = layers
            .iter()
            .map(|l| saliency(l.w.view(), &l.hinv, &q).unwrap())
            .sum();
        let first: f64 = layers
            .iter()
            .map(|l| {
                let c = order[0];
                saliency(l.w.view(), &l.hinv, &[2 * c, 2 * c + 1]).unwrap()
            })
            .sum();
        assert!((scores[order[0]] - first).abs() < 1e-9 * first.max(1e-12));
        assert!((scores[order[1]] - joint).abs() < 1e-9 * joint);
        // Monotone along the order.
        assert!(order.windows(2).all(|p| scores[p[0]] <= scores[p[1]]));
        // Batched steps rank the same channel lowest.
        let batched = greedy_scores(&mut layers, 4, 2).unwrap();
        assert_eq!(
            (0..4).min_by(|&a, &b| batched[a].total_cmp(&batched[b])),
            Some(2)
        );
    }

    #[test]
    fn damping_and_merge() {
        let x = randn(10, 3, 11).mapv(|v| v as f32);
        let mut a = HessianSum::new(3);
        a.add(x.slice(s![..4, ..]));
        let mut b = HessianSum::new(3);
        b.add(x.slice(s![4.., ..]));
        a.merge(&b);
        assert_eq!(a.rows, 10);
        let h0 = a.hessian(0.0);
        let h1 = a.hessian(0.1);
        let mean = h0.diag().sum() / 3.0;
        for i in 0..3 {
            assert!((h1[[i, i]] - h0[[i, i]] - 0.1 * mean).abs() < 1e-9);
        }
    }
}
