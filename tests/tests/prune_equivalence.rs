//! Mask equivalence, the oracle of pruning: for every fixture and every `.spa` prune and group case, the
//! physically pruned model and the masked model (same channels zeroed, shapes kept) compute the
//! same outputs in tract, an independent executor (relative tolerance 1e-4, scaled by the largest
//! magnitude). Only exact groups are pruned for this comparison (`exact-only=true`): removing
//! channels of a normalized axis changes its statistics by design. The default pipeline is also run
//! on every fixture: the pruned model must load and run in tract with unchanged output shapes.

mod common;

use common::{as_f32, fixture, rel_diff_f32 as rel_diff, root, run_pipeline, tract_run, write};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::Model;
use std::path::{Path, PathBuf};

fn params(model: &Model) -> u64 {
    spa_passes::prune::report::measure(model).params
}

/// Check one model; returns whether pruning removed any parameter.
fn check(name: &str, model: &Model, dir: &Path) -> bool {
    let inputs = tract_run::inputs(model);
    let original = write(model, dir, &format!("{name}.orig.onnx"));
    let reference = tract_run::run(&original, &inputs).unwrap_or_else(|e| panic!("{name}: {e:#}"));

    // Default pipeline: runs, keeps output shapes.
    let pruned = run_pipeline(model, "group,score{criterion=l2},prune{ratio=0.5}");
    let path = write(&pruned, dir, &format!("{name}.pruned.onnx"));
    let got = tract_run::run(&path, &inputs).unwrap_or_else(|e| panic!("{name} pruned: {e:#}"));
    assert_eq!(reference.len(), got.len(), "{name}: output count");
    for (r, g) in reference.iter().zip(&got) {
        assert_eq!(r.1, g.1, "{name}: output shape changed");
    }
    let smaller = params(&pruned) < params(model);

    // Mask equivalence on exact groups.
    let exact = run_pipeline(model, "group,score,prune{ratio=0.5,exact-only=true}");
    let masked = run_pipeline(
        model,
        "group,score,prune{ratio=0.5,exact-only=true,mode=mask}",
    );
    assert_eq!(
        params(&masked),
        params(model),
        "{name}: masking changed shapes"
    );
    let a = tract_run::run(&write(&exact, dir, &format!("{name}.exact.onnx")), &inputs)
        .unwrap_or_else(|e| panic!("{name} exact: {e:#}"));
    let b = tract_run::run(
        &write(&masked, dir, &format!("{name}.masked.onnx")),
        &inputs,
    )
    .unwrap_or_else(|e| panic!("{name} masked: {e:#}"));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1, y.1, "{name}: shapes");
        let d = rel_diff(&as_f32(x), &as_f32(y));
        assert!(d <= 1e-4, "{name}: pruned and masked differ by {d}");
    }
    smaller
}

/// Fixtures whose every group is pinned (their channels reach an If branch or a function call,
/// which have no coupling rule yet), and tract's unsupported ones.
const NOTHING_TO_PRUNE: &[&str] = &["if_subgraph.onnx", "local_function.onnx"];
const TRACT_UNSUPPORTED: &[&str] = &["dtypes.onnx"];

#[test]
fn fixtures_prune_and_match_their_masked_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.push(root().join("fixtures/external_data/model.onnx"));
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if TRACT_UNSUPPORTED.contains(&name.as_str()) {
            continue;
        }
        let model = read_onnx(&path, &ReadOptions::default()).unwrap();
        let smaller = check(&name, &model, dir.path());
        assert_eq!(
            smaller,
            !NOTHING_TO_PRUNE.contains(&name.as_str()),
            "{name}: pruned = {smaller}"
        );
        checked.push(name);
    }
    assert!(checked.len() >= 12, "{checked:?}");
}

#[test]
fn spa_prune_cases_match_their_masked_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    // The prune cases, and the group cases (what the group pass finds must also prune right).
    let mut files: Vec<PathBuf> = ["passes/prune", "passes/group"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spa"))
        .collect();
    files.sort();
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let model = spa_ir::text::parse_model(&src).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(check(&name, &model, dir.path()), "{name}: nothing pruned");
        checked += 1;
    }
    assert!(checked >= 7);
}

/// Dims of the constant named `name`.
fn const_dims(model: &Model, name: &str) -> Vec<i64> {
    let g = &model.graph;
    let v = g
        .value_ids()
        .find(|&v| g.value(v).name == name)
        .unwrap_or_else(|| panic!("no value {name}"));
    g.constant(v)
        .unwrap_or_else(|| panic!("{name} is not a constant"))
        .dims
        .clone()
}

/// torch.onnx stores the equal parameters of a fresh model once and aliases the copies with
/// Identity (`fc2.bias = Identity(fc1.bias)` in `aliased_params.onnx`). `group` unties the alias,
/// so the second hidden layer is pruned while the first is protected; with untying off, the
/// alias couples them and protecting one keeps both.
#[test]
fn aliased_parameters_do_not_couple_unrelated_layers() {
    let model = fixture("aliased_params.onnx");
    let prune = "score{criterion=l2},prune{ratio=0.5,protect=fc1.weight}";
    let untied = run_pipeline(&model, &format!("group,{prune}"));
    assert_eq!(const_dims(&untied, "fc1.weight"), [64, 128]);
    assert_eq!(const_dims(&untied, "fc2.weight"), [128, 64]);
    assert_eq!(const_dims(&untied, "fc2.bias"), [64]);
    assert_eq!(const_dims(&untied, "fc1.bias"), [128]);
    let tied = run_pipeline(&model, &format!("group{{untie-constants=false}},{prune}"));
    assert_eq!(const_dims(&tied, "fc2.weight"), [128, 128]);
}
