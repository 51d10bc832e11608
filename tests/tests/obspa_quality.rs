//! OBSPA's claim, measured with tract (an independent executor) on held-out inputs: pruning half
//! of every group with `obspa` (scores from the greedy OBS search, kept weights compensated)
//! leaves outputs closer to the unpruned model's than `l2` magnitude pruning, which compensates
//! nothing. The calibration data is synthetic (the test does not reuse it) and the held-out inputs
//! come from a different generator. Also: compensated pruning and compensated masking compute the
//! same function, and on the trained MNIST CNN of the quality table (`models/quality`), obspa
//! with synthetic data keeps the accuracy that magnitude pruning loses.

mod common;

use common::tract_run::{self, Input};
use common::{root, run_pipeline as run};
use spa_backends::onnx::{write_onnx, WriteOptions};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::{DType, Model};
use std::path::Path;

fn load(name: &str) -> Model {
    read_onnx(&root().join("fixtures").join(name), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Held-out normal inputs (xorshift + Box-Muller; not the generator of `data=synthetic`).
fn normal_inputs(dims: &[usize], seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let n: usize = dims.iter().product();
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// `sets` held-out input sets for a single-input model with static dims (seeds `seed..`).
fn held_out(model: &Model, sets: u64, seed: u64) -> Vec<Vec<Input>> {
    let dims = tract_run::inputs(model)[0].0.clone();
    (0..sets)
        .map(|i| vec![(dims.clone(), DType::F32, normal_inputs(&dims, seed + i))])
        .collect()
}

/// Outputs of `model` in tract on each input set, concatenated.
fn outputs(model: &Model, dir: &Path, name: &str, inputs: &[Vec<Input>]) -> Vec<f32> {
    let path = dir.join(name);
    write_onnx(model, &path, &WriteOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut all = Vec::new();
    for input in inputs {
        let out = tract_run::run(&path, input).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        for (dtype, _, bytes) in out {
            assert_eq!(dtype, "F32");
            all.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
    }
    all
}

/// ||a - b|| / ||b||.
fn rel_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n.max(1e-30)).sqrt()
}

/// Relative output error of each pipeline against the original model.
fn errors(model: &Model, name: &str, inputs: &[Vec<Input>], pipelines: &[&str]) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let reference = outputs(model, dir.path(), &format!("{name}.onnx"), inputs);
    pipelines
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pruned = run(model, p);
            let got = outputs(&pruned, dir.path(), &format!("{name}.{i}.onnx"), inputs);
            let e = rel_error(&got, &reference);
            eprintln!("{name}: {p}: relative output error {e:.4}");
            e
        })
        .collect()
}

const OBSPA: &str =
    "group,score{criterion=obspa,data=synthetic,seed=1,samples=256},prune{ratio=0.5}";
const OBSPA_NONE: &str = "group,score{criterion=obspa,data=none},prune{ratio=0.5}";
const L2: &str = "group,score{criterion=l2},prune{ratio=0.5}";

#[test]
fn obspa_beats_l2_on_an_mlp() {
    // dynamic_batch.onnx: Gemm -> Relu -> Gemm -> Sigmoid -> MatMul, batch symbolic.
    let model = load("dynamic_batch.onnx");
    let inputs = vec![vec![(
        vec![128, 64],
        DType::F32,
        normal_inputs(&[128, 64], 99),
    )]];
    let e = errors(&model, "mlp", &inputs, &[OBSPA, L2, OBSPA_NONE]);
    assert!(e[0] < 0.7 * e[1], "obspa {} vs l2 {}", e[0], e[1]);
    // The gain is the compensation's: without data, obspa is a magnitude criterion.
    assert!(
        e[0] < 0.7 * e[2],
        "obspa {} vs obspa data=none {}",
        e[0],
        e[2]
    );
}

#[test]
fn obspa_beats_l2_on_a_conv_net_with_batchnorm() {
    // conv_bn_residual.onnx: convs, BatchNorms, a residual Add, a classifier; batch 1.
    let model = load("conv_bn_residual.onnx");
    let inputs = held_out(&model, 8, 1000);
    let obspa = "group,score{criterion=obspa,data=synthetic,seed=1,samples=32},prune{ratio=0.5}";
    let e = errors(&model, "convnet", &inputs, &[obspa, L2]);
    assert!(e[0] < e[1], "obspa {} vs l2 {}", e[0], e[1]);
}

