//! The `spa-opt` command line: the README's commands, bad input (one-line errors, exit codes, no
//! output file left behind), pipeline flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod targets;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spa-opt"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).current_dir(root()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Files in a directory (to check that nothing was left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn readme_example_prunes_the_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned.onnx");
    let report = dir.path().join("report.json");
    let o = run(&[
        "tests/fixtures/conv_bn_residual.onnx",
        "--pass=group,score{criterion=l2},prune{ratio=0.5}",
        "--report",
        report.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = std::fs::read_to_string(&report).unwrap();
    assert!(json.contains("\"params_before\": 7866"), "{json}");
    assert!(
        json.contains("\"pinned_because\": [\"graph input 'input'"),
        "{json}"
    );
    let before = std::fs::metadata(fixture("conv_bn_residual.onnx"))
        .unwrap()
        .len();
    let after = std::fs::metadata(&out).unwrap().len();
    assert!(after < before / 2, "{before} -> {after}");
    assert!(stderr(&o).contains("params"), "{}", stderr(&o));
}

#[test]
fn no_pass_round_trip_and_text_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("same.onnx");
    let o = run(&["tests/fixtures/mlp.onnx", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["tests/fixtures/mlp.onnx"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("graph @"), "{}", stdout(&o));
    // .spa on stdin, printed back.
    let text = stdout(&run(&["tests/fixtures/mlp.onnx", "--print-constants"]));
    let mut child = bin()
        .args(["-", "--pass=dce", "--print-constants"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), text);
}

/// Every bad ONNX input: exit 1, one line naming the problem, no output file.
#[test]
fn bad_onnx_inputs_fail_cleanly() {
    let cases = [
        ("truncated.onnx", "truncated.onnx"),
        ("corrupt.onnx", "corrupt.onnx"),
        ("not_onnx.onnx", "not an ONNX model"),
        ("empty.onnx", "empty"),
        ("unknown_dtype.onnx", "unknown data type code 99"),
        ("undefined_input.onnx", "never defined"),
        ("cycle.onnx", "cycle"),
        ("shape_mismatch.onnx", "broadcast"),
        ("missing_external/model.onnx", "weights.bin"),
        ("short_external/model.onnx", "weights.bin"),
        ("escape_external/model.onnx", "../../etc/passwd"),
    ];
    for (file, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.onnx");
        let input = format!("tests/invalid/{file}");
        let o = run(&[&input, "-o", out.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.starts_with("spa-opt: error: "), "{file}: {err}");
        assert!(err.contains(needle), "{file}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
        assert!(
            listing(dir.path()).is_empty(),
            "{file} left {:?}",
            listing(dir.path())
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let cases = [
        (
            vec!["tests/fixtures/mlp.onnx", "--pass=frobnicate"],
            "unknown pass 'frobnicate'",
        ),
        (
            vec!["tests/fixtures/mlp.onnx", "--pass=prune{ratio=lots}"],
            "option 'ratio' expects a number",
        ),
        (
            vec!["tests/fixtures/mlp.onnx", "--pass=dce{x=1}"],
            "unknown option 'x'",
        ),
        (
            vec!["tests/fixtures/mlp.onnx", "--pass=prune{ratio=2}"],
            "between 0 and 1",
        ),
        (
            vec!["tests/fixtures/mlp.onnx", "--pass=prune{ratio"],
            "column",
        ),
        (
            vec!["tests/fixtures/mlp.onnx", "--bogus-flag"],
            "--bogus-flag",
        ),
        (vec!["tests/fixtures/mlp.onnx", "--emit=onnx"], "stdout"),
    ];
    for (args, needle) in cases {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn unwritable_output_and_input_protection() {
    let o = run(&["tests/fixtures/mlp.onnx", "-o", "/nonexistent-dir/out.onnx"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent-dir"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m.onnx");
    std::fs::copy(fixture("mlp.onnx"), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let c = copy.to_str().unwrap();
    let o = run(&[c, "--pass=group,prune", "-o", c]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--in-place"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    assert_eq!(listing(dir.path()), vec!["m.onnx".to_string()]);
    let o = run(&[c, "--pass=group,prune", "-o", c, "--in-place", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&copy).unwrap().len() < before.len());
}

#[test]
fn failing_pass_writes_nothing() {
    // A .spa model that the verifier rejects after parsing.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    let o = run(&[
        "tests/invalid/shape_mismatch.spa",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(listing(dir.path()).is_empty());
}

/// Writing to a device writes through it: atomic replacement must not swap a temp file in for
/// the device node.
#[test]
fn output_to_a_device_keeps_the_device() {
    use std::os::unix::fs::FileTypeExt;
    for out in [["-o", "/dev/null"], ["--emit=onnx", "-o"]] {
        let mut args = vec!["tests/fixtures/mlp.onnx", "-q"];
        args.extend(out);
        if args.last() == Some(&"-o") {
            args.push("/dev/null");
        }
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device(), "/dev/null was replaced");
    }
}

#[test]
fn pipeline_flags() {
    let o = run(&[
        "tests/fixtures/mlp.onnx",
        "--pass=group",
        "--pass=prune{ratio=0.25}",
        "--dump-pass-pipeline",
        "-o",
        "/dev/null",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dumped = stdout(&o).lines().next().unwrap().to_string();
    assert!(dumped.starts_with("group{fold-shapes=true"), "{dumped}");
    assert!(dumped.contains("prune{ratio=0.25,"), "{dumped}");
    // The dump parses back to itself.
    let o2 = run(&[
        "tests/fixtures/mlp.onnx",
        &format!("--pass={dumped}"),
        "--dump-pass-pipeline",
        "-o",
        "/dev/null",
    ]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(stdout(&o2).lines().next().unwrap(), dumped);

    let o = run(&[
        "tests/fixtures/mlp.onnx",
        "--pass=shape-infer,dce",
        "--timing",
        "--pass-statistics",
        "--print-ir-after=dce",
        "-o",
        "/dev/null",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("Execution time report"), "{err}");
    assert!(err.contains("write"), "{err}");
    assert!(err.contains("Pass statistics report"), "{err}");
    assert!(err.contains("IR Dump After dce"), "{err}");

    let help = stdout(&run(&["--help"]));
    let list = stdout(&run(&["--list-passes"]));
    for pass in [
        "group",
        "score",
        "prune",
        "dce",
        "fold-shapes",
        "shape-infer",
        "verify",
        "test-print-groups",
        "test-print-scores",
        "test-print-shapes",
    ] {
        assert!(help.contains(pass), "--help lacks {pass}");
        assert!(list.contains(pass), "--list-passes lacks {pass}");
    }
    assert!(help.contains("ratio=<float>"), "{help}");
}
