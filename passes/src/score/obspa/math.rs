//! The Optimal Brain Surgeon algebra behind `obspa`, independent of any graph.
//!
//! A layer computes `y = W x` with `W` of shape `rows x cols` (rows = outputs). With layer-input
//! Hessian `H = 2/N X^T X` (rows of `X` are inputs `x`) and `Hinv = H^-1`, removing the column
//! block `Q` and re-fitting the other columns costs
//! `E_Q = 1/2 sum_rows w_Q (Hinv_QQ)^-1 w_Q^T`, and the re-fit is
//! `dW = -W_:,Q (Hinv_QQ)^-1 Hinv_Q,:`; the inverse Hessian of the remaining columns is the Schur
//! complement `Hinv - Hinv_:,Q (Hinv_QQ)^-1 Hinv_Q,:`. Everything is `f64`.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis, LinalgScalar};
use rayon::prelude::*;
use thiserror::Error;

pub use super::lowrank::InverseHessian;

#[derive(Debug, Error, PartialEq)]
pub enum MathError {
    #[error("the Hessian is not positive definite (pivot {pivot}); increase damp")]
    NotPositiveDefinite { pivot: usize },
    #[error(
        "a head's outputs span fewer than its {dim} dims on the {rows} calibration rows (more \
         samples may help)"
    )]
    SingularHead { dim: usize, rows: u64 },
    #[error("a weight matrix is {rows}x{cols} but the Hessian is {dim}x{dim}")]
    Shape {
        rows: usize,
        cols: usize,
        dim: usize,
    },
}

/// Running `X^T X` (and column sums) over batches of layer inputs. A sum made by
/// [`HessianSum::adaptive`] keeps the rows themselves while they are few against the width
/// (`rows * LOW_RANK_RATIO <= dim`); its inverse is then low-rank ([`super::lowrank`]).
#[derive(Clone, Debug)]
pub struct HessianSum {
    /// `X^T X`; empty (`0 x 0`) while the rows are kept. Sums add to its lower triangle only
    /// (half the work): read it whole after [`HessianSum::symmetrize`] (or
    /// [`HessianSum::densify`]), which copies the lower triangle above the diagonal
    /// ([`super::collect::collect`] returns its sums so). The methods of the sum read it
    /// correctly either way.
    pub xtx: Array2<f64>,
    /// Column sums of `X` (for the Hessian of `[X 1]`, a layer with its bias).
    pub colsum: Vec<f64>,
    pub rows: u64,
    dim: usize,
    /// The rows (row-major, `rows x dim`) while they are kept.
    kept: Option<Vec<f32>>,
    /// Whether the part of `xtx` above the diagonal is stale (see [`HessianSum::symmetrize`]).
    lower_only: bool,
}

/// Column sums of `x`, in `f64`.
pub fn column_sums(x: ArrayView2<'_, f32>) -> Vec<f64> {
    let mut s = vec![0.0f64; x.ncols()];
    for row in x.rows() {
        s.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
    }
    s
}

/// Rows per Gram product when kept rows become a sum.
const GRAM_ROWS: usize = 512;

impl HessianSum {
    /// A dense sum (`dim x dim`).
    pub fn new(dim: usize) -> HessianSum {
        HessianSum {
            xtx: Array2::zeros((dim, dim)),
            colsum: vec![0.0; dim],
            rows: 0,
            dim,
            kept: None,
            lower_only: false,
        }
    }