#[test]
fn compensated_masking_equals_compensated_pruning() {
    let model = load("dynamic_batch.onnx");
    let inputs = vec![vec![(
        vec![16, 64],
        DType::F32,
        normal_inputs(&[16, 64], 5),
    )]];
    let dir = tempfile::tempdir().unwrap();
    let base = "group,score{criterion=obspa,data=synthetic,seed=2,samples=64}";
    let pruned = run(
        &model,
        &format!("{base},prune{{ratio=0.5,exact-only=true}}"),
    );
    let masked = run(
        &model,
        &format!("{base},prune{{ratio=0.5,exact-only=true,mode=mask}}"),
    );
    let a = outputs(&pruned, dir.path(), "pruned.onnx", &inputs);
    let b = outputs(&masked, dir.path(), "masked.onnx", &inputs);
    let e = rel_error(&a, &b);
    assert!(e < 1e-5, "pruned and masked differ by {e}");
    // And compensation changed something: the masked model differs from the original.
    let orig = outputs(&model, dir.path(), "orig.onnx", &inputs);
    assert!(rel_error(&b, &orig) > 1e-4);
}

#[test]
fn attention_qk_dims_rebased_and_scored_through_the_output() {
    // transformer_block.onnx: LayerNorm, 4 heads of 8 dims (Q/K, V), an MLP; batch 1.
    let model = load("transformer_block.onnx");
    let inputs = held_out(&model, 8, 300);
    let score = "group,score{criterion=obspa,data=synthetic,seed=1,samples=64}";
    // Only the Q/K head dims are pruned: heads stay, V and the MLP are protected.
    let prune = "prune{ratio=0.5,heads=dims,protect=\"*v_proj*,*mlp*\"}";
    let e = errors(
        &model,
        "attention",
        &inputs,
        &[
            score,
            &format!("{score},{prune}"),
            &format!("group,score{{criterion=l2}},{prune}"),
        ],
    );
    // The score pass re-bases Q and K per head: the same function.
    assert!(
        e[0] < 1e-5,
        "scoring changed the model's outputs by {}",
        e[0]
    );
    // Cutting the weakest directions of every head loses less than cutting l2's smallest dims
    // (what obspa did before: l2 was its fallback for these dims). Measured: 0.32 against 0.48.
    assert!(e[1] < 0.8 * e[2], "obspa {} vs l2 {}", e[1], e[2]);
}

#[test]
fn attention_vo_dims_rebased_before_the_obs_search() {
    // transformer_block.onnx again; now only the V head dims are pruned (the output projection
    // consumes them, so the OBS search ranks and compensates them), with and without the
    // per-head re-basing.
    let model = load("transformer_block.onnx");
    let inputs = held_out(&model, 8, 400);
    let score = "group,score{criterion=obspa,data=synthetic,seed=1,samples=64";
    let prune = "prune{ratio=0.5,heads=dims,protect=\"*q_proj*,*k_proj*,*mlp*\"}";
    let qk = "prune{ratio=0.5,heads=dims,protect=\"*v_proj*,*mlp*\"}";
    let e = errors(
        &model,
        "values",
        &inputs,
        &[
            &format!("{score}}}"),
            &format!("{score}}},{prune}"),
            &format!("{score},rebase=false}},{prune}"),
            &format!("{score},rebase=false}},{qk}"),
            &format!("group,score{{criterion=l2}},{qk}"),
        ],
    );
    assert!(e[0] < 1e-5, "re-basing changed the outputs by {}", e[0]);
    // Each head's weakest directions, aligned on the same dims, against arbitrary ones.
    // Measured: 0.33 against 0.42.
    assert!(e[1] < 0.9 * e[2], "re-based {} vs as is {}", e[1], e[2]);
    // Without re-basing, Q/K head dims are scored by l2: the same cut as l2's.
    assert!((e[3] - e[4]).abs() < 1e-6, "{} vs l2 {}", e[3], e[4]);
}

