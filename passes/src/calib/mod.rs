//! Calibration data for data-aware criteria (`obspa`, `activation`): one batch of inputs per graph
//! input, read from a `.npz`/`.npy` file, generated (`synthetic`), or absent (`none`).
//!
//! This is the one place where the passes crate reads a file: the path is an option the user gives
//! to the `score` pass, and nothing is ever written.

pub mod npy;
pub mod npz;
mod synthetic;

pub use npy::{ArrayData, NdArray};

use spa_ir::{DType, Dim, Graph, Model, ValueId};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CalibError {
    #[error("calibration data '{what}': {message}")]
    BadArray { what: String, message: String },
    #[error("calibration data: cannot read '{path}': {message}")]
    Read { path: String, message: String },
    #[error("calibration data for graph input '{input}': {message}")]
    BadInput { input: String, message: String },
    #[error("calibration data '{file}': {message}")]
    Mismatch { file: String, message: String },
}

/// Where calibration inputs come from (`data=` option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// No data: identity Hessians, no compensation.
    None,
    /// Random normal inputs: matched to the first BatchNorm's running statistics where one reads
    /// the input, with a scale per sample otherwise (`synthetic.rs`).
    Synthetic,
    /// A `.npz` (arrays named by graph input) or `.npy` (single-input models) file.
    File(String),
}

impl DataSource {
    pub fn parse(s: &str) -> DataSource {
        match s {
            "" | "none" => DataSource::None,
            "synthetic" => DataSource::Synthetic,
            path => DataSource::File(path.to_string()),
        }
    }
}

/// The `data=`, `samples=` and `seed=` options.
#[derive(Clone, Debug)]
pub struct CalibOptions {
    pub source: DataSource,
    /// Samples to use; 0: all of a file, or [`default_synthetic_samples`] synthetic ones.
    pub samples: usize,
    pub seed: u64,
}

/// Fewest synthetic samples by default.
pub const DEFAULT_SYNTHETIC_SAMPLES: usize = 64;
/// Most synthetic samples by default.
pub const MAX_DEFAULT_SYNTHETIC_SAMPLES: usize = 1024;
/// Forward FLOPs the default synthetic batch may cost (`2^37`, about 137 GFLOP).
pub const SYNTHETIC_FLOP_BUDGET: u64 = 1 << 37;

/// Default synthetic sample count: synthetic data is free, and the more samples the closer the
/// Hessians are to their expectation, so as many as [`SYNTHETIC_FLOP_BUDGET`] forward FLOPs
/// allow, between 64 and 1024, rounded down to a power of two (ResNet-50, 8.2 GFLOP: 64;
/// MiniLM at 17 tokens, 0.37 GFLOP: 256; small MNIST models: 1024).
pub fn default_synthetic_samples(model: &Model) -> usize {
    let batch = fixed_batch(&model.graph).unwrap_or(1).max(1) as u64;
    let per_sample = (crate::prune::report::measure(model).flops / batch).max(1);
    let n = (SYNTHETIC_FLOP_BUDGET / per_sample).clamp(
        DEFAULT_SYNTHETIC_SAMPLES as u64,
        MAX_DEFAULT_SYNTHETIC_SAMPLES as u64,
    );
    1usize << (63 - n.leading_zeros())
}
/// Size given to symbolic non-batch axes of synthetic inputs.
pub const SYNTHETIC_SYMBOLIC_DIM: usize = 32;

/// One array per data input of the graph, each with the samples on axis 0.
#[derive(Clone, Debug)]
pub struct CalibBatch {
    pub inputs: Vec<(ValueId, NdArray)>,
    pub samples: usize,
    /// Samples per interpreter run: the model's fixed batch size, or a bounded chunk.
    pub chunk: usize,
    /// Made by `data=synthetic`: runs over it renormalize BatchNorm outputs (see
    /// `score::obspa::collect`).
    pub synthetic: bool,
}

/// Samples per run when the batch axis is symbolic.
const DEFAULT_CHUNK: usize = 16;

/// Graph inputs that need data (inputs with a default initializer do not).
pub fn data_inputs(graph: &Graph) -> Vec<ValueId> {
    graph
        .inputs
        .iter()
        .copied()
        .filter(|&v| graph.value(v).init.is_none())
        .collect()
}

/// Fixed batch size of the model (axis 0 of the first data input), if known.
fn fixed_batch(graph: &Graph) -> Option<usize> {
    let v = *data_inputs(graph).first()?;
    let t = graph.value(v).ty.as_tensor()?;
    match t.shape.as_ref()?.first()?.dim {
        Dim::Known(b) if b > 0 => Some(b as usize),
        _ => None,
    }
}