    /// A sum that keeps its rows while they are few (and allocates nothing `dim x dim` until
    /// then).
    pub fn adaptive(dim: usize) -> HessianSum {
        HessianSum {
            xtx: Array2::zeros((0, 0)),
            colsum: vec![0.0; dim],
            rows: 0,
            dim,
            kept: Some(Vec::new()),
            lower_only: false,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows, while they are kept (`rows x dim`).
    pub fn kept_rows(&self) -> Option<ArrayView2<'_, f32>> {
        let k = self.kept.as_ref()?;
        ArrayView2::from_shape((k.len() / self.dim.max(1), self.dim), k).ok()
    }

    /// Turn kept rows into `X^T X` (products of [`GRAM_ROWS`] rows formed in `f32`, summed in
    /// `f64`, as [`HessianSum::add`] does), and leave `xtx` whole (both triangles).
    pub fn densify(&mut self) {
        self.fold_kept();
        self.symmetrize();
    }

    /// Kept rows into the lower triangle of `X^T X`.
    fn fold_kept(&mut self) {
        let Some(k) = self.kept.take() else {
            return;
        };
        let d = self.dim;
        self.xtx = Array2::<f64>::zeros((d, d));
        if let Ok(x) = ArrayView2::from_shape((k.len() / d.max(1), d), &k) {
            let blocks: Vec<ArrayView2<'_, f32>> = x.axis_chunks_iter(Axis(0), GRAM_ROWS).collect();
            self.add_products(&blocks);
        }
    }

    /// Add the rows of `x` (`n x dim`). The product is formed in `f32` (one block of rows at a
    /// time) and summed in `f64`.
    pub fn add(&mut self, x: ArrayView2<'_, f32>) {
        if x.ncols() != self.dim() || x.nrows() == 0 {
            return;
        }
        if let Some(k) = &mut self.kept {
            k.extend(x.iter());
            self.colsum
                .iter_mut()
                .zip(column_sums(x))
                .for_each(|(a, b)| *a += b);
            self.rows += x.nrows() as u64;
            if self.rows * super::lowrank::LOW_RANK_RATIO > self.dim as u64 {
                self.fold_kept();
            }
            return;
        }
        self.add_blocks(&[x]);
    }

    /// [`HessianSum::add`] of each block in turn (each one product), the products formed in
    /// parallel.
    pub fn add_blocks(&mut self, blocks: &[ArrayView2<'_, f32>]) {
        let blocks: Vec<ArrayView2<'_, f32>> = blocks
            .iter()
            .filter(|b| b.ncols() == self.dim && b.nrows() > 0)
            .cloned()
            .collect();
        if self.kept.is_some() {
            blocks.iter().for_each(|b| self.add(b.view()));
            return;
        }
        self.add_products(&blocks);
        for b in &blocks {
            self.colsum
                .iter_mut()
                .zip(column_sums(b.view()))
                .for_each(|(a, c)| *a += c);
            self.rows += b.nrows() as u64;
        }
    }

    /// `xtx += X_b^T X_b` for each block `b` in turn, on and below the diagonal: per column
    /// panel of [`GRAM_PANEL`] columns `j..`, rows `j..` of the product, formed in `f32` and
    /// added in `f64` (the panels in parallel, the blocks in order). With at least a panel per
    /// thread, each panel's products are formed one after the other in a buffer the thread
    /// keeps; with fewer, the products of all blocks and panels are formed in parallel first.
    /// No `d x d` product is held at once.
    fn add_products(&mut self, blocks: &[ArrayView2<'_, f32>]) {
        let per_panel = self.dim.div_ceil(GRAM_PANEL) >= rayon::current_num_threads();
        self.add_products_by(blocks, per_panel);
    }

    /// [`HessianSum::add_products`], with the panels as the parallel tasks (`per_panel`, each
    /// forming its products in a buffer its thread keeps) or the products of all blocks and
    /// panels; the same sums either way, bit for bit.
    fn add_products_by(&mut self, blocks: &[ArrayView2<'_, f32>], per_panel: bool) {
        let d = self.dim;
        if blocks.is_empty() || self.xtx.dim() != (d, d) {
            return;
        }
        let panels = d.div_ceil(GRAM_PANEL);
        // Panel `k`'s product of block `x` (rows `j..` of columns `j..end`), into `p` (zeroed).
        let product = |x: &ArrayView2<'_, f32>, k: usize, p: &mut ArrayViewMut2<'_, f32>| {
            let j = k * GRAM_PANEL;
            let end = (j + GRAM_PANEL).min(d);
            general_mat_mul(
                1.0,
                &x.slice(s![.., j..]).t(),
                &x.slice(s![.., j..end]),
                0.0,
                p,
            );
        };
        // Few panels: the products of all blocks and panels formed in parallel first. Enough
        // panels to go round: each panel forms its products one block after the other in a
        // buffer its thread keeps, rather than a fresh allocation (and fresh pages) each.
        let products: Vec<Array2<f32>> = match per_panel {
            true => Vec::new(),
            false => (0..blocks.len() * panels)
                .into_par_iter()
                .map(|t| {
                    let k = t % panels;
                    let j = k * GRAM_PANEL;
                    let mut p = Array2::<f32>::zeros((d - j, (j + GRAM_PANEL).min(d) - j));
                    product(&blocks[t / panels], k, &mut p.view_mut());
                    p
                })
                .collect(),
        };
        self.xtx
            .axis_chunks_iter_mut(Axis(1), GRAM_PANEL)
            .into_par_iter()
            .enumerate()
            .for_each(|(k, mut panel)| {
                let mut lower = panel.slice_mut(s![k * GRAM_PANEL.., ..]);
                if !per_panel {
                    for b in 0..blocks.len() {
                        lower.zip_mut_with(&products[b * panels + k], |a, &v| *a += v as f64);
                    }
                    return;
                }
                let shape = lower.dim();
                with_scratch(shape.0 * shape.1, |buf| {
                    for x in blocks {
                        buf.fill(0.0);
                        if let Ok(mut p) = ArrayViewMut2::from_shape(shape, &mut *buf) {
                            product(x, k, &mut p);
                            lower.zip_mut_with(&p, |a, &v| *a += v as f64);
                        }
                    }
                });
            });
        self.lower_only = true;
    }

    /// Copy the lower triangle of `xtx` above the diagonal (sums add to the lower one only).
    pub fn symmetrize(&mut self) {
        if std::mem::take(&mut self.lower_only) {
            mirror_lower(&mut self.xtx);
        }
    }

    /// Merge another partial sum (from another thread).
    pub fn merge(&mut self, other: &HessianSum) {
        if other.dim() != self.dim() {
            return;
        }
        if let Some(x) = other.kept_rows() {
            self.add(x);
            return;
        }
        self.fold_kept();
        self.xtx += &other.xtx;
        self.lower_only |= other.lower_only;
        self.colsum
            .iter_mut()
            .zip(&other.colsum)
            .for_each(|(a, b)| *a += b);
        self.rows += other.rows;
    }

    /// `X^T X`, formed from the kept rows if need be.
    fn xtx(&self) -> std::borrow::Cow<'_, Array2<f64>> {
        match self.kept_rows() {
            Some(x) => {
                let x = x.mapv(|v| v as f64);
                std::borrow::Cow::Owned(x.t().dot(&x))
            }
            None if self.lower_only => {
                let mut x = self.xtx.clone();
                mirror_lower(&mut x);
                std::borrow::Cow::Owned(x)
            }
            None => std::borrow::Cow::Borrowed(&self.xtx),
        }
    }

    /// The undamped Hessian of `[X 1]` (the inputs with a constant 1 for the bias):
    /// `2/N [X 1]^T [X 1]`, `(dim + 1) x (dim + 1)`.
    pub fn with_bias(&self) -> Array2<f64> {
        let d = self.dim();
        let n = self.rows.max(1) as f64;
        let mut h = Array2::zeros((d + 1, d + 1));
        h.slice_mut(ndarray::s![..d, ..d])
            .assign(&self.xtx().mapv(|v| 2.0 * v / n));
        for (j, &c) in self.colsum.iter().enumerate() {
            h[(j, d)] = 2.0 * c / n;
            h[(d, j)] = 2.0 * c / n;
        }
        h[(d, d)] = if self.rows > 0 { 2.0 } else { 0.0 };
        h
    }

    /// `tr(W H W^T)` for the undamped `H = 2/N X^T X`, without forming `H`.
    pub fn output_energy(&self, w: &Array2<f64>) -> f64 {
        let n = self.rows.max(1) as f64;
        if let Some(x) = self.kept_rows() {
            // 2/N ||X W^T||^2.
            if w.ncols() != self.dim {
                return 0.0;
            }
            let y = x.mapv(|v| v as f64).dot(&w.t());
            return 2.0 * y.iter().map(|v| v * v).sum::<f64>() / n;
        }
        2.0 * output_energy(w, &self.xtx) / n
    }

    /// `H = 2/N X^T X`, damped: `H += damp * mean(diag H) * I` (an all-zero diagonal gets `damp`).
    pub fn hessian(&self, damp: f64) -> Array2<f64> {
        let n = self.rows.max(1) as f64;
        let mut h = self.xtx().mapv(|v| 2.0 * v / n);
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

/// Width of the column panels of [`HessianSum::add`]'s products.
const GRAM_PANEL: usize = 256;

thread_local! {
    /// [`with_scratch`]'s buffer, one per thread.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on a buffer of `len` elements that the thread keeps from call to call (contents
/// unspecified); a fresh one if the thread's is in use.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Copy the lower triangle of the square `a` above the diagonal, in tiles that stay in cache.
pub(crate) fn mirror_lower<A: Copy>(a: &mut Array2<A>) {
    let n = a.nrows().min(a.ncols());
    for i in (0..n).step_by(NB) {
        for j in (i..n).step_by(NB) {
            for r in i..(i + NB).min(n) {
                for c in j.max(r + 1)..(j + NB).min(n) {
                    a[[r, c]] = a[[c, r]];
                }
            }
        }
    }
}

/// `tr(W H W^T)`: the output energy of a layer `W` (`rows x cols`) on inputs with Hessian `H`.
///
/// With `L` the lower triangle of `h` (diagonal included), `sum(W L * W)` counts every
/// off-diagonal product once and the diagonal ones once, so the trace is
/// `2 sum(W L * W) - sum_j h_jj ||w_j||^2`, through a triangular product: half the work of `W h`.
fn output_energy(w: &Array2<f64>, h: &Array2<f64>) -> f64 {
    if w.ncols() != h.nrows() || h.nrows() != h.ncols() {
        return 0.0;
    }
    let mut lower = h.to_owned();
    for (i, mut row) in lower.rows_mut().into_iter().enumerate() {
        row.slice_mut(s![i + 1..]).fill(0.0);
    }
    let wl = mul_lower(w.view(), lower.view(), false);
    let twice: f64 = (&wl * w).sum();
    let diag: f64 = w
        .rows()
        .into_iter()
        .map(|r| r.iter().zip(h.diag()).map(|(x, d)| d * x * x).sum::<f64>())
        .sum();
    2.0 * twice - diag
}

/// Block size of the blocked factorizations: panels this wide are factored with scalar loops,
/// everything else is matrix products.
const NB: usize = 64;

/// Column blocks of the triangular products ([`mul_lower`]): wider than `NB`, as their
/// products' inner dimension is long.
pub(crate) const TRI_NB: usize = 128;

/// Below this many multiply-adds a product runs on one thread.
const PAR_MACS: usize = 1 << 20;

/// `c = alpha * a b + beta * c`, with the rows of `c` split over threads when it is large
/// (`ndarray`'s product is single-threaded).
pub(crate) fn par_gemm(
    alpha: f64,
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    beta: f64,
    c: &mut ArrayViewMut2<'_, f64>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let threads = rayon::current_num_threads().max(1);
    if m * n * k < PAR_MACS || threads == 1 || m < 2 * NB {
        general_mat_mul(alpha, a, b, beta, c);
        return;
    }
    let rows = m.div_ceil(threads * 2).max(NB);
    c.axis_chunks_iter_mut(Axis(0), rows)
        .into_par_iter()
        .zip(a.axis_chunks_iter(Axis(0), rows).into_par_iter())
        .for_each(|(mut cc, ac)| general_mat_mul(alpha, &ac, b, beta, &mut cc));
}

/// Cholesky of one small diagonal block in place (lower triangle; `offset` names pivots).
fn cholesky_block(a: &mut ArrayViewMut2<'_, f64>, offset: usize) -> Result<(), MathError> {
    let n = a.nrows();
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= a[[j, k]] * a[[j, k]];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(MathError::NotPositiveDefinite { pivot: offset + j });
        }
        let d = d.sqrt();
        a[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = s / d;
        }
    }
    Ok(())
}

/// Lower Cholesky factor `L` of a symmetric positive definite matrix (`h = L L^T`), blocked
/// right-looking: factor a diagonal block, solve the panel below it, update the trailing matrix
/// with one product. Only the lower triangle of `h` is read.
pub fn cholesky(h: &Array2<f64>) -> Result<Array2<f64>, MathError> {
    cholesky_owned(h.to_owned())
}

/// [`cholesky`] in the buffer of `a`, which becomes `L` (no copy of a `d x d` matrix).
pub fn cholesky_owned(mut a: Array2<f64>) -> Result<Array2<f64>, MathError> {
    let n = a.nrows();
    let mut k = 0;
    while k < n {
        let kb = NB.min(n - k);
        cholesky_block(&mut a.slice_mut(s![k..k + kb, k..k + kb]), k)?;
        if k + kb < n {
            let l11 = a.slice(s![k..k + kb, k..k + kb]).to_owned();
            // Panel: A21 <- A21 L11^-T (each row is a forward substitution).
            a.slice_mut(s![k + kb.., k..k + kb])
                .axis_iter_mut(Axis(0))
                .into_par_iter()
                .for_each(|mut row| match (row.as_slice_mut(), l11.as_slice()) {
                    // Row-major buffers (the usual case): slice loops, no index checks.
                    (Some(row), Some(l)) => {
                        for (j, lj) in l.chunks_exact(kb).enumerate() {
                            let (done, rest) = row.split_at_mut(j);
                            let mut v = rest[0];
                            for (x, l) in done.iter().zip(lj) {
                                v -= x * l;
                            }
                            rest[0] = v / lj[j];
                        }
                    }
                    _ => {
                        for j in 0..kb {
                            let mut v = row[j];
                            for t in 0..j {
                                v -= row[t] * l11[[j, t]];
                            }
                            row[j] = v / l11[[j, j]];
                        }
                    }
                });
            // Trailing update: A22 -= A21 A21^T, lower triangle only (half the product).
            let a21t = a.slice(s![k + kb.., k..k + kb]).t().to_owned();
            lower_downdate(
                &mut a.slice_mut(s![k + kb.., k + kb..]),
                &a21t.view(),
                &a21t.view(),
            );
        }
        k += kb;
    }
    for i in 0..n {
        for j in i + 1..n {
            a[[i, j]] = 0.0;
        }
    }
    Ok(a)
}

/// Inverse of a lower-triangular matrix, blocked: `M_ii = L_ii^-1`, and block row `i` of the
/// strictly lower part is `-M_ii (L_i,<i M_<i,<i)`. `M_<i,<i` is lower triangular, so column
/// block `c` of that product only needs `L_i,c..i M_c..i,c` (half of the full product); the column
/// blocks run in parallel.
pub(crate) fn lower_inverse(l: &Array2<f64>) -> Array2<f64> {
    let n = l.nrows();
    let mut m = Array2::<f64>::zeros((n, n));
    let mut i = 0;
    while i < n {
        let ib = NB.min(n - i);
        // Diagonal block: forward substitution on the small triangle.
        let mut d = Array2::<f64>::zeros((ib, ib));
        for r in 0..ib {
            d[[r, r]] = 1.0 / l[[i + r, i + r]];
            for c in 0..r {
                let mut v = 0.0;
                for t in c..r {
                    v += l[[i + r, i + t]] * d[[t, c]];
                }
                d[[r, c]] = -v / l[[i + r, i + r]];
            }
        }
        let (done, mut rest) = m.view_mut().split_at(Axis(0), i);
        let done = done.view();
        let lrow = l.slice(s![i..i + ib, ..]);
        let column_block = |(b, mut out): (usize, ArrayViewMut2<'_, f64>)| {
            let c0 = b * NB;
            let c1 = c0 + out.ncols();
            let mut t = Array2::<f64>::zeros((ib, c1 - c0));
            general_mat_mul(
                1.0,
                &lrow.slice(s![.., c0..i]),
                &done.slice(s![c0..i, c0..c1]),
                0.0,
                &mut t,
            );
            general_mat_mul(-1.0, &d, &t, 0.0, &mut out);
        };
        by_blocks(
            rest.slice_mut(s![..ib, ..i]),
            Axis(1),
            NB,
            ib * i * i / 2,
            column_block,
        );
        rest.slice_mut(s![..ib, i..i + ib]).assign(&d);
        i += ib;
    }
    m
}

/// Inverse of a symmetric positive definite matrix, through its Cholesky factor:
/// `H^-1 = L^-T L^-1`.
pub fn spd_inverse(h: &Array2<f64>) -> Result<Array2<f64>, MathError> {
    Ok(inverse_from_factor(cholesky(h)?))
}

/// `H^-1 = L^-T L^-1` from the Cholesky factor `L`, which is dropped once `L^-1` is formed: at
/// most two `d x d` matrices are held at a time.
pub fn inverse_from_factor(l: Array2<f64>) -> Array2<f64> {
    let mut out = inverse_lower_from_factor(l);
    mirror_lower(&mut out);
    out
}

/// The lower triangle of [`inverse_from_factor`] (above the diagonal blocks the matrix is zero):
/// all that the greedy search and the compensation read (see [`InverseHessian::Dense`]), without
/// the strided mirror copy.
pub fn inverse_lower_from_factor(l: Array2<f64>) -> Array2<f64> {
    let m = lower_inverse(&l);
    drop(l);
    let n = m.nrows();
    // (M^T M)_IJ = M_k..,I^T M_k..,J over k >= max(I, J) (M is lower triangular): block row I
    // of the lower half in one product per block, in parallel.
    let mut out = Array2::<f64>::zeros((n, n));
    out.axis_chunks_iter_mut(Axis(0), NB)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut rows)| {
            let i = b * NB;
            let ib = rows.nrows();
            let mut lower = rows.slice_mut(s![.., ..i + ib]);
            general_mat_mul(
                1.0,
                &m.slice(s![i.., i..i + ib]).t(),
                &m.slice(s![i.., ..i + ib]),
                0.0,
                &mut lower,
            );
        });
    out
}

/// Element `(i, j)` of a symmetric matrix read from its lower triangle (the greedy search keeps
/// only that half of `Hinv` up to date; a full symmetric matrix reads the same).
fn lower_at(a: &Array2<f64>, i: usize, j: usize) -> f64 {
    if i >= j {
        a[[i, j]]
    } else {
        a[[j, i]]
    }
}

/// The `q x q` block of a symmetric `a` at rows and columns `q`, read from the lower triangle.
pub(crate) fn block(a: &Array2<f64>, q: &[usize]) -> Array2<f64> {
    Array2::from_shape_fn((q.len(), q.len()), |(i, j)| lower_at(a, q[i], q[j]))
}

/// The rows `q` of a symmetric `a` (`q x n`) read from its lower triangle: the part left of the
/// diagonal is a slice of row `r`, the part right of it is column `r` below the diagonal, read row
/// by row of `a` (all of `q` at once), so consecutive reads stay within a row instead of striding
/// over the whole matrix.
pub(crate) fn lower_rows(a: &Array2<f64>, q: &[usize]) -> Array2<f64> {
    let n = a.ncols();
    let mut out = Array2::<f64>::zeros((q.len(), n));
    for (mut dst, &r) in out.rows_mut().into_iter().zip(q) {
        dst.slice_mut(s![..=r]).assign(&a.slice(s![r, ..=r]));
    }
    let Some(&first) = q.iter().min() else {
        return out;
    };
    for j in first + 1..n {
        let row = a.row(j);
        for (i, &r) in q.iter().enumerate() {
            if r < j {
                out[[i, j]] = row[r];
            }
        }
    }
    out
}

/// The lower triangle of `a[keep, keep]` for a symmetric `a` kept in its lower triangle (the
/// upper one is left zero), gathered row by row.
pub(crate) fn lower_select(a: &Array2<f64>, keep: &[usize]) -> Array2<f64> {
    let k = keep.len();
    let mut out = Array2::<f64>::zeros((k, k));
    for (i, mut dst) in out.rows_mut().into_iter().enumerate() {
        let row = a.row(keep[i]);
        for (d, &c) in dst.iter_mut().zip(&keep[..=i]) {
            *d = row[c];
        }
    }
    out
}

/// `a -= b^T c` on the lower triangle only (`b`, `c`: `k x n`; `a`: `n x n`; the product is
/// symmetric). Row panels of `NB` multiply only up to their last column, about half the work of
/// the full product; entries above the diagonal blocks are left stale.
fn lower_downdate(
    a: &mut ArrayViewMut2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    c: &ArrayView2<'_, f64>,
) {
    let (k, n) = b.dim();
    let panel = |(p, mut rows): (usize, ArrayViewMut2<'_, f64>)| {
        let r0 = p * NB;
        let r1 = r0 + rows.nrows();
        general_mat_mul(
            -1.0,
            &b.slice(s![.., r0..r1]).t(),
            &c.slice(s![.., ..r1]),
            1.0,
            &mut rows.slice_mut(s![.., ..r1]),
        );
    };
    by_blocks(a.view_mut(), Axis(0), NB, n * n * k / 2, panel);
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
/// `q` are removed and the others re-fitted. Computed as `1/2 sum(G * Hinv_QQ^-1)` with the small
/// Gram matrix `G = W_:,Q^T W_:,Q`: the columns gathered once, then one matrix product
/// (`examples/saliency_bench.rs`: 1.5 to 2x faster than rank-1 updates row by row for 9 to 36
/// columns).
pub fn saliency(w: ArrayView2<'_, f64>, hinv: &Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
    check(&w, hinv)?;
    if q.is_empty() {
        return Ok(0.0);
    }
    saliency_of_block(w, &block(hinv, q), q)
}

/// [`saliency`] given the block `Hinv_QQ`.
pub(crate) fn saliency_of_block(
    w: ArrayView2<'_, f64>,
    hqq: &Array2<f64>,
    q: &[usize],
) -> Result<f64, MathError> {
    if q.is_empty() {
        return Ok(0.0);
    }
    if let [c] = q {
        // One column (a Linear's channel): `G` is its squared norm.
        let g: f64 = w.column(*c).iter().map(|x| x * x).sum();
        return saliency_of_column(g, hqq[[0, 0]]);
    }
    let inv = small_spd_inverse(hqq)?;
    // `G = W_:,Q^T W_:,Q`. Columns side by side (a convolution's kernel elements) are read in
    // place: the product packs its operands from any strides, so `G` is the same bit for bit
    // as from a gathered copy, without the copy (one strided read of `w` per channel and step).
    let g = match consecutive(q) {
        Some(range) if range.end <= w.ncols() => {
            let wq = w.slice(s![.., range]);
            wq.t().dot(&wq)
        }
        _ => {
            let wq = columns(w.view(), q);
            wq.t().dot(&wq)
        }
    };
    let e: f64 = inv.iter().zip(&g).map(|(a, b)| a * b).sum();
    Ok(0.5 * e)
}

/// `q` as a range when its columns are side by side.
fn consecutive(q: &[usize]) -> Option<std::ops::Range<usize>> {
    let first = *q.first()?;
    q.iter()
        .enumerate()
        .all(|(i, &c)| c == first + i)
        .then(|| first..first + q.len())
}

/// [`saliency`] of one column given its squared norm `g` and `Hinv_cc = h`: `g / (2 h)`, with
/// `1 / h` computed as the `1 x 1` [`small_spd_inverse`] computes it (bit for bit), so a greedy
/// step that takes norms from [`column_norms`] scores exactly as one that gathers each column.
pub(crate) fn saliency_of_column(g: f64, h: f64) -> Result<f64, MathError> {
    let inv = if h > 0.0 && h.is_finite() {
        let m = 1.0 / h.sqrt();
        m * m
    } else {
        small_spd_inverse(&Array2::from_elem((1, 1), h))?[[0, 0]]
    };
    Ok(0.5 * inv * g)
}

/// The squared norm of every column of `w` (row-major) in one pass over its rows: a column of
/// a wide matrix read on its own touches one cache line (and often one page) per element. Each
/// column's sum runs over the rows in order, as `w.column(c)` would.
pub(crate) fn column_norms(w: ArrayView2<'_, f64>) -> Vec<f64> {
    let cols = w.ncols();
    // Column chunks in parallel; each chunk walks the rows in order.
    let chunk = norm_chunk(cols);
    let mut out = vec![0.0; cols];
    out.par_chunks_mut(chunk).enumerate().for_each(|(k, acc)| {
        let start = k * chunk;
        for row in w.rows() {
            let row = row.slice_move(s![start..start + acc.len()]);
            match row.as_slice() {
                // Contiguous rows (the usual case): a slice loop the compiler vectorizes.
                Some(row) => acc.iter_mut().zip(row).for_each(|(a, x)| *a += x * x),
                None => acc.iter_mut().zip(row).for_each(|(a, x)| *a += x * x),
            }
        }
    });
    out
}

/// The columns `q` of `w` (`rows x q`), gathered row by row; a run of consecutive columns (a
/// convolution channel's kernel) is one slice copy.
pub(crate) fn columns(w: ArrayView2<'_, f64>, q: &[usize]) -> Array2<f64> {
    let mut out = Array2::<f64>::zeros((w.nrows(), q.len()));
    let range = consecutive(q);
    for (mut dst, src) in out.rows_mut().into_iter().zip(w.rows()) {
        match (dst.as_slice_mut(), src.as_slice(), &range) {
            (Some(d), Some(s), Some(r)) if r.end <= s.len() => {
                d.copy_from_slice(&s[r.clone()]);
            }
            _ => dst.iter_mut().zip(q).for_each(|(d, &c)| *d = src[c]),
        }
    }
    out
}

/// Inverse of a small symmetric positive definite block; removed-and-restored columns can leave
/// it numerically singular, in which case it is jittered once.
pub(crate) fn small_spd_inverse(a: &Array2<f64>) -> Result<Array2<f64>, MathError> {
    spd_inverse(a).or_else(|_| {
        let q = a.nrows().max(1) as f64;
        let jitter = 1e-10 * (a.diag().sum().abs() / q).max(1e-300);
        let mut a = a.clone();
        a.diag_mut().iter_mut().for_each(|x| *x += jitter);
        spd_inverse(&a)
    })
}

/// Remove the columns `q`: re-fit the other columns of `w` (`w += dW`), zero the removed ones,
/// and downdate `hinv` to the inverse Hessian of the remaining columns. Returns `E_Q`. Only the
/// lower triangle of `hinv` is read and kept up to date.
pub fn remove(w: &mut Array2<f64>, hinv: &mut Array2<f64>, q: &[usize]) -> Result<f64, MathError> {
    remove_tracking(w, hinv, q, None)
}

/// [`remove`], and with `norms` the squared norms of the columns of the updated `w` (what
/// [`column_norms`] gives, bit for bit), summed while each block of `w` is still in cache from
/// its update rather than in another pass over the whole matrix.
pub(crate) fn remove_tracking(
    w: &mut Array2<f64>,
    hinv: &mut Array2<f64>,
    q: &[usize],
    norms: Option<&mut [f64]>,
) -> Result<f64, MathError> {
    let e = saliency(w.view(), hinv, q)?;
    if q.is_empty() {
        // `w` is unchanged, and so are its norms.
        return Ok(0.0);
    }
    let hqq = block(hinv, q);
    // K = Hinv_QQ^-1 Hinv_Q,:  (q x cols)
    let hq = lower_rows(hinv, q);
    let k = small_spd_inverse(&hqq)?.dot(&hq);
    let wq = columns(w.view(), q);
    // dW = -W_:,Q K (the removed columns then zero);  Hinv -= Hinv_:,Q K (Hinv is symmetric:
    // Hinv_:,Q = Hinv_Q,:^T), lower triangle only.
    match norms {
        Some(norms) => update_with_norms(w, &wq, &k, q, norms),
        None => {
            par_gemm(-1.0, &wq.view(), &k.view(), 1.0, &mut w.view_mut());
            for &c in q {
                w.column_mut(c).fill(0.0);
            }
        }
    }
    lower_downdate(&mut hinv.view_mut(), &hq.view(), &k.view());
    // The removed rows and columns are zeroed where they are read: in the lower triangle.
    for &c in q {
        hinv.slice_mut(s![c.., c]).fill(0.0);
        hinv.slice_mut(s![c, ..c]).fill(0.0);
    }
    Ok(e)
}

/// Rows per block of [`update_with_norms`]: a block of a column panel stays in cache between
/// its product and its squares.
const UPDATE_ROWS: usize = 128;

/// `w -= wq k`, the columns `q` of `w` zeroed, and `norms` the squared column norms of the
/// result. Column panels run in parallel; each walks its rows in order, one block at a time
/// (product, zeroing, squares), so every column's sum runs over the rows in order, as in
/// [`column_norms`], and every entry of the product is the one [`par_gemm`] forms.
fn update_with_norms(
    w: &mut Array2<f64>,
    wq: &Array2<f64>,
    k: &Array2<f64>,
    q: &[usize],
    norms: &mut [f64],
) {
    let cols = w.ncols();
    let mut removed = vec![false; cols];
    q.iter().for_each(|&c| removed[c] = true);
    let chunk = norm_chunk(cols);
    w.axis_chunks_iter_mut(Axis(1), chunk)
        .into_par_iter()
        .zip(norms.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(p, (mut panel, acc))| {
            let start = p * chunk;
            let kp = k.slice(s![.., start..start + acc.len()]);
            let dead = &removed[start..start + acc.len()];
            acc.fill(0.0);
            for (r, mut rows) in panel.axis_chunks_iter_mut(Axis(0), UPDATE_ROWS).enumerate() {
                let r0 = r * UPDATE_ROWS;
                let a = wq.slice(s![r0..r0 + rows.nrows(), ..]);
                general_mat_mul(-1.0, &a, &kp, 1.0, &mut rows);
                for mut row in rows.rows_mut() {
                    row.iter_mut()
                        .zip(dead)
                        .filter(|(_, &d)| d)
                        .for_each(|(x, _)| *x = 0.0);
                    match row.as_slice() {
                        Some(row) => acc.iter_mut().zip(row).for_each(|(a, x)| *a += x * x),
                        None => acc
                            .iter_mut()
                            .zip(row.iter())
                            .for_each(|(a, x)| *a += x * x),
                    }
                }
            }
        });
}

/// Width of the column panels of [`column_norms`] and [`update_with_norms`].
fn norm_chunk(cols: usize) -> usize {
    cols.div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(256)
}

/// One layer as seen by the greedy search: weights, inverse Hessian, and the columns of each
/// channel (possibly none).
#[derive(Clone, Debug)]
pub struct Layer {
    pub w: Array2<f64>,
    pub hinv: InverseHessian,
    pub blocks: Vec<Vec<usize>>,
}

impl Layer {
    /// Drop the removed columns from `w`, `hinv` and the channel blocks once they are a quarter
    /// of the matrix, so later downdates cost the kept size only. Whether it did.
    fn compact_if_sparse(&mut self) -> bool {
        let n = self.hinv.dim();
        let keep: Vec<usize> = (0..n).filter(|&c| self.hinv.is_alive(c)).collect();
        if (n - keep.len()) * 4 < n {
            return false;
        }
        let mut index = vec![usize::MAX; n];
        for (i, &c) in keep.iter().enumerate() {
            index[c] = i;
        }
        self.w = Array2::from_shape_fn((self.w.nrows(), keep.len()), |(r, i)| self.w[[r, keep[i]]]);
        self.hinv.select(&keep);
        for b in &mut self.blocks {
            b.retain(|&c| index[c] != usize::MAX);
            b.iter_mut().for_each(|c| *c = index[*c]);
        }
        true
    }
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
    layers.par_iter_mut().for_each(|l| l.hinv.track(&l.blocks));
    // Layers whose channels are single columns (Linear inputs): every column's squared norm,
    // rather than one strided column read per channel; kept up to date by the removals of
    // dense layers (`remove_tracking`), recomputed after the others and after a compaction.
    let mut norms: Vec<Option<Vec<f64>>> = vec![None; layers.len()];
    while !alive.is_empty() {
        layers.par_iter().zip(&mut norms).for_each(|(l, norms)| {
            let wanted = l.blocks.iter().any(|q| q.len() == 1) && l.w.ncols() == l.hinv.dim();
            if !wanted {
                *norms = None;
            } else if norms.as_ref().is_none_or(|n| n.len() != l.w.ncols()) {
                *norms = Some(column_norms(l.w.view()));
            }
        });
        let sal: Vec<f64> = alive
            .par_iter()
            .map(|&c| {
                layers.iter().zip(&norms).try_fold(0.0, |acc, (l, norms)| {
                    match (l.blocks.get(c), norms) {
                        (Some(q), Some(norms)) if q.len() == 1 => {
                            let g = norms.get(q[0]).copied().unwrap_or(0.0);
                            Ok(acc + l.hinv.column_saliency(q[0], g)?)
                        }
                        (Some(q), _) if !q.is_empty() => Ok(acc + l.hinv.saliency(l.w.view(), q)?),
                        _ => Ok(acc),
                    }
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
            .zip(&mut norms)
            .map(|(l, norms)| {
                let q: Vec<usize> = step
                    .iter()
                    .filter_map(|&c| l.blocks.get(c))
                    .flatten()
                    .copied()
                    .collect();
                let e = match (&mut l.hinv, norms.as_mut()) {
                    (InverseHessian::Dense(h), Some(n)) => {
                        remove_tracking(&mut l.w, h, &q, Some(n))?
                    }
                    (hinv, _) => {
                        *norms = None;
                        hinv.remove(&mut l.w, &q)?
                    }
                };
                if l.compact_if_sparse() {
                    *norms = None;
                }
                Ok(e)
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
/// the removed ones are zero): `W + dW` with `dW = -(W_:,Q Hinv_QQ^-1) Hinv_Q,:`. Only the
/// weights are updated (no downdate of `Hinv`), and `W_:,Q Hinv_QQ^-1` goes through the Cholesky
/// factor of `Hinv_QQ` (`L^-T L^-1`), so the cost is a few products of the removed block.
pub fn compensate(
    w: ArrayView2<'_, f64>,
    hinv: &Array2<f64>,
    q: &[usize],
) -> Result<Array2<f64>, MathError> {
    check(&w, hinv)?;
    let mut out = w.to_owned();
    if q.is_empty() {
        return Ok(out);
    }
    let hqq = block(hinv, q);
    let l = cholesky(&hqq).or_else(|_| {
        let n = hqq.nrows().max(1) as f64;
        let jitter = 1e-10 * (hqq.diag().sum().abs() / n).max(1e-300);
        let mut a = hqq.clone();
        a.diag_mut().iter_mut().for_each(|x| *x += jitter);
        cholesky(&a)
    })?;
    let m = lower_inverse(&l);
    let wq = columns(w.view(), q);
    // X = W_:,Q M^T M  (rows x |Q|), M lower triangular: two half products.
    let x = mul_lower(mul_lower(wq.view(), m.view(), true).view(), m.view(), false);
    // Only the kept columns are re-fitted (the removed ones become zero): dW_:,K = -X Hinv_Q,K.
    let mut removed = vec![false; hinv.ncols()];
    q.iter().for_each(|&c| removed[c] = true);
    let kept: Vec<usize> = (0..hinv.ncols()).filter(|&c| !removed[c]).collect();
    let hq = lower_rows(hinv, q).select(Axis(1), &kept);
    let mut dw = Array2::<f64>::zeros((w.nrows(), kept.len()));
    par_gemm(1.0, &x.view(), &hq.view(), 0.0, &mut dw.view_mut());
    for (mut row, d) in out.rows_mut().into_iter().zip(dw.rows()) {
        for (&c, &v) in kept.iter().zip(d) {
            row[c] -= v;
        }
        for &c in q {
            row[c] = 0.0;
        }
    }
    Ok(out)
}

/// `a m` (or `a m^T` when `transposed`) for a lower-triangular `m` (`n x n`), the zero blocks of
/// `m` skipped (half the work of the full product): column block `J` of the product is
/// `a_:,J0.. m_J0..,J` (or `a_:,..J1 (m_J,..J1)^T`), the blocks in parallel when the product is
/// large.
pub(crate) fn mul_lower<A: LinalgScalar + Send + Sync>(
    a: ArrayView2<'_, A>,
    m: ArrayView2<'_, A>,
    transposed: bool,
) -> Array2<A> {
    let n = m.nrows();
    let mut out = Array2::<A>::zeros((a.nrows(), n));
    let block = |(b, mut cols): (usize, ArrayViewMut2<'_, A>)| {
        let j0 = b * TRI_NB;
        let j1 = j0 + cols.ncols();
        let (lhs, rhs) = if transposed {
            (
                a.slice(s![.., ..j1]),
                m.slice(s![j0..j1, ..j1]).reversed_axes(),
            )
        } else {
            (a.slice(s![.., j0..]), m.slice(s![j0.., j0..j1]))
        };
        general_mat_mul(A::one(), &lhs, &rhs, A::zero(), &mut cols);
    };
    by_blocks(
        out.view_mut(),
        Axis(1),
        TRI_NB,
        a.nrows() * n * n / 2,
        block,
    );
    out
}

/// Run `f` on the blocks of `out` along `axis` (`width` wide, with their index), in parallel when
/// `macs` is large enough to pay for it.
fn by_blocks<A: Send + Sync, F>(
    mut out: ArrayViewMut2<'_, A>,
    axis: Axis,
    width: usize,
    macs: usize,
    f: F,
) where
    F: Fn((usize, ArrayViewMut2<'_, A>)) + Send + Sync,
{
    if macs < PAR_MACS || rayon::current_num_threads() <= 1 {
        out.axis_chunks_iter_mut(axis, width)
            .enumerate()
            .for_each(f);
    } else {
        out.axis_chunks_iter_mut(axis, width)
            .into_par_iter()
            .enumerate()
            .for_each(f);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-normal matrix.
    pub(crate) fn randn(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        Array2::from_shape_fn((rows, cols), |_| (0..4).map(|_| next()).sum::<f64>())
    }

    pub(crate) fn rel(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
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
    fn one_column_saliency_from_norms_is_the_gathered_one_bit_for_bit() {
        // Wide enough for several parallel column chunks.
        let w = randn(37, 1500, 11);
        let norms = column_norms(w.view());
        for (c, n) in norms.iter().enumerate() {
            let direct: f64 = w.column(c).iter().map(|x| x * x).sum();
            assert_eq!(n.to_bits(), direct.to_bits(), "column {c}");
        }
        for (i, h) in [1.0, 0.3, 7.25e-9, 3.1e7, 0.1 + 0.2, 1.0 / 3.0, 0.0]
            .into_iter()
            .enumerate()
        {
            let g = norms[i];
            let inv = small_spd_inverse(&Array2::from_elem((1, 1), h)).unwrap()[[0, 0]];
            let old = 0.5 * inv * g;
            assert_eq!(
                saliency_of_column(g, h).unwrap().to_bits(),
                old.to_bits(),
                "h {h}"
            );
        }
        assert!(saliency_of_column(1.0, -2.0).is_err());
    }

    #[test]
    fn sums_match_the_full_product() {
        // Widths below, at and across panel boundaries (the last panel partial). Each block's
        // product is formed in f32 (as `x.t().dot(&x)`) and summed in f64; the sums add to the
        // lower triangle, which `symmetrize` mirrors.
        for (rows, cols) in [(7, 5), (40, 256), (33, 600), (9, 513)] {
            let x = randn(2 * rows, cols, cols as u64).mapv(|v| v as f32);
            let (x1, x2) = (x.slice(s![..rows, ..]), x.slice(s![rows.., ..]));
            let want = x1.t().dot(&x1).mapv(f64::from) + x2.t().dot(&x2).mapv(f64::from);
            let mut one = HessianSum::new(cols);
            one.add(x1);
            one.add(x2);
            let mut both = HessianSum::new(cols);
            both.add_blocks(&[x1, x2]);
            // The methods read a sum whose upper triangle is stale as a whole one.
            let h = both.hessian(0.0);
            both.symmetrize();
            assert_eq!(h, both.hessian(0.0));
            one.symmetrize();
            assert_eq!(one.xtx, both.xtx);
            assert_eq!((one.rows, &one.colsum), (both.rows, &both.colsum));
            // Panels as the tasks (with a reused buffer) or every product at once: the same
            // sums, bit for bit, whatever the thread count picks.
            for per_panel in [false, true] {
                let mut by = HessianSum::new(cols);
                by.add_products_by(&[x1, x2], per_panel);
                by.symmetrize();
                assert!(by
                    .xtx
                    .iter()
                    .zip(&both.xtx)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            for ((i, j), v) in both.xtx.indexed_iter() {
                assert!((v - want[[i, j]]).abs() <= 1e-5 * scale, "({i}, {j})");
                assert_eq!(v.to_bits(), both.xtx[[j, i]].to_bits(), "({i}, {j})");
            }
        }
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
    fn blocked_factorizations_match_the_definition() {
        // Sizes across block boundaries (NB = 64), including one that is not a multiple, and one
        // large enough for the parallel trailing updates and block rows.
        for &n in &[1usize, 63, 64, 65, 150, 300] {
            let x = randn(n + 20, n, n as u64);
            let h = x.t().dot(&x);
            let l = cholesky(&h).unwrap();
            assert!(rel(&l.dot(&l.t()), &h) < 1e-10, "n={n}: L L^T != H");
            assert!(l.indexed_iter().all(|((i, j), &v)| j <= i || v == 0.0));
            let inv = spd_inverse(&h).unwrap();
            assert!(
                rel(&h.dot(&inv), &Array2::eye(n)) < 1e-8,
                "n={n}: H H^-1 != I"
            );
            assert!(
                rel(&inv, &inv.t().to_owned()) < 1e-12,
                "n={n}: H^-1 not symmetric"
            );
        }
        // A failing pivot inside a later block is reported at its global index.
        let x = randn(200, 150, 9);
        let mut h = x.t().dot(&x);
        h[[130, 130]] = -1.0;
        assert_eq!(
            cholesky(&h).unwrap_err(),
            MathError::NotPositiveDefinite { pivot: 130 }
        );
    }

    #[test]
    fn lower_gathers_read_the_symmetric_matrix() {
        let x = randn(30, 20, 7);
        let full = x.t().dot(&x);
        // Only the lower triangle is read: the upper one is garbage.
        let mut lower = full.clone();
        for i in 0..20 {
            for j in i + 1..20 {
                lower[[i, j]] = f64::NAN;
            }
        }
        let q = [13usize, 2, 19, 0];
        assert_eq!(lower_rows(&lower, &q), full.select(Axis(0), &q));
        // The compensation reads the same triangle (a NaN read would spread to the result).
        let w = randn(3, 20, 8);
        let hinv = spd_inverse(&full).unwrap();
        let mut hinv_lower = hinv.clone();
        for i in 0..20 {
            for j in i + 1..20 {
                hinv_lower[[i, j]] = f64::NAN;
            }
        }
        assert_eq!(
            compensate(w.view(), &hinv_lower, &q).unwrap(),
            compensate(w.view(), &hinv, &q).unwrap()
        );
        let keep = [1usize, 4, 5, 11, 19];
        let got = lower_select(&lower, &keep);
        let want = full.select(Axis(0), &keep).select(Axis(1), &keep);
        for i in 0..keep.len() {
            for j in 0..keep.len() {
                assert_eq!(got[[i, j]], if j <= i { want[[i, j]] } else { 0.0 });
            }
        }
    }

    #[test]
    fn triangular_products_match_the_full_ones() {
        // Widths across TRI_NB = 128; 30 x 300 x 300 / 2 multiply-adds run in parallel.
        for (rows, n) in [(3usize, 1usize), (5, 127), (4, 128), (7, 129), (30, 300)] {
            let a = randn(rows, n, n as u64);
            let m = Array2::from_shape_fn((n, n), |(i, j)| {
                if j <= i {
                    ((i * 31 + j * 17) % 13) as f64 - 6.0
                } else {
                    0.0
                }
            });
            assert!(rel(&mul_lower(a.view(), m.view(), false), &a.dot(&m)) < 1e-14);
            assert!(rel(&mul_lower(a.view(), m.view(), true), &a.dot(&m.t())) < 1e-14);
            let (a32, m32) = (a.mapv(|v| v as f32), m.mapv(|v| v as f32));
            let got = mul_lower(a32.view(), m32.view(), false).mapv(f64::from);
            assert!(rel(&got, &a32.dot(&m32).mapv(f64::from)) < 1e-6);
        }
    }

    #[test]
    fn compensation_equals_least_squares() {
        for (seed, rows, cols, q) in [
            (1u64, 5usize, 12usize, vec![3usize, 4, 5]),
            (2, 3, 9, vec![0]),
            (3, 8, 16, vec![1, 7, 8, 15]),
            // Larger than one block of the blocked factorizations.
            (4, 20, 150, (0..150).step_by(2).collect()),
            // Large enough for the parallel triangular products (and 300 removed columns in
            // three blocks of TRI_NB).
            (5, 40, 400, (0..400).filter(|c| c % 4 != 1).collect()),
        ] {
            let n = 64.max(2 * cols);
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
    fn tracked_norms_are_a_fresh_pass_bit_for_bit() {
        // 300 rows: three row blocks of the fused update; 700 columns: several column panels,
        // run in parallel. The weights, the lower triangle of Hinv and the norms must be those
        // of `remove` followed by `column_norms`, bit for bit (the greedy search's scores and
        // order depend on it).
        for (rows, cols, q) in [
            (5, 12, vec![3usize]),
            (300, 700, vec![0, 17, 255, 256, 511, 699]),
        ] {
            let x = randn(cols + 50, cols, 11);
            let w = randn(rows, cols, 12);
            let hinv = layer_hinv(&x);
            let (mut w1, mut h1) = (w.clone(), hinv.clone());
            let e1 = remove(&mut w1, &mut h1, &q).unwrap();
            let (mut w2, mut h2) = (w.clone(), hinv.clone());
            let mut norms = vec![f64::NAN; cols];
            let e2 = remove_tracking(&mut w2, &mut h2, &q, Some(&mut norms)).unwrap();
            assert_eq!(e1.to_bits(), e2.to_bits());
            assert!(w1.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()));
            let fresh = column_norms(w1.view());
            assert!(fresh
                .iter()
                .zip(&norms)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(q.iter().all(|&c| norms[c] == 0.0));
            for i in 0..cols {
                for j in 0..=i {
                    assert_eq!(h1[[i, j]].to_bits(), h2[[i, j]].to_bits(), "{i},{j}");
                }
            }
        }
    }

    #[test]
    fn side_by_side_columns_read_in_place_give_the_gathered_gram_bit_for_bit() {
        // Rows below, at and past the product's depth blocks; the columns of a 3x3 kernel, of
        // a 1x7 one and of two channels; the last columns of the matrix.
        for (rows, cols, q) in [
            (5, 40, 3..12),
            (264, 2376, 900..909),
            (256, 300, 0..7),
            (700, 90, 72..90),
            (1030, 64, 10..28),
        ] {
            let w = randn(rows, cols, rows as u64);
            let q: Vec<usize> = q.collect();
            let gathered = columns(w.view(), &q);
            let hqq = Array2::from_shape_fn((q.len(), q.len()), |(i, j)| {
                if i == j {
                    2.0 + i as f64
                } else {
                    0.1
                }
            });
            let inv = small_spd_inverse(&hqq).unwrap();
            let g = gathered.t().dot(&gathered);
            let want = 0.5 * inv.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
            let got = saliency_of_block(w.view(), &hqq, &q).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{rows}x{cols}");
        }
        assert_eq!(consecutive(&[4, 5, 6]), Some(4..7));
        assert_eq!(consecutive(&[4, 6]), None);
        assert_eq!(consecutive(&[]), None);
    }

    #[test]
    fn the_lower_inverse_is_the_inverse_below_the_diagonal() {
        // 150: three row blocks of the product; the full inverse mirrors the lower one.
        let x = randn(200, 150, 13);
        let h = x.t().dot(&x) / 200.0 + Array2::<f64>::eye(150);
        let full = spd_inverse(&h).unwrap();
        let lower = inverse_lower_from_factor(cholesky(&h).unwrap());
        assert!(rel(&h.dot(&full), &Array2::<f64>::eye(150)) < 1e-10);
        // A column-major copy takes the indexed panel solve: the same factor, bit for bit.
        let (l, lf) = (cholesky(&h).unwrap(), cholesky(&h.t().to_owned()).unwrap());
        assert!(l.iter().zip(&lf).all(|(a, b)| a.to_bits() == b.to_bits()));
        for i in 0..150 {
            for j in 0..=i {
                assert_eq!(full[[i, j]].to_bits(), lower[[i, j]].to_bits());
                assert_eq!(full[[j, i]].to_bits(), lower[[i, j]].to_bits());
            }
        }
    }

    #[test]
    fn sequential_removal_equals_joint_removal() {
        // OBS removals compose: q1 then q2 (with the downdate) is the same re-fit as q1 + q2.
        // At 150 columns the downdates span several row panels, and the second removal reads
        // what the first left in the lower triangle only.
        for (cols, q1, q2) in [
            (10, vec![2, 3], vec![7]),
            (150, vec![2, 3, 100], vec![130, 7, 64]),
        ] {
            let x = randn(cols + 40, cols, 4);
            let w = randn(4, cols, 5);
            let hinv = layer_hinv(&x);
            let (mut w1, mut h1) = (w.clone(), hinv.clone());
            let e1 = remove(&mut w1, &mut h1, &q1).unwrap();
            let e2 = remove(&mut w1, &mut h1, &q2).unwrap();
            let q: Vec<usize> = q1.iter().chain(&q2).copied().collect();
            let joint = compensate(w.view(), &hinv, &q).unwrap();
            assert!(rel(&w1, &joint) < 1e-9, "{cols} columns");
            let ej = saliency(w.view(), &hinv, &q).unwrap();
            assert!((e1 + e2 - ej).abs() < 1e-9 * ej, "{cols} columns");
            // The downdated lower triangle is the inverse Hessian of the kept columns.
            let kept: Vec<usize> = (0..cols).filter(|c| !q.contains(c)).collect();
            let direct = spd_inverse(&block(&spd_inverse(&hinv).unwrap(), &kept)).unwrap();
            assert!(rel(&block(&h1, &kept), &direct) < 1e-8, "{cols} columns");
        }
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
                hinv: InverseHessian::Dense(layer_hinv(&x1)),
                blocks: blocks.clone(),
            },
            Layer {
                w: w2.clone(),
                hinv: InverseHessian::Dense(layer_hinv(&x2)),
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
            .map(|l| l.hinv.saliency(l.w.view(), &q).unwrap())
            .sum();
        let first: f64 = layers
            .iter()
            .map(|l| {
                let c = order[0];
                l.hinv.saliency(l.w.view(), &[2 * c, 2 * c + 1]).unwrap()
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
        // With the bias input: 2/N [X 1]^T [X 1], summed over both parts.
        let mut xa = ndarray::Array2::<f64>::ones((10, 4));
        xa.slice_mut(s![.., ..3]).assign(&x.mapv(|v| v as f64));
        let want = xa.t().dot(&xa).mapv(|v| 2.0 * v / 10.0);
        let got = a.with_bias();
        assert!(
            (&got - &want).iter().all(|d| d.abs() < 1e-5),
            "{got} vs {want}"
        );
    }

    #[test]
    fn output_energy_is_the_mean_squared_output() {
        // tr(W H W^T) with H = 2/N X^T X is 2/N ||X W^T||^2, also with H wider than a block
        // (the parallel product).
        for (n, rows, cols, seed) in [(30, 5, 7, 21), (300, 8, 140, 22)] {
            let x = randn(n, cols, seed);
            let w = randn(rows, cols, seed + 100);
            let mut sum = HessianSum::new(cols);
            sum.xtx = x.t().dot(&x);
            sum.rows = n as u64;
            let direct = 2.0 / n as f64 * x.dot(&w.t()).iter().map(|v| v * v).sum::<f64>();
            let got = sum.output_energy(&w);
            assert!((got - direct).abs() <= 1e-9 * direct, "{got} vs {direct}");
        }
        assert_eq!(output_energy(&randn(2, 3, 1), &Array2::eye(4)), 0.0);
    }
}