#[test]
fn einsum_attention_prunes_like_the_matmul_one() {
    // transformer_block_einsum.onnx is transformer_block.onnx with the attention's two products
    // written as Einsums (`bhid,bhjd->bhij`, `bhij,bhjd->bhid`, as MaxViT and JAX exports have
    // them), same weights. obspa finds the same Q/K and V/O sites through them and prunes both
    // models alike; without the re-basing (what it did with Einsums before: Q/K dims scored by
    // l2, V dims in their arbitrary basis) the pruned model ends further from the original.
    // Measured: einsum vs matmul 0 (relative), error 0.422 re-based against 0.492 as is (the
    // as-is model is the one the build before this rule wrote, checked in onnxruntime).
    let matmul = load("transformer_block.onnx");
    let einsum = load("transformer_block_einsum.onnx");
    let inputs = held_out(&matmul, 8, 500);
    let score = "group,score{criterion=obspa,data=synthetic,seed=1,samples=64";
    let prune = "prune{ratio=0.5,heads=dims,protect=\"*mlp*\"}";
    let dir = tempfile::tempdir().unwrap();
    let reference = outputs(&matmul, dir.path(), "orig.onnx", &inputs);
    let pruned = |m: &Model, opts: &str, name: &str| {
        let p = run(m, &format!("{score}{opts}}},{prune}"));
        outputs(&p, dir.path(), name, &inputs)
    };
    let a = pruned(&matmul, "", "matmul.onnx");
    let b = pruned(&einsum, "", "einsum.onnx");
    let c = pruned(&einsum, ",rebase=false", "einsum_as_is.onnx");
    let (same, rebased, as_is) = (
        rel_error(&b, &a),
        rel_error(&b, &reference),
        rel_error(&c, &reference),
    );
    eprintln!("einsum vs matmul {same:.2e}; error re-based {rebased:.4}, as is {as_is:.4}");
    assert!(
        same < 1e-4,
        "the Einsum and MatMul models pruned differently: {same}"
    );
    assert!(as_is > rebased * 1.1, "as is {as_is} vs re-based {rebased}");
}

/// Top-1 accuracy of `model` in tract on the first `n` held-out MNIST digits of the quality table.
fn mnist_accuracy(model: &Model, dir: &Path, name: &str, n: usize) -> f64 {
    use spa_passes::calib::npy::ArrayData;
    let bytes = std::fs::read(root().join("../models/quality/mnist_test.npz")).unwrap();
    let arrays = spa_passes::calib::npz::parse_npz(&bytes, "mnist_test.npz").unwrap();
    let get = |k: &str| match &arrays.iter().find(|(name, _)| name == k).unwrap().1.data {
        ArrayData::Int(v) => v.clone(),
        ArrayData::Float(_) => panic!("{k}: expected integers"),
    };
    let (x, y) = (get("x"), get("y"));
    let pixels: Vec<f32> = x[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let logits = outputs(
        model,
        dir,
        name,
        &[vec![(vec![n, 1, 28, 28], DType::F32, pixels)]],
    );
    let right = logits
        .chunks_exact(10)
        .zip(&y)
        .filter(|(l, &label)| {
            let best = (0..10).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
            best as i64 == label
        })
        .count();
    right as f64 / n as f64
}

/// The unpruned accuracy of `models/quality/mnist_<name>.onnx` in tract on the first 300 test
/// digits, and the accuracy after each pipeline.
fn mnist_accuracies(name: &str, pipelines: &[&str]) -> (f64, Vec<f64>) {
    let model = read_onnx(
        &root().join(format!("../models/quality/mnist_{name}.onnx")),
        &ReadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let base = mnist_accuracy(&model, dir.path(), &format!("{name}.onnx"), n);
    let acc = pipelines
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pruned = run(&model, p);
            let a = mnist_accuracy(&pruned, dir.path(), &format!("{name}.{i}.onnx"), n);
            eprintln!("mnist_{name}: {p}: accuracy {a:.3} (unpruned {base:.3})");
            a
        })
        .collect();
    (base, acc)
}