/// The calibration batch for `opts`, or `None` for `data=none`.
pub fn load(model: &Model, opts: &CalibOptions) -> Result<Option<CalibBatch>, CalibError> {
    let graph = &model.graph;
    let batch = fixed_batch(graph);
    match &opts.source {
        DataSource::None => Ok(None),
        DataSource::Synthetic => {
            let mut n = if opts.samples == 0 {
                default_synthetic_samples(model)
            } else {
                opts.samples
            };
            if let Some(b) = batch {
                n = n.div_ceil(b) * b;
            }
            let inputs = synthetic::generate(model, n, opts.seed)?;
            Ok(Some(CalibBatch {
                inputs,
                samples: n,
                chunk: batch.unwrap_or(DEFAULT_CHUNK.min(n)),
                synthetic: true,
            }))
        }
        DataSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| CalibError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let arrays = if bytes.starts_with(b"PK") {
                npz::parse_npz(&bytes, path)?
            } else {
                let a = npy::parse_npy(&bytes, path)?;
                let inputs = data_inputs(graph);
                let [only] = inputs.as_slice() else {
                    return Err(CalibError::Mismatch {
                        file: path.clone(),
                        message: format!(
                            "a .npy file holds one array but the model has {} data inputs; use a .npz with arrays named {}",
                            inputs.len(),
                            names(graph, &inputs)
                        ),
                    });
                };
                vec![(graph.value(*only).name.clone(), a)]
            };
            check(graph, arrays, path, opts.samples, batch).map(Some)
        }
    }
}

fn names(graph: &Graph, vs: &[ValueId]) -> String {
    let n: Vec<String> = vs
        .iter()
        .map(|&v| format!("'{}'", graph.value(v).name))
        .collect();
    n.join(", ")
}

/// Is `dtype` a float type (the kind of data a file must give for it)?
fn wants_float(dtype: Option<DType>) -> bool {
    dtype.is_none_or(|d| d.is_float())
}

/// Match arrays to graph inputs and check names, dtypes, shapes and values.
fn check(
    graph: &Graph,
    mut arrays: Vec<(String, NdArray)>,
    file: &str,
    samples: usize,
    batch: Option<usize>,
) -> Result<CalibBatch, CalibError> {
    let inputs = data_inputs(graph);
    for (name, _) in &arrays {
        if !inputs.iter().any(|&v| &graph.value(v).name == name) {
            return Err(CalibError::Mismatch {
                file: file.to_string(),
                message: format!(
                    "array '{name}' names no graph input (data inputs: {})",
                    names(graph, &inputs)
                ),
            });
        }
    }
    let mut out = Vec::new();
    let mut count: Option<usize> = None;
    for &v in &inputs {
        let val = graph.value(v);
        let bad = |message: String| CalibError::BadInput {
            input: val.name.clone(),
            message,
        };
        let at = arrays
            .iter()
            .position(|(n, _)| n == &val.name)
            .ok_or_else(|| {
                let have: Vec<String> = arrays.iter().map(|(n, _)| format!("'{n}'")).collect();
                bad(format!(
                    "'{file}' has no array of that name (it has {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ))
            })?;
        let (_, a) = arrays.swap_remove(at);
        let t = val.ty.as_tensor();
        let dtype = t.and_then(|t| t.dtype);
        if wants_float(dtype) != a.is_float() {
            return Err(bad(format!(
                "the input is {} but the array is '{}'",
                dtype.map(|d| d.to_string()).unwrap_or_default(),
                a.descr
            )));
        }
        if let Some(shape) = t.and_then(|t| t.shape.as_ref()) {
            let want: Vec<String> = shape
                .iter()
                .map(|ax| match ax.dim.known() {
                    Some(d) => d.to_string(),
                    None => "?".to_string(),
                })
                .collect();
            let fits = shape.len() == a.shape.len()
                && shape.iter().zip(&a.shape).enumerate().all(|(k, (ax, &d))| {
                    match (k, ax.dim.known()) {
                        (0, Some(b)) => b > 0 && d % b as usize == 0,
                        (_, Some(n)) => n as usize == d,
                        _ => true,
                    }
                });
            if !fits {
                return Err(bad(format!(
                    "expected shape [{}] (samples on axis 0), the array has {:?}",
                    want.join(", "),
                    a.shape
                )));
            }
        }
        let Some(&n) = a.shape.first() else {
            return Err(bad("a scalar array has no sample axis".into()));
        };
        if let ArrayData::Float(x) = &a.data {
            if let Some(i) = x.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("element {i} is {} (NaN or Inf)", x[i])));
            }
        }
        if n == 0 {
            return Err(bad("the array holds no samples".into()));
        }
        if count.is_some_and(|c| c != n) {
            return Err(bad(format!(
                "{n} samples, but other inputs have {}",
                count.unwrap_or(0)
            )));
        }
        count = Some(n);
        out.push((v, a));
    }
    let mut n = count.unwrap_or(0);
    if samples > 0 && samples < n {
        let keep = match batch {
            Some(b) => samples.div_ceil(b) * b,
            None => samples,
        }
        .min(n);
        for (_, a) in &mut out {
            truncate(a, keep);
        }
        n = keep;
    }
    Ok(CalibBatch {
        inputs: out,
        samples: n,
        chunk: batch.unwrap_or(DEFAULT_CHUNK.min(n.max(1))),
        synthetic: false,
    })
}

