//! Pruning targets and unstructured sparsity on the ONNX fixtures.
//!
//! - `prune{target-flops=F}` / `prune{target-params=P}`: the fraction the report says was achieved
//!   is the one measured on the pruned model, it is within 1% of the target unless the report
//!   says the target was not reached (and a warning says so), and the pruned model runs in tract
//!   with its output shapes unchanged.
//! - `sparsify`: the sparsified model equals the original model with the same weights zeroed by an
//!   independent computation here (sort every weight's elements by magnitude), tensor by tensor
//!   and by its outputs in tract; tensors it does not rewrite keep their original bytes (no copy).

mod common;

use common::{as_f32, fixture, run_pipeline_with_output as run_pipeline, tract_run, write};
use spa_ir::{Model, Tensor, TensorData, ValueDef, ValueId};

/// A number after `"key": ` in a JSON text.
fn json_number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    let end = json[at..].find([',', '}', '\n']).unwrap() + at;
    json[at..end].trim().parse().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

const TARGET_FIXTURES: &[&str] = &[
    "conv_bn_residual.onnx",
    "transformer_block.onnx",
    "mlp.onnx",
    "concat_block.onnx",
    "grouped_depthwise.onnx",
    "channel_shuffle.onnx",
    "attention_gqa.onnx",
];

#[test]
fn targets_are_reached_within_one_percent_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut reached = 0;
    let mut cases = 0;
    for name in TARGET_FIXTURES {
        let model = fixture(name);
        let inputs = tract_run::inputs(&model);
        let reference = tract_run::run(&write(&model, dir.path(), "orig.onnx"), &inputs)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let before = spa_passes::prune::report::measure(&model);
        for (option, keep) in [
            ("target-flops", 0.8),
            ("target-flops", 0.6),
            ("target-flops", 0.5),
            ("target-params", 0.5),
        ] {
            let pipeline = format!("group,score{{criterion=lamp}},prune{{{option}={keep}}}");
            let (pruned, out) = run_pipeline(&model, &pipeline);
            let json = out.reports.first().expect("a report");
            let after = spa_passes::prune::report::measure(&pruned);
            let measured = if option == "target-flops" {
                after.flops as f64 / before.flops as f64
            } else {
                after.params as f64 / before.params as f64
            };
            let achieved = json_number(json, "achieved");
            assert!(
                (achieved - measured).abs() < 1e-6,
                "{name} {pipeline}: report says {achieved}, model has {measured}"
            );
            let within = (achieved - keep).abs() <= 0.01 * keep;
            let says_reached = json.contains("\"reached\": true");
            assert_eq!(within, says_reached, "{name} {pipeline}: {json}");
            let warned = out.warnings.iter().any(|w| w.contains("not reachable"));
            assert_eq!(!within, warned, "{name} {pipeline}: {:?}", out.warnings);
            // The estimate the bisection worked with is what the rewrite produced.
            let estimate = json_number(json, "estimate");
            assert!(
                (estimate - measured).abs() < 1e-6,
                "{name} {pipeline}: estimate {estimate}, measured {measured}"
            );
            // The pruned model runs and keeps its output shapes.
            let got = tract_run::run(&write(&pruned, dir.path(), "pruned.onnx"), &inputs)
                .unwrap_or_else(|e| panic!("{name} {pipeline}: {e:#}"));
            for (r, g) in reference.iter().zip(&got) {
                assert_eq!(r.1, g.1, "{name} {pipeline}: output shape");
            }
            cases += 1;
            reached += within as usize;
        }
    }
    // The fixtures are tiny (a few channels per group): one threshold step often moves FLOPs by
    // more than 1%, so many targets end at the reported nearest value; some must be hit.
    assert!(reached > 0, "{reached} of {cases} targets reached");
    eprintln!("{reached} of {cases} targets within 1%");
}