#[test]
fn synthetic_obspa_keeps_a_trained_cnn_accurate() {
    // The small ResNet (BatchNorm, residuals) of docs/quality.md, 60% of its FLOPs kept. Noise
    // through trained layers only looks like data to them because every BatchNorm renormalizes
    // it; and obspa's scores are compared across groups relative to each group's output energy.
    let (base, acc) = mnist_accuracies(
        "cnn",
        &[
            "group,score{criterion=obspa,data=synthetic,samples=256},prune{target-flops=0.6}",
            "group,score{criterion=l1,normalize=mean},prune{target-flops=0.6}",
        ],
    );
    assert!(base > 0.95, "unpruned accuracy {base}");
    assert!(
        acc[0] > base - 0.05,
        "obspa synthetic {} vs unpruned {base}",
        acc[0]
    );
    assert!(
        acc[0] > acc[1] + 0.2,
        "obspa synthetic {} vs l1 {}",
        acc[0],
        acc[1]
    );
}

#[test]
fn synthetic_obspa_keeps_a_trained_vit_accurate() {
    // The MNIST ViT of docs/quality.md has no BatchNorm, so nothing tells the noise's scale: each
    // synthetic sample gets its own, log-uniform over a decade. With standard normal noise alone
    // (the synthetic data before) obspa scored 86.7% here, and 87.6% in the quality table, below
    // lamp's 88.4%; with the noise scales 91.7%, and since the Q/K head dims are re-based and
    // scored through the attention output (docs/obspa.md), 95.7% (unpruned 96.7%).
    let (base, acc) = mnist_accuracies(
        "vit",
        &[
            "group,score{criterion=obspa,data=synthetic,samples=256},prune{target-flops=0.6}",
            "group,score{criterion=l2,normalize=mean},prune{target-flops=0.6}",
            "group,score{criterion=lamp,normalize=mean},prune{target-flops=0.6}",
        ],
    );
    assert!(base > 0.94, "unpruned accuracy {base}");
    assert!(
        acc[0] > base - 0.03,
        "obspa synthetic {} vs unpruned {base}",
        acc[0]
    );
    for (j, name, margin) in [(1, "l2", 0.1), (2, "lamp", 0.05)] {
        assert!(
            acc[0] > acc[j] + margin,
            "obspa synthetic {} vs {name} {}",
            acc[0],
            acc[j]
        );
    }
}

