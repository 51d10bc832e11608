//! The reference interpreter against tract, an independent executor: every ONNX fixture, every
//! generated per-op model in `fixtures/interp/`, and every `.spa` model of the pass tests must
//! give the same outputs (relative tolerance 1e-4, scaled by the largest magnitude).

mod common;

use common::{rel_diff_f32 as rel_diff, root, spa_cases, tract_run};
use spa_backends::onnx::{write_onnx, WriteOptions};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::interp::ndarray::{ArrayD, IxDyn};
use spa_ir::interp::{Interpreter, NoObserver, Value};
use spa_ir::{DType, Model};
use std::path::{Path, PathBuf};

/// tract's output bytes as f32 (f32, f16, i64 and bool outputs).
fn tract_values(o: &tract_run::Output) -> Vec<f32> {
    match o.0.as_str() {
        "F32" => {
            o.2.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        "F16" => {
            o.2.chunks_exact(2)
                .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect()
        }
        "I64" => {
            o.2.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect()
        }
        "Bool" => o.2.iter().map(|&b| b as f32).collect(),
        other => panic!("output dtype {other} not handled by the test"),
    }
}

fn half_to_f32(h: u16) -> f32 {
    let t = spa_ir::Tensor::from_raw(
        DType::F16,
        vec![1],
        bytes::Bytes::copy_from_slice(&h.to_le_bytes()),
    );
    t.to_f32().unwrap()[0]
}

/// Run a model through tract and the interpreter on the same inputs; returns the worst
/// relative difference over its outputs.
fn compare(name: &str, model: &Model, path: &Path) -> f32 {
    let inputs = tract_run::inputs(model);
    let reference = tract_run::run(path, &inputs).unwrap_or_else(|e| panic!("{name} tract: {e:#}"));
    let interp = Interpreter::new(model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let names = interp.input_names();
    let values: Vec<Value> = inputs
        .iter()
        .map(|(dims, _, data)| {
            Value::f32(ArrayD::from_shape_vec(IxDyn(dims), data.clone()).unwrap())
        })
        .collect();
    let bound: Vec<(&str, &Value)> = names.iter().copied().zip(values.iter()).collect();
    let got = interp
        .run(&bound, &mut NoObserver)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got.len(), reference.len(), "{name}: output count");
    let mut worst = 0f32;
    for ((out, v), r) in got.iter().zip(&reference) {
        assert_eq!(v.shape(), &r.1[..], "{name}: shape of {out}");
        let mine: Vec<f32> = v.to_f32_array().iter().copied().collect();
        let d = rel_diff(&mine, &tract_values(r));
        assert!(d <= 1e-4, "{name}: output {out} differs by {d}");
        worst = worst.max(d);
    }
    worst
}

fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    files
}

/// Fixtures tract cannot run (f16/bf16/u64 casts); `scripts/interp_zoo.py` checks them against
/// onnxruntime instead.
const TRACT_UNSUPPORTED: &[&str] = &["dtypes.onnx"];

#[test]
fn fixtures_match_tract() {
    let mut files = onnx_files(&root().join("fixtures"));
    files.push(root().join("fixtures/external_data/model.onnx"));
    let mut checked = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if TRACT_UNSUPPORTED.contains(&name.as_str()) {
            continue;
        }
        let model = read_onnx(&path, &ReadOptions::default()).unwrap();
        compare(&name, &model, &path);
        checked += 1;
    }
    assert!(checked >= 12, "{checked} fixtures checked");
}

#[test]
fn per_op_models_match_tract() {
    let files = onnx_files(&root().join("fixtures/interp"));
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let model = read_onnx(path, &ReadOptions::default()).unwrap();
        compare(&name, &model, path);
    }
    assert!(files.len() >= 20, "{} per-op models", files.len());
}

#[test]
fn spa_pass_models_match_tract() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for sub in ["prune", "group"] {
        for path in spa_cases(sub) {
            let src = std::fs::read_to_string(&path).unwrap();
            let Ok(model) = spa_ir::text::parse_model(&src) else {
                continue; // negative cases
            };
            let name = format!("{sub}/{}", path.file_stem().unwrap().to_string_lossy());
            let out = dir.path().join(format!("{}.onnx", name.replace('/', "_")));
            write_onnx(&model, &out, &WriteOptions::default()).unwrap();
            if tract_run::run(&out, &tract_run::inputs(&model)).is_err() {
                continue; // models tract cannot run are covered by onnxruntime in the zoo script
            }
            compare(&name, &model, &out);
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked} .spa models checked");
}

#[test]
fn errors_name_the_input_or_node() {
    let path = root().join("fixtures/mlp.onnx");
    let model = read_onnx(&path, &ReadOptions::default()).unwrap();
    let interp = Interpreter::new(&model).unwrap();
    let x = Value::f32(ArrayD::zeros(IxDyn(&[1, 63])));
    let err = interp.run(&[("input", &x)], &mut NoObserver).unwrap_err();
    assert_eq!(
        err.to_string(),
        "graph input 'input': expected shape [1,64], got f32[1, 63]"
    );
    let err = interp.run(&[("nope", &x)], &mut NoObserver).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no graph input named 'nope' (inputs: input)"
    );
    let err = interp.run(&[], &mut NoObserver).unwrap_err();
    assert_eq!(err.to_string(), "graph input 'input' was not given");
    let i = Value::i64(ArrayD::zeros(IxDyn(&[1, 64])));
    let err = interp.run(&[("input", &i)], &mut NoObserver).unwrap_err();
    assert_eq!(
        err.to_string(),
        "graph input 'input': expected dtype f32, got i64[1, 64]"
    );
}
