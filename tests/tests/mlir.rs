//! The MLIR backend on every ONNX fixture, as read and after `group,score,prune{ratio=0.5}`:
//!
//! - the emitted module is snapshotted (weights elided to their size and digest);
//! - upstream `mlir-opt-22` parses and verifies every emitted module (skipped with a note when
//!   it is not installed, unless `SPA_REQUIRE_MLIR_OPT=1`, as CI sets, makes that a failure);
//! - a model with an op the emitter cannot lower gives one error naming the op and the node, and
//!   no output file.
//!
//! Numbers are checked against onnxruntime through IREE by `scripts/mlir_check.py` (CI runs it).

use spa_backends::mlir::{emit_mlir, write_mlir, MlirError, MlirOptions};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::Model;
use spa_passes::{register_all_passes, PassManager, RunConfig, RunOutput};
use std::path::{Path, PathBuf};
use std::process::Command;

const PRUNE: &str = "group,score,prune{ratio=0.5}";

/// Fixtures the emitter does not lower, with the reason (each has an error snapshot).
const NOT_LOWERED: &[&str] = &["dynamic_batch", "if_subgraph", "local_function"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn fixtures() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.push(("external_data".into(), root().join("external_data/model.onnx")));
    v.sort();
    v
}

fn pruned(model: &Model) -> Model {
    let mut m = model.clone();
    let p = register_all_passes().parse(PRUNE).unwrap();
    PassManager::new(p, RunConfig::default())
        .run(&mut m, &mut RunOutput::default())
        .unwrap_or_else(|e| panic!("{PRUNE}: {e}"));
    m
}

/// Every (name, model) the backend must lower: fixtures as read and pruned.
fn lowerable() -> Vec<(String, Model)> {
    let mut out = Vec::new();
    for (name, path) in fixtures() {
        if NOT_LOWERED.contains(&name.as_str()) {
            continue;
        }
        let model = read_onnx(&path, &ReadOptions::default()).unwrap();
        out.push((format!("pruned__{name}"), pruned(&model)));
        out.push((name, model));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn emitted_modules() {
    let opts = MlirOptions {
        elide_resources: true,
        ..MlirOptions::default()
    };
    let models = lowerable();
    assert_eq!(models.len(), 2 * (fixtures().len() - NOT_LOWERED.len()));
    for (name, model) in models {
        let text = emit_mlir(&model, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn unlowerable_models_give_one_error_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in NOT_LOWERED {
        let model = read_onnx(&root().join(format!("{name}.onnx")), &ReadOptions::default())
            .unwrap();
        let out = dir.path().join(format!("{name}.mlir"));
        let err = write_mlir(&model, &out, None, &MlirOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                MlirError::Unsupported { .. } | MlirError::DynamicShape { .. }
            ),
            "{name}: {err}"
        );
        assert!(!out.exists(), "{name}: a file was written");
        insta::assert_snapshot!(format!("error__{name}"), err.to_string());
    }
}

#[test]
fn weights_become_resource_blobs_with_their_bytes() {
    let model = read_onnx(
        &root().join("conv_bn_residual.onnx"),
        &ReadOptions::default(),
    )
    .unwrap();
    let text = emit_mlir(&model, &MlirOptions::default()).unwrap();
    // conv1.weight is [16,3,3,3] f32, emitted in OHWI with an alignment of 4: 4 + 16*27*4 bytes.
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("conv1.weight_ohwi:"))
        .expect("conv1 weight blob");
    let hex = line.split('"').nth(1).unwrap();
    assert!(hex.starts_with("0x04000000"), "{}", &hex[..16]);
    assert_eq!(hex.len(), 2 + 2 * (4 + 16 * 27 * 4));
    // Weights are permuted to OHWI on the host: w[o=0][h=0][w=0][i=1] is ONNX w[0][1][0][0].
    let w = model
        .graph
        .constant(
            model
                .graph
                .value_ids()
                .find(|&v| model.graph.value(v).name == "conv1.weight")
                .unwrap(),
        )
        .unwrap()
        .to_f32()
        .unwrap();
    let byte = |i: usize| u8::from_str_radix(&hex[2 + 8 + 2 * i..2 + 8 + 2 * i + 2], 16).unwrap();
    let elem = |k: usize| f32::from_le_bytes([byte(4 * k), byte(4 * k + 1), byte(4 * k + 2), byte(4 * k + 3)]);
    assert_eq!(elem(1), w[9]);
    assert_eq!(elem(0), w[0]);
}

fn mlir_opt() -> Option<PathBuf> {
    let candidates = ["mlir-opt-22", "/usr/lib/llvm-22/bin/mlir-opt"];
    candidates.iter().map(PathBuf::from).find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn verify_with(tool: &Path, file: &Path) -> Result<(), String> {
    let out = Command::new(tool)
        .arg(file)
        .arg("-o")
        .arg("/dev/null")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn mlir_opt_verifies_every_emitted_module() {
    let Some(tool) = mlir_opt() else {
        if std::env::var("SPA_REQUIRE_MLIR_OPT").is_ok_and(|v| v == "1") {
            panic!("mlir-opt-22 is required (SPA_REQUIRE_MLIR_OPT=1) but was not found");
        }
        eprintln!("note: mlir-opt-22 not found; skipping the upstream verification of emitted MLIR");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let models = lowerable();
    for (name, model) in &models {
        let path = dir.path().join(format!("{name}.mlir"));
        write_mlir(model, &path, None, &MlirOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(e) = verify_with(&tool, &path) {
            failures.push(format!("{name}: {e}"));
        }
    }
    // The verifier must also reject what is wrong: a conv whose result type is off.
    let broken = dir.path().join("broken.mlir");
    let text = std::fs::read_to_string(dir.path().join("conv_bn_residual.mlir")).unwrap();
    std::fs::write(&broken, text.replacen("tensor<1x32x32x16xf32>", "tensor<1x32x31x16xf32>", 1))
        .unwrap();
    assert!(verify_with(&tool, &broken).is_err(), "mlir-opt accepted a broken module");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
