//! Synthetic calibration inputs (`data=synthetic`).
//!
//! Float inputs are normal noise, per input channel (axis 1) `mu_i + sigma_i * z`. Where the first
//! BatchNorm of the model reads a Conv or Gemm that reads the input, `mu` and `sigma` are chosen so
//! that the statistics this noise produces at that BatchNorm's input match its running mean and
//! variance: with independent inputs, output channel `c` of the layer has mean
//! `sum_i mu_i S_ci + b_c` and variance `sum_i sigma_i^2 Q_ci`, where `S_ci` and `Q_ci` are the sum
//! and the sum of squares of the weights joining input channel `i` to `c` (padding ignored); `mu`
//! and `sigma^2` are the (ridge-regularized) least-squares fits over all `c`, `sigma^2` clamped
//! positive.
//!
//! Without such a BatchNorm nothing tells the scale of the inputs (standardized features have
//! 1, pixels in `[0, 1]` about 0.3, sparse inputs less), so each sample is `s * z` with its own
//! scale `s`, log-uniform over [`NOISE_SCALES`]: the Hessians average over the plausible scales
//! instead of betting on one.
//!
//! Integer inputs used as `Gather` indices (token ids) are uniform over the rows of the gathered
//! table; other integer inputs (attention masks) are ones. Symbolic axes other than the batch get
//! [`super::SYNTHETIC_SYMBOLIC_DIM`].

use super::{data_inputs, ArrayData, CalibError, NdArray, SYNTHETIC_SYMBOLIC_DIM};
use spa_ir::{Graph, Model, ValueId};

/// The range of per-sample noise scales for float inputs without a matching BatchNorm.
pub const NOISE_SCALES: (f64, f64) = (0.1, 1.0);

/// splitmix64, the generator used for every seeded draw in spa-opt.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uniform(state: &mut u64) -> f64 {
    ((splitmix(state) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Standard normal draws (Box-Muller).
fn normals(state: &mut u64, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u, v) = (uniform(state), uniform(state));
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        out.push(r * t.cos());
        out.push(r * t.sin());
    }
    out.truncate(n);
    out
}

pub(super) fn generate(
    model: &Model,
    samples: usize,
    seed: u64,
) -> Result<Vec<(ValueId, NdArray)>, CalibError> {
    let graph = &model.graph;
    let users = graph.users();
    let mut out = Vec::new();
    for (k, v) in data_inputs(graph).into_iter().enumerate() {
        let val = graph.value(v);
        let bad = |message: String| CalibError::BadInput {
            input: val.name.clone(),
            message,
        };
        let t = val
            .ty
            .as_tensor()
            .ok_or_else(|| bad("synthetic data needs a tensor input".into()))?;
        let shape = t
            .shape
            .as_ref()
            .ok_or_else(|| bad("synthetic data needs a known rank".into()))?;
        if shape.is_empty() {
            return Err(bad("a scalar input has no sample axis".into()));
        }
        let dims: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(i, a)| match (i, a.dim.known()) {
                (0, _) => samples,
                (_, Some(d)) => d.max(0) as usize,
                _ => SYNTHETIC_SYMBOLIC_DIM,
            })
            .collect();
        let n: usize = dims.iter().product();
        let mut state = seed ^ (k as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
        let is_float = t.dtype.is_none_or(|d| d.is_float());
        let (data, descr) = if is_float {
            let channels = dims.get(1).copied().unwrap_or(1);
            // Per channel mean and scale, and a scale per sample (none where a BatchNorm fixes
            // the channels' statistics).
            let ((mu, sigma), scales): (_, Vec<f64>) = match bn_match(graph, &users, v, channels) {
                Some(x) => (x, Vec::new()),
                None => {
                    let (lo, hi) = (NOISE_SCALES.0.ln(), NOISE_SCALES.1.ln());
                    let s = (0..samples)
                        .map(|_| (lo + (hi - lo) * uniform(&mut state)).exp())
                        .collect();
                    ((vec![0.0; channels], vec![1.0; channels]), s)
                }
            };
            let inner: usize = dims.iter().skip(2).product();
            let per_sample = (n / samples.max(1)).max(1);
            let z = normals(&mut state, n);
            let x: Vec<f32> = z
                .iter()
                .enumerate()
                .map(|(i, &z)| {
                    let c = if dims.len() > 1 {
                        (i / inner.max(1)) % channels.max(1)
                    } else {
                        0
                    };
                    let s = scales.get(i / per_sample).copied().unwrap_or(1.0);
                    (mu.get(c).copied().unwrap_or(0.0)
                        + s * sigma.get(c).copied().unwrap_or(1.0) * z) as f32
                })
                .collect();
            (ArrayData::Float(x), "<f4")
        } else {
            let rows = gather_rows(graph, &users, v);
            let x: Vec<i64> = match rows {
                Some(r) if r > 0 => (0..n)
                    .map(|_| (splitmix(&mut state) % r as u64) as i64)
                    .collect(),
                _ => vec![1; n],
            };
            (ArrayData::Int(x), "<i8")
        };
        out.push((
            v,
            NdArray {
                descr: descr.into(),
                shape: dims,
                data,
            },
        ));
    }
    Ok(out)
}

