//! Helpers shared by the integration tests: paths, running pass pipelines, writing ONNX, comparing
//! outputs, and running models in tract, an independent executor.

#![allow(dead_code)]

use spa_backends::onnx::{write_onnx, WriteOptions};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::Model;
use spa_passes::{register_all_passes, PassManager, RunConfig, RunOutput};
use std::path::{Path, PathBuf};

/// The `tests/` crate folder (fixtures, pass cases, invalid inputs).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Read `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> Model {
    read_onnx(&root().join("fixtures").join(name), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The `.spa` cases of one pass (`tests/passes/<pass>/*.spa`), sorted.
pub fn spa_cases(pass: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("passes").join(pass))
        .unwrap_or_else(|e| panic!("tests/passes/{pass}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spa"))
        .collect();
    files.sort();
    files
}

/// Run a textual pass pipeline on a copy of `model`; the result and the run's output (report,
/// statistics).
pub fn run_pipeline_with_output(model: &Model, pipeline: &str) -> (Model, RunOutput) {
    let mut m = model.clone();
    let p = register_all_passes()
        .parse(pipeline)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = RunOutput::default();
    PassManager::new(p, RunConfig::default())
        .run(&mut m, &mut out)
        .unwrap_or_else(|e| panic!("{pipeline}: {e}"));
    (m, out)
}

/// Run a textual pass pipeline on a copy of `model`.
pub fn run_pipeline(model: &Model, pipeline: &str) -> Model {
    run_pipeline_with_output(model, pipeline).0
}

/// Write `model` as `dir/name` (ONNX).
pub fn write(model: &Model, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    write_onnx(model, &path, &WriteOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Largest difference relative to the largest magnitude of either output.
pub fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = a
        .iter()
        .chain(b)
        .fold(0f64, |m, x| m.max(x.abs()))
        .max(1e-30);
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// [`rel_diff`] of f32 outputs.
pub fn rel_diff_f32(a: &[f32], b: &[f32]) -> f32 {
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    rel_diff(&wide(a), &wide(b)) as f32
}

/// A tract output that must be f32, as values.
pub fn as_f32(o: &tract_run::Output) -> Vec<f32> {
    assert_eq!(o.0, "F32", "output dtype");
    o.2.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub mod tract_run {
    use spa_ir::{DType, Dim, Model, Type};
    use std::path::Path;
    use tract_onnx::prelude::*;

    /// Deterministic inputs for a model's graph inputs (symbolic dims set to 1).
    pub fn inputs(model: &Model) -> Vec<Input> {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let g = &model.graph;
        g.inputs
            .iter()
            .filter(|&&v| g.value(v).init.is_none())
            .map(|&v| {
                let Type::Tensor(t) = &g.value(v).ty else {
                    panic!("non-tensor input")
                };
                let dims: Vec<usize> = t
                    .shape
                    .as_ref()
                    .expect("ranked input")
                    .iter()
                    .map(|a| match a.dim {
                        Dim::Known(n) => n as usize,
                        _ => 1,
                    })
                    .collect();
                let n = dims.iter().product();
                let dtype = t.dtype.expect("typed input");
                (dims, dtype, (0..n).map(|_| next()).collect())
            })
            .collect()
    }

    /// One output: dtype, shape, bytes.
    pub type Output = (String, Vec<usize>, Vec<u8>);
    /// One input: shape, dtype, values.
    pub type Input = (Vec<usize>, DType, Vec<f32>);

    /// Run a model file with tract.
    pub fn run(path: &Path, inputs: &[Input]) -> TractResult<Vec<Output>> {
        let mut model = tract_onnx::onnx().model_for_path(path)?;
        let mut values = TVec::new();
        for (i, (dims, dtype, data)) in inputs.iter().enumerate() {
            let tensor = match dtype {
                DType::F32 => Tensor::from_shape(dims, data)?,
                other => tract_onnx::tract_hir::internal::bail!(
                    "input dtype {other} not handled by the test"
                ),
            };
            model = model.with_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), dims))?;
            values.push(tensor.into_tvalue());
        }
        let plan = model.into_optimized()?.into_runnable()?;
        let outputs = plan.run(values)?;
        Ok(outputs
            .iter()
            .map(|t| {
                (
                    format!("{:?}", t.datum_type()),
                    t.shape().to_vec(),
                    t.as_bytes().to_vec(),
                )
            })
            .collect())
    }
}