/// A model of the quality table (`models/quality/<name>`).
fn quality_model(name: &str) -> Model {
    read_onnx(
        &root().join(format!("../models/quality/{name}")),
        &ReadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The first `n` test digits of the quality table as one tract input batch, pixels in [0, 1].
fn test_digits(n: usize) -> Vec<Vec<Input>> {
    use spa_passes::calib::npy::ArrayData;
    let bytes = std::fs::read(root().join("../models/quality/mnist_test.npz")).unwrap();
    let arrays = spa_passes::calib::npz::parse_npz(&bytes, "mnist_test.npz").unwrap();
    let ArrayData::Int(x) = &arrays.iter().find(|(n, _)| n == "x").unwrap().1.data else {
        panic!("x: expected integers");
    };
    let pixels: Vec<f32> = x[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    vec![vec![(vec![n, 1, 28, 28], DType::F32, pixels)]]
}

/// `score{criterion=obspa}` with the MNIST calibration images of the quality table.
fn obspa_calib() -> String {
    let data = root().join("../models/quality/mnist_calib.npz");
    format!("score{{criterion=obspa,data=\"{}\"}}", data.display())
}

#[test]
fn layernorms_refitted_after_compensation_with_calibration_data() {
    // The MNIST ViT of docs/quality.md pruned to 60% of its FLOPs with its calibration images:
    // its residual stream is pruned too, so each LayerNorm is narrowed and re-fitted to the
    // dims it kept. On 64 held-out test digits (not calibration data), the logits end closer to
    // the unpruned model's with the re-fit than without (measured: relative error 0.091 against
    // 0.111).
    let model = quality_model("mnist_vit.onnx");
    let inputs = test_digits(64);
    let score = format!("group,{}", obspa_calib());
    let e = errors(
        &model,
        "vit_refit",
        &inputs,
        &[
            &format!("{score},prune{{target-flops=0.6}}"),
            &format!("{score},prune{{target-flops=0.6,refit-norms=false}}"),
        ],
    );
    assert!(e[0] < e[1], "re-fitted {} vs not {}", e[0], e[1]);
    // With mode=mask the norms keep their width: the dims the prune zeroed stay zero and only
    // the kept ones are re-fitted.
    let masked = run(
        &model,
        &format!("{score},prune{{target-flops=0.6,mode=mask}}"),
    );
    let names = masked.graph.names();
    let get = |m: &Model, v| m.graph.constant(v).unwrap().to_f32().unwrap();
    let (before, after) = (
        get(&model, model.graph.names()["blocks.0.ln1.weight"]),
        get(&masked, names["blocks.0.ln1.weight"]),
    );
    let zeroed = after.iter().filter(|&&v| v == 0.0).count();
    let refitted = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| a != b && **a != 0.0)
        .count();
    assert!(zeroed > 0 && zeroed < after.len(), "{zeroed} zeroed");
    assert_eq!(refitted, after.len() - zeroed, "{after:?}");
}

#[test]
fn fused_qkv_vit_prunes_like_the_separate_one() {
    // `mnist_vit_fused.onnx` is the MNIST ViT with Q, K and V fused into one projection per
    // block, as timm lays it out (`scripts/quality/fuse_qkv.py`). `group` splits it back into
    // three (split-fused), so obspa finds the Q/K and V/O sites and prunes the fused model as it
    // prunes the separate one: on 64 held-out digits the two pruned models' logits agree to
    // float rounding. Without the split, Q/K and V head dims are one group, pruned in one basis
    // by V's scores alone, and the pruned model ends much further from the unpruned one
    // (measured: relative error 0.28 against 0.12; with the quality table's `normalize=mean`,
    // 92.6% against 95.5% accuracy on its 6,000 digits at 0.5 of the FLOPs).
    let separate = quality_model("mnist_vit.onnx");
    let fused = quality_model("mnist_vit_fused.onnx");
    let inputs = test_digits(64);
    let rest = format!("{},prune{{target-flops=0.5}}", obspa_calib());
    let dir = tempfile::tempdir().unwrap();
    let reference = outputs(&separate, dir.path(), "vit.onnx", &inputs);
    let pruned = |m: &Model, group: &str, name: &str| {
        let p = run(m, &format!("{group},{rest}"));
        outputs(&p, dir.path(), name, &inputs)
    };
    let a = pruned(&separate, "group", "separate.onnx");
    let b = pruned(&fused, "group", "fused.onnx");
    let c = pruned(&fused, "group{split-fused=false}", "fused_kept.onnx");
    let (same, split, kept) = (
        rel_error(&b, &a),
        rel_error(&b, &reference),
        rel_error(&c, &reference),
    );
    eprintln!("fused vs separate {same:.2e}; error split {split:.4}, kept fused {kept:.4}");
    assert!(same < 1e-4, "fused and separate pruned differently: {same}");
    assert!(kept > split * 1.5, "kept fused {kept} vs split {split}");
}

#[test]
fn few_calibration_rows_prune_like_the_dense_inverse() {
    // 8 synthetic samples into layers of 128 and 96 inputs (fc2, fc3): both inverse Hessians are
    // kept in low-rank form (Woodbury, `hessian=auto`); `hessian=dense` forms them 128 x 128 and
    // 96 x 96. The same OBS search and compensation either way.
    let model = load("dynamic_batch.onnx");
    let base = "group,score{criterion=obspa,data=synthetic,seed=1,samples=8";
    let (low, out) =
        common::run_pipeline_with_output(&model, &format!("{base}}},prune{{ratio=0.5}}"));
    let low_rank = out
        .stats
        .entries
        .iter()
        .find(|(_, name, _)| name.starts_with("layer inverse Hessians in low-rank form"))
        .map(|(_, _, v)| v.clone());
    assert_eq!(low_rank.as_deref(), Some("2"));
    let dense = run(
        &model,
        &format!("{base},hessian=dense}},prune{{ratio=0.5}}"),
    );
    let inputs = vec![vec![(
        vec![32, 64],
        DType::F32,
        normal_inputs(&[32, 64], 7),
    )]];
    let dir = tempfile::tempdir().unwrap();
    let a = outputs(&low, dir.path(), "low.onnx", &inputs);
    let b = outputs(&dense, dir.path(), "dense.onnx", &inputs);
    let e = rel_error(&a, &b);
    assert!(
        e < 1e-4,
        "low-rank and dense inverses pruned differently: {e}"
    );
    // And the compensation did something: the result differs from plain l2 pruning.
    let l2 = outputs(&run(&model, L2), dir.path(), "l2.onnx", &inputs);
    assert!(rel_error(&a, &l2) > 1e-3);
}