/// Rows of the smallest constant table that `v` indexes through `Gather`.
fn gather_rows(graph: &Graph, users: &[Vec<(spa_ir::NodeId, usize)>], v: ValueId) -> Option<i64> {
    users
        .get(v.index())?
        .iter()
        .filter(|&&(n, i)| i == 1 && graph.node(n).op_type == "Gather")
        .filter_map(|&(n, _)| {
            let node = graph.node(n);
            let table = graph.constant(node.input(0)?)?;
            let axis = node.attr_int("axis").unwrap_or(0);
            let r = table.dims.len() as i64;
            let axis = if axis < 0 { axis + r } else { axis };
            table.dims.get(usize::try_from(axis).ok()?).copied()
        })
        .min()
}

/// Per-channel mean and standard deviation for input `x`, fitted to the first BatchNorm after a
/// layer that reads `x` (see the module comment).
fn bn_match(
    graph: &Graph,
    users: &[Vec<(spa_ir::NodeId, usize)>],
    x: ValueId,
    channels: usize,
) -> Option<(Vec<f64>, Vec<f64>)> {
    for &(layer, i) in users.get(x.index())? {
        let node = graph.node(layer);
        if i != 0 || !matches!(node.op_type.as_str(), "Conv" | "Gemm") {
            continue;
        }
        let y = node.output(0)?;
        let Some(&(bn, 0)) = users
            .get(y.index())?
            .iter()
            .find(|&&(n, j)| j == 0 && graph.node(n).op_type == "BatchNormalization")
        else {
            continue;
        };
        let bn = graph.node(bn);
        let mean = graph.constant(bn.input(3)?)?.to_f32().ok()?;
        let var = graph.constant(bn.input(4)?)?.to_f32().ok()?;
        let w = graph.constant(node.input(1)?)?;
        let wv = w.to_f32().ok()?;
        let bias = match node.input(2) {
            Some(b) => graph.constant(b)?.to_f32().ok()?,
            None => vec![0.0; mean.len()],
        };
        // (S, Q) as [out][in] matrices.
        let (out_c, s, q) = match node.op_type.as_str() {
            "Conv" => {
                let d: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
                let (&co, &cpg) = (d.first()?, d.get(1)?);
                let k: usize = d.iter().skip(2).product();
                let groups = node.attr_int("group").unwrap_or(1).max(1) as usize;
                if cpg * groups != channels || co % groups != 0 {
                    continue;
                }
                let opg = co / groups;
                let mut s = vec![0.0; co * channels];
                let mut q = vec![0.0; co * channels];
                for c in 0..co {
                    for j in 0..cpg {
                        let ci = (c / opg) * cpg + j;
                        let base = (c * cpg + j) * k;
                        let ws = wv.get(base..base + k)?;
                        s[c * channels + ci] = ws.iter().map(|&w| w as f64).sum();
                        q[c * channels + ci] = ws.iter().map(|&w| (w as f64).powi(2)).sum();
                    }
                }
                (co, s, q)
            }
            _ => {
                // Gemm: y = x W^T (transB=1) or x W; x must not be transposed.
                if node.attr_int("transA").unwrap_or(0) != 0 || w.dims.len() != 2 {
                    continue;
                }
                let tb = node.attr_int("transB").unwrap_or(0) != 0;
                let (co, ci) = if tb {
                    (w.dims[0] as usize, w.dims[1] as usize)
                } else {
                    (w.dims[1] as usize, w.dims[0] as usize)
                };
                if ci != channels {
                    continue;
                }
                let mut s = vec![0.0; co * ci];
                let mut q = vec![0.0; co * ci];
                for c in 0..co {
                    for i in 0..ci {
                        let wi = *wv.get(if tb { c * ci + i } else { i * co + c })? as f64;
                        s[c * ci + i] = wi;
                        q[c * ci + i] = wi * wi;
                    }
                }
                (co, s, q)
            }
        };
        if mean.len() != out_c || var.len() != out_c || bias.len() != out_c {
            continue;
        }
        let target_mean: Vec<f64> = (0..out_c)
            .map(|c| mean[c] as f64 - bias[c] as f64)
            .collect();
        let target_var: Vec<f64> = var.iter().map(|&v| v as f64).collect();
        let mu = least_squares(&s, out_c, channels, &target_mean)?;
        let s2 = least_squares(&q, out_c, channels, &target_var)?;
        let floor = 1e-6 * s2.iter().cloned().fold(0.0, f64::max).max(1e-12);
        let sigma = s2.iter().map(|&v| v.max(floor).sqrt()).collect();
        if mu.iter().chain(&sigma).all(|x: &f64| x.is_finite()) {
            return Some((mu, sigma));
        }
    }
    None
}

