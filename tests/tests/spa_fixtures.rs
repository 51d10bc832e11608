//! The `.spa` text form of every ONNX fixture: printing is deterministic (snapshotted, large
//! constants elided), and print -> parse is the identity: the reparsed model prints the same text
//! and encodes to the same ONNX `ModelProto` as the original.

use bytes::Bytes;
use prost::Message;
use spa_backends::onnx::encode_onnx;
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::text::{parse_model, print_model, PrintOptions};
use spa_onnx_proto::ModelProto;
use std::path::PathBuf;

fn fixtures() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.push(root.join("external_data/model.onnx"));
    v.sort();
    v
}

#[test]
fn print_parse_is_identity_on_every_fixture() {
    let full = PrintOptions {
        print_constants: true,
        ..PrintOptions::default()
    };
    let files = fixtures();
    assert!(files.len() >= 13);
    for path in files {
        let name = path.display().to_string();
        let model = read_onnx(&path, &ReadOptions::default()).unwrap();
        let text = print_model(&model, &full);
        let back = parse_model(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(print_model(&back, &full), text, "{name}: reprint differs");
        let a = ModelProto::decode(Bytes::from(encode_onnx(&model).unwrap())).unwrap();
        let b = ModelProto::decode(Bytes::from(encode_onnx(&back).unwrap())).unwrap();
        assert_eq!(a, b, "{name}: ONNX from the reparsed text differs");
    }
}

#[test]
fn printed_fixtures() {
    for path in fixtures() {
        let model = read_onnx(&path, &ReadOptions::default()).unwrap();
        let name = path
            .strip_prefix(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
            .unwrap()
            .display()
            .to_string()
            .replace('/', "__");
        insta::assert_snapshot!(name, print_model(&model, &PrintOptions::default()));
    }
}
