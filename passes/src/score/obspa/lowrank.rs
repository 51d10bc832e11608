//! The inverse Hessian of a layer that saw fewer calibration rows than it has inputs, kept in
//! low-rank form.
//!
//! With `r` rows of `d` inputs (`r < d`: 16 synthetic images into VGG's 25,088-input classifier),
//! the damped Hessian is `H = U^T U + lambda I` with `U = sqrt(2/N) X` (`r x d`). By the Woodbury
//! identity `H^-1 = (I - U^T M^-1 U) / lambda` with the small `M = lambda I + U U^T` (`r x r`);
//! with `M = L L^T` and `P = L^-1 U`, `H^-1 = (I - P^T P) / lambda`. Removing columns keeps the
//! form `(I - P^T A P) / lambda` with a small `A` (`r x r`), so nothing `d x d` is ever formed:
//! `r x d` numbers instead of `d^2`, `2 r^2 d` work to form it instead of the `d^3` of a dense
//! inverse, and at most `min(q, r) r d` per greedy step that removes `q` columns (see
//! [`LOW_RANK_RATIO`]).

use super::math::{self, par_gemm, MathError};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// A Hessian sum keeps its rows (and its inverse is low-rank) while `rows * LOW_RANK_RATIO <=
/// dim`. Forming the low-rank inverse costs about `2 r^2 d` against the dense one's `d^3`
/// (factor and inverse); a greedy step that removes `q` columns then costs about `min(q, r) r d`
/// (the removed rows of `Hinv` through `P`, or the rank-`r` update of the cached blocks) against
/// the dense downdate's `d^2 q / 2`, so the low-rank form costs less wherever `r < d / 2`. Its
/// `u` and `P` take `16 r d` bytes against the dense inverse's `8 d^2`, equal at `d / 2`. At 4,
/// measured on the zoo (`docs/obspa.md`): ResNet-34 and -50 took a third less time and memory
/// than at 8 (their last 3x3 convs, 4,608 inputs on 784 rows, go low-rank); at 2, Wide
/// ResNet-101 was no faster and ResNet-34 needed more memory than at 4.
pub const LOW_RANK_RATIO: u64 = 4;

/// `H^-1 = (I - P^T A P) / lambda` over the kept columns, for `H = U^T U + lambda I`.
///
/// `P = L^-1 U` (`lambda I + U U^T = L L^T`) is formed once; removing columns `Q` only updates
/// the small `A` (`r x r`, the identity until the first removal): by the Schur complement,
/// `A' = A + (A P_Q) (lambda Hinv_QQ)^-1 (A P_Q)^T`. The blocks of `Hinv` that a greedy search
/// reads at every step (one per channel, see [`LowRank::track`]) are cached and downdated with
/// the removed rows, so no step touches more than `min(q, r) x d` numbers of `P`.
#[derive(Clone, Debug)]
pub struct LowRank {
    /// `sqrt(2/N) X`, with removed columns zero (`r x d`).
    u: Array2<f64>,
    lambda: f64,
    /// `L^-1 U` for `lambda I + U U^T = L L^T` at construction (`r x d`), removed columns zero.
    p: Array2<f64>,
    /// `A`; `None` is the identity (nothing removed yet).
    a: Option<Array2<f64>>,
    alive: Vec<bool>,
    /// Column blocks whose `Hinv` block is kept up to date, and the block each column opens.
    tracked: Vec<Tracked>,
    block_of: Vec<usize>,
}

