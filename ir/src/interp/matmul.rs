//! MatMul and Gemm, and the blocked parallel matrix product that Conv uses too.

use super::elementwise::broadcast_shape;
use super::value::{Data, Value};
use super::{arg, opt, Ctx, KernelFn};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix2, IxDyn};
use rayon::prelude::*;

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "MatMul" => matmul,
        "Gemm" => gemm,
        _ => return None,
    })
}

/// Multiply-adds below which a product runs on one thread.
const PAR_MACS: usize = 1 << 18;

/// `c = alpha * a . b + beta * c`, split over row blocks of `c` (or column blocks when `c` has
/// few rows) across rayon threads when large.
pub(crate) fn gemm_into(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let threads = rayon::current_num_threads();
    if m * n * k < PAR_MACS || threads == 1 {
        general_mat_mul(alpha, &a, &b, beta, &mut c);
        return;
    }
    let parts = threads * 2;
    if m >= n || m >= 64 * parts {
        let rows = m.div_ceil(parts).max(8);
        c.axis_chunks_iter_mut(Axis(0), rows)
            .into_par_iter()
            .zip(a.axis_chunks_iter(Axis(0), rows).into_par_iter())
            .for_each(|(mut cc, ac)| general_mat_mul(alpha, &ac, &b, beta, &mut cc));
    } else {
        let cols = n.div_ceil(parts).max(16);
        c.axis_chunks_iter_mut(Axis(1), cols)
            .into_par_iter()
            .zip(b.axis_chunks_iter(Axis(1), cols).into_par_iter())
            .for_each(|(mut cc, bc)| general_mat_mul(alpha, &a, &bc, beta, &mut cc));
    }
}

fn as2<'a, T>(a: &'a ArrayD<T>) -> Result<ArrayView2<'a, T>, String> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| format!("expected a matrix, got shape {:?}", a.shape()))
}

fn matmul(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let (x, y) = (arg(inputs, 0)?, arg(inputs, 1)?);
    match (x.data(), y.data()) {
        (Data::F32(a), Data::F32(b)) => Ok(vec![x.like(Data::F32(matmul_f32(a, b)?))]),
        (Data::I64(a), Data::I64(b)) => Ok(vec![x.like(Data::I64(matmul_generic(a, b)?))]),
        _ => Err(format!("MatMul of {} and {}", x.dtype(), y.dtype())),
    }
}

/// Shapes of a numpy matmul: (batch shape, m, k, n, output shape).
type MatmulShapes = (Vec<usize>, usize, usize, usize, Vec<usize>);

fn matmul_shapes(a: &[usize], b: &[usize]) -> Result<MatmulShapes, String> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("MatMul of {a:?} and {b:?}: inner dims differ"));
    }
    let batch = broadcast_shape(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok((batch, m, k, n, out))
}

/// numpy-style batched product of f32 tensors.
pub(crate) fn matmul_f32(a: &ArrayD<f32>, b: &ArrayD<f32>) -> Result<ArrayD<f32>, String> {
    let (batch, m, k, n, out_shape) = matmul_shapes(a.shape(), b.shape())?;
    // [..., m, k] x [k, n]: one product with the batch folded into the rows.
    if b.ndim() == 2 && a.ndim() >= 2 {
        let rows: usize = a.shape()[..a.ndim() - 1].iter().product();
        let a_std = a.as_standard_layout();
        let a2 = a_std
            .view()
            .into_shape_with_order((rows, k))
            .map_err(|e| e.to_string())?;
        let mut out = Array2::<f32>::zeros((rows, n));
        gemm_into(1.0, a2, as2(b)?, 0.0, out.view_mut());
        return out
            .into_shape_with_order(IxDyn(&out_shape))
            .map_err(|e| e.to_string());
    }
    let (a_std, b_std) = (a.as_standard_layout(), b.as_standard_layout());
    let a_v = operand(a_std.view(), [1, k])?;
    let b_v = operand(b_std.view(), [k, 1])?;
    let av = batch_views(&a_v, &batch, m, k)?;
    let bv = batch_views(&b_v, &batch, k, n)?;
    let nb = av.len();
    let mut out = ndarray::Array3::<f32>::zeros((nb, m, n));
    if nb == 1 || m * n * k * nb < PAR_MACS {
        for ((x, y), o) in av.iter().zip(&bv).zip(out.outer_iter_mut()) {
            gemm_into(1.0, x.view(), y.view(), 0.0, o);
        }
    } else {
        out.outer_iter_mut()
            .into_par_iter()
            .zip(av.par_iter().zip(bv.par_iter()))
            .for_each(|(mut o, (x, y))| general_mat_mul(1.0, x, y, 0.0, &mut o));
    }
    out.into_shape_with_order(IxDyn(&out_shape))
        .map_err(|e| e.to_string())
}

