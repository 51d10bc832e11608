//! The inverse Hessian of a layer that saw fewer calibration rows than it has inputs, kept in
//! low-rank form.
//!
//! With `r` rows of `d` inputs (`r < d`: 16 synthetic images into VGG's 25,088-input classifier),
//! the damped Hessian is `H = U^T U + lambda I` with `U = sqrt(2/N) X` (`r x d`). By the Woodbury
//! identity `H^-1 = (I - U^T M^-1 U) / lambda` with the small `M = lambda I + U U^T` (`r x r`);
//! with `M = L L^T` and `P = L^-1 U`, `H^-1 = (I - P^T P) / lambda`. Every quantity the OBS search
//! reads is a product with `P`, and removing columns is the same form over the kept columns of `U`,
//! so nothing `d x d` is ever formed: `r x d` numbers instead of `d^2`, and `r^2 d` work per
//! greedy step instead of the `d^3` of a dense inverse (see [`LOW_RANK_RATIO`]).

use super::math::{self, par_gemm, MathError};
use ndarray::{Array2, ArrayView2, Axis};

/// A Hessian sum keeps its rows (and its inverse is low-rank) while `rows * LOW_RANK_RATIO <=
/// dim`. Over a greedy search of at most 128 steps the low-rank form costs about `128 * 2 r^2 d`
/// (recomputing `P` each step), the dense one about `1.7 d^3` (the inverse, then the downdates),
/// so low-rank is faster below about `d / 12` rows and costs about as much at `d / 8`, where its
/// rows take `d^2 / 2` bytes against the dense sum's `8 d^2`. The ratio is this estimate, not a
/// measured sweep.
pub const LOW_RANK_RATIO: u64 = 8;

/// `H^-1 = (I - P^T P) / lambda` for `H = U^T U + lambda I`.
#[derive(Clone, Debug)]
pub struct LowRank {
    /// `sqrt(2/N) X`, with removed columns zero (`r x d`).
    u: Array2<f64>,
    lambda: f64,
    /// `L^-1 U` for `lambda I + U U^T = L L^T` (`r x d`).
    p: Array2<f64>,
    alive: Vec<bool>,
}

impl LowRank {
    /// The damped inverse Hessian of the `rows` (`r x d`, f32) of `n` counted rows: `H = 2/N X^T X
    /// + damp * mean(diag) I` (an all-zero diagonal gets `damp`, at least `1e-8`), as
    /// [`math::HessianSum::hessian`] damps it.
    pub fn new(x: ArrayView2<'_, f32>, n: u64, damp: f64) -> Result<LowRank, MathError> {
        let d = x.ncols();
        let scale = (2.0 / n.max(1) as f64).sqrt();
        let u = x.mapv(|v| v as f64 * scale);
        let mean = u.iter().map(|v| v * v).sum::<f64>() / d.max(1) as f64;
        let lambda = if mean > 0.0 {
            damp * mean
        } else {
            damp.max(1e-8)
        };
        if lambda <= 0.0 || !lambda.is_finite() {
            return Err(MathError::NotPositiveDefinite { pivot: 0 });
        }
        let mut out = LowRank {
            p: Array2::zeros(u.raw_dim()),
            u,
            lambda,
            alive: vec![true; d],
        };
        out.refresh()?;
        Ok(out)
    }

    /// The identity (`H = I`, no rows), for `data=none`.
    pub fn identity(d: usize) -> LowRank {
        LowRank {
            u: Array2::zeros((0, d)),
            lambda: 1.0,
            p: Array2::zeros((0, d)),
            alive: vec![true; d],
        }
    }

    pub fn dim(&self) -> usize {
        self.u.ncols()
    }

    pub fn rank(&self) -> usize {
        self.u.nrows()
    }

    pub fn is_alive(&self, c: usize) -> bool {
        self.alive.get(c).copied().unwrap_or(false)
    }

    /// `lambda I + U U^T` over the columns `u` has (removed ones are zero).
    fn small(&self, u: &Array2<f64>) -> Array2<f64> {
        let r = u.nrows();
        let mut m = Array2::<f64>::eye(r) * self.lambda;
        par_gemm(1.0, &u.view(), &u.t(), 1.0, &mut m.view_mut());
        m
    }

    /// Recompute `P` from `U`.
    fn refresh(&mut self) -> Result<(), MathError> {
        if self.rank() == 0 {
            return Ok(());
        }
        let l = math::cholesky_owned(self.small(&self.u))?;
        let linv = math::lower_inverse(&l);
        par_gemm(
            1.0,
            &linv.view(),
            &self.u.view(),
            0.0,
            &mut self.p.view_mut(),
        );
        Ok(())
    }

