//! LayerNorm re-fit after an OBS-compensated prune with calibration data.
//!
//! Compensation re-fits each consumer to its own original outputs, one layer at a time; what is
//! left of the error reaches the next LayerNorm, which normalizes every position by its own mean
//! and variance, so small errors in the stream change the scale of what follows. Here, one
//! LayerNorm at a time in the order they run, on the first calibration samples, each output
//! dimension `d` of the norm gets the scale and shift that best map the pruned model's
//! normalized input `z_d` to the unpruned model's output `y_d` (least squares over the
//! calibration positions, padding left out with `score{mask=...}`):
//! `gamma_d = cov(z_d, y_d) / var(z_d)`, `beta_d = mean(y_d) - gamma_d mean(z_d)`. The next
//! norm is fitted on the model with this one re-fitted, all in one run of the pruned model
//! (see [`refit_norms`]). Norms over the last axis with f32 scale
//! and bias constants of their own are re-fitted; where the prune narrowed a norm (a pruned
//! residual stream), dimension `d` is fitted to the unpruned output's dimension it kept; with
//! `mode=mask` the dimensions the prune zeroed stay zero and only the kept ones are fitted.

use super::compensate::replace_f32;
use crate::calib::CalibBatch;
use crate::score::obspa::collect::{chunk_feeds, unmasked};
use spa_ir::interp::{Interpreter, Observer, Value};
use spa_ir::{Graph, Model, NodeId, ValueId};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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