/// A model exported with a dynamic batch has the FLOPs of one sample (symbolic dims count as 1),
/// so a FLOPs target prunes to the target instead of seeing 0 FLOPs and pruning everything.
#[test]
fn flops_targets_work_with_a_dynamic_batch() {
    let model = fixture("dynamic_batch.onnx");
    let before = spa_passes::prune::report::measure(&model);
    assert!(before.flops > 0, "dynamic batch counted as 0 FLOPs");
    let (pruned, out) = run_pipeline(&model, "group,score,prune{target-flops=0.5}");
    let after = spa_passes::prune::report::measure(&pruned);
    let kept = after.flops as f64 / before.flops as f64;
    assert!((kept - 0.5).abs() <= 0.01, "kept {kept} of the FLOPs");
    let params = after.params as f64 / before.params as f64;
    assert!(params > 0.3, "kept only {params} of the params");
    assert!(out.warnings.iter().all(|w| !w.contains("not reachable")));
}

/// How the test picks weights, independently of the pass: every constant float operand of
/// Conv/ConvTranspose (input 1) and Gemm/MatMul (the only constant operand), used nowhere else.
fn weights(model: &Model) -> Vec<ValueId> {
    let g = &model.graph;
    let users = g.users();
    let slot = |n: spa_ir::NodeId, i: usize| -> bool {
        let node = g.node(n);
        let constant = |k: usize| node.input(k).and_then(|v| g.constant(v)).is_some();
        match node.op_type.as_str() {
            "Conv" | "ConvTranspose" => i == 1,
            "Gemm" | "MatMul" => i < 2 && constant(i) && !constant(1 - i),
            _ => false,
        }
    };
    let mut out: Vec<ValueId> = g
        .value_ids()
        .filter(|&v| {
            g.constant(v).is_some_and(|t| t.dtype == spa_ir::DType::F32)
                && !users[v.index()].is_empty()
                && users[v.index()].iter().all(|&(n, i)| slot(n, i))
                && !g.outputs.contains(&v)
        })
        .collect();
    out.sort_by_key(|v| v.index());
    out
}

/// Zero `round(s * n)` elements of smallest magnitude, of each weight or of all together
/// (ties: earlier weight, then earlier element), by sorting.
fn zero_by_sorting(model: &Model, s: f64, global: bool) -> Model {
    let mut m = model.clone();
    let ws = weights(model);
    let values: Vec<Vec<f32>> = ws
        .iter()
        .map(|&v| model.graph.constant(v).unwrap().to_f32().unwrap())
        .collect();
    let mut zero: Vec<Vec<bool>> = values.iter().map(|x| vec![false; x.len()]).collect();
    let pick = |idx: &mut Vec<(usize, usize)>, zero: &mut Vec<Vec<bool>>| {
        idx.sort_by(|a, b| {
            values[a.0][a.1]
                .abs()
                .total_cmp(&values[b.0][b.1].abs())
                .then(a.cmp(b))
        });
        let k = ((s * idx.len() as f64).round() as usize).min(idx.len());
        for &(w, e) in &idx[..k] {
            zero[w][e] = true;
        }
    };
    if global {
        let mut idx: Vec<(usize, usize)> = values
            .iter()
            .enumerate()
            .flat_map(|(w, x)| (0..x.len()).map(move |e| (w, e)))
            .collect();
        pick(&mut idx, &mut zero);
    } else {
        for (w, x) in values.iter().enumerate() {
            let mut idx: Vec<(usize, usize)> = (0..x.len()).map(|e| (w, e)).collect();
            pick(&mut idx, &mut zero);
        }
    }
    for ((&v, x), z) in ws.iter().zip(&values).zip(&zero) {
        let new: Vec<f32> = x
            .iter()
            .zip(z)
            .map(|(&w, &z)| if z { 0.0 } else { w })
            .collect();
        let old = model.graph.constant(v).unwrap();
        let mut t = Tensor::from_f32(old.dims.clone(), &new);
        t.name = old.name.clone();
        let val = m.graph.value_mut(v);
        if val.init.is_some() {
            val.init = Some(t);
        } else if let ValueDef::Node(n, 0) = val.def {
            m.graph
                .node_mut(n)
                .set_attr("value", spa_ir::AttrValue::Tensor(t));
        }
    }
    m
}

