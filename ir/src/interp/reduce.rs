//! Reductions (ReduceSum/Mean/Max/Min/Prod/SumSquare/L1/L2/LogSum/LogSumExp), ArgMax/ArgMin,
//! Softmax/LogSoftmax/Hardmax, CumSum, TopK.

use super::value::{Data, Value};
use super::{arg, axis, opt, Ctx, KernelFn};
use ndarray::{ArrayD, Axis, Dimension, IxDyn, Zip};

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "ReduceSumSquare" | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" => {
            reduce
        }
        "ArgMax" | "ArgMin" => arg_extreme,
        "Softmax" | "LogSoftmax" | "Hardmax" => softmax,
        "CumSum" => cumsum,
        "TopK" => topk,
        _ => return None,
    })
}

/// The reduced axes, sorted, or `None` for "no reduction".
fn reduce_axes(
    cx: &Ctx<'_>,
    inputs: &[Option<&Value>],
    rank: usize,
) -> Result<Option<Vec<usize>>, String> {
    let from_input = cx.opset >= 18 || (cx.node.op_type == "ReduceSum" && cx.opset >= 13);
    let given: Option<Vec<i64>> = if from_input {
        opt(inputs, 1).map(|v| v.to_i64_vec())
    } else {
        cx.ints("axes").map(|a| a.to_vec())
    };
    let given = given.filter(|a| !a.is_empty());
    let mut axes: Vec<usize> = match given {
        Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_, _>>()?,
        None if cx.int("noop_with_empty_axes", 0) != 0 => return Ok(None),
        None => (0..rank).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    Ok(Some(axes))
}

fn fold_axes<T: Copy>(
    mut a: ArrayD<T>,
    axes: &[usize],
    init: T,
    f: impl Fn(T, T) -> T + Copy,
    keep: bool,
) -> ArrayD<T> {
    for &ax in axes.iter().rev() {
        a = a.fold_axis(Axis(ax), init, |&acc, &v| f(acc, v));
        if keep {
            a = a.insert_axis(Axis(ax));
        }
    }
    a
}

fn reduce(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let rank = x.shape().len();
    let Some(axes) = reduce_axes(cx, inputs, rank)? else {
        return Ok(vec![x.clone()]);
    };
    let keep = cx.int("keepdims", 1) != 0;
    let op = cx.node.op_type.as_str();
    let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let data = match x.data() {
        Data::F32(a) => {
            let sum = |a: ArrayD<f32>| fold_axes(a, &axes, 0.0, |p, q| p + q, keep);
            Data::F32(match op {
                "ReduceSum" => sum(a.clone()),
                "ReduceMean" => {
                    let k = count.max(1) as f32;
                    sum(a.clone()).mapv(|v| v / k)
                }
                "ReduceMax" => fold_axes(a.clone(), &axes, f32::NEG_INFINITY, f32::max, keep),
                "ReduceMin" => fold_axes(a.clone(), &axes, f32::INFINITY, f32::min, keep),
                "ReduceProd" => fold_axes(a.clone(), &axes, 1.0, |p, q| p * q, keep),
                "ReduceSumSquare" => sum(a.mapv(|v| v * v)),
                "ReduceL1" => sum(a.mapv(f32::abs)),
                "ReduceL2" => sum(a.mapv(|v| v * v)).mapv(f32::sqrt),
                "ReduceLogSum" => sum(a.clone()).mapv(f32::ln),
                _ => {
                    let m = fold_axes(a.clone(), &axes, f32::NEG_INFINITY, f32::max, true);
                    let m = if m.iter().all(|v| v.is_finite()) {
                        m
                    } else {
                        m.mapv(|_| 0.0)
                    };
                    let e = sum((a - &m).mapv(f32::exp)).mapv(f32::ln);
                    let mk = if keep {
                        m
                    } else {
                        let mut mm = m;
                        for &ax in axes.iter().rev() {
                            mm = mm.index_axis_move(Axis(ax), 0);
                        }
                        mm
                    };
                    e + mk
                }
            })
        }
        Data::I64(a) => Data::I64(match op {
            "ReduceSum" => fold_axes(a.clone(), &axes, 0, i64::wrapping_add, keep),
            "ReduceMean" => {
                let k = count.max(1) as i64;
                fold_axes(a.clone(), &axes, 0, i64::wrapping_add, keep).mapv(|v| v / k)
            }
            "ReduceMax" => fold_axes(a.clone(), &axes, i64::MIN, i64::max, keep),
            "ReduceMin" => fold_axes(a.clone(), &axes, i64::MAX, i64::min, keep),
            "ReduceProd" => fold_axes(a.clone(), &axes, 1, i64::wrapping_mul, keep),
            "ReduceSumSquare" => fold_axes(
                a.mapv(|v| v.wrapping_mul(v)),
                &axes,
                0,
                i64::wrapping_add,
                keep,
            ),
            "ReduceL1" => fold_axes(a.mapv(i64::wrapping_abs), &axes, 0, i64::wrapping_add, keep),
            _ => return Err(format!("{op} of an integer tensor")),
        }),
        Data::Bool(_) => return Err(format!("{op} of a bool tensor")),
    };
    Ok(vec![x.like(data)])
}

fn arg_extreme(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let a = x.to_f32_array();
    let ax = axis(cx.int("axis", 0), a.ndim())?;
    if a.shape()[ax] == 0 {
        return Err("ArgMax/ArgMin over an empty axis".into());
    }
    let max = cx.node.op_type == "ArgMax";
    let last = cx.int("select_last_index", 0) != 0;
    let out = Zip::from(a.lanes(Axis(ax))).map_collect(|lane| {
        let mut best = 0usize;
        for (i, &v) in lane.iter().enumerate() {
            let b = lane[best];
            let better = if max { v > b } else { v < b };
            if better || (last && v == b) {
                best = i;
            }
        }
        best as i64
    });
    let out = if cx.int("keepdims", 1) != 0 {
        out.insert_axis(Axis(ax))
    } else {
        out
    };
    Ok(vec![Value::i64(out)])
}

fn softmax(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = xv.as_f32().ok_or("Softmax needs a float tensor")?;
    let s = x.shape().to_vec();
    let op = cx.node.op_type.as_str();
    let legacy = cx.opset < 13;
    let ax = axis(cx.int("axis", if legacy { 1 } else { -1 }), s.len())?;
    // Before opset 13 the input is coerced to 2-D at `axis`.
    let mut y = if legacy {
        let rows: usize = s[..ax].iter().product();
        let cols: usize = s[ax..].iter().product();
        x.as_standard_layout()
            .to_owned()
            .into_shape_with_order(IxDyn(&[rows, cols]))
            .map_err(|e| e.to_string())?
    } else {
        x.to_owned()
    };
    let lane_axis = if legacy { 1 } else { ax };
    let f = |mut lane: ndarray::ArrayViewMut1<'_, f32>| {
        let m = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        match op {
            "Hardmax" => {
                let first = lane.iter().position(|&v| v == m);
                lane.iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = (Some(i) == first) as u8 as f32);
            }
            "LogSoftmax" => {
                let ls = lane.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
                lane.iter_mut().for_each(|v| *v = *v - m - ls);
            }
            _ => {
                let mut sum = 0f32;
                lane.iter_mut().for_each(|v| {
                    *v = (*v - m).exp();
                    sum += *v;
                });
                lane.iter_mut().for_each(|v| *v /= sum);
            }
        }
    };
    let lanes = y.lanes_mut(Axis(lane_axis));
    if s.iter().product::<usize>() >= super::PAR_MIN {
        Zip::from(lanes).par_for_each(f);
    } else {
        Zip::from(lanes).for_each(f);
    }
    let y = y
        .into_shape_with_order(IxDyn(&s))
        .map_err(|e| e.to_string())?;
    Ok(vec![xv.like(Data::F32(y))])
}