/// A matmul operand as a matrix or a stack of them (a vector becomes `[1, k]` or `[k, 1]`).
fn operand<'v, T>(
    v: ndarray::ArrayViewD<'v, T>,
    as_matrix: [usize; 2],
) -> Result<ndarray::ArrayViewD<'v, T>, String> {
    if v.ndim() == 1 {
        v.into_shape_with_order(IxDyn(&as_matrix))
            .map_err(|e| e.to_string())
    } else {
        Ok(v)
    }
}

/// The matrices of a matmul operand, one per element of the broadcast batch shape.
fn batch_views<'v, T>(
    v: &'v ndarray::ArrayViewD<'_, T>,
    batch: &[usize],
    rows: usize,
    cols: usize,
) -> Result<Vec<ArrayView2<'v, T>>, String> {
    let mut full = batch.to_vec();
    full.push(rows);
    full.push(cols);
    let b = v
        .broadcast(IxDyn(&full))
        .ok_or_else(|| format!("cannot broadcast {:?} to {full:?}", v.shape()))?;
    let mut out = vec![b];
    for _ in 0..batch.len() {
        out = out
            .into_iter()
            .flat_map(|m| {
                let n = m.len_of(Axis(0));
                (0..n).map(move |i| m.clone().index_axis_move(Axis(0), i))
            })
            .collect();
    }
    out.into_iter()
        .map(|m| m.into_dimensionality::<Ix2>().map_err(|e| e.to_string()))
        .collect()
}

fn matmul_generic(a: &ArrayD<i64>, b: &ArrayD<i64>) -> Result<ArrayD<i64>, String> {
    let (batch, m, k, n, out_shape) = matmul_shapes(a.shape(), b.shape())?;
    let (a_std, b_std) = (a.as_standard_layout(), b.as_standard_layout());
    let a_v = operand(a_std.view(), [1, k])?;
    let b_v = operand(b_std.view(), [k, 1])?;
    let av = batch_views(&a_v, &batch, m, k)?;
    let bv = batch_views(&b_v, &batch, k, n)?;
    let mut out = Vec::with_capacity(av.len() * m * n);
    for (x, y) in av.iter().zip(&bv) {
        out.extend(x.dot(y).iter().copied());
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())
}

fn gemm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let (a, b) = (
        x.as_f32().ok_or("Gemm needs float inputs")?,
        arg(inputs, 1)?.as_f32().ok_or("Gemm needs float inputs")?,
    );
    let (alpha, beta) = (cx.float("alpha", 1.0), cx.float("beta", 1.0));
    let mut a = as2(a)?;
    let mut b = as2(b)?;
    if cx.int("transA", 0) != 0 {
        a = a.reversed_axes();
    }
    if cx.int("transB", 0) != 0 {
        b = b.reversed_axes();
    }
    let (m, k) = a.dim();
    if b.nrows() != k {
        return Err(format!(
            "Gemm inner dims differ: {:?} x {:?}",
            a.dim(),
            b.dim()
        ));
    }
    let n = b.ncols();
    let mut out = Array2::<f32>::zeros((m, n));
    let mut beta_eff = 0.0;
    if let Some(c) = opt(inputs, 2) {
        let c = c.as_f32().ok_or("Gemm C must be float")?;
        let cv = c.broadcast(IxDyn(&[m, n])).ok_or_else(|| {
            format!(
                "Gemm C of shape {:?} does not broadcast to [{m},{n}]",
                c.shape()
            )
        })?;
        out.assign(&cv.into_dimensionality::<Ix2>().map_err(|e| e.to_string())?);
        beta_eff = beta;
    }
    gemm_into(alpha, a, b, beta_eff, out.view_mut());
    Ok(vec![x.like(Data::F32(out.into_dyn()))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_matmul_by_hand() {
        // [2,1,2] x [2,1] -> [2,1,1]; each batch row times the same column.
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 1, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![10.0f32, 100.0]).unwrap();
        let c = matmul_f32(&a, &b).unwrap();
        assert_eq!(c.shape(), &[2, 1, 1]);
        assert_eq!(c.iter().copied().collect::<Vec<_>>(), vec![210.0, 430.0]);
        // vector x matrix
        let v = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0f32, 1.0]).unwrap();
        let m = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0f32, 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(
            matmul_f32(&v, &m)
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![5., 7., 9.]
        );
    }

    #[test]
    fn large_product_splits_the_same() {
        let (m, k, n) = (70, 90, 130);
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 - 6.0);
        let mut c = Array2::<f32>::zeros((m, n));
        gemm_into(1.0, a.view(), b.view(), 0.0, c.view_mut());
        assert_eq!(c, a.dot(&b));
    }
}
