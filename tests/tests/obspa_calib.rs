//! Calibration data files for `score{criterion=obspa|activation,data=FILE}`: files written by
//! NumPy (`np.save`, `np.savez`, `np.savez_compressed`; scripts/gen_calib_fixtures.py) are read,
//! give the same scores whatever the container, and bad files give a one-line error naming the
//! graph input or array concerned.

use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::Model;
use spa_passes::{register_all_passes, PassManager, RunConfig, RunOutput};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/dynamic_batch.onnx`: an MLP with input 'input' f32[batch, 64].
fn mlp() -> Model {
    read_onnx(
        &root().join("fixtures/dynamic_batch.onnx"),
        &ReadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn run(model: &Model, pipeline: &str) -> Result<(Model, RunOutput), String> {
    let mut m = model.clone();
    let p = register_all_passes()
        .parse(pipeline)
        .map_err(|e| e.to_string())?;
    let mut out = RunOutput::default();
    PassManager::new(p, RunConfig::default())
        .run(&mut m, &mut out)
        .map_err(|e| e.to_string())?;
    Ok((m, out))
}

fn quoted(p: PathBuf) -> String {
    format!("\"{}\"", p.display())
}

#[test]
fn numpy_files_give_the_same_scores() {
    let m = mlp();
    let mut printed = Vec::new();
    for file in ["mlp_input.npz", "mlp_input_stored.npz", "mlp_input.npy"] {
        for criterion in ["obspa", "activation"] {
            let data = quoted(root().join("fixtures/calib").join(file));
            let (_, out) = run(
                &m,
                &format!("group,score{{criterion={criterion},data={data}}},test-print-scores"),
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(out.out.contains(&format!("// scores ({criterion})")));
            printed.push((criterion, out.out));
        }
    }
    for (c, text) in &printed[2..] {
        let first = &printed
            .iter()
            .find(|(k, _)| k == c)
            .unwrap_or_else(|| unreachable!())
            .1;
        assert_eq!(text, first, "{c}: scores differ between containers");
    }
    // Different data (the first 8 samples) gives different obspa scores.
    let data = quoted(root().join("fixtures/calib/mlp_input.npz"));
    let (_, out) = run(
        &m,
        &format!("group,score{{criterion=obspa,data={data},samples=8}},test-print-scores"),
    )
    .unwrap();
    assert_ne!(out.out, printed[0].1);
}

#[test]
fn bad_files_give_one_line_errors() {
    let m = mlp();
    let cases = [
        (
            "wrong_name.npz",
            "wrong",
            "array 'x' names no graph input (data inputs: 'input')",
        ),
        (
            "extra_array.npz",
            "wrong",
            "array 'mask' names no graph input",
        ),
        (
            "wrong_shape.npy",
            "graph input 'input'",
            "expected shape [?, 64]",
        ),
        (
            "wrong_dtype.npy",
            "graph input 'input'",
            "the input is f32 but the array is '<i8'",
        ),
        ("nan.npy", "graph input 'input'", "element 197 is NaN"),
        ("inf.npz", "graph input 'input'", "element 0 is inf"),
        ("complex.npy", "complex.npy", "unsupported dtype '<c8'"),
        ("truncated.npy", "truncated.npy", "data is truncated"),
        ("missing.npz", "cannot read", "missing.npz"),
    ];
    for (file, a, b) in cases {
        for criterion in ["obspa", "activation"] {
            let data = quoted(root().join("invalid/calib").join(file));
            let e = match run(
                &m,
                &format!("group,score{{criterion={criterion},data={data}}}"),
            ) {
                Ok(_) => panic!("{file}: accepted"),
                Err(e) => e,
            };
            assert_eq!(e.lines().count(), 1, "{file}: {e}");
            let a = if a == "wrong" { "calibration data" } else { a };
            assert!(e.contains(a) && e.contains(b), "{file}: {e}");
            assert!(
                e.starts_with("pass 'score': calibration data"),
                "{file}: {e}"
            );
        }
    }
}

#[test]
fn bad_options_are_refused() {
    let m = mlp();
    let e = run(&m, "group,score{criterion=activation,data=none}").unwrap_err();
    assert!(
        e.contains("option 'data'") && e.contains("needs data"),
        "{e}"
    );
    let e = run(&m, "group,score{criterion=obspa,damp=-1}").unwrap_err();
    assert!(e.contains("option 'damp'"), "{e}");
    // The padding mask: obspa with data only, a graph input the data feeds, [batch, positions].
    for (pipeline, want) in [
        (
            "group,score{criterion=l2,mask=input}",
            "no mask unless criterion=obspa",
        ),
        (
            "group,score{criterion=obspa,data=none,mask=input}",
            "no mask unless criterion=obspa has data",
        ),
        (
            "group,score{criterion=obspa,data=synthetic,samples=4,mask=attention_mask}",
            "the name of a graph input (input)",
        ),
    ] {
        let e = run(&m, pipeline).unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.contains("option 'mask'") && e.contains(want),
            "{pipeline}: {e}"
        );
    }
}