    /// `Hinv_QQ = (I - P_Q^T P_Q) / lambda`.
    pub fn block(&self, q: &[usize]) -> Array2<f64> {
        let pq = math::columns(self.p.view(), q);
        let mut b = Array2::<f64>::eye(q.len());
        par_gemm(-1.0, &pq.t(), &pq.view(), 1.0, &mut b.view_mut());
        b / self.lambda
    }

    /// `Hinv_Q,: = (E_Q - P_Q^T P) / lambda` (`q x d`).
    #[cfg(test)]
    fn rows(&self, q: &[usize]) -> Array2<f64> {
        let pq = math::columns(self.p.view(), q);
        let mut out = Array2::<f64>::zeros((q.len(), self.dim()));
        for (i, &c) in q.iter().enumerate() {
            out[[i, c]] = 1.0;
        }
        par_gemm(-1.0, &pq.t(), &self.p.view(), 1.0, &mut out.view_mut());
        out / self.lambda
    }

    /// Remove the columns `q`: re-fit the others (`w += dW`, the same `dW` as the dense form),
    /// zero the removed ones, and make this the inverse Hessian of the kept columns. Returns
    /// `E_Q`.
    pub fn remove(&mut self, w: &mut Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
        if q.is_empty() {
            return Ok(0.0);
        }
        let b = self.block(q);
        let e = math::saliency_of_block(w.view(), &b, q)?;
        // dW = -W_Q B^-1 Hinv_Q,: = -T E_Q + (T P_Q^T) P with T = W_Q B^-1 / lambda: the first
        // term only touches the removed columns (zeroed below), the second is of rank r, so the
        // update costs `rows r d` rather than `rows q d`.
        let t = math::columns(w.view(), q).dot(&math::small_spd_inverse(&b)?) / self.lambda;
        let tp = t.dot(&math::columns(self.p.view(), q).t());
        par_gemm(1.0, &tp.view(), &self.p.view(), 1.0, &mut w.view_mut());
        for &c in q {
            w.column_mut(c).fill(0.0);
            self.u.column_mut(c).fill(0.0);
            self.p.column_mut(c).fill(0.0);
            if let Some(a) = self.alive.get_mut(c) {
                *a = false;
            }
        }
        self.refresh()?;
        Ok(e)
    }

    /// The compensated weights after removing the columns `q` at once: `W_K + (W_Q U_Q^T)
    /// M_K^-1 U_K` with `M_K = lambda I + U_K U_K^T` (the dense form's `W - W_Q Hinv_QQ^-1
    /// Hinv_Q,:`, with the removed block's `q x q` inverse replaced by an `r x r` one); the
    /// removed columns are zero.
    pub fn compensate(
        &self,
        w: ArrayView2<'_, f64>,
        q: &[usize],
    ) -> Result<Array2<f64>, MathError> {
        let mut out = w.to_owned();
        if q.is_empty() || self.rank() == 0 {
            for &c in q {
                out.column_mut(c).fill(0.0);
            }
            return Ok(out);
        }
        let uq = math::columns(self.u.view(), q);
        let mut uk = self.u.clone();
        for &c in q {
            uk.column_mut(c).fill(0.0);
        }
        let minv = math::spd_inverse(&self.small(&uk))?;
        // R = W_Q U_Q^T (rows x r), then R M_K^-1.
        let wq = math::columns(w, q);
        let mut rq = Array2::<f64>::zeros((w.nrows(), self.rank()));
        par_gemm(1.0, &wq.view(), &uq.t(), 0.0, &mut rq.view_mut());
        let t = rq.dot(&minv);
        par_gemm(1.0, &t.view(), &uk.view(), 1.0, &mut out.view_mut());
        for &c in q {
            out.column_mut(c).fill(0.0);
        }
        Ok(out)
    }

    /// Keep only the columns `keep` (in order).
    pub fn select(&mut self, keep: &[usize]) {
        self.u = self.u.select(Axis(1), keep);
        self.p = self.p.select(Axis(1), keep);
        self.alive = keep.iter().map(|&c| self.is_alive(c)).collect();
    }
}

/// A layer's inverse Hessian: dense, or low-rank when the layer saw fewer rows than inputs.
#[derive(Clone, Debug)]
pub enum InverseHessian {
    Dense(Array2<f64>),
    LowRank(LowRank),
}

impl InverseHessian {
    pub fn dim(&self) -> usize {
        match self {
            InverseHessian::Dense(h) => h.nrows(),
            InverseHessian::LowRank(l) => l.dim(),
        }
    }

    /// Whether column `c` is still in (not removed by [`InverseHessian::remove`]).
    pub fn is_alive(&self, c: usize) -> bool {
        match self {
            InverseHessian::Dense(h) => h.get([c, c]).is_some_and(|v| *v != 0.0),
            InverseHessian::LowRank(l) => l.is_alive(c),
        }
    }

