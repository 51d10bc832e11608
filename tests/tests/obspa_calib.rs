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

#[test]
fn masked_positions_do_not_change_the_scores() {
    // Attention (Q/K/V, an additive mask on the keys, output projection into the residual
    // stream) and an MLP, with a padding mask input: with `mask=m`, what the padded positions
    // hold changes no score (Hessians, stream energies and the Q/K measurement leave them out,
    // and the attention mask keeps them out of every other position); without it, it does.
    use spa_passes::calib::{npy, npz};
    let model = spa_ir::text::parse_model(
        "graph @main(%x: f32[N,6,16], %m: i64[N,6]) -> (%y: f32[N,6,16]) {
  %wq = const f32[16,16] #rand<1>
  %wk = const f32[16,16] #rand<2>
  %wv = const f32[16,16] #rand<3>
  %wo = const f32[16,16] #rand<4>
  %q = onnx.MatMul(%x, %wq) : f32[N,6,16]
  %k = onnx.MatMul(%x, %wk) : f32[N,6,16]
  %v = onnx.MatMul(%x, %wv) : f32[N,6,16]
  %hs = const i64[4] dense<[0, 6, 4, 4]>
  %q4 = onnx.Reshape(%q, %hs) : f32[N,6,4,4]
  %k4 = onnx.Reshape(%k, %hs) : f32[N,6,4,4]
  %v4 = onnx.Reshape(%v, %hs) : f32[N,6,4,4]
  %qt = onnx.Transpose(%q4) {perm = [0, 2, 1, 3]} : f32[N,4,6,4]
  %kt = onnx.Transpose(%k4) {perm = [0, 2, 3, 1]} : f32[N,4,4,6]
  %vt = onnx.Transpose(%v4) {perm = [0, 2, 1, 3]} : f32[N,4,6,4]
  %s = onnx.MatMul(%qt, %kt) : f32[N,4,6,6]
  %mf = onnx.Cast(%m) {to = 1} : f32[N,6]
  %one = const f32[] dense<[1.0]>
  %pad = onnx.Sub(%one, %mf) : f32[N,6]
  %big = const f32[] dense<[-10000.0]>
  %madd = onnx.Mul(%pad, %big) : f32[N,6]
  %ax = const i64[2] dense<[1, 2]>
  %m4 = onnx.Unsqueeze(%madd, %ax) : f32[N,1,1,6]
  %sm = onnx.Add(%s, %m4) : f32[N,4,6,6]
  %p = onnx.Softmax(%sm) {axis = -1} : f32[N,4,6,6]
  %o = onnx.MatMul(%p, %vt) : f32[N,4,6,4]
  %ot = onnx.Transpose(%o) {perm = [0, 2, 1, 3]} : f32[N,6,4,4]
  %os = const i64[3] dense<[0, 6, 16]>
  %o3 = onnx.Reshape(%ot, %os) : f32[N,6,16]
  %a = onnx.MatMul(%o3, %wo) : f32[N,6,16]
  %h = onnx.Add(%x, %a) : f32[N,6,16]
  %w1 = const f32[16,32] #rand<5>
  %f1 = onnx.MatMul(%h, %w1) : f32[N,6,32]
  %r = onnx.Relu(%f1) : f32[N,6,32]
  %w2 = const f32[32,16] #rand<6>
  %f2 = onnx.MatMul(%r, %w2) : f32[N,6,16]
  %y = onnx.Add(%h, %f2) : f32[N,6,16]
  return %y
}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let n = 48;
    // Samples keep 2 to 6 positions; padded positions get `pad` times some noise.
    let mask: Vec<i64> = (0..n * 6)
        .map(|i| i64::from(i % 6 < 2 + (i / 6) % 5))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pad: f32| {
        let x: Vec<f32> = (0..n * 6 * 16)
            .map(|i| {
                let v = ((i as f32) * 0.618).sin() + ((i as f32) * 0.137).cos();
                if mask[i / 16] == 0 {
                    v * pad
                } else {
                    v
                }
            })
            .collect();
        let bytes = npz::write_npz(&[
            ("x", npy::write_npy_f32(&[n, 6, 16], &x)),
            ("m", npy::write_npy_i64(&[n, 6], &mask)),
        ]);
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        quoted(path)
    };
    let (a, b) = (write("a.npz", 1.0), write("b.npz", -3.0));
    let scores = |data: &str, mask: &str| {
        let (_, out) = run(
            &model,
            &format!("group,score{{criterion=obspa,data={data}{mask}}},test-print-scores"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s: Vec<String> = out
            .out
            .lines()
            .filter(|l| l.starts_with('g'))
            .map(String::from)
            .collect();
        assert!(s.len() >= 3, "{}", out.out);
        // Q/K measured through the attention output, V/O re-based: the masked paths run.
        let stat = |name: &str| {
            out.stats
                .entries
                .iter()
                .find(|(_, k, _)| k == name)
                .map(|(_, _, v)| v.clone())
        };
        assert_eq!(
            stat("Q/K head-dim groups scored through the attention output").as_deref(),
            Some("1"),
            "{:?}",
            out.stats.entries
        );
        assert_eq!(
            stat("attention V/O head dims re-based per head").as_deref(),
            Some("1")
        );
        s
    };
    assert_eq!(scores(&a, ",mask=m"), scores(&b, ",mask=m"));
    assert_ne!(scores(&a, ""), scores(&b, ""));
}
