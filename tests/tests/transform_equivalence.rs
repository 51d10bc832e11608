//! Graph clean-up passes keep the function: for every fixture and every `.spa` case of
//! `canonicalize`, `fold-bn`, `cse` and `fold-constants`, the model before and after computes the
//! same outputs in tract, an independent executor (relative difference at most 1e-5, scaled by
//! the largest magnitude), and no pass adds nodes. `split-fused` adds nodes by design (one
//! projection per part); its cases are checked for the same outputs, and for the split.

mod common;

use common::{rel_diff, root, run_pipeline, spa_cases, tract_run, write};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::Model;
use std::path::{Path, PathBuf};

fn values(o: &tract_run::Output) -> Vec<f64> {
    match o.0.as_str() {
        "F32" => {
            o.2.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect()
        }
        "I64" => {
            o.2.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect()
        }
        _ => o.2.iter().map(|&b| b as f64).collect(),
    }
}

const PIPELINES: &[&str] = &[
    "canonicalize",
    "fold-bn",
    "cse",
    "fold-constants",
    "canonicalize,fold-bn,cse,dce",
    "canonicalize,group,score,prune{ratio=0.5},fold-bn,cse,dce",
];

/// Check every pipeline on one model; returns how many nodes the clean-up pipeline removed.
fn check(name: &str, model: &Model, dir: &Path) -> usize {
    let inputs = tract_run::inputs(model);
    let original = write(model, dir, &format!("{name}.orig.onnx"));
    let reference = tract_run::run(&original, &inputs).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let mut removed = 0;
    for (k, pipeline) in PIPELINES.iter().enumerate() {
        let out = run_pipeline(model, pipeline);
        assert!(
            out.graph.num_nodes() <= model.graph.num_nodes(),
            "{name}: {pipeline} added nodes"
        );
        if k == 4 {
            removed = model.graph.num_nodes() - out.graph.num_nodes();
        }
        let path = write(&out, dir, &format!("{name}.{k}.onnx"));
        let got =
            tract_run::run(&path, &inputs).unwrap_or_else(|e| panic!("{name} {pipeline}: {e:#}"));
        assert_eq!(
            reference.len(),
            got.len(),
            "{name} {pipeline}: output count"
        );
        for (r, g) in reference.iter().zip(&got) {
            assert_eq!(r.1, g.1, "{name} {pipeline}: output shape");
            if pipeline.contains("prune") {
                continue; // pruning changes values by design; shapes must hold
            }
            let d = rel_diff(&values(r), &values(g));
            assert!(d <= 1e-5, "{name} {pipeline}: outputs differ by {d}");
        }
    }
    removed
}

const TRACT_UNSUPPORTED: &[&str] = &["dtypes.onnx"];

#[test]
fn fixtures_keep_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    let mut checked = 0;
    let mut removed = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if TRACT_UNSUPPORTED.contains(&name.as_str()) {
            continue;
        }
        let model = read_onnx(&path, &ReadOptions::default()).unwrap();
        removed += check(&name, &model, dir.path());
        checked += 1;
    }
    assert!(checked >= 11, "{checked}");
    // constant_nodes.onnx and conv_bn_residual.onnx have Identity/Constant noise and BatchNorms.
    assert!(
        removed > 0,
        "the clean-up pipeline removed nothing from any fixture"
    );
}

/// Outputs of `model` and of `out` in tract agree to 1e-5 (relative to the largest magnitude).
fn same_outputs(name: &str, model: &Model, out: &Model, dir: &Path) {
    let inputs = tract_run::inputs(model);
    let a = write(model, dir, &format!("{name}.orig.onnx"));
    let b = write(out, dir, &format!("{name}.out.onnx"));
    let reference = tract_run::run(&a, &inputs).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let got = tract_run::run(&b, &inputs).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert_eq!(reference.len(), got.len(), "{name}: output count");
    for (r, g) in reference.iter().zip(&got) {
        assert_eq!(r.1, g.1, "{name}: output shape");
        let d = rel_diff(&values(r), &values(g));
        assert!(d <= 1e-5, "{name}: outputs differ by {d}");
    }
}

fn matmuls(m: &Model) -> usize {
    let g = &m.graph;
    g.node_ids()
        .filter(|&n| g.node(n).op_type == "MatMul")
        .count()
}

/// Every `split-fused` case computes the same outputs in tract after the pass, and the fused
/// cases have one MatMul more per extra part (the `left_alone` case none); with
/// `group,score,prune` after it, the pruned model still runs in tract with the same shapes.
#[test]
fn split_fused_cases_keep_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for path in spa_cases("split-fused") {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let model = spa_ir::text::parse_model(&src).unwrap();
        let out = run_pipeline(&model, "split-fused");
        let added = matmuls(&out) - matmuls(&model);
        if name == "left_alone" {
            assert_eq!(added, 0, "{name}: split something");
        } else {
            assert_eq!(added, 2, "{name}: expected three parts from one MatMul");
        }
        same_outputs(&format!("split-fused.{name}"), &model, &out, dir.path());
        let pruned = run_pipeline(&model, "group,score,prune{ratio=0.5}");
        let inputs = tract_run::inputs(&model);
        let a = write(&model, dir.path(), &format!("{name}.orig.onnx"));
        let p = write(&pruned, dir.path(), &format!("{name}.pruned.onnx"));
        let reference = tract_run::run(&a, &inputs).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let got = tract_run::run(&p, &inputs).unwrap_or_else(|e| panic!("{name} pruned: {e:#}"));
        let shapes = |o: &[tract_run::Output]| o.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
        assert_eq!(
            shapes(&reference),
            shapes(&got),
            "{name} pruned: output shapes"
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
}

/// `.spa` cases tract cannot run: random ops (outputs differ between runs by design), f64 inputs.
const SKIP_SPA: &[&str] = &["duplicates", "random_and_f64"];

#[test]
fn spa_cases_keep_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for pass in ["canonicalize", "fold-bn", "cse", "fold-constants"] {
        for path in spa_cases(pass) {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if SKIP_SPA.contains(&name.as_str()) {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let model = spa_ir::text::parse_model(&src).unwrap();
            check(&format!("{pass}.{name}"), &model, dir.path());
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}