fn cumsum(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let ax = arg(inputs, 1)?
        .to_i64_vec()
        .first()
        .copied()
        .ok_or("CumSum axis is empty")?;
    let ax = axis(ax, x.shape().len())?;
    let excl = cx.int("exclusive", 0) != 0;
    let rev = cx.int("reverse", 0) != 0;
    fn scan<T: Copy + std::ops::Add<Output = T> + Default>(
        a: &ArrayD<T>,
        ax: usize,
        excl: bool,
        rev: bool,
    ) -> ArrayD<T> {
        let mut y = a.to_owned();
        for mut lane in y.lanes_mut(Axis(ax)) {
            let n = lane.len();
            let mut acc = T::default();
            for k in 0..n {
                let i = if rev { n - 1 - k } else { k };
                let v = lane[i];
                if excl {
                    lane[i] = acc;
                    acc = acc + v;
                } else {
                    acc = acc + v;
                    lane[i] = acc;
                }
            }
        }
        y
    }
    let data = match x.data() {
        Data::F32(a) => Data::F32(scan(a, ax, excl, rev)),
        Data::I64(a) => Data::I64(scan(a, ax, excl, rev)),
        Data::Bool(_) => return Err("CumSum of a bool tensor".into()),
    };
    Ok(vec![x.like(data)])
}

