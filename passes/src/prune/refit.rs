//! LayerNorm re-fit after an OBS-compensated prune with calibration data.
//!
//! Compensation re-fits each consumer to its own original outputs, one layer at a time; what is
//! left of the error reaches the next LayerNorm, which normalizes every position by its own mean
//! and variance, so small errors in the stream change the scale of what follows. Here, one
//! LayerNorm at a time in graph order, the pruned model is run on the first calibration samples
//! and each output dimension `d` of the norm gets the scale and shift that best map the pruned
//! model's normalized input `z_d` to the unpruned model's output `y_d` (least squares over the
//! calibration positions, padding left out with `score{mask=...}`):
//! `gamma_d = cov(z_d, y_d) / var(z_d)`, `beta_d = mean(y_d) - gamma_d mean(z_d)`. The next
//! norm is fitted on the model with this one re-fitted. Norms over the last axis with f32 scale
//! and bias constants of their own are re-fitted; where the prune narrowed a norm (a pruned
//! residual stream), dimension `d` is fitted to the unpruned output's dimension it kept; with
//! `mode=mask` the dimensions the prune zeroed stay zero and only the kept ones are fitted.

use super::compensate::replace_f32;
use crate::calib::CalibBatch;
use crate::score::obspa::collect::{chunk_feeds, unmasked};
use spa_ir::interp::{Interpreter, Observer, Value};
use spa_ir::{Graph, Model, NodeId, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// Calibration samples the re-fit runs (the first ones of the batch).
pub const REFIT_SAMPLES: usize = 128;

/// What the score pass leaves for the re-fit: its calibration batch (from a file) and mask.
#[derive(Clone, Debug)]
pub struct NormRefit {
    pub batch: Arc<CalibBatch>,
    /// Name of the graph input whose zeros mark padding positions.
    pub mask: Option<String>,
}

/// A LayerNorm of the pruned model that can be re-fitted.
struct Norm {
    node: NodeId,
    /// Its output, by name (the same in the unpruned model).
    output: String,
    scale: ValueId,
    bias: ValueId,
    eps: f64,
    width: usize,
}

fn norms(graph: &Graph) -> Vec<Norm> {
    let users = graph.users();
    let own = |v: ValueId| users.get(v.index()).is_some_and(|u| u.len() == 1);
    graph
        .node_ids()
        .filter_map(|n| {
            let node = graph.node(n);
            if node.op_type != "LayerNormalization" || !node.canonical_domain().is_empty() {
                return None;
            }
            let (scale, bias, out) = (node.input(1)?, node.input(2)?, node.output(0)?);
            let rank = graph.value(out).ty.as_tensor()?.shape.as_ref()?.len() as i64;
            let axis = node.attr_int("axis").unwrap_or(-1);
            if axis != -1 && axis != rank - 1 {
                return None;
            }
            let (s, b) = (graph.constant(scale)?, graph.constant(bias)?);
            let width = s.dims.iter().product::<i64>();
            if s.dtype != spa_ir::DType::F32
                || b.dtype != spa_ir::DType::F32
                || s.dims.len() != 1
                || b.dims != s.dims
                || !own(scale)
                || !own(bias)
            {
                return None;
            }
            Some(Norm {
                node: n,
                output: graph.value(out).name.clone(),
                scale,
                bias,
                eps: node.attr_float("epsilon").unwrap_or(1e-5) as f64,
                width: usize::try_from(width).ok()?,
            })
        })
        .collect()
}

/// Chunks of the first [`REFIT_SAMPLES`] samples, as named interpreter values.
fn feeds(graph: &Graph, batch: &CalibBatch) -> Result<Vec<Vec<(String, Value)>>, String> {
    let n = batch.samples.min(REFIT_SAMPLES);
    batch
        .chunks()
        .into_iter()
        .filter(|&(s, _)| s < n)
        .map(|(s, len)| chunk_feeds(graph, batch, s, len.min(n - s)))
        .collect()
}

/// Run `model` over every chunk with `observer`.
fn run(
    model: &Model,
    chunks: &[Vec<(String, Value)>],
    observer: &mut dyn Observer,
) -> Result<(), String> {
    let interp = Interpreter::new(model).map_err(|e| e.to_string())?;
    for feeds in chunks {
        let refs: Vec<(&str, &Value)> = feeds.iter().map(|(n, v)| (n.as_str(), v)).collect();
        interp
            .run(&refs, observer)
            .map_err(|e| format!("calibration run failed: {e}"))?;
    }
    Ok(())
}

/// Observer: the outputs of named values, appended per chunk.
struct Capture<'a> {
    names: &'a HashMap<String, usize>,
    got: Vec<Vec<f32>>,
}