/// Keep the first `n` samples of an array.
fn truncate(a: &mut NdArray, n: usize) {
    let per: usize = a.shape.iter().skip(1).product();
    match &mut a.data {
        ArrayData::Float(v) => v.truncate(per * n),
        ArrayData::Int(v) => v.truncate(per * n),
    }
    if let Some(d) = a.shape.first_mut() {
        *d = n;
    }
}

impl CalibBatch {
    /// Samples `[start, start + len)` of every input.
    pub fn slice(&self, start: usize, len: usize) -> Vec<(ValueId, NdArray)> {
        self.inputs
            .iter()
            .map(|(v, a)| {
                let per: usize = a.shape.iter().skip(1).product();
                let (lo, hi) = (start * per, (start + len) * per);
                let data = match &a.data {
                    ArrayData::Float(x) => ArrayData::Float(x.get(lo..hi).unwrap_or(&[]).to_vec()),
                    ArrayData::Int(x) => ArrayData::Int(x.get(lo..hi).unwrap_or(&[]).to_vec()),
                };
                let mut shape = a.shape.clone();
                if let Some(d) = shape.first_mut() {
                    *d = len;
                }
                (
                    *v,
                    NdArray {
                        descr: a.descr.clone(),
                        shape,
                        data,
                    },
                )
            })
            .collect()
    }