fn topk(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let k = arg(inputs, 1)?
        .to_i64_vec()
        .first()
        .copied()
        .ok_or("TopK k is empty")?;
    let ax = axis(cx.int("axis", -1), x.shape().len())?;
    let n = x.shape()[ax];
    if k < 0 || k as usize > n {
        return Err(format!("k = {k} for an axis of {n}"));
    }
    let k = k as usize;
    let largest = cx.int("largest", 1) != 0;
    let a = x.to_f32_array();
    let mut shape = x.shape().to_vec();
    shape[ax] = k;
    let mut idx = ArrayD::<i64>::zeros(IxDyn(&shape));
    Zip::from(idx.lanes_mut(Axis(ax)))
        .and(a.lanes(Axis(ax)))
        .for_each(|mut out, lane| {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| {
                let (p, q) = (lane[i], lane[j]);
                let o = if largest {
                    q.total_cmp(&p)
                } else {
                    p.total_cmp(&q)
                };
                o.then(i.cmp(&j))
            });
            for (slot, &i) in out.iter_mut().zip(&order) {
                *slot = i as i64;
            }
        });
    let values = gather_along(x, &idx, ax)?;
    Ok(vec![values, Value::i64(idx)])
}

/// `GatherElements`-style selection along an axis.
pub(crate) fn gather_along(x: &Value, idx: &ArrayD<i64>, ax: usize) -> Result<Value, String> {
    fn pick<T: Copy + Default>(
        a: &ArrayD<T>,
        idx: &ArrayD<i64>,
        ax: usize,
    ) -> Result<ArrayD<T>, String> {
        let n = a.shape()[ax] as i64;
        let mut out = ArrayD::<T>::from_elem(idx.raw_dim(), T::default());
        for (pos, &i) in idx.indexed_iter() {
            let i = if i < 0 { i + n } else { i };
            if i < 0 || i >= n {
                return Err(format!("index {i} out of range for an axis of {n}"));
            }
            let mut src = pos.slice().to_vec();
            src[ax] = i as usize;
            let v = a.get(IxDyn(&src)).ok_or("index out of range")?;
            if let Some(o) = out.get_mut(pos) {
                *o = *v;
            }
        }
        Ok(out)
    }
    let data = match x.data() {
        Data::F32(a) => Data::F32(pick(a, idx, ax)?),
        Data::I64(a) => Data::I64(pick(a, idx, ax)?),
        Data::Bool(a) => Data::Bool(pick(a, idx, ax)?),
    };
    Ok(x.like(data))
}