impl Observer for Capture<'_> {
    fn observe(&mut self, g: &Graph, n: NodeId, _: &[Option<&Value>], outs: &[Value]) {
        for (o, val) in g.node(n).outputs.iter().zip(outs) {
            let Some(&k) = o.and_then(|o| self.names.get(&g.value(o).name)) else {
                continue;
            };
            if let Some(a) = val.as_f32() {
                self.got[k].extend(a.iter().copied());
            }
        }
    }
}

/// Observer: the input of one node, appended per chunk.
struct Input {
    node: NodeId,
    got: Vec<f32>,
}

impl Observer for Input {
    fn observe(&mut self, _: &Graph, n: NodeId, ins: &[Option<&Value>], _: &[Value]) {
        if n == self.node {
            if let Some(Some(a)) = ins.first().map(|x| x.and_then(|v| v.as_f32())) {
                self.got.extend(a.iter().copied());
            }
        }
    }
}

/// Re-fit the LayerNorms of `pruned` to the outputs of `original` on the calibration data.
/// `kept(v)` gives the positions of the unpruned constant `v` (a norm's scale) that the prune
/// kept. Returns how many were re-fitted.
pub fn refit_norms(
    original: &Model,
    pruned: &mut Model,
    refit: &NormRefit,
    kept: &dyn Fn(ValueId) -> Option<Vec<u64>>,
) -> Result<usize, String> {
    let g = &original.graph;
    let width_of: HashMap<&str, usize> = g
        .value_ids()
        .filter_map(|v| {
            let val = g.value(v);
            let d = val.ty.as_tensor()?.shape.as_ref()?.last()?.dim.known()?;
            Some((val.name.as_str(), usize::try_from(d).ok()?))
        })
        .collect();
    // Each norm with, per dimension, the dimension of the unpruned output it is fitted to:
    // none for a dimension `prune{mode=mask}` zeroed (it stays zero).
    let list: Vec<(Norm, usize, Vec<Option<usize>>)> = norms(&pruned.graph)
        .into_iter()
        .filter_map(|nm| {
            let full = *width_of.get(nm.output.as_str())?;
            let kept: Option<Vec<usize>> = kept(nm.scale).and_then(|k| {
                k.into_iter()
                    .map(|p| usize::try_from(p).ok().filter(|&p| p < full))
                    .collect()
            });
            let map: Vec<Option<usize>> = match kept {
                Some(k) if full == nm.width => {
                    let mut m = vec![None; full];
                    k.into_iter().for_each(|p| m[p] = Some(p));
                    m
                }
                None if full == nm.width => (0..full).map(Some).collect(),
                Some(k) => k.into_iter().map(Some).collect(),
                None => return None,
            };
            (map.len() == nm.width).then_some((nm, full, map))
        })
        .collect();
    if list.is_empty() {
        return Ok(0);
    }
    let chunks = feeds(&original.graph, &refit.batch)?;
    // Which positions count, over all chunks.
    let keep: Option<Vec<bool>> = refit.mask.as_ref().and_then(|m| {
        let mut all = Vec::new();
        for c in &chunks {
            let (_, v) = c.iter().find(|(n, _)| n == m)?;
            all.extend(unmasked(v));
        }
        Some(all)
    });
    // The unpruned model's norm outputs.
    let names: HashMap<String, usize> = list
        .iter()
        .enumerate()
        .map(|(k, (nm, _, _))| (nm.output.clone(), k))
        .collect();
    let mut cap = Capture {
        names: &names,
        got: vec![Vec::new(); list.len()],
    };
    run(original, &chunks, &mut cap)?;
    let mut done = 0;
    for (k, (nm, full, map)) in list.iter().enumerate() {
        let y = &cap.got[k];
        let mut inp = Input {
            node: nm.node,
            got: Vec::new(),
        };
        run(pruned, &chunks, &mut inp)?;
        let (w, full) = (nm.width, *full);
        if w == 0 || y.len() % full != 0 || inp.got.len() != y.len() / full * w {
            continue;
        }
        let rows = y.len() / full;
        let keep = keep.as_ref().filter(|k| k.len() == rows);
        let counts = |r: usize| keep.is_none_or(|k| k[r]);
        // Per dimension: sums of z, z^2, y, z y over the positions that count.
        let (mut sz, mut szz, mut sy, mut szy) =
            (vec![0.0; w], vec![0.0; w], vec![0.0; w], vec![0.0; w]);
        let mut n = 0.0f64;
        for r in (0..rows).filter(|&r| counts(r)) {
            let x = &inp.got[r * w..(r + 1) * w];
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / w as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w as f64;
            let inv = 1.0 / (var + nm.eps).sqrt();
            for (d, &o) in map.iter().enumerate() {
                let Some(o) = o else { continue };
                let z = (x[d] as f64 - mean) * inv;
                let t = y[r * full + o] as f64;
                sz[d] += z;
                szz[d] += z * z;
                sy[d] += t;
                szy[d] += z * t;
            }
            n += 1.0;
        }
        if n < 2.0 {
            continue;
        }
        let g = &pruned.graph;
        let (Some(Ok(mut gamma)), Some(Ok(mut beta))) = (
            g.constant(nm.scale).map(|t| t.to_f32()),
            g.constant(nm.bias).map(|t| t.to_f32()),
        ) else {
            continue;
        };
        if gamma.len() != w || beta.len() != w {
            continue;
        }
        for d in (0..w).filter(|&d| map[d].is_some()) {
            let (mz, my) = (sz[d] / n, sy[d] / n);
            let var = szz[d] / n - mz * mz;
            let cov = szy[d] / n - mz * my;
            if var > 1e-12 && cov.is_finite() {
                let a = cov / var;
                gamma[d] = a as f32;
                beta[d] = (my - a * mz) as f32;
            }
        }
        replace_f32(&mut pruned.graph, nm.scale, &gamma);
        replace_f32(&mut pruned.graph, nm.bias, &beta);
        done += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::{ArrayData, NdArray};

    /// `x @ W -> LayerNorm -> y`, 3 positions of width 4 per sample, with `W` given.
    fn model(w: &[f32]) -> Model {
        let w: Vec<String> = w.iter().map(|v| format!("{v:?}")).collect();
        spa_ir::text::parse_model(&format!(
            "graph @main(%x: f32[2,3,4], %m: i64[2,3]) -> (%y: f32[2,3,4]) {{
  %w = const f32[4,4] dense<[{}]>
  %h = onnx.MatMul(%x, %w) : f32[2,3,4]
  %s = const f32[4] dense<[1.0, 0.5, 2.0, 1.5]>
  %b = const f32[4] dense<[0.1, -0.2, 0.3, 0.0]>
  %y = onnx.LayerNormalization(%h, %s, %b) {{axis = -1}} : f32[2,3,4]
  %c = onnx.Cast(%m) {{to = 1}} : f32[2,3]
}}",
            w.join(", ")
        ))
        .unwrap()
    }

    fn batch(m: &Model, x: Vec<f32>, mask: Vec<i64>) -> CalibBatch {
        let g = &m.graph;
        CalibBatch {
            inputs: vec![
                (
                    g.inputs[0],
                    NdArray {
                        descr: "<f4".into(),
                        shape: vec![4, 3, 4],
                        data: ArrayData::Float(x),
                    },
                ),
                (
                    g.inputs[1],
                    NdArray {
                        descr: "<i8".into(),
                        shape: vec![4, 3],
                        data: ArrayData::Int(mask),
                    },
                ),
            ],
            samples: 4,
            chunk: 2,
            synthetic: false,
        }
    }

    fn outputs(m: &Model, b: &CalibBatch) -> Vec<f32> {
        let chunks = feeds(&m.graph, b).unwrap();
        let names: HashMap<String, usize> = [("y".to_string(), 0)].into_iter().collect();
        let mut cap = Capture {
            names: &names,
            got: vec![Vec::new()],
        };
        run(m, &chunks, &mut cap).unwrap();
        cap.got.remove(0)
    }

    fn params(m: &Model) -> (Vec<f32>, Vec<f32>) {
        let names = m.graph.names();
        let get = |n: &str| m.graph.constant(names[n]).unwrap().to_f32().unwrap();
        (get("s"), get("b"))
    }

    #[test]
    fn layernorm_refit_moves_the_pruned_outputs_toward_the_original() {
        let w: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.917).sin()).collect();
        let x: Vec<f32> = (0..48).map(|i| ((i as f32) * 1.37).cos() * 2.0).collect();
        let original = model(&w);
        let b = batch(&original, x.clone(), vec![1; 12]);
        // Unchanged weights: the least-squares scale and shift are the norm's own.
        let mut same = original.clone();
        let refit = NormRefit {
            batch: Arc::new(b.clone()),
            mask: Some("m".into()),
        };
        let all = |_: ValueId| None;
        assert_eq!(refit_norms(&original, &mut same, &refit, &all), Ok(1));
        let ((s0, b0), (s1, b1)) = (params(&original), params(&same));
        for d in 0..4 {
            assert!((s0[d] - s1[d]).abs() < 1e-4 && (b0[d] - b1[d]).abs() < 1e-4);
        }
        // Input column 2 cut (as a prune leaves it): the re-fit output is closer.
        let mut cut = w.clone();
        cut[8..12].iter_mut().for_each(|v| *v = 0.0);
        let mut pruned = model(&cut);
        let want = outputs(&original, &b);
        let err = |m: &Model| {
            outputs(m, &b)
                .iter()
                .zip(&want)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
        };
        let before = err(&pruned);
        assert_eq!(refit_norms(&original, &mut pruned, &refit, &all), Ok(1));
        let after = err(&pruned);
        assert!(after < 0.9 * before, "{after} vs {before}");
        // Positions the mask drops do not count: changing their inputs changes nothing.
        let mask: Vec<i64> = (0..12).map(|i| i64::from(i % 3 != 2)).collect();
        let fit = |x: Vec<f32>| {
            let mut p = model(&cut);
            let r = NormRefit {
                batch: Arc::new(batch(&original, x, mask.clone())),
                mask: Some("m".into()),
            };
            refit_norms(&original, &mut p, &r, &|_| None).unwrap();
            params(&p)
        };
        let mut noisy = x.clone();
        for (i, v) in noisy.iter_mut().enumerate() {
            if (i / 4) % 3 == 2 {
                *v += 5.0 * ((i as f32) * 0.3).sin();
            }
        }
        let (a, b2) = (fit(x), fit(noisy));
        for d in 0..4 {
            assert!((a.0[d] - b2.0[d]).abs() < 1e-5 && (a.1[d] - b2.1[d]).abs() < 1e-5);
        }
    }
}
