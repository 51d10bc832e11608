//! One pass of the reference interpreter over the calibration batch, with an observer that
//! accumulates what the data-aware criteria need: `X^T X` of consumer layers' inputs and per-
//! channel sums of |activation| of watched values.
//!
//! Synthetic batches are first run once to measure what each BatchNorm receives: noise pushed
//! through trained layers has nothing like the statistics the BatchNorm was trained on, and every
//! later layer would see activations of the wrong scale. So, during both runs, each BatchNorm
//! normalizes with the per-channel mean and variance of its synthetic input (measured over the
//! whole first run, upstream BatchNorms already renormalized) instead of its running statistics:
//! its output then has, channel by channel, the mean `beta` and the variance `gamma^2` that real
//! data gives it, and so do the inputs of the layers behind it.

use super::layer::{Consumer, LayerKind};
use super::math::HessianSum;
use crate::calib::{ArrayData, CalibBatch, NdArray};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use rayon::prelude::*;
use spa_ir::interp::{Data, Interpreter, Observer, Value};
use spa_ir::{DType, Graph, Model, NodeId, ValueId};
use std::collections::{HashMap, HashSet};

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
    /// Per value in `energy_of`: the sum of x^2 over the batch.
    pub energies: HashMap<ValueId, f64>,
}

/// Turn a calibration array into an interpreter value of the input's declared dtype.
pub(crate) fn to_value(graph: &Graph, v: ValueId, a: &NdArray) -> Result<Value, String> {
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

/// Samples `start..start + len` of `batch` as named interpreter inputs.
pub(crate) fn chunk_feeds(
    graph: &Graph,
    batch: &CalibBatch,
    start: usize,
    len: usize,
) -> Result<Vec<(String, Value)>, String> {
    batch
        .slice(start, len)
        .iter()
        .map(|(v, a)| Ok((graph.value(*v).name.clone(), to_value(graph, *v, a)?)))
        .collect()
}

/// The positions a padding mask keeps (its nonzero elements, row-major).
pub(crate) fn unmasked(mask: &Value) -> Vec<bool> {
    mask.to_f32_array().iter().map(|&x| x != 0.0).collect()
}

/// Run the model over `batch`, accumulating Hessians for `consumers[i]` for each `i` in
/// `hessian_of`, and |activation| sums for `watch`; `extra` sees every node of the collecting
/// run too.
///
/// With `mask` (a graph input of shape `[batch, positions]`, e.g. a transformer's
/// `attention_mask`), the positions where it is zero (padding) are left out: a MatMul consumer's
/// input rows and a value's energy are taken at the unmasked positions only, when the value has
/// one row (its last axis) per mask position. Other values are taken whole.
#[allow(clippy::too_many_arguments)]
pub fn collect(
    model: &Model,
    batch: &CalibBatch,
    consumers: &[Consumer],
    hessian_of: &[usize],
    watch: &[(ValueId, usize)],
    energy_of: &[ValueId],
    mask: Option<ValueId>,
    extra: &mut dyn Observer,
) -> Result<Collected, String> {
    let graph = &model.graph;
    let interp = Interpreter::new(model).map_err(|e| e.to_string())?;
    let mut out = Collected::default();
    let energy_of: HashSet<ValueId> = energy_of.iter().copied().collect();
    let by_node: HashMap<NodeId, usize> =
        hessian_of.iter().map(|&i| (consumers[i].node, i)).collect();
    for &i in hessian_of {
        let c = &consumers[i];
        out.hessians.insert(
            i,
            (0..c.subs)
                .map(|_| HessianSum::adaptive(c.cols()))
                .collect(),
        );
    }
    let mut watched: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for &(v, k) in watch {
        watched.entry(v).or_default().push(k);
    }
    let feeds = |start: usize, len: usize| chunk_feeds(graph, batch, start, len);
    let has_bn = graph
        .node_ids()
        .any(|n| graph.node(n).op_type == "BatchNormalization");
    let mut bn = (batch.synthetic && has_bn).then(BnMatch::default);
    if let Some(bn) = &mut bn {
        for (start, len) in batch.chunks() {
            let inputs = feeds(start, len)?;
            let refs: Vec<(&str, &Value)> = inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
            let mut run = Adjusted {
                bn: Some(&mut *bn),
                inner: |_: &Graph, _: NodeId, _: &[Option<&Value>], _: &[Value]| {},
            };
            interp
                .run(&refs, &mut run)
                .map_err(|e| format!("calibration run failed: {e}"))?;
        }
        bn.frozen = true;
    }
    let mut failure: Option<String> = None;
    // Per consumer, layer-input rows not yet in a Gram block: a chunk of a batch-1 model gives
    // few rows (17 for MiniLM), and a Gram product of so few rows costs as much to add as to
    // form.
    let mut carry: HashMap<usize, Vec<f32>> = HashMap::new();
    let mask_name = mask.map(|v| graph.value(v).name.as_str());
    for (start, len) in batch.chunks() {
        let inputs = feeds(start, len)?;
        let refs: Vec<(&str, &Value)> = inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        // Which positions of this chunk count (row-major over `[batch, positions]`).
        let keep: Option<Vec<bool>> = mask_name.and_then(|m| {
            let (_, v) = inputs.iter().find(|(n, _)| n == m)?;
            Some(unmasked(v))
        });
        let keep = keep.as_deref();
        let hessians = &mut out.hessians;
        let activations = &mut out.activations;
        let energies = &mut out.energies;
        let mut observer = |g: &Graph, n: NodeId, ins: &[Option<&Value>], outs: &[Value]| {
            if failure.is_some() {
                return;
            }
            extra.observe(g, n, ins, outs);
            if let Some(&i) = by_node.get(&n) {
                let (Some(Some(x)), Some(y), Some(sums)) =
                    (ins.first(), outs.first(), hessians.get_mut(&i))
                else {
                    return;
                };
                let rest = carry.entry(i).or_default();
                let c = &consumers[i];
                let kept = match (keep, &c.kind) {
                    (Some(k), LayerKind::MatMul) => unmasked_rows(x, c.cols(), k),
                    _ => None,
                };
                if let Err(e) = accumulate(c, kept.as_ref().unwrap_or(x), y.shape(), sums, rest) {
                    failure = Some(format!("node '{}': {e}", g.node(n).label()));
                }
            }
            for (o, val) in g.node(n).outputs.iter().zip(outs) {
                if let Some(o) = o.filter(|o| energy_of.contains(o)) {
                    if let Some(a) = val.as_f32() {
                        let last = a.shape().last().copied().unwrap_or(1);
                        let kept = keep.and_then(|k| unmasked_rows(val, last, k));
                        let a = kept.as_ref().and_then(|v| v.as_f32()).unwrap_or(a);
                        *energies.entry(o).or_insert(0.0) +=
                            a.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
                    }
                }
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
        let mut run = Adjusted {
            bn: bn.as_mut(),
            inner: &mut observer,
        };
        interp
            .run(&refs, &mut run)
            .map_err(|e| format!("calibration run failed: {e}"))?;
        if let Some(f) = failure.take() {
            return Err(format!("calibration run failed: {f}"));
        }
    }
    for (i, rest) in carry {
        if let Some(sum) = out.hessians.get_mut(&i).and_then(|s| s.first_mut()) {
            let cols = consumers[i].cols().max(1);
            if let Ok(rows) = Array2::from_shape_vec((rest.len() / cols, cols), rest) {
                sum.add(rows.view());
            }
        }
    }
    // The sums added to their lower triangles.
    out.hessians
        .par_iter_mut()
        .flat_map(|(_, s)| s.par_iter_mut())
        .for_each(HessianSum::symmetrize);
    Ok(out)
}

/// The rows of `x` (its elements as `rows x cols`, row-major) at the positions `keep` marks, as
/// a `kept x cols` value; `None` unless `x` is f32 with exactly one row per position.
fn unmasked_rows(x: &Value, cols: usize, keep: &[bool]) -> Option<Value> {
    let a = x.as_f32()?;
    if cols == 0 || a.len() != keep.len() * cols {
        return None;
    }
    let a = a.as_standard_layout();
    let s = a.as_slice()?;
    let mut data = Vec::with_capacity(a.len());
    for (row, _) in s.chunks_exact(cols).zip(keep).filter(|(_, &k)| k) {
        data.extend_from_slice(row);
    }
    let kept = ArrayD::from_shape_vec(IxDyn(&[data.len() / cols, cols]), data).ok()?;
    Some(Value::f32(kept))
}

/// An observer closure, with BatchNorm outputs renormalized when `bn` is set.
struct Adjusted<'b, F> {
    bn: Option<&'b mut BnMatch>,
    inner: F,
}

impl<F: FnMut(&Graph, NodeId, &[Option<&Value>], &[Value])> Observer for Adjusted<'_, F> {
    fn observe(&mut self, g: &Graph, n: NodeId, ins: &[Option<&Value>], outs: &[Value]) {
        (self.inner)(g, n, ins, outs)
    }

    fn adjust(&mut self, g: &Graph, n: NodeId, ins: &[Option<&Value>], outs: &mut [Value]) {
        if let Some(bn) = self.bn.as_mut() {
            bn.adjust(g, n, ins, outs);
        }
    }
}

/// Per BatchNorm node: per-channel sums of `x` and `x^2` of its synthetic input, and the number
/// of elements per channel. Accumulated over the first run, then frozen.
#[derive(Default)]
struct BnMatch {
    stats: HashMap<NodeId, (Vec<f64>, Vec<f64>, u64)>,
    frozen: bool,
}

impl BnMatch {
    /// Replace the BatchNorm output by `gamma (x - m) / sqrt(v + eps) + beta`, with `m` and `v`
    /// the measured statistics (those seen so far during the first run).
    fn adjust(&mut self, g: &Graph, n: NodeId, ins: &[Option<&Value>], outs: &mut [Value]) {
        let node = g.node(n);
        if node.op_type != "BatchNormalization" || !node.canonical_domain().is_empty() {
            return;
        }
        let (Some(Some(x)), Some(Some(gamma)), Some(Some(beta))) =
            (ins.first(), ins.get(1), ins.get(2))
        else {
            return;
        };
        let (Some(x), Some(gamma), Some(beta)) = (x.as_f32(), gamma.as_f32(), beta.as_f32()) else {
            return;
        };
        if x.ndim() < 2 || outs.first().and_then(|o| o.as_f32()).is_none() {
            return;
        }
        let c = x.shape()[1];
        if c == 0 || gamma.len() != c || beta.len() != c {
            return;
        }
        let eps = node.attr_float("epsilon").unwrap_or(1e-5) as f64;
        let entry = self
            .stats
            .entry(n)
            .or_insert_with(|| (vec![0.0; c], vec![0.0; c], 0));
        if entry.0.len() != c {
            return;
        }
        if !self.frozen {
            for (k, lane) in x.axis_iter(Axis(1)).enumerate() {
                for &v in lane {
                    entry.0[k] += v as f64;
                    entry.1[k] += (v as f64) * (v as f64);
                }
            }
            entry.2 += (x.len() / c) as u64;
        }
        if entry.2 == 0 {
            return;
        }
        let count = entry.2 as f64;
        let (gamma, beta): (Vec<f32>, Vec<f32>) =
            (gamma.iter().copied().zip(beta.iter().copied())).unzip();
        let mut y = x.clone();
        for (k, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
            let m = entry.0[k] / count;
            let v = (entry.1[k] / count - m * m).max(0.0);
            let a = gamma[k] as f64 / (v + eps).sqrt();
            let (a, b) = (a as f32, (beta[k] as f64 - a * m) as f32);
            lane.mapv_inplace(|t| t * a + b);
        }
        if let Some(o) = outs.first_mut() {
            *o = Value::f32(y);
        }
    }
}

/// Add one batch of layer input to the consumer's sums (sub-layers in parallel; blocks of one
/// sub-layer multiplied in parallel). With one sub-layer, rows short of a full block wait in
/// `rest` (row-major) for the next batch; the caller adds what is left at the end.
fn accumulate(
    c: &Consumer,
    x: &Value,
    y_shape: &[usize],
    sums: &mut [HessianSum],
    rest: &mut Vec<f32>,
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
        let views: Vec<_> = pending.iter().map(|b| b.view()).collect();
        sum.add_blocks(&views);
        pending.clear();
    };
    let cols = c.cols().max(1);
    c.input_rows(x, y_shape, 0, BLOCK, &mut |rows| {
        if sum.kept_rows().is_some() {
            // Few rows so far: kept as they are (see `HessianSum::adaptive`).
            sum.add(rows);
            return;
        }
        if rest.is_empty() && rows.nrows() == BLOCK {
            pending.push(rows.to_owned());
        } else {
            rest.extend(rows.iter());
            if rest.len() >= BLOCK * cols {
                let full = std::mem::take(rest);
                if let Ok(block) = Array2::from_shape_vec((full.len() / cols, cols), full) {
                    pending.push(block);
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn bn_model() -> Model {
        spa_ir::text::parse_model(
            "graph @main(%x: f32[?,2,3,3]) -> (%y: f32[?,2,3,3]) {
  %g = const f32[2] dense<[2.0, 0.5]>
  %b = const f32[2] dense<[1.0, -3.0]>
  %m = const f32[2] dense<[0.0, 0.0]>
  %v = const f32[2] dense<[1.0, 1.0]>
  %y = onnx.BatchNormalization(%x, %g, %b, %m, %v) {epsilon = 0.0} : f32[?,2,3,3]
}",
        )
        .unwrap()
    }

    /// Channel 0 around 5 with spread 3, channel 1 around -2 with spread 0.1.
    fn input(n: usize, phase: f32) -> Value {
        Value::f32(ArrayD::from_shape_fn(vec![n, 2, 3, 3], |d| {
            let z = ((d[0] * 9 + d[2] * 3 + d[3]) as f32 * 1.7 + phase).sin();
            if d[1] == 0 {
                5.0 + 3.0 * z
            } else {
                -2.0 + 0.1 * z
            }
        }))
    }

    fn moments(v: &Value, c: usize) -> (f64, f64) {
        let a = v.as_f32().unwrap().index_axis(Axis(1), c).to_owned();
        let n = a.len() as f64;
        let m = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
        (m, var)
    }

    #[test]
    fn batchnorm_outputs_get_the_trained_moments() {
        let model = bn_model();
        let g = &model.graph;
        let n = g.node_ids().next().unwrap();
        let consts: Vec<Value> = [[2.0f32, 0.5], [1.0, -3.0]]
            .iter()
            .map(|v| Value::f32(ArrayD::from_shape_vec(vec![2], v.to_vec()).unwrap()))
            .collect();
        let mut bn = BnMatch::default();
        // First run, two chunks: the second is normalized with the statistics of both.
        let (x1, x2) = (input(4, 0.0), input(4, 0.3));
        for x in [&x1, &x2] {
            let mut outs = vec![x.clone()];
            bn.adjust(
                g,
                n,
                &[Some(x), Some(&consts[0]), Some(&consts[1])],
                &mut outs,
            );
        }
        bn.frozen = true;
        // Both chunks together have mean beta and variance gamma^2 per channel.
        let mut all = Vec::new();
        for x in [&x1, &x2] {
            let mut outs = vec![x.clone()];
            bn.adjust(
                g,
                n,
                &[Some(x), Some(&consts[0]), Some(&consts[1])],
                &mut outs,
            );
            all.push(outs.remove(0).as_f32().unwrap().clone());
        }
        let views: Vec<_> = all.iter().map(|a| a.view()).collect();
        let y = Value::f32(ndarray::concatenate(Axis(0), &views).unwrap());
        for (c, (beta, gamma)) in [(1.0, 2.0), (-3.0, 0.5)].into_iter().enumerate() {
            let (m, v) = moments(&y, c);
            assert!((m - beta).abs() < 1e-4, "channel {c}: mean {m}");
            assert!(
                (v - gamma * gamma).abs() < 1e-3,
                "channel {c}: variance {v}"
            );
        }
        // Frozen: a chunk shifted by 1 is normalized with the first run's statistics, so its
        // output moves by gamma / sigma (sigma of the first run's input), not by 0.
        let xs: Vec<_> = [&x1, &x2]
            .iter()
            .map(|x| x.as_f32().unwrap().view())
            .collect();
        let x = Value::f32(ndarray::concatenate(Axis(0), &xs).unwrap());
        let x3 = Value::f32(x1.as_f32().unwrap().mapv(|v| v + 1.0));
        let mut outs = vec![x3.clone()];
        bn.adjust(
            g,
            n,
            &[Some(&x3), Some(&consts[0]), Some(&consts[1])],
            &mut outs,
        );
        let y1 = Value::f32(all[0].clone());
        for (c, gamma) in [2.0, 0.5].into_iter().enumerate() {
            let (_, var) = moments(&x, c);
            let moved = moments(&outs[0], c).0 - moments(&y1, c).0;
            assert!(
                (moved - gamma / var.sqrt()).abs() < 1e-3,
                "channel {c}: moved {moved}"
            );
        }
    }

    /// The graph's first node, a MatMul of a `[.., 2]` input by a `2 x 3` weight, as a consumer.
    fn first_matmul(g: &Graph) -> (NodeId, Consumer) {
        let node = g.node_ids().next().unwrap();
        let consumer = Consumer {
            node,
            weight: g.node(node).input(1).unwrap(),
            in_axis: 0,
            kind: LayerKind::MatMul,
            subs: 1,
            rows: 3,
            inputs: 2,
            kernel: 1,
        };
        (node, consumer)
    }

    #[test]
    fn masked_positions_are_left_out_of_hessians_and_energies() {
        // Batch 2 (chunks of 2 samples), 4 positions; the mask keeps 3 positions of the first
        // sample and 2 of the second. The Hessian and the energy of the output (one row per
        // position) count those 5 rows only.
        let model = spa_ir::text::parse_model(
            "graph @main(%x: f32[2,4,2], %m: i64[2,4]) -> (%y: f32[2,4,3]) {
  %w = const f32[2,3] dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]>
  %y = onnx.MatMul(%x, %w) : f32[2,4,3]
  %c = onnx.Cast(%m) {to = 1} : f32[2,4]
}",
        )
        .unwrap();
        let g = &model.graph;
        let (node, consumer) = first_matmul(g);
        let data: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.731).sin()).collect();
        let mask: Vec<i64> = vec![1, 1, 1, 0, 1, 1, 0, 0];
        let batch = CalibBatch {
            inputs: vec![
                (
                    g.inputs[0],
                    NdArray {
                        descr: "<f4".into(),
                        shape: vec![2, 4, 2],
                        data: ArrayData::Float(data.clone()),
                    },
                ),
                (
                    g.inputs[1],
                    NdArray {
                        descr: "<i8".into(),
                        shape: vec![2, 4],
                        data: ArrayData::Int(mask.clone()),
                    },
                ),
            ],
            samples: 2,
            chunk: 2,
            synthetic: false,
        };
        let y = g.node(node).output(0).unwrap();
        let run = |mask_input| {
            collect(
                &model,
                &batch,
                std::slice::from_ref(&consumer),
                &[0],
                &[],
                &[y],
                mask_input,
                &mut spa_ir::interp::NoObserver,
            )
            .unwrap()
        };
        let w = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        for (mask_input, keep) in [
            (None, vec![true; 8]),
            (Some(g.inputs[1]), mask.iter().map(|&m| m != 0).collect()),
        ] {
            let out = run(mask_input);
            let rows: Vec<[f64; 2]> = data
                .chunks(2)
                .zip(&keep)
                .filter(|(_, &k)| k)
                .map(|(r, _)| [r[0] as f64, r[1] as f64])
                .collect();
            let sum = &out.hessians[&0][0];
            assert_eq!(sum.rows as usize, rows.len());
            for (i, j) in [(0, 0), (0, 1), (1, 1)] {
                let want: f64 = rows.iter().map(|r| r[i] * r[j]).sum();
                assert!((sum.xtx[[i, j]] - want).abs() < 1e-5, "{i},{j}");
            }
            let energy: f64 = rows
                .iter()
                .map(|r| {
                    (0..3)
                        .map(|o| (r[0] * w[0][o] + r[1] * w[1][o]).powi(2))
                        .sum::<f64>()
                })
                .sum();
            assert!(
                (out.energies[&y] - energy).abs() < 1e-3 * energy,
                "{} vs {energy}",
                out.energies[&y]
            );
        }
    }

    #[test]
    fn batch_one_rows_are_gathered_into_blocks_and_all_counted() {
        // Fixed batch 1, 300 rows per sample, 3 samples: the first two samples wait, then go
        // as one 600-row block; the last 300 are added at the end.
        let model = spa_ir::text::parse_model(
            "graph @main(%x: f32[1,300,2]) -> (%y: f32[1,300,3]) {
  %w = const f32[2,3] dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]>
  %y = onnx.MatMul(%x, %w) : f32[1,300,3]
}",
        )
        .unwrap();
        let g = &model.graph;
        let (_, consumer) = first_matmul(g);
        let data: Vec<f32> = (0..1800).map(|i| ((i as f32) * 0.731).sin()).collect();
        let batch = CalibBatch {
            inputs: vec![(
                g.inputs[0],
                NdArray {
                    descr: "<f4".into(),
                    shape: vec![3, 300, 2],
                    data: ArrayData::Float(data.clone()),
                },
            )],
            samples: 3,
            chunk: 1,
            synthetic: false,
        };
        let out = collect(
            &model,
            &batch,
            &[consumer],
            &[0],
            &[],
            &[],
            None,
            &mut spa_ir::interp::NoObserver,
        )
        .unwrap();
        let sum = &out.hessians[&0][0];
        assert_eq!(sum.rows, 900);
        let x = Array2::from_shape_vec((900, 2), data.iter().map(|&v| v as f64).collect()).unwrap();
        let want = x.t().dot(&x);
        for (a, b) in sum.xtx.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
        let colsum: Vec<f64> = (0..2).map(|c| x.column(c).sum()).collect();
        for (a, b) in sum.colsum.iter().zip(&colsum) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }
}
