//! Helpers shared by the integration tests: running models in tract, an independent executor.

#![allow(dead_code)]

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