/// A cached `Hinv_QQ`.
#[derive(Clone, Debug)]
struct Tracked {
    cols: Vec<usize>,
    hinv: Array2<f64>,
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
            a: None,
            alive: vec![true; d],
            tracked: Vec::new(),
            block_of: vec![usize::MAX; d],
        };
        if !out.u.is_empty() {
            let linv = math::lower_inverse(&math::cholesky_owned(out.small(&out.u))?);
            par_gemm(1.0, &linv.view(), &out.u.view(), 0.0, &mut out.p.view_mut());
        }
        Ok(out)
    }

    /// The identity (`H = I`, no rows), for `data=none`.
    pub fn identity(d: usize) -> LowRank {
        LowRank {
            u: Array2::zeros((0, d)),
            lambda: 1.0,
            p: Array2::zeros((0, d)),
            a: None,
            alive: vec![true; d],
            tracked: Vec::new(),
            block_of: vec![usize::MAX; d],
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

    /// Cache `Hinv_QQ` of each non-empty block of alive columns (a greedy search's channels);
    /// [`LowRank::block`] then reads them and [`LowRank::remove`] downdates them. Replaces any
    /// blocks tracked before; a column in more than one block opens only its first.
    pub fn track(&mut self, blocks: &[Vec<usize>]) {
        let d = self.dim();
        self.tracked.clear();
        self.block_of = vec![usize::MAX; d];
        for q in blocks {
            let Some(&first) = q.first() else { continue };
            if q.iter().any(|&c| !self.is_alive(c)) || self.block_of[first] != usize::MAX {
                continue;
            }
            self.block_of[first] = self.tracked.len();
            self.tracked.push(Tracked {
                cols: q.clone(),
                hinv: self.block_direct(q),
            });
        }
    }

    /// The cached block of `q`, if `q` is tracked.
    fn cached(&self, q: &[usize]) -> Option<&Array2<f64>> {
        let t = self.tracked.get(*self.block_of.get(*q.first()?)?)?;
        (t.cols == q).then_some(&t.hinv)
    }

    /// `P_Q` and `A P_Q` (`r x q` each).
    fn ap(&self, q: &[usize]) -> (Array2<f64>, Array2<f64>) {
        let pq = math::columns(self.p.view(), q);
        let apq = match &self.a {
            Some(a) => a.dot(&pq),
            None => pq.clone(),
        };
        (pq, apq)
    }

    /// `Hinv_QQ = (I - P_Q^T A P_Q) / lambda` from `P_Q` and `A P_Q`.
    fn block_of_ap(&self, pq: &Array2<f64>, apq: &Array2<f64>) -> Array2<f64> {
        let mut b = Array2::<f64>::eye(pq.ncols());
        par_gemm(-1.0, &pq.t(), &apq.view(), 1.0, &mut b.view_mut());
        b / self.lambda
    }

    /// `Hinv_QQ`, formed.
    fn block_direct(&self, q: &[usize]) -> Array2<f64> {
        let (pq, apq) = self.ap(q);
        self.block_of_ap(&pq, &apq)
    }

    /// `Hinv_QQ`, from the cache where `q` is a tracked block.
    pub fn block(&self, q: &[usize]) -> Array2<f64> {
        match self.cached(q) {
            Some(b) => b.clone(),
            None => self.block_direct(q),
        }
    }

    /// `Hinv_cc`.
    pub fn diag(&self, c: usize) -> f64 {
        match self.cached(&[c]) {
            Some(b) => b[[0, 0]],
            None => self.block_direct(&[c])[[0, 0]],
        }
    }

    /// `Hinv_Q,: = (E_Q - (A P_Q)^T P) / lambda` (`q x d`), given `A P_Q`.
    fn rows_with(&self, q: &[usize], apq: &Array2<f64>) -> Array2<f64> {
        let mut out = Array2::<f64>::zeros((q.len(), self.dim()));
        for (i, &c) in q.iter().enumerate() {
            out[[i, c]] = 1.0;
        }
        par_gemm(-1.0, &apq.t(), &self.p.view(), 1.0, &mut out.view_mut());
        out / self.lambda
    }

    /// `Hinv_Q,:` (`q x d`).
    #[cfg(test)]
    fn rows(&self, q: &[usize]) -> Array2<f64> {
        self.rows_with(q, &self.ap(q).1)
    }

    /// Remove the columns `q`: re-fit the others (`w += dW`, the same `dW` as the dense form),
    /// zero the removed ones, and make this the inverse Hessian of the kept columns (`A` and
    /// the tracked blocks downdated). Returns `E_Q`.
    pub fn remove(&mut self, w: &mut Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
        if q.is_empty() {
            return Ok(0.0);
        }
        let (pq, apq) = self.ap(q);
        let b = match self.cached(q) {
            Some(b) => b.clone(),
            None => self.block_of_ap(&pq, &apq),
        };
        drop(pq);
        let e = math::saliency_of_block(w.view(), &b, q)?;
        let binv = math::small_spd_inverse(&b)?;
        // (A P_Q) (lambda B)^-1 (A P_Q)^T: the growth of `A`, and `lambda V` below.
        let grow = apq.dot(&binv).dot(&apq.t()) / self.lambda;
        // Every tracked block `T` outside `Q` loses `Hinv_Q,T^T B^-1 Hinv_Q,T`, which is
        // `X_:,T^T Y_:,T` for either pair below; `dW = -W_Q B^-1 Hinv_Q,:`.
        let (xt, yt) = if q.len() <= self.rank() {
            // X = Hinv_Q,: (`q r d`), Y = B^-1 X, and dW = -W_Q Y (`rows q d`).
            let x = self.rows_with(q, &apq);
            let y = binv.dot(&x);
            let wq = math::columns(w.view(), q);
            par_gemm(-1.0, &wq.view(), &y.view(), 1.0, &mut w.view_mut());
            (transposed(&x), transposed(&y))
        } else {
            // More removed columns than rows: X = P, Y = V P with V = (A P_Q) B^-1 (A P_Q)^T
            // / lambda^2 (`r^2 d`), and dW = -T E_Q + (T (A P_Q)^T) P with T = W_Q B^-1 /
            // lambda (`rows r d`; the first term only touches the removed columns, zeroed
            // below).
            let y = grow.dot(&self.p) / self.lambda;
            let t = math::columns(w.view(), q).dot(&binv) / self.lambda;
            let tp = t.dot(&apq.t());
            par_gemm(1.0, &tp.view(), &self.p.view(), 1.0, &mut w.view_mut());
            (transposed(&self.p), transposed(&y))
        };
        for &c in q {
            if let Some(a) = self.alive.get_mut(c) {
                *a = false;
            }
        }
        // Blocks with a removed column are dropped from the cache (a channel goes whole).
        let alive = &self.alive;
        self.tracked.par_iter_mut().for_each(|t| {
            if t.cols
                .iter()
                .any(|&c| !alive.get(c).copied().unwrap_or(false))
            {
                t.cols.clear();
                return;
            }
            for (i, &ci) in t.cols.iter().enumerate() {
                for (j, &cj) in t.cols.iter().enumerate() {
                    let dot: f64 = xt.row(ci).iter().zip(yt.row(cj)).map(|(a, b)| a * b).sum();
                    t.hinv[[i, j]] -= dot;
                }
            }
        });
        // A' = A + (A P_Q) (lambda B)^-1 (A P_Q)^T.
        self.a = Some(match self.a.take() {
            Some(a) => a + grow,
            None => Array2::<f64>::eye(self.rank()) + grow,
        });
        for &c in q {
            w.column_mut(c).fill(0.0);
            self.u.column_mut(c).fill(0.0);
            self.p.column_mut(c).fill(0.0);
        }
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

    /// Keep only the columns `keep` (in order); tracked blocks follow their columns, and those
    /// with a column left out are dropped.
    pub fn select(&mut self, keep: &[usize]) {
        let mut index = vec![usize::MAX; self.dim()];
        for (i, &c) in keep.iter().enumerate() {
            if let Some(x) = index.get_mut(c) {
                *x = i;
            }
        }
        self.u = self.u.select(Axis(1), keep);
        self.p = self.p.select(Axis(1), keep);
        self.alive = keep.iter().map(|&c| self.is_alive(c)).collect();
        self.block_of = vec![usize::MAX; keep.len()];
        for mut t in std::mem::take(&mut self.tracked) {
            if t.cols.is_empty()
                || t.cols
                    .iter()
                    .any(|&c| index.get(c).is_none_or(|&i| i == usize::MAX))
            {
                continue;
            }
            t.cols.iter_mut().for_each(|c| *c = index[*c]);
            if self.block_of[t.cols[0]] == usize::MAX {
                self.block_of[t.cols[0]] = self.tracked.len();
                self.tracked.push(t);
            }
        }
    }
}

/// `m^T`, row-major (the columns of `m` as contiguous rows).
fn transposed(m: &Array2<f64>) -> Array2<f64> {
    m.t().as_standard_layout().into_owned()
}

/// A layer's inverse Hessian: dense, or low-rank when the layer saw fewer rows than inputs.
#[derive(Clone, Debug)]
pub enum InverseHessian {
    /// Only the lower triangle is read (and kept up to date by [`math::remove`]); the part above
    /// the diagonal may be stale or zero ([`math::inverse_lower_from_factor`]).
    Dense(Array2<f64>),
    LowRank(Box<LowRank>),
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
            InverseHessian::LowRank(l) => l.diag(c),
        };
        math::saliency_of_column(g, h)
    }

    /// Keep the blocks of `Hinv` at the column blocks `blocks` at hand through removals (the
    /// low-rank form caches them; the dense form holds every entry already).
    pub fn track(&mut self, blocks: &[Vec<usize>]) {
        if let InverseHessian::LowRank(l) = self {
            l.track(blocks);
        }
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
            InverseHessian::Dense(h) => *h = math::lower_select(h, keep),
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
        let mut low =
            InverseHessian::LowRank(Box::new(LowRank::new(x.view(), r as u64, 0.01).unwrap()));
        let mut full = InverseHessian::Dense(dense(&x, 0.01));
        // The last removal takes more columns (12) than there are rows (10).
        let (q1, q2, q3, q4) = (vec![0, 1, 2], vec![40, 77], vec![5], (60..72).collect());
        for q in [&q1, &q2, &q4] {
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
        for q in [&q1, &q2, &q4] {
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
        // (rows, inputs, columns per channel, steps): steps that remove no more columns than
        // there are rows (the removed rows of Hinv), more (the rank-r update), and one-column
        // channels; every search runs to the end, so the removed columns are compacted away.
        for (r, d, cols, steps) in [(16, 200, 4, 16), (6, 200, 4, 16), (16, 120, 1, 128)] {
            let x = rows(r, d, 4);
            let channels = d / cols;
            let blocks: Vec<Vec<usize>> = (0..channels)
                .map(|c| (cols * c..cols * c + cols).collect())
                .collect();
            let w = randn(8, d, 5);
            let layer = |hinv| Layer {
                w: w.clone(),
                hinv,
                blocks: blocks.clone(),
            };
            let low = LowRank::new(x.view(), r as u64, 0.01).unwrap();
            let a = greedy_scores(
                &mut [layer(InverseHessian::LowRank(Box::new(low)))],
                channels,
                steps,
            )
            .unwrap();
            let dense = InverseHessian::Dense(dense(&x, 0.01));
            let b = greedy_scores(&mut [layer(dense)], channels, steps).unwrap();
            for (s, t) in a.iter().zip(&b) {
                assert!(
                    (s - t).abs() <= 1e-7 * t.abs().max(1e-12),
                    "r {r} d {d}: {s} vs {t}"
                );
            }
        }
    }

    #[test]
    fn tracked_blocks_follow_removals_and_selection() {
        let (r, d) = (10, 60);
        let x = rows(r, d, 9);
        let mut w = randn(4, d, 10);
        let mut low = LowRank::new(x.view(), r as u64, 0.01).unwrap();
        let blocks: Vec<Vec<usize>> = (0..20).map(|c| vec![3 * c, 3 * c + 1, 3 * c + 2]).collect();
        low.track(&blocks);
        let mut full = dense(&x, 0.01);
        let mut wf = w.clone();
        // 3 columns (fewer than the rows), then 12 (more).
        let steps: [Vec<usize>; 2] = [vec![0, 1, 2], (30..42).collect()];
        for q in &steps {
            low.remove(&mut w, q).unwrap();
            math::remove(&mut wf, &mut full, q).unwrap();
        }
        let alive: Vec<&Vec<usize>> = blocks.iter().filter(|b| low.is_alive(b[0])).collect();
        assert_eq!(alive.len(), 15);
        for b in &alive {
            let cached = low.cached(b).expect("an alive block stays cached").clone();
            assert!(rel(&cached, &low.block_direct(b)) < 1e-9);
            assert!(rel(&cached, &math::block(&full, b)) < 1e-9);
        }
        assert!(low.cached(&blocks[0]).is_none() && low.cached(&blocks[10]).is_none());
        // Dropping the removed columns moves the cache with them.
        let keep: Vec<usize> = (0..d).filter(|&c| low.is_alive(c)).collect();
        low.select(&keep);
        let fk = math::block(&full, &keep);
        for b in &alive {
            let k: Vec<usize> = b
                .iter()
                .map(|c| keep.iter().position(|k| k == c).unwrap())
                .collect();
            let cached = low.cached(&k).expect("selection keeps the cache").clone();
            assert!(rel(&cached, &math::block(&fk, &k)) < 1e-9);
        }
    }

    #[test]
    fn identity_scores_are_column_norms() {
        let w = randn(3, 10, 6);
        let id = InverseHessian::LowRank(Box::new(LowRank::identity(10)));
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
        // `k` rows: `k * LOW_RANK_RATIO = d` are kept; one more and the sum is dense.
        let k = d / LOW_RANK_RATIO as usize;
        let n = k + 30;
        let x = rows(n, d, 7);
        let mut a = HessianSum::adaptive(d);
        let mut b = HessianSum::new(d);
        a.add(x.slice(ndarray::s![..k, ..]));
        b.add(x.slice(ndarray::s![..k, ..]));
        assert_eq!(a.kept_rows().map(|k| k.dim()), Some((k, d)));
        assert_eq!(a.xtx.len(), 0);
        let w = randn(5, d, 8);
        // The dense sum is formed in f32 Gram products, the kept rows in f64.
        let (ea, eb) = (a.output_energy(&w), b.output_energy(&w));
        assert!((ea - eb).abs() <= 1e-6 * eb.abs(), "{ea} vs {eb}");
        assert!(rel(&a.hessian(0.01), &b.hessian(0.01)) < 1e-6);
        assert!(rel(&a.with_bias(), &b.with_bias()) < 1e-6);
        a.add(x.slice(ndarray::s![k.., ..]));
        b.add(x.slice(ndarray::s![k.., ..]));
        assert!(a.kept_rows().is_none());
        assert_eq!((a.rows, a.xtx.dim()), (n as u64, (d, d)));
        assert!(rel(&a.xtx, &b.xtx) < 1e-6);
        assert_eq!(a.colsum, b.colsum);
        // A kept sum merged into a dense one.
        let mut c = HessianSum::adaptive(d);
        c.add(x.slice(ndarray::s![..5, ..]));
        let mut e = HessianSum::new(d);
        e.add(x.slice(ndarray::s![5.., ..]));
        e.merge(&c);
        assert_eq!(e.rows, n as u64);
        assert!(rel(&e.xtx, &b.xtx) < 1e-6);
    }
}