    /// See [`math::saliency`].
    pub fn saliency(&self, w: ArrayView2<'_, f64>, q: &[usize]) -> Result<f64, MathError> {
        match self {
            InverseHessian::Dense(h) => math::saliency(w, h, q),
            InverseHessian::LowRank(l) => {
                check(&w, l.dim())?;
                math::saliency_of_block(w, &l.block(q), q)
            }
        }
    }

    /// [`InverseHessian::saliency`] of the one column `c`, given its squared norm `g` in the
    /// weights (from [`math::column_norms`]).
    pub fn column_saliency(&self, c: usize, g: f64) -> Result<f64, MathError> {
        let dim = self.dim();
        if c >= dim {
            return Err(MathError::Shape {
                rows: 1,
                cols: c + 1,
                dim,
            });
        }
        let h = match self {
            InverseHessian::Dense(h) => h[[c, c]],
            InverseHessian::LowRank(l) => l.block(&[c])[[0, 0]],
        };
        math::saliency_of_column(g, h)
    }

    /// See [`math::remove`].
    pub fn remove(&mut self, w: &mut Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
        match self {
            InverseHessian::Dense(h) => math::remove(w, h, q),
            InverseHessian::LowRank(l) => {
                check(&w.view(), l.dim())?;
                l.remove(w, q)
            }
        }
    }

    /// See [`math::compensate`].
    pub fn compensate(
        &self,
        w: ArrayView2<'_, f64>,
        q: &[usize],
    ) -> Result<Array2<f64>, MathError> {
        match self {
            InverseHessian::Dense(h) => math::compensate(w, h, q),
            InverseHessian::LowRank(l) => {
                check(&w, l.dim())?;
                l.compensate(w, q)
            }
        }
    }

    /// Keep only the columns `keep` (in order).
    pub fn select(&mut self, keep: &[usize]) {
        match self {
            InverseHessian::Dense(h) => *h = math::block(h, keep),
            InverseHessian::LowRank(l) => l.select(keep),
        }
    }
}

