//! Pruning targets, unstructured sparsity and the criteria on the command line: usage errors, the
//! `--report` JSON, the printed-back pipeline, `--help`.

use super::{fixture, run, stderr, stdout};

/// A number after `"key": ` in a JSON text.
fn json_number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    let end = json[at..].find([',', '}', '\n']).unwrap() + at;
    json[at..end].trim().parse().unwrap()
}

#[test]
fn target_and_sparsify_usage_errors_exit_2() {
    let cases = [
        ("prune{ratio=0.3,target-flops=0.5}", "option 'ratio'"),
        (
            "prune{target-flops=0.5,target-params=0.5}",
            "no other target",
        ),
        ("prune{target-flops=1.5}", "0 < F <= 1"),
        ("prune{target-params=-0.1}", "option 'target-params'"),
        ("sparsify{sparsity=1.5}", "between 0 and 1"),
        (
            "sparsify{sparsity=0.9,target-flops=0.5}",
            "option 'sparsity'",
        ),
        ("sparsify{target-flops=2}", "0 < F <= 1"),
        ("sparsify{criterion=l2}", "one of magnitude"),
        (
            "score{criterion=taylor}",
            "one of l1|l2|random|bn-scale|fpgm|lamp",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    for (pipeline, needle) in cases {
        let o = run(&[
            "tests/fixtures/mlp.onnx",
            &format!("--pass={pipeline}"),
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{pipeline}: {err}");
        assert!(err.contains(needle), "{pipeline}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{pipeline}: {err}");
        assert!(!out.exists(), "{pipeline}: output written");
    }
}

#[test]
fn prune_target_flops_reports_what_it_reached() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.onnx");
    let report = dir.path().join("report.json");
    let o = run(&[
        fixture("conv_bn_residual.onnx").to_str().unwrap(),
        "--pass=group,score{criterion=lamp},prune{target-flops=0.5}",
        "--report",
        report.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = std::fs::read_to_string(&report).unwrap();
    let achieved = json_number(&json, "achieved");
    let measured = json_number(&json, "flops_after") / json_number(&json, "flops_before");
    assert!((achieved - measured).abs() < 1e-6, "{json}");
    assert!(json.contains("\"kind\": \"target-flops\""), "{json}");
    let reached = json.contains("\"reached\": true");
    assert_eq!(reached, (achieved - 0.5).abs() <= 0.005, "{json}");
    assert!(stderr(&o).contains("target-flops=0.5"), "{}", stderr(&o));
}

#[test]
fn target_pipelines_print_back_to_themselves() {
    for pass in [
        "--pass=group,prune{target-flops=0.4}",
        "--pass=sparsify{target-flops=0.7,global=true}",
    ] {
        let o = run(&[
            "tests/fixtures/mlp.onnx",
            pass,
            "--dump-pass-pipeline",
            "-o",
            "/dev/null",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let dumped = stdout(&o).lines().next().unwrap().to_string();
        let o2 = run(&[
            "tests/fixtures/mlp.onnx",
            &format!("--pass={dumped}"),
            "--dump-pass-pipeline",
            "-o",
            "/dev/null",
        ]);
        assert!(o2.status.success(), "{dumped}: {}", stderr(&o2));
        assert_eq!(stdout(&o2).lines().next().unwrap(), dumped);
    }
}

#[test]
fn sparsify_reports_dense_and_sparse_flops() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sparse.onnx");
    let report = dir.path().join("report.json");
    let o = run(&[
        fixture("conv_bn_residual.onnx").to_str().unwrap(),
        "--pass=sparsify{sparsity=0.75,global=true}",
        "--report",
        report.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = std::fs::read_to_string(&report).unwrap();
    let sparsity = json_number(&json, "sparsity");
    assert!((sparsity - 0.75).abs() < 1e-3, "{json}");
    let dense = json_number(&json, "flops_dense");
    let sparse = json_number(&json, "flops_sparse_after");
    assert!(sparse < dense && sparse > 0.0, "{json}");
    let err = stderr(&o);
    assert!(err.contains("FLOPs dense"), "{err}");
    // Shapes are unchanged: the file is as large as the input (new bytes, same sizes).
    let before = std::fs::metadata(fixture("conv_bn_residual.onnx"))
        .unwrap()
        .len();
    let after = std::fs::metadata(&out).unwrap().len();
    assert!(after + 64 >= before, "{before} -> {after}");
}

#[test]
fn help_lists_the_criteria_and_sparsify() {
    let help = stdout(&run(&["--help"]));
    for needle in [
        "sparsify",
        "bn-scale",
        "fpgm",
        "lamp",
        "target-flops",
        "target-params",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}