/// Run `interp` over every chunk with `observer`.
fn run(
    interp: &Interpreter,
    chunks: &[Vec<(String, Value)>],
    observer: &mut dyn Observer,
) -> Result<(), String> {
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

/// A norm to re-fit: where its dimensions go in the unpruned output, and its parameters.
struct Fit {
    norm: Norm,
    /// Width of the unpruned norm's output.
    full: usize,
    /// Per dimension, the unpruned dimension it is fitted to (`None`: zeroed, stays zero).
    map: Vec<Option<usize>>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Fit {
    /// Per row of `x` (`width` values), the normalized values, given to `f(row, dim, z)`.
    fn each_z(&self, x: &[f32], mut f: impl FnMut(usize, usize, f64)) {
        let w = self.norm.width;
        for (r, row) in x.chunks_exact(w).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / w as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w as f64;
            let inv = 1.0 / (var + self.norm.eps).sqrt();
            row.iter()
                .enumerate()
                .for_each(|(d, &v)| f(r, d, (v as f64 - mean) * inv));
        }
    }

    /// The least-squares sums of one chunk: its norm input `x` against the unpruned output `y`,
    /// over the rows `keep` counts. `None` if the shapes do not match.
    fn sums(&self, x: &[f32], y: &[f32], keep: Option<&[bool]>) -> Option<Sums> {
        let (w, full) = (self.norm.width, self.full);
        let rows = x.len() / w;
        if x.len() % w != 0 || y.len() != rows * full {
            return None;
        }
        let keep = keep.filter(|k| k.len() == rows);
        let mut s = Sums::new(w);
        let mut last = usize::MAX;
        self.each_z(x, |r, d, z| {
            if keep.is_some_and(|k| !k[r]) {
                return;
            }
            if r != last {
                last = r;
                s.n += 1.0;
            }
            let Some(o) = self.map[d] else { return };
            let t = y[r * full + o] as f64;
            s.z[d] += z;
            s.zz[d] += z * z;
            s.y[d] += t;
            s.zy[d] += z * t;
        });
        Some(s)
    }

    /// The fitted scale and shift from the sums over every chunk; `None` if too few rows.
    fn solve(&self, s: &Sums) -> Option<(Vec<f32>, Vec<f32>)> {
        if s.bad || s.n < 2.0 {
            return None;
        }
        let (mut gamma, mut beta) = (self.gamma.clone(), self.beta.clone());
        for d in (0..self.norm.width).filter(|&d| self.map[d].is_some()) {
            let n = s.n;
            let (mz, my) = (s.z[d] / n, s.y[d] / n);
            let var = s.zz[d] / n - mz * mz;
            let cov = s.zy[d] / n - mz * my;
            if var > 1e-12 && cov.is_finite() {
                let a = cov / var;
                gamma[d] = a as f32;
                beta[d] = (my - a * mz) as f32;
            }
        }
        Some((gamma, beta))
    }
}

/// A norm's fitted scale and shift.
type Params = Arc<(Vec<f32>, Vec<f32>)>;

/// Per dimension: sums of `z`, `z^2`, `y`, `z y`; and the rows counted.
struct Sums {
    z: Vec<f64>,
    zz: Vec<f64>,
    y: Vec<f64>,
    zy: Vec<f64>,
    n: f64,
    /// A chunk's shapes did not match: the norm is left as it is.
    bad: bool,
}

impl Sums {
    fn new(w: usize) -> Sums {
        Sums {
            z: vec![0.0; w],
            zz: vec![0.0; w],
            y: vec![0.0; w],
            zy: vec![0.0; w],
            n: 0.0,
            bad: false,
        }
    }

    fn add(&mut self, o: &Sums) {
        for (a, b) in [
            (&mut self.z, &o.z),
            (&mut self.zz, &o.zz),
            (&mut self.y, &o.y),
            (&mut self.zy, &o.zy),
        ] {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        self.n += o.n;
    }
}

/// A barrier whose number of parties can drop (a chunk whose thread could not start). The
/// last party to arrive is told so (it fits the norm for everyone).
struct Barrier {
    /// Parties, arrived, generation.
    state: Mutex<(usize, usize, u64)>,
    cv: Condvar,
}

impl Barrier {
    fn new(parties: usize) -> Barrier {
        Barrier {
            state: Mutex::new((parties, 0, 0)),
            cv: Condvar::new(),
        }
    }

    /// Wait for every party; true for the one that arrived last.
    fn wait(&self) -> bool {
        let mut s = lock(&self.state);
        let generation = s.2;
        s.1 += 1;
        if s.1 >= s.0 {
            *s = (s.0, 0, generation + 1);
            self.cv.notify_all();
            return true;
        }
        while s.2 == generation {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        false
    }

    /// One party will never arrive.
    fn leave(&self) {
        let mut s = lock(&self.state);
        s.0 = s.0.saturating_sub(1);
        if s.1 > 0 && s.1 >= s.0 {
            *s = (s.0, 0, s.2 + 1);
            self.cv.notify_all();
        }
    }
}

/// Lock `m`; a thread that panicked holding it (caught) left nothing half-written here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the chunks' threads share: the sums of each chunk for the norm they are at, and the
/// fitted parameters of every norm.
struct Shared<'a> {
    fits: &'a [Fit],
    /// Per chunk, its sums for the current norm (`Err`: it has none).
    slots: Mutex<Vec<Option<Result<Sums, ()>>>>,
    fitted: Mutex<Vec<Option<Params>>>,
    barrier: Barrier,
}

impl Shared<'_> {
    /// Give chunk `c`'s sums for norm `k` (`None`: it has none), wait for every chunk, and
    /// return the fitted parameters. The last chunk to arrive adds the sums in chunk order (the
    /// result does not depend on which thread came first) and fits the norm.
    fn sync(&self, k: usize, c: usize, sums: Option<Sums>) -> Option<Params> {
        if let Some(slot) = lock(&self.slots).get_mut(c) {
            *slot = Some(sums.ok_or(()));
        }
        if self.barrier.wait() {
            let mut slots = lock(&self.slots);
            let fit = &self.fits[k];
            let mut total = Sums::new(fit.norm.width);
            for slot in slots.iter_mut().map(Option::take) {
                match slot {
                    Some(Ok(s)) => total.add(&s),
                    Some(Err(())) => total.bad = true,
                    None => {}
                }
            }
            lock(&self.fitted)[k] = fit.solve(&total).map(Arc::new);
        }
        self.barrier.wait();
        lock(&self.fitted)[k].clone()
    }
}

/// Observer of one chunk's run: at each norm, adds its sums, waits for the other chunks, and
/// replaces the norm's output by the re-fitted one, so that the next norm sees this one fitted.
struct Lockstep<'a> {
    shared: &'a Shared<'a>,
    /// Which chunk.
    chunk: usize,
    index: &'a HashMap<NodeId, usize>,
    /// This chunk's unpruned norm outputs, per norm.
    targets: Vec<Vec<f32>>,
    /// This chunk's positions that count.
    keep: Option<Vec<bool>>,
    /// Norms this chunk has been through.
    passed: usize,
}