fn raw_ptr(t: &Tensor) -> Option<*const u8> {
    match &t.data {
        TensorData::Raw(b) => Some(b.as_ptr()),
        TensorData::External(e) => Some(e.bytes.as_ptr()),
        _ => None,
    }
}

const SPARSIFY_FIXTURES: &[&str] = &[
    "conv_bn_residual.onnx",
    "mlp.onnx",
    "transformer_block.onnx",
    "concat_block.onnx",
    "grouped_depthwise.onnx",
    "channel_shuffle.onnx",
];

#[test]
fn sparsified_models_equal_independently_zeroed_ones() {
    let dir = tempfile::tempdir().unwrap();
    for name in SPARSIFY_FIXTURES {
        let model = fixture(name);
        let ws = weights(&model);
        assert!(!ws.is_empty(), "{name}: no weights");
        let inputs = tract_run::inputs(&model);
        let dense = tract_run::run(&write(&model, dir.path(), "dense.onnx"), &inputs)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        for (s, global) in [(0.6, false), (0.6, true), (0.3, true)] {
            let pipeline = format!("sparsify{{sparsity={s},global={global}}}");
            let (sparse, _) = run_pipeline(&model, &pipeline);
            let expected = zero_by_sorting(&model, s, global);
            let g = &sparse.graph;
            for v in g.value_ids() {
                let Some(t) = g.constant(v) else { continue };
                let want = expected.graph.constant(v).unwrap();
                assert_eq!(
                    t.to_f32().ok(),
                    want.to_f32().ok(),
                    "{name} {pipeline}: {}",
                    t.name
                );
                assert_eq!(t.dims, want.dims);
                // Untouched tensors are the very bytes that were read.
                if !ws.contains(&v) {
                    let orig = model.graph.constant(v).unwrap();
                    assert_eq!(raw_ptr(t), raw_ptr(orig), "{name}: {} copied", t.name);
                }
            }
            let a = tract_run::run(&write(&sparse, dir.path(), "sparse.onnx"), &inputs)
                .unwrap_or_else(|e| panic!("{name} {pipeline}: {e:#}"));
            let b = tract_run::run(&write(&expected, dir.path(), "expected.onnx"), &inputs)
                .unwrap_or_else(|e| panic!("{name} expected: {e:#}"));
            for ((x, y), d) in a.iter().zip(&b).zip(&dense) {
                assert_eq!(x.1, y.1, "{name}: shapes");
                assert_eq!(x.1, d.1, "{name}: shapes changed");
                let (x, y, d) = (as_f32(x), as_f32(y), as_f32(d));
                assert!(
                    max_diff(&x, &y) <= 1e-6,
                    "{name} {pipeline}: outputs differ"
                );
                // Zeroing this much changes the function (the comparison is not vacuous).
                assert!(max_diff(&x, &d) > 1e-6, "{name} {pipeline}: no effect");
            }
        }
    }
}

#[test]
fn sparsify_target_flops_counts_nonzero_weights() {
    for name in [
        "conv_bn_residual.onnx",
        "transformer_block.onnx",
        "mlp.onnx",
    ] {
        let model = fixture(name);
        for global in [true, false] {
            let pipeline = format!("sparsify{{target-flops=0.7,global={global}}}");
            let (sparse, out) = run_pipeline(&model, &pipeline);
            let json = out.reports.first().expect("a report");
            // Recount: each weight layer's FLOPs scale with its nonzero fraction.
            let dense = json_number(json, "flops_dense");
            assert_eq!(dense, spa_ir::ops::model_flops(&model) as f64);
            let zeros: f64 = weights(&sparse)
                .iter()
                .map(|&v| {
                    let x = sparse.graph.constant(v).unwrap().to_f32().unwrap();
                    x.iter().filter(|w| **w == 0.0).count() as f64
                })
                .sum();
            assert_eq!(zeros, json_number(json, "zeros_after"), "{name} {pipeline}");
            let kept = json_number(json, "flops_kept");
            assert!(
                (kept - 0.7).abs() <= 0.007,
                "{name} {pipeline}: kept {kept} of the dense FLOPs"
            );
        }
    }
}
