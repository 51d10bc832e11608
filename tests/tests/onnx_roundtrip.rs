//! ONNX in, ONNX out, no passes: the frontend and the backend are exact inverses.
//!
//! - every fixture decodes -> IR -> encodes to a `ModelProto` equal to the decoded original;
//! - an independent runtime (tract) computes bitwise-identical outputs on original and round trip;
//! - external data is read, written back (relocated, or internalized) and re-read unchanged;
//! - every file in `tests/invalid/` gives its snapshotted error, and failed writes leave no file;
//! - random bytes and mutated fixtures never make the frontend (or the backend) panic.

use bytes::Bytes;
use prost::Message;
use spa_backends::onnx::{encode_onnx, write_onnx, BackendError, WriteOptions};
use spa_frontends::onnx::{decode_onnx, read_onnx, FrontendError, ReadOptions};
use spa_ir::{Graph, Model, Tensor, TensorData};
use spa_onnx_proto::ModelProto;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.onnx` under `dir`, recursively, sorted.
fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "onnx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn fixtures() -> Vec<PathBuf> {
    let files = onnx_files(&root().join("fixtures"));
    assert!(files.len() >= 13, "fixtures missing: {files:?}");
    files
}

/// A fixture's name relative to `tests/fixtures` (`mlp.onnx`, `external_data/model.onnx`).
fn fixture_name(path: &Path) -> String {
    let base = root().join("fixtures");
    path.strip_prefix(&base)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn decode_file(path: &Path) -> ModelProto {
    ModelProto::decode(Bytes::from(std::fs::read(path).unwrap())).unwrap()
}

fn read(path: &Path) -> Model {
    read_onnx(path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn fixtures_round_trip_to_the_same_proto() {
    for path in fixtures() {
        let original = decode_file(&path);
        let model = read(&path);
        let encoded = encode_onnx(&model).unwrap_or_else(|e| panic!("{e}"));
        let back = ModelProto::decode(&encoded[..]).unwrap();
        assert!(
            back == original,
            "{} changed in a decode -> IR -> encode round trip",
            fixture_name(&path)
        );
        assert_eq!(
            encoded.len(),
            original.encoded_len(),
            "{}",
            fixture_name(&path)
        );
    }
}

#[test]
fn fixtures_written_to_files_decode_to_the_same_proto() {
    let dir = tempfile::tempdir().unwrap();
    for path in fixtures() {
        let model = read(&path);
        let out = dir.path().join("out.onnx");
        let opts = WriteOptions {
            internalize: true,
            input_path: Some(path.clone()),
            ..WriteOptions::default()
        };
        let stats = write_onnx(&model, &out, &opts).unwrap_or_else(|e| panic!("{e}"));
        let written = decode_file(&out);
        assert_eq!(stats.bytes_written, std::fs::metadata(&out).unwrap().len());
        let mut original = decode_file(&path);
        if fixture_name(&path) == "external_data/model.onnx" {
            // Internalized: the same model with every tensor in raw_data.
            let external = read(&path);
            let raw = internalized(&external);
            original = ModelProto::decode(&encode_onnx(&raw).unwrap()[..]).unwrap();
            assert_eq!(stats.tensors_external, 0);
        }
        assert!(
            written == original,
            "{} changed when written",
            fixture_name(&path)
        );
    }
}

/// The model with external tensors turned into raw_data.
fn internalized(model: &Model) -> Model {
    let mut m = model.clone();
    let ids: Vec<_> = m.graph.constants().collect();
    for id in ids {
        if let Some(t) = m.graph.value_mut(id).init.as_mut() {
            if let TensorData::External(e) = &t.data {
                t.data = TensorData::Raw(e.bytes.clone());
            }
        }
    }
    m
}

#[test]
fn raw_data_is_shared_with_the_input_buffer() {
    let path = root().join("fixtures/conv_bn_residual.onnx");
    let buf = Bytes::from(std::fs::read(&path).unwrap());
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let model = decode_onnx(buf.clone(), None, &ReadOptions::default()).unwrap();
    let mut raw = 0;
    for id in model.graph.constants() {
        if let Some(Tensor {
            data: TensorData::Raw(b),
            ..
        }) = &model.graph.value(id).init
        {
            if !b.is_empty() {
                assert!(
                    range.contains(&(b.as_ptr() as usize)),
                    "raw_data was copied"
                );
                raw += 1;
            }
        }
    }
    assert!(raw > 10);
}

// ---------------------------------------------------------------------------------------------
// Equivalence with an independent runtime.

/// Fixtures tract 0.23 cannot load or run. Kept exact so that the test cannot pass by silently
/// skipping a model.
const TRACT_UNSUPPORTED: &[&str] = &[
    // "Unknown DatumType Bfloat16": tract has no bf16.
    "dtypes.onnx",
];

mod common;
use common::tract_run;

#[test]
fn tract_computes_identical_outputs_after_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut unsupported = Vec::new();
    let mut compared = Vec::new();
    for path in fixtures() {
        let name = fixture_name(&path);
        let model = read(&path);
        let inputs = tract_run::inputs(&model);
        let original = match tract_run::run(&path, &inputs) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("tract cannot run {name}: {e:#}");
                unsupported.push(name);
                continue;
            }
        };
        let sub = dir.path().join(name.replace('/', "_"));
        std::fs::create_dir_all(&sub).unwrap();
        let out = sub.join("round_trip.onnx");
        write_onnx(&model, &out, &WriteOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let back = tract_run::run(&out, &inputs)
            .unwrap_or_else(|e| panic!("tract ran {name} but not its round trip: {e:#}"));
        assert_eq!(original.len(), back.len(), "{name}");
        for (i, (a, b)) in original.iter().zip(&back).enumerate() {
            assert_eq!(a.0, b.0, "{name} output {i} dtype");
            assert_eq!(a.1, b.1, "{name} output {i} shape");
            assert!(a.2 == b.2, "{name} output {i} differs after a round trip");
        }
        compared.push(name);
    }
    assert_eq!(unsupported, TRACT_UNSUPPORTED, "fixtures tract cannot run");
    assert!(compared.len() >= 10, "compared only {compared:?}");
}

// ---------------------------------------------------------------------------------------------
// External data.

/// What an initializer holds, whatever its storage.
#[derive(Debug, PartialEq)]
struct Init {
    name: String,
    dtype: String,
    dims: Vec<i64>,
    bytes: Vec<u8>,
    external: bool,
}

/// Every initializer, in order.
fn initializers(g: &Graph) -> Vec<Init> {
    g.constants()
        .filter_map(|id| {
            let v = g.value(id);
            let t = v.init.as_ref()?;
            Some(Init {
                name: v.name.clone(),
                dtype: t.dtype.to_string(),
                dims: t.dims.clone(),
                bytes: t.raw_bytes().unwrap().into_owned(),
                external: t.is_external(),
            })
        })
        .collect()
}

/// (name, bytes) of every initializer, in order.
fn contents(g: &Graph) -> Vec<(String, Vec<u8>)> {
    initializers(g)
        .into_iter()
        .map(|t| (t.name, t.bytes))
        .collect()
}

fn external_location(g: &Graph, name: &str) -> Option<String> {
    g.constants().find_map(|id| {
        let v = g.value(id);
        match &v.init.as_ref()?.data {
            TensorData::External(e) if v.name == name => e.location().map(str::to_string),
            _ => None,
        }
    })
}

#[test]
fn external_data_is_read_written_back_and_reread() {
    let src = root().join("fixtures/external_data/model.onnx");
    let model = read(&src);
    let before = initializers(&model.graph);
    let external = before.iter().filter(|t| t.external).count();
    assert_eq!(external, before.len() - 1, "all but fc.bias are external");
    assert!(before.iter().any(|t| t.name == "fc.bias" && !t.external));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let opts = WriteOptions {
        input_path: Some(src.clone()),
        ..WriteOptions::default()
    };
    let stats = write_onnx(&model, &out, &opts).unwrap();
    let data = dir.path().join("out.onnx.data");
    assert_eq!(stats.tensors_external, external);
    assert_eq!(stats.external_file.as_deref(), Some(data.as_path()));
    assert_eq!(
        stats.external_bytes_written,
        std::fs::metadata(&data).unwrap().len()
    );
    let back = read(&out);
    assert_eq!(initializers(&back.graph), before);
    assert_eq!(
        external_location(&back.graph, "conv1.weight").as_deref(),
        Some("out.onnx.data")
    );
    // Apart from the data file's name, the model is the one read (same offsets: no padding
    // below 1 MiB, same order).
    let mut relocated = decode_file(&out);
    for t in &mut relocated.graph.as_mut().unwrap().initializer {
        for e in &mut t.external_data {
            if e.key == "location" {
                e.value = "weights.bin".into();
            }
        }
    }
    assert!(relocated == decode_file(&src));

    // Internalized: one file, the same tensors in raw_data.
    let inner = dir.path().join("inner.onnx");
    let opts = WriteOptions {
        internalize: true,
        ..WriteOptions::default()
    };
    let stats = write_onnx(&model, &inner, &opts).unwrap();
    assert_eq!(stats.tensors_external, 0);
    assert!(!dir.path().join("inner.onnx.data").exists());
    let back = read(&inner);
    assert!(initializers(&back.graph).iter().all(|t| !t.external));
    assert_eq!(contents(&back.graph), contents(&model.graph));
}

#[test]
fn threshold_externalizes_and_internalizing_restores_the_original() {
    let src = root().join("fixtures/conv_bn_residual.onnx");
    let model = read(&src);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("split.onnx");
    let opts = WriteOptions {
        external_threshold: Some(1024),
        external_file: Some("weights.bin".into()),
        ..WriteOptions::default()
    };
    let stats = write_onnx(&model, &out, &opts).unwrap();
    let big = initializers(&model.graph)
        .iter()
        .filter(|t| t.bytes.len() >= 1024)
        .count();
    assert!(big > 0);
    assert_eq!(stats.tensors_external, big);
    let split = read(&out);
    assert_eq!(
        external_location(&split.graph, "conv1.weight").as_deref(),
        Some("weights.bin")
    );
    assert_eq!(contents(&split.graph), contents(&model.graph));

    let joined = dir.path().join("joined.onnx");
    let opts = WriteOptions {
        internalize: true,
        ..WriteOptions::default()
    };
    write_onnx(&split, &joined, &opts).unwrap();
    assert!(decode_file(&joined) == decode_file(&src));
}

#[test]
fn oversized_models_are_split_automatically() {
    let src = root().join("fixtures/conv_bn_residual.onnx");
    let model = read(&src);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.onnx");
    let opts = WriteOptions {
        max_proto_size: 8 << 10,
        ..WriteOptions::default()
    };
    let stats = write_onnx(&model, &out, &opts).unwrap();
    assert_eq!(stats.notes.len(), 1, "{:?}", stats.notes);
    assert!(
        stats.notes[0].contains("big.onnx.data"),
        "{}",
        stats.notes[0]
    );
    assert!(stats.tensors_external > 0);
    assert!(stats.bytes_written <= 8 << 10);
    let back = read(&out);
    assert_eq!(contents(&back.graph), contents(&model.graph));

    // Asked for a threshold that cannot fit: an error, and nothing written.
    let opts = WriteOptions {
        max_proto_size: 8 << 10,
        external_threshold: Some(1 << 30),
        ..WriteOptions::default()
    };
    let err = write_onnx(&model, &dir.path().join("x.onnx"), &opts).unwrap_err();
    assert!(matches!(err, BackendError::TooLarge { .. }), "{err}");
    assert!(!dir.path().join("x.onnx").exists());
}

// ---------------------------------------------------------------------------------------------
// Bad input.

/// The outcome of reading (and, if that works, encoding) a file, with paths made relative.
fn outcome(path: &Path) -> String {
    let invalid = root().join("invalid").canonicalize().unwrap();
    let tests_dir = invalid.parent().unwrap();
    let clean = |s: String| s.replace(&format!("{}/", tests_dir.display()), "");
    let path = path.canonicalize().unwrap();
    match read_onnx(&path, &ReadOptions::default()) {
        Err(e) => format!("read error: {}", clean(e.to_string())),
        Ok(model) => match encode_onnx(&model) {
            Ok(_) => "read ok, encode ok (left to the verifier)".to_string(),
            Err(e) => format!("read ok, encode error: {e}"),
        },
    }
}

#[test]
fn invalid_inputs_give_clear_errors() {
    insta::glob!("../invalid", "**/*.onnx", |path| {
        insta::assert_snapshot!(outcome(path));
    });
}

#[test]
fn errors_name_the_problem() {
    let invalid = root().join("invalid");
    let err = |name: &str| read_onnx(&invalid.join(name), &ReadOptions::default()).unwrap_err();
    assert!(matches!(err("empty.onnx"), FrontendError::Empty { .. }));
    assert!(matches!(
        err("unknown_dtype.onnx"),
        FrontendError::UnknownDType { code: 99, .. }
    ));
    assert!(matches!(
        err("truncated.onnx"),
        FrontendError::Decode { .. }
    ));
    let e = err("missing.onnx");
    assert!(matches!(e, FrontendError::Io { .. }), "{e}");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let show = |e: BackendError| e.to_string().replace(&format!("{}/", d.display()), "");
    let model = read(&root().join("fixtures/conv_bn_residual.onnx"));

    // Output folder missing.
    let e = write_onnx(
        &model,
        &d.join("missing/out.onnx"),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        show(e),
        "cannot write 'missing/out.onnx': No such file or directory (os error 2)"
    );
    // Output is a folder.
    std::fs::create_dir(d.join("folder.onnx")).unwrap();
    let e = write_onnx(&model, &d.join("folder.onnx"), &WriteOptions::default()).unwrap_err();
    assert_eq!(show(e), "bad output path 'folder.onnx': it is a folder");
    // Data file in a missing folder: the data temp fails, nothing is left.
    let opts = WriteOptions {
        external_threshold: Some(0),
        external_file: Some("nope/w.bin".into()),
        ..WriteOptions::default()
    };
    let e = write_onnx(&model, &d.join("out.onnx"), &opts).unwrap_err();
    assert_eq!(
        show(e),
        "cannot write 'nope/w.bin': No such file or directory (os error 2)"
    );
    // A data file escaping the folder.
    let opts = WriteOptions {
        external_threshold: Some(0),
        external_file: Some("../w.bin".into()),
        ..WriteOptions::default()
    };
    let e = write_onnx(&model, &d.join("out.onnx"), &opts).unwrap_err();
    assert_eq!(
        show(e),
        "bad output path 'out.onnx': the external data file '../w.bin' must be a relative path \
         inside the output's folder"
    );
    // A graph that cannot be scheduled.
    let cyclic = read(&root().join("invalid/cycle.onnx"));
    let e = write_onnx(&cyclic, &d.join("out.onnx"), &WriteOptions::default()).unwrap_err();
    assert!(matches!(e, BackendError::InvalidGraph { .. }), "{e}");
    assert_eq!(entries(d), ["folder.onnx"]);
    assert!(entries(&d.join("folder.onnx")).is_empty());

    // The input is protected unless asked.
    let input = d.join("in.onnx");
    std::fs::copy(root().join("fixtures/mlp.onnx"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let model = read(&input);
    let opts = WriteOptions {
        input_path: Some(input.clone()),
        ..WriteOptions::default()
    };
    let e = write_onnx(&model, &d.join("./in.onnx"), &opts).unwrap_err();
    assert_eq!(
        show(e),
        "refusing to overwrite the input 'in.onnx' with the output './in.onnx' (use --in-place)"
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(entries(d), ["folder.onnx", "in.onnx"]);
    let opts = WriteOptions {
        input_path: Some(input.clone()),
        allow_overwrite_input: true,
        ..WriteOptions::default()
    };
    write_onnx(&model, &input, &opts).unwrap();
    drop(model);
    assert!(decode_file(&input) == ModelProto::decode(&before[..]).unwrap());
    assert_eq!(entries(d), ["folder.onnx", "in.onnx"]);
}

#[test]
fn external_data_of_the_input_is_protected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["model.onnx", "weights.bin"] {
        std::fs::copy(root().join("fixtures/external_data").join(f), d.join(f)).unwrap();
    }
    let input = d.join("model.onnx");
    let model = read(&input);
    let opts = WriteOptions {
        input_path: Some(input.clone()),
        external_file: Some("weights.bin".into()),
        ..WriteOptions::default()
    };
    let e = write_onnx(&model, &d.join("out.onnx"), &opts).unwrap_err();
    assert!(matches!(e, BackendError::WouldOverwriteInput { .. }), "{e}");
    assert_eq!(entries(d), ["model.onnx", "weights.bin"]);

    // In place, the data file is replaced by rename while the old one is still mapped.
    let before = initializers(&model.graph);
    let opts = WriteOptions {
        allow_overwrite_input: true,
        ..opts
    };
    write_onnx(&model, &input, &opts).unwrap();
    assert_eq!(initializers(&read(&input).graph), before);
    assert_eq!(entries(d), ["model.onnx", "weights.bin"]);
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: never panic.

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::sync::OnceLock;

    fn corpus() -> &'static Vec<Vec<u8>> {
        static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        CORPUS.get_or_init(|| {
            fixtures()
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect()
        })
    }

    /// Decode, and when that works, encode too: neither may panic.
    fn exercise(bytes: Vec<u8>) {
        if let Ok(model) = decode_onnx(Bytes::from(bytes), None, &ReadOptions::default()) {
            let _ = encode_onnx(&model);
        }
    }

    proptest! {
        // SPA_FUZZ_CASES raises the count for a longer run (see README).
        #![proptest_config(ProptestConfig {
            cases: std::env::var("SPA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            exercise(data);
        }

        #[test]
        fn mutated_fixtures_never_panic(
            which in any::<Index>(),
            cut in any::<Index>(),
            truncate in any::<bool>(),
            flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        ) {
            let mut data = which.get(corpus()).clone();
            if truncate {
                let n = cut.index(data.len() + 1);
                data.truncate(n);
            }
            if !data.is_empty() {
                for (at, byte) in &flips {
                    let i = at.index(data.len());
                    data[i] = *byte;
                }
            }
            exercise(data);
        }
    }
}