/// argmin_x ||A x - b||^2 + ridge, for a small `cols`: normal equations solved by Gaussian
/// elimination with partial pivoting. `a` is `rows x cols`, row-major.
fn least_squares(a: &[f64], rows: usize, cols: usize, b: &[f64]) -> Option<Vec<f64>> {
    let mut m = vec![0.0; cols * (cols + 1)];
    for r in 0..rows {
        let ar = a.get(r * cols..(r + 1) * cols)?;
        for i in 0..cols {
            for j in 0..cols {
                m[i * (cols + 1) + j] += ar[i] * ar[j];
            }
            m[i * (cols + 1) + cols] += ar[i] * b.get(r)?;
        }
    }
    let trace: f64 = (0..cols).map(|i| m[i * (cols + 1) + i]).sum();
    let ridge = 1e-9 * trace.max(1e-30) / cols.max(1) as f64;
    for i in 0..cols {
        m[i * (cols + 1) + i] += ridge;
    }
    let w = cols + 1;
    for p in 0..cols {
        let piv = (p..cols).max_by(|&x, &y| m[x * w + p].abs().total_cmp(&m[y * w + p].abs()))?;
        if m[piv * w + p] == 0.0 {
            return None;
        }
        for j in 0..w {
            m.swap(p * w + j, piv * w + j);
        }
        for r in p + 1..cols {
            let f = m[r * w + p] / m[p * w + p];
            for j in p..w {
                m[r * w + j] -= f * m[p * w + j];
            }
        }
    }
    let mut x = vec![0.0; cols];
    for p in (0..cols).rev() {
        let s: f64 = (p + 1..cols).map(|j| m[p * w + j] * x[j]).sum();
        x[p] = (m[p * w + cols] - s) / m[p * w + p];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_exact() {
        // x = (1, -2) fits exactly.
        let a = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let x = least_squares(&a, 3, 2, &[1.0, -2.0, -1.0]).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] + 2.0).abs() < 1e-6,
            "{x:?}"
        );
    }

    #[test]
    fn noise_matches_the_first_batchnorm() {
        // A 1x1 conv with identity weights: the BN's input statistics are the input's.
        let m = spa_ir::text::parse_model(
            "graph @main(%x: f32[?,2,4,4]) -> (%y: f32[?,2,4,4]) {
  %w = const f32[2,2,1,1] dense<[1.0, 0.0, 0.0, 1.0]>
  %c = onnx.Conv(%x, %w) {kernel_shape = [1, 1]} : f32[?,2,4,4]
  %g = const f32[2] #splat<1.0>
  %b = const f32[2] #splat<0.0>
  %mean = const f32[2] dense<[3.0, -1.0]>
  %var = const f32[2] dense<[4.0, 0.25]>
  %y = onnx.BatchNormalization(%c, %g, %b, %mean, %var) : f32[?,2,4,4]
  return %y
}",
        )
        .unwrap();
        let inputs = generate(&m, 256, 7).unwrap();
        let (_, a) = &inputs[0];
        assert_eq!(a.shape, vec![256, 2, 4, 4]);
        let ArrayData::Float(x) = &a.data else {
            panic!("float input expected")
        };
        for (c, (mu, sd)) in [(3.0, 2.0), (-1.0, 0.5)].into_iter().enumerate() {
            let v: Vec<f64> = x
                .chunks(16)
                .skip(c)
                .step_by(2)
                .flatten()
                .map(|&v| v as f64)
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            assert!(
                (m - mu).abs() < 0.05 * sd && (s / sd - 1.0).abs() < 0.05,
                "{c}: {m} {s}"
            );
        }
        // Same seed, same data.
        assert_eq!(generate(&m, 256, 7).unwrap()[0].1, inputs[0].1);
    }

    #[test]
    fn without_batchnorm_each_sample_has_its_own_scale() {
        let m = spa_ir::text::parse_model(
            "graph @main(%x: f32[?,64]) -> (%y: f32[?,64]) {
  %y = onnx.Relu(%x) : f32[?,64]
  return %y
}",
        )
        .unwrap();
        let inputs = generate(&m, 512, 3).unwrap();
        let ArrayData::Float(x) = &inputs[0].1.data else {
            panic!("float input expected")
        };
        // Per-sample RMS: inside the scale range (up to sampling error over 64 values), spread
        // over it log-uniformly.
        let rms: Vec<f64> = x
            .chunks(64)
            .map(|s| (s.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 64.0).sqrt())
            .collect();
        let (lo, hi) = NOISE_SCALES;
        assert!(rms.iter().all(|&r| r > 0.6 * lo && r < 1.4 * hi), "{rms:?}");
        let below = |t: f64| rms.iter().filter(|&&r| r < t).count() as f64 / rms.len() as f64;
        let mid = (lo * hi).sqrt();
        assert!((below(mid) - 0.5).abs() < 0.1, "{}", below(mid));
        assert!(below(2.0 * lo) > 0.15 && below(0.5 * hi) < 0.85);
        // Zero mean overall.
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
    }

    #[test]
    fn token_ids_index_the_table() {
        let m = spa_ir::text::parse_model(
            "graph @main(%ids: i64[?,5]) -> (%y: f32[?,5,4]) {
  %e = const f32[10,4] #rand<1>
  %y = onnx.Gather(%e, %ids) : f32[?,5,4]
  return %y
}",
        )
        .unwrap();
        let inputs = generate(&m, 8, 1).unwrap();
        let ArrayData::Int(ids) = &inputs[0].1.data else {
            panic!("int input expected")
        };
        assert_eq!(ids.len(), 40);
        assert!(ids.iter().all(|&i| (0..10).contains(&i)));
        assert!(ids.iter().any(|&i| i != ids[0]));
    }
}