fn check(w: &ArrayView2<'_, f64>, dim: usize) -> Result<(), MathError> {
    if w.ncols() != dim {
        return Err(MathError::Shape {
            rows: w.nrows(),
            cols: w.ncols(),
            dim,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::obspa::math::tests::{randn, rel};
    use crate::score::obspa::math::{greedy_scores, HessianSum, Layer};

    /// The dense damped inverse of the same rows, in `f64` throughout.
    fn dense(x: &Array2<f32>, damp: f64) -> Array2<f64> {
        let x = x.mapv(|v| v as f64);
        let n = x.nrows() as f64;
        let mut h = x.t().dot(&x) * (2.0 / n);
        let mean = h.diag().mean().unwrap_or(0.0);
        h.diag_mut().iter_mut().for_each(|v| *v += damp * mean);
        math::spd_inverse(&h).unwrap()
    }

    fn rows(r: usize, d: usize, seed: u64) -> Array2<f32> {
        randn(r, d, seed).mapv(|v| v as f32)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-8 * a.abs().max(b.abs()).max(1e-300)
    }

    #[test]
    fn the_low_rank_form_is_the_dense_inverse() {
        // 12 rows of 150 inputs (more than two blocks of the dense factorizations).
        let (r, d) = (12, 150);
        let x = rows(r, d, 1);
        let lr = LowRank::new(x.view(), r as u64, 0.01).unwrap();
        let h = dense(&x, 0.01);
        let all: Vec<usize> = (0..d).collect();
        assert!(rel(&lr.block(&all), &h) < 1e-10);
        let q = [3, 4, 100];
        assert!(rel(&lr.rows(&q), &h.select(Axis(0), &q)) < 1e-10);
    }

    #[test]
    fn low_rank_obs_steps_equal_the_dense_ones() {
        let (r, d) = (10, 90);
        let x = rows(r, d, 2);
        let w = randn(6, d, 3);
        let mut low = InverseHessian::LowRank(LowRank::new(x.view(), r as u64, 0.01).unwrap());
        let mut full = InverseHessian::Dense(dense(&x, 0.01));
        let (q1, q2, q3) = (vec![0, 1, 2], vec![40, 77], vec![5]);
        for q in [&q1, &q2] {
            let (a, b) = (
                low.saliency(w.view(), q).unwrap(),
                full.saliency(w.view(), q).unwrap(),
            );
            assert!(close(a, b), "saliency {a} vs {b}");
            let (ca, cb) = (
                low.compensate(w.view(), q).unwrap(),
                full.compensate(w.view(), q).unwrap(),
            );
            assert!(rel(&ca, &cb) < 1e-9, "compensate: {}", rel(&ca, &cb));
        }
        // Removals one after another (re-fit and downdate), then what is left.
        let (mut wl, mut wf) = (w.clone(), w.clone());
        for q in [&q1, &q2] {
            let a = low.remove(&mut wl, q).unwrap();
            let b = full.remove(&mut wf, q).unwrap();
            assert!(close(a, b), "remove {a} vs {b}");
            assert!(rel(&wl, &wf) < 1e-9, "weights: {}", rel(&wl, &wf));
        }
        let (a, b) = (
            low.saliency(wl.view(), &q3).unwrap(),
            full.saliency(wf.view(), &q3).unwrap(),
        );
        assert!(close(a, b), "after removals {a} vs {b}");
        assert!((0..d).all(|c| low.is_alive(c) == full.is_alive(c)));
        // Dropping the removed columns keeps the rest as it was.
        let keep: Vec<usize> = (0..d).filter(|&c| low.is_alive(c)).collect();
        let (a, b) = (low.saliency(wl.view(), &[50]).unwrap(), {
            let mut f = full.clone();
            f.select(&keep);
            let i = keep.iter().position(|&c| c == 50).unwrap();
            f.saliency(wf.select(Axis(1), &keep).view(), &[i]).unwrap()
        });
        low.select(&keep);
        let i = keep.iter().position(|&c| c == 50).unwrap();
        let c = low
            .saliency(wl.select(Axis(1), &keep).view(), &[i])
            .unwrap();
        assert!(close(a, b) && close(c, b), "{a} {b} {c}");
    }

    #[test]
    fn greedy_scores_do_not_depend_on_the_form() {
        let (r, d) = (16, 200);
        let x = rows(r, d, 4);
        let blocks: Vec<Vec<usize>> = (0..50).map(|c| (4 * c..4 * c + 4).collect()).collect();
        let w = randn(8, d, 5);
        let layer = |hinv| Layer {
            w: w.clone(),
            hinv,
            blocks: blocks.clone(),
        };
        let low = LowRank::new(x.view(), r as u64, 0.01).unwrap();
        let a = greedy_scores(&mut [layer(InverseHessian::LowRank(low))], 50, 16).unwrap();
        let b =
            greedy_scores(&mut [layer(InverseHessian::Dense(dense(&x, 0.01)))], 50, 16).unwrap();
        for (s, t) in a.iter().zip(&b) {
            assert!((s - t).abs() <= 1e-7 * t.abs().max(1e-12), "{s} vs {t}");
        }
    }

    #[test]
    fn identity_scores_are_column_norms() {
        let w = randn(3, 10, 6);
        let id = InverseHessian::LowRank(LowRank::identity(10));
        let e = id.saliency(w.view(), &[2, 7]).unwrap();
        let want: f64 = [2, 7]
            .iter()
            .map(|&c| 0.5 * w.column(c).iter().map(|v| v * v).sum::<f64>())
            .sum();
        assert!(close(e, want));
        assert_eq!(id.compensate(w.view(), &[1]).unwrap().column(1).sum(), 0.0);
    }

    #[test]
    fn adaptive_sums_keep_few_rows_and_then_sum_them() {
        let d = 80;
        let x = rows(40, d, 7);
        let mut a = HessianSum::adaptive(d);
        let mut b = HessianSum::new(d);
        // 10 rows: 10 * LOW_RANK_RATIO = 80 <= 80 are kept; one more and the sum is dense.
        a.add(x.slice(ndarray::s![..10, ..]));
        b.add(x.slice(ndarray::s![..10, ..]));
        assert_eq!(a.kept_rows().map(|k| k.dim()), Some((10, d)));
        assert_eq!(a.xtx.len(), 0);
        let w = randn(5, d, 8);
        assert!(close(a.output_energy(&w), b.output_energy(&w)));
        assert!(rel(&a.hessian(0.01), &b.hessian(0.01)) < 1e-6);
        assert!(rel(&a.with_bias(), &b.with_bias()) < 1e-6);
        a.add(x.slice(ndarray::s![10.., ..]));
        b.add(x.slice(ndarray::s![10.., ..]));
        assert!(a.kept_rows().is_none());
        assert_eq!((a.rows, a.xtx.dim()), (40, (d, d)));
        assert!(rel(&a.xtx, &b.xtx) < 1e-6);
        assert_eq!(a.colsum, b.colsum);
        // A kept sum merged into a dense one.
        let mut c = HessianSum::adaptive(d);
        c.add(x.slice(ndarray::s![..5, ..]));
        let mut e = HessianSum::new(d);
        e.add(x.slice(ndarray::s![5.., ..]));
        e.merge(&c);
        assert_eq!(e.rows, 40);
        assert!(rel(&e.xtx, &b.xtx) < 1e-6);
    }
}
