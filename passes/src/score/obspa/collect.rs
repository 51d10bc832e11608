//! One pass of the reference interpreter over the calibration batch, with an observer that
//! accumulates what the data-aware criteria need: `X^T X` of consumer layers' inputs and per-
//! channel sums of |activation| of watched values.

use super::layer::Consumer;
use super::math::HessianSum;
use crate::calib::{ArrayData, CalibBatch, NdArray};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use rayon::prelude::*;
use spa_ir::interp::{Data, Interpreter, Value};
use spa_ir::{DType, Graph, Model, NodeId, ValueId};
use std::collections::HashMap;

/// Rows per block of layer input.
const BLOCK: usize = 512;

/// What the run gathered.
#[derive(Default)]
pub struct Collected {
    /// Per consumer (index into the consumer list), one sum per sub-layer.
    pub hessians: HashMap<usize, Vec<HessianSum>>,
    /// Per watched (value, axis): sum of |x| at each position of the axis, and the number of
    /// elements summed per position.
    pub activations: HashMap<(ValueId, usize), (Vec<f64>, u64)>,
}

/// Turn a calibration array into an interpreter value of the input's declared dtype.
fn to_value(graph: &Graph, v: ValueId, a: &NdArray) -> Result<Value, String> {
    let name = &graph.value(v).name;
    let dtype = graph
        .value(v)
        .ty
        .as_tensor()
        .and_then(|t| t.dtype)
        .unwrap_or(DType::F32);
    let shape = IxDyn(&a.shape);
    let bad = |e: String| format!("graph input '{name}': {e}");
    let data = match &a.data {
        ArrayData::Float(x) => {
            Data::F32(ArrayD::from_shape_vec(shape, x.clone()).map_err(|e| bad(e.to_string()))?)
        }
        ArrayData::Int(x) if dtype == DType::Bool => Data::Bool(
            ArrayD::from_shape_vec(shape, x.iter().map(|&v| v != 0).collect())
                .map_err(|e| bad(e.to_string()))?,
        ),
        ArrayData::Int(x) => {
            Data::I64(ArrayD::from_shape_vec(shape, x.clone()).map_err(|e| bad(e.to_string()))?)
        }
    };
    Value::with_dtype(dtype, data).map_err(bad)
}

/// Run the model over `batch`, accumulating Hessians for `consumers[i]` for each `i` in
/// `hessian_of`, and |activation| sums for `watch`.
pub fn collect(
    model: &Model,
    batch: &CalibBatch,
    consumers: &[Consumer],
    hessian_of: &[usize],
    watch: &[(ValueId, usize)],
) -> Result<Collected, String> {
    let graph = &model.graph;
    let interp = Interpreter::new(model).map_err(|e| e.to_string())?;
    let mut out = Collected::default();
    let by_node: HashMap<NodeId, usize> =
        hessian_of.iter().map(|&i| (consumers[i].node, i)).collect();
    for &i in hessian_of {
        let c = &consumers[i];
        out.hessians
            .insert(i, (0..c.subs).map(|_| HessianSum::new(c.cols())).collect());
    }
    let mut watched: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for &(v, k) in watch {
        watched.entry(v).or_default().push(k);
    }
    let mut failure: Option<String> = None;
    for (start, len) in batch.chunks() {
        let inputs: Vec<(String, Value)> = batch
            .slice(start, len)
            .iter()
            .map(|(v, a)| Ok((graph.value(*v).name.clone(), to_value(graph, *v, a)?)))
            .collect::<Result<_, String>>()?;
        let refs: Vec<(&str, &Value)> = inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let hessians = &mut out.hessians;
        let activations = &mut out.activations;
        let mut observer = |g: &Graph, n: NodeId, ins: &[Option<&Value>], outs: &[Value]| {
            if failure.is_some() {
                return;
            }
            if let Some(&i) = by_node.get(&n) {
                let (Some(Some(x)), Some(y), Some(sums)) =
                    (ins.first(), outs.first(), hessians.get_mut(&i))
                else {
                    return;
                };
                if let Err(e) = accumulate(&consumers[i], x, y.shape(), sums) {
                    failure = Some(format!("node '{}': {e}", g.node(n).label()));
                }
            }
            for (o, val) in g.node(n).outputs.iter().zip(outs) {
                let Some(axes) = o.and_then(|o| watched.get(&o).map(|a| (o, a))) else {
                    continue;
                };
                for &k in axes.1 {
                    if let Some((sums, count)) = abs_sums(val, k) {
                        let e = activations
                            .entry((axes.0, k))
                            .or_insert_with(|| (vec![0.0; sums.len()], 0));
                        if e.0.len() == sums.len() {
                            e.0.iter_mut().zip(&sums).for_each(|(a, s)| *a += s);
                            e.1 += count;
                        }
                    }
                }
            }
        };
        interp
            .run(&refs, &mut observer)
            .map_err(|e| format!("calibration run failed: {e}"))?;
        if let Some(f) = failure.take() {
            return Err(format!("calibration run failed: {f}"));
        }
    }
    Ok(out)
}

/// Add one batch of layer input to the consumer's sums (sub-layers in parallel; blocks of one
/// sub-layer multiplied in parallel).
fn accumulate(
    c: &Consumer,
    x: &Value,
    y_shape: &[usize],
    sums: &mut [HessianSum],
) -> Result<(), String> {
    if sums.len() > 1 {
        return sums.par_iter_mut().enumerate().try_for_each(|(s, sum)| {
            c.input_rows(x, y_shape, s, BLOCK, &mut |rows| sum.add(rows))
        });
    }
    let Some(sum) = sums.first_mut() else {
        return Ok(());
    };
    let threads = rayon::current_num_threads().max(1);
    let mut pending: Vec<Array2<f32>> = Vec::new();
    let flush = |pending: &mut Vec<Array2<f32>>, sum: &mut HessianSum| {
        let parts: Vec<(Array2<f32>, u64)> = pending
            .par_iter()
            .map(|b| (b.t().dot(b), b.nrows() as u64))
            .collect();
        for (g, rows) in &parts {
            sum.add_gram(g, *rows);
        }
        pending.clear();
    };
    c.input_rows(x, y_shape, 0, BLOCK, &mut |rows| {
        pending.push(rows.to_owned());
        if pending.len() >= threads {
            flush(&mut pending, sum);
        }
    })?;
    flush(&mut pending, sum);
    Ok(())
}

/// Per-position sums of |x| along axis `k`, and how many elements each position summed.
fn abs_sums(v: &Value, k: usize) -> Option<(Vec<f64>, u64)> {
    let a = v.as_f32()?;
    if k >= a.ndim() {
        return None;
    }
    let len = a.shape()[k];
    let per = a.len().checked_div(len).unwrap_or(0) as u64;
    let sums = a
        .axis_iter(Axis(k))
        .map(|s| s.iter().map(|&x| x.abs() as f64).sum())
        .collect();
    Some((sums, per))
}