impl Lockstep<'_> {
    /// Go through the norms before `k` with no sums (the run failed or skipped them).
    fn skip_to(&mut self, k: usize) {
        while self.passed < k {
            self.shared.sync(self.passed, self.chunk, None);
            self.passed += 1;
        }
    }
}

impl Observer for Lockstep<'_> {
    fn observe(&mut self, _: &Graph, _: NodeId, _: &[Option<&Value>], _: &[Value]) {}

    fn adjust(&mut self, _: &Graph, n: NodeId, ins: &[Option<&Value>], outs: &mut [Value]) {
        let Some(&k) = self.index.get(&n).filter(|&&k| k >= self.passed) else {
            return;
        };
        self.skip_to(k);
        let fit = &self.shared.fits[k];
        let x = ins
            .first()
            .copied()
            .flatten()
            .and_then(|v| v.as_f32())
            .map(|x| x.as_standard_layout());
        let xs = x.as_ref().and_then(|x| x.as_slice());
        let sums = xs.and_then(|xs| fit.sums(xs, &self.targets[k], self.keep.as_deref()));
        let fitted = self.shared.sync(k, self.chunk, sums);
        self.passed = k + 1;
        let (Some(p), Some(xs), Some(out)) = (fitted, xs, outs.first_mut()) else {
            return;
        };
        if xs.len() != out.len() {
            return;
        }
        let shape = out.shape().to_vec();
        let mut y = vec![0.0f32; xs.len()];
        let w = fit.norm.width;
        fit.each_z(xs, |r, d, z| {
            y[r * w + d] = (p.0[d] as f64 * z + p.1[d] as f64) as f32
        });
        if let Ok(v) = Value::from_shape_f32(&shape, y) {
            *out = v;
        }
    }
}