    /// `(start, len)` of each interpreter run.
    pub fn chunks(&self) -> Vec<(usize, usize)> {
        let c = self.chunk.max(1);
        (0..self.samples)
            .step_by(c)
            .map(|s| (s, c.min(self.samples - s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::npy::{write_npy_f32, write_npy_i64};
    use super::npz::write_npz;
    use super::*;

    fn model(src: &str) -> Model {
        spa_ir::text::parse_model(src).unwrap()
    }

    const TWO_INPUTS: &str = "graph @main(%x: f32[?,3], %ids: i64[?,2]) -> (%y: f32[?,3]) {
  %y = onnx.Relu(%x) : f32[?,3]
  return %y
}";

    fn load_bytes(m: &Model, bytes: &[u8], samples: usize) -> Result<CalibBatch, CalibError> {
        let dir = std::env::temp_dir().join(format!(
            "spa-calib-{}-{}",
            std::process::id(),
            bytes.len() + samples * 1000
        ));
        std::fs::write(&dir, bytes).unwrap();
        let r = load(
            m,
            &CalibOptions {
                source: DataSource::File(dir.display().to_string()),
                samples,
                seed: 0,
            },
        );
        let _ = std::fs::remove_file(&dir);
        r.map(|b| b.unwrap())
    }

    #[test]
    fn npz_inputs_by_name() {
        let m = model(TWO_INPUTS);
        let z = write_npz(&[
            ("ids", write_npy_i64(&[2, 2], &[1, 2, 3, 4])),
            ("x", write_npy_f32(&[2, 3], &[0.; 6])),
        ]);
        let b = load_bytes(&m, &z, 0).unwrap();
        assert_eq!(b.samples, 2);
        assert_eq!(b.inputs.len(), 2);
        assert_eq!(m.graph.value(b.inputs[0].0).name, "x");
        let b = load_bytes(&m, &z, 1).unwrap();
        assert_eq!(b.samples, 1);
        assert_eq!(b.inputs[1].1.data, ArrayData::Int(vec![1, 2]));
    }

    #[test]
    fn bad_data_names_the_input() {
        let m = model(TWO_INPUTS);
        let err = |z: Vec<u8>| load_bytes(&m, &z, 0).unwrap_err().to_string();
        let e = err(write_npz(&[("x", write_npy_f32(&[2, 3], &[0.; 6]))]));
        assert!(
            e.contains("graph input 'ids'") && e.contains("no array"),
            "{e}"
        );
        let e = err(write_npz(&[
            ("x", write_npy_f32(&[2, 3], &[0.; 6])),
            ("ids", write_npy_i64(&[2, 2], &[0; 4])),
            ("extra", write_npy_f32(&[1], &[0.])),
        ]));
        assert!(e.contains("array 'extra' names no graph input"), "{e}");
        let e = err(write_npz(&[
            ("x", write_npy_f32(&[2, 4], &[0.; 8])),
            ("ids", write_npy_i64(&[2, 2], &[0; 4])),
        ]));
        assert!(e.contains("graph input 'x'") && e.contains("shape"), "{e}");
        let e = err(write_npz(&[
            ("x", write_npy_i64(&[2, 3], &[0; 6])),
            ("ids", write_npy_i64(&[2, 2], &[0; 4])),
        ]));
        assert!(e.contains("graph input 'x'") && e.contains("'<i8'"), "{e}");
        let e = err(write_npz(&[
            ("x", write_npy_f32(&[2, 3], &[0., 1., f32::NAN, 0., 0., 0.])),
            ("ids", write_npy_i64(&[2, 2], &[0; 4])),
        ]));
        assert!(e.contains("graph input 'x'") && e.contains("NaN"), "{e}");
        let e = err(write_npz(&[
            ("x", write_npy_f32(&[2, 3], &[0.; 6])),
            ("ids", write_npy_i64(&[3, 2], &[0; 6])),
        ]));
        assert!(
            e.contains("graph input 'ids'") && e.contains("samples"),
            "{e}"
        );
        // A .npy for a two-input model.
        let e = err(write_npy_f32(&[2, 3], &[0.; 6]));
        assert!(e.contains("2 data inputs"), "{e}");
    }

    #[test]
    fn npy_for_single_input_and_fixed_batch() {
        let m = model(
            "graph @main(%x: f32[2,3]) -> (%y: f32[2,3]) {
  %y = onnx.Relu(%x) : f32[2,3]
  return %y
}",
        );
        let b = load_bytes(&m, &write_npy_f32(&[4, 3], &[0.5; 12]), 0).unwrap();
        assert_eq!((b.samples, b.chunk), (4, 2));
        assert_eq!(b.chunks(), vec![(0, 2), (2, 2)]);
        // 3 samples cannot be split into runs of the model's batch of 2.
        let e = load_bytes(&m, &write_npy_f32(&[3, 3], &[0.5; 9]), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("graph input 'x'") && e.contains("[2, 3]"), "{e}");
    }

    #[test]
    fn missing_file() {
        let m = model(TWO_INPUTS);
        let e = load(
            &m,
            &CalibOptions {
                source: DataSource::File("/nonexistent/calib.npz".into()),
                samples: 0,
                seed: 0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("calibration data: cannot read '/nonexistent/calib.npz'"),
            "{e}"
        );
    }

    #[test]
    fn default_synthetic_samples_follow_the_flop_budget() {
        // One 3x3 conv, 64 -> 64 channels, on an s x s map: 2 * 576 * 64 * s^2 FLOPs per sample.
        let conv = |s: usize, batch: &str| {
            model(&format!(
                "graph @main(%x: f32[{batch},64,{s},{s}]) -> (%y: f32[{batch},64,{s},{s}]) {{
  %w = const f32[64,64,3,3] #rand<1>
  %y = onnx.Conv(%x, %w) {{kernel_shape = [3, 3], pads = [1, 1, 1, 1]}} : f32[{batch},64,{s},{s}]
  return %y
}}"
            ))
        };
        // 4.7 MFLOP: the budget allows 29k samples, capped at 1024.
        assert_eq!(default_synthetic_samples(&conv(8, "1")), 1024);
        // 302 MFLOP: 455 samples, rounded down to 256 (a symbolic batch counts as 1).
        assert_eq!(default_synthetic_samples(&conv(64, "N")), 256);
        // The same per sample with a fixed batch of 4.
        assert_eq!(default_synthetic_samples(&conv(64, "4")), 256);
        // 19.3 GFLOP: 7 samples, raised to 64.
        assert_eq!(default_synthetic_samples(&conv(512, "1")), 64);
        let batch = load(
            &conv(8, "N"),
            &CalibOptions {
                source: DataSource::Synthetic,
                samples: 0,
                seed: 0,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(batch.samples, 1024);
        assert!(batch.synthetic);
    }
}