/// Re-fit the LayerNorms of `pruned` to the outputs of `original` on the calibration data.
/// `kept(v)` gives the positions of the unpruned constant `v` (a norm's scale) that the prune
/// kept. Returns how many were re-fitted.
///
/// The unpruned model runs once; the pruned model runs once too, each chunk of samples on a
/// thread of its own, in lockstep: at each norm every chunk adds its sums, the last to arrive
/// fits the norm, and every chunk goes on with the re-fitted output. That is the same as
/// re-running the pruned model once per norm, at the cost of one run.
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
    let order: HashMap<NodeId, usize> = pruned
        .graph
        .topo_order()
        .map_err(|e| e.to_string())?
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let pg = &pruned.graph;
    // Each norm with, per dimension, the dimension of the unpruned output it is fitted to:
    // none for a dimension `prune{mode=mask}` zeroed (it stays zero). In the order they run.
    let mut fits: Vec<Fit> = norms(pg)
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
            let gamma = pg.constant(nm.scale)?.to_f32().ok()?;
            let beta = pg.constant(nm.bias)?.to_f32().ok()?;
            (map.len() == nm.width
                && nm.width > 0
                && gamma.len() == nm.width
                && beta.len() == nm.width)
                .then_some(Fit {
                    norm: nm,
                    full,
                    map,
                    gamma,
                    beta,
                })
        })
        .collect();
    fits.sort_by_key(|f| order.get(&f.norm.node).copied());
    if fits.is_empty() {
        return Ok(0);
    }
    let chunks = feeds(&original.graph, &refit.batch)?;
    // The unpruned model's norm outputs, per chunk.
    let names: HashMap<String, usize> = fits
        .iter()
        .enumerate()
        .map(|(k, f)| (f.norm.output.clone(), k))
        .collect();
    let reference = Interpreter::new(original).map_err(|e| e.to_string())?;
    let mut targets = Vec::with_capacity(chunks.len());
    for c in &chunks {
        let mut cap = Capture {
            names: &names,
            got: vec![Vec::new(); fits.len()],
        };
        run(&reference, std::slice::from_ref(c), &mut cap)?;
        targets.push(cap.got);
    }
    let index: HashMap<NodeId, usize> = fits
        .iter()
        .enumerate()
        .map(|(k, f)| (f.norm.node, k))
        .collect();
    let shared = Shared {
        fits: &fits,
        slots: Mutex::new((0..chunks.len()).map(|_| None).collect()),
        fitted: Mutex::new(vec![None; fits.len()]),
        barrier: Barrier::new(chunks.len()),
    };
    let interp = Interpreter::new(pruned).map_err(|e| e.to_string())?;
    let errors: Vec<String> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut errors = Vec::new();
        for (chunk, (c, feeds)) in chunks.iter().zip(targets).enumerate() {
            let (shared, index, interp) = (&shared, &index, &interp);
            let keep = refit.mask.as_ref().and_then(|m| {
                let (_, v) = c.iter().find(|(n, _)| n == m)?;
                Some(unmasked(v))
            });
            let job = move || {
                let mut obs = Lockstep {
                    shared,
                    chunk,
                    index,
                    targets: feeds,
                    keep,
                    passed: 0,
                };
                let refs: Vec<(&str, &Value)> = c.iter().map(|(n, v)| (n.as_str(), v)).collect();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    interp.run(&refs, &mut obs)
                }));
                obs.skip_to(shared.fits.len());
                match r {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(format!("calibration run failed: {e}")),
                    Err(_) => Some("calibration run failed".to_string()),
                }
            };
            match std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn_scoped(s, job)
            {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shared.barrier.leave();
                    errors.push(format!("could not start a thread: {e}"));
                }
            }
        }
        for h in handles {
            match h.join() {
                Ok(None) => {}
                Ok(Some(e)) => errors.push(e),
                Err(_) => errors.push("calibration run failed".to_string()),
            }
        }
        errors
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let fitted = shared
        .fitted
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let mut done = 0;
    for (f, p) in fits.iter().zip(fitted) {
        if let Some(p) = p {
            replace_f32(&mut pruned.graph, f.norm.scale, &p.0);
            replace_f32(&mut pruned.graph, f.norm.bias, &p.1);
            done += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::{ArrayData, NdArray};

    fn dense(w: &[f32]) -> String {
        let v: Vec<String> = w.iter().map(|v| format!("{v:?}")).collect();
        v.join(", ")
    }

    /// The test models: `x @ W1 -> LayerNorm` (scale `%s1`, shift `%b1`), 3 positions of width 4
    /// per sample. With `second = (W2, lines, input)`: then `%k = %n1 @ W2`, the `lines` (which
    /// may compute the second norm's `input` from `%k`), and a second LayerNorm (`%s2`, `%b2`).
    /// The last norm's output is `%y`.
    fn net(w1: &[f32], second: Option<(&[f32], &str, &str)>) -> Model {
        let first = if second.is_some() { "n1" } else { "y" };
        let mut text = format!(
            "graph @main(%x: f32[2,3,4], %m: i64[2,3]) -> (%y: f32[2,3,4]) {{
  %w1 = const f32[4,4] dense<[{}]>
  %h = onnx.MatMul(%x, %w1) : f32[2,3,4]
  %s1 = const f32[4] dense<[1.0, 0.5, 2.0, 1.5]>
  %b1 = const f32[4] dense<[0.1, -0.2, 0.3, 0.0]>
  %{first} = onnx.LayerNormalization(%h, %s1, %b1) {{axis = -1}} : f32[2,3,4]
",
            dense(w1)
        );
        if let Some((w2, lines, input)) = second {
            text += &format!(
                "  %w2 = const f32[4,4] dense<[{}]>
  %k = onnx.MatMul(%n1, %w2) : f32[2,3,4]
{lines}  %s2 = const f32[4] dense<[0.7, 1.2, 0.9, 1.1]>
  %b2 = const f32[4] dense<[0.0, 0.2, -0.1, 0.4]>
  %y = onnx.LayerNormalization(%{input}, %s2, %b2) {{axis = -1}} : f32[2,3,4]
",
                dense(w2)
            );
        }
        text += "  %c = onnx.Cast(%m) {to = 1} : f32[2,3]\n}";
        spa_ir::text::parse_model(&text).unwrap()
    }

    /// `x @ W -> LayerNorm -> y`.
    fn model(w: &[f32]) -> Model {
        net(w, None)
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
        run(&Interpreter::new(m).unwrap(), &chunks, &mut cap).unwrap();
        cap.got.remove(0)
    }

    fn params(m: &Model) -> (Vec<f32>, Vec<f32>) {
        let names = m.graph.names();
        let get = |n: &str| m.graph.constant(names[n]).unwrap().to_f32().unwrap();
        (get("s1"), get("b1"))
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

    /// `x @ W1 -> LayerNorm -> @ W2 -> LayerNorm`.
    fn two_norms(w1: &[f32], w2: &[f32]) -> Model {
        net(w1, Some((w2, "", "k")))
    }

    /// Observer: the first input of one node.
    struct InputOf(NodeId, Vec<f32>);

    impl Observer for InputOf {
        fn observe(&mut self, _: &Graph, n: NodeId, ins: &[Option<&Value>], _: &[Value]) {
            if n == self.0 {
                self.1
                    .extend(ins[0].unwrap().as_f32().unwrap().iter().copied());
            }
        }
    }

    #[test]
    fn one_lockstep_run_fits_as_one_run_per_norm_would() {
        let w1: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.917).sin()).collect();
        let w2: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.511 + 0.3).cos()).collect();
        let x: Vec<f32> = (0..48).map(|i| ((i as f32) * 1.37).cos() * 2.0).collect();
        let mask: Vec<i64> = (0..12).map(|i| i64::from(i % 3 != 1)).collect();
        let original = two_norms(&w1, &w2);
        let (mut c1, mut c2) = (w1.clone(), w2.clone());
        c1[4..8].iter_mut().for_each(|v| *v = 0.0);
        c2[12..16].iter_mut().for_each(|v| *v *= 0.5);
        let b = batch(&original, x, mask.clone());
        assert_eq!(b.chunks().len(), 2, "two chunks: two threads in lockstep");
        let refit = NormRefit {
            batch: Arc::new(b.clone()),
            mask: Some("m".into()),
        };
        let mut got = two_norms(&c1, &c2);
        assert_eq!(refit_norms(&original, &mut got, &refit, &|_| None), Ok(2));

        // The reference: one norm at a time, the whole pruned model re-run for each.
        let mut want = two_norms(&c1, &c2);
        let chunks = feeds(&original.graph, &b).unwrap();
        let names: HashMap<String, ValueId> = want
            .graph
            .names()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let keep: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        for (out, scale, bias) in [("n1", "s1", "b1"), ("y", "s2", "b2")] {
            let (node, target) = {
                let g = &original.graph;
                let node = g
                    .node_ids()
                    .find(|&n| g.node(n).output(0) == Some(names[out]));
                let names: HashMap<String, usize> = [(out.to_string(), 0)].into_iter().collect();
                let mut cap = Capture {
                    names: &names,
                    got: vec![Vec::new()],
                };
                run(&Interpreter::new(&original).unwrap(), &chunks, &mut cap).unwrap();
                (node.unwrap(), cap.got.remove(0))
            };
            let mut inp = InputOf(node, Vec::new());
            run(&Interpreter::new(&want).unwrap(), &chunks, &mut inp).unwrap();
            let (mut gamma, mut beta) = (vec![0.0f32; 4], vec![0.0f32; 4]);
            for d in 0..4 {
                let mut pts = Vec::new();
                for r in (0..12).filter(|&r| keep[r]) {
                    let row = &inp.1[r * 4..r * 4 + 4];
                    let mean = row.iter().sum::<f32>() as f64 / 4.0;
                    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 4.0;
                    let z = (row[d] as f64 - mean) / (var + 1e-5).sqrt();
                    pts.push((z, target[r * 4 + d] as f64));
                }
                let n = pts.len() as f64;
                let mz = pts.iter().map(|p| p.0).sum::<f64>() / n;
                let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
                let cov = pts.iter().map(|p| (p.0 - mz) * (p.1 - my)).sum::<f64>() / n;
                let var = pts.iter().map(|p| (p.0 - mz).powi(2)).sum::<f64>() / n;
                gamma[d] = (cov / var) as f32;
                beta[d] = (my - cov / var * mz) as f32;
            }
            replace_f32(&mut want.graph, names[scale], &gamma);
            replace_f32(&mut want.graph, names[bias], &beta);
        }
        let get = |m: &Model, n: &str| m.graph.constant(names[n]).unwrap().to_f32().unwrap();
        for p in ["s1", "b1", "s2", "b2"] {
            let (a, b) = (get(&got, p), get(&want, p));
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "{p}: {a:?} vs {b:?}");
            }
        }
        // The second norm's fit differs from one made on the unfitted first norm.
        assert_ne!(get(&got, "s1"), get(&original, "s1"));
    }

    /// `f` on a thread with a deadline: a thread left waiting at a barrier fails the test
    /// instead of hanging it.
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("still waiting after a minute")
    }

    #[test]
    fn the_barrier_goes_on_when_a_party_leaves() {
        let leaders = within_a_minute(|| {
            let barrier = Barrier::new(4);
            let leaders = Mutex::new(0);
            std::thread::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| {
                        for _ in 0..5 {
                            if barrier.wait() {
                                *lock(&leaders) += 1;
                            }
                        }
                    });
                }
                // The fourth party never came: the three others must not wait for it.
                barrier.leave();
            });
            leaders.into_inner().unwrap_or_else(|e| e.into_inner())
        });
        assert_eq!(leaders, 5, "one leader per generation");
    }

    #[test]
    fn a_chunk_whose_run_fails_after_a_norm_leaves_no_thread_waiting() {
        let w: Vec<f32> = (0..16).map(|i| ((i as f32) * 0.917).sin()).collect();
        let x: Vec<f32> = (0..48).map(|i| ((i as f32) * 1.37).cos() * 2.0).collect();
        let original = two_norms(&w, &w);
        // Between the two norms, a Gather at the largest value of `m`: in range for the first
        // chunk (samples 0-1), out of range for the second, whose run fails there while the
        // first chunk's thread waits at the second norm.
        let gather = "  %i = onnx.ReduceMax(%m) {keepdims = 0} : i64[]
  %g = onnx.Gather(%n1, %i) {axis = 1} : f32[2,4]
  %ax = const i64[1] dense<[1]>
  %e = onnx.Unsqueeze(%g, %ax) : f32[2,1,4]
  %ke = onnx.Add(%k, %e) : f32[2,3,4]
";
        let mut pruned = net(&w, Some((&w, gather, "ke")));
        let mut m = vec![1i64; 12];
        m[8] = 9;
        let refit = NormRefit {
            batch: Arc::new(batch(&original, x, m)),
            mask: None,
        };
        let e = within_a_minute(move || refit_norms(&original, &mut pruned, &refit, &|_| None))
            .unwrap_err();
        assert!(e.contains("calibration run failed"), "{e}");
    }
}
