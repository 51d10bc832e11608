//! ONNX -> IR. The file is memory-mapped and decoded with prost from a `Bytes` that owns the map,
//! so `raw_data` (and external data, mapped the same way) is shared with the map, never copied.
//!
//! Lossless for everything the IR can hold: metadata, value_info, doc strings, attribute order,
//! the storage field of each tensor, external data entries. What it cannot hold (training_info,
//! multi-device configuration, quantization annotations, type denotations, opaque types, tensor
//! segments) is refused with [`FrontendError::Unsupported`] rather than dropped.

mod convert;
mod error;
mod external;

pub use error::FrontendError;

use bytes::Bytes;
use prost::Message;
use spa_ir::Model;
use std::path::Path;

/// Options for reading an ONNX model.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The name used for the model in error messages (default: the path given to [`read_onnx`],
    /// or `<memory>` for [`decode_onnx`]).
    pub display_name: Option<String>,
    /// Populate the memory maps when they are made (default). Nearly every weight is read or
    /// written later, and faulting them in one pass is much faster than page by page; turn it
    /// off to only inspect a model.
    pub prefault: bool,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            display_name: None,
            prefault: true,
        }
    }
}

/// Read an ONNX model file and its external data (relative to the file's folder).
pub fn read_onnx(path: &Path, opts: &ReadOptions) -> Result<Model, FrontendError> {
    let file = opts
        .display_name
        .clone()
        .unwrap_or_else(|| path.display().to_string());
    let bytes = external::map_file(path, opts.prefault).map_err(|source| FrontendError::Io {
        file: file.clone(),
        source,
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    decode_named(bytes, file, Some(base_dir), opts)
}

/// Decode an ONNX model from bytes. External data is resolved relative to `base_dir`; without
/// one, a model with external data is an error.
pub fn decode_onnx(
    bytes: Bytes,
    base_dir: Option<&Path>,
    opts: &ReadOptions,
) -> Result<Model, FrontendError> {
    let file = opts
        .display_name
        .clone()
        .unwrap_or_else(|| "<memory>".to_string());
    decode_named(bytes, file, base_dir, opts)
}

fn decode_named(
    bytes: Bytes,
    file: String,
    base_dir: Option<&Path>,
    opts: &ReadOptions,
) -> Result<Model, FrontendError> {
    if bytes.is_empty() {
        return Err(FrontendError::Empty { file });
    }
    let starts_like_a_model = starts_like_a_model(&bytes);
    let proto = spa_onnx_proto::ModelProto::decode(bytes).map_err(|source| {
        if starts_like_a_model {
            FrontendError::Decode {
                file: file.clone(),
                source,
            }
        } else {
            FrontendError::NotAModel {
                file: file.clone(),
                reason: "not a protobuf ModelProto",
            }
        }
    })?;
    let external = external::ExternalFiles::new(&file, base_dir, opts.prefault);
    convert::Reader::new(file, external).model(proto)
}

/// Whether the first field key is one a `ModelProto` can have (with its wire type). Only used to
/// word the error for files that do not decode: a text file is "not an ONNX model", a cut-off
/// model is "failed to decode".
fn starts_like_a_model(bytes: &[u8]) -> bool {
    const VARINT: u64 = 0;
    const LEN: u64 = 2;
    let mut key = 0u64;
    for (i, b) in bytes.iter().take(3).enumerate() {
        key |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return matches!(
                (key >> 3, key & 7),
                (1 | 5, VARINT) | (2..=4 | 6..=8 | 14 | 20 | 25 | 26, LEN)
            );
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use spa_onnx_proto as pb;

    fn decode(bytes: Vec<u8>) -> Result<Model, FrontendError> {
        decode_onnx(Bytes::from(bytes), None, &ReadOptions::default())
    }

    fn tiny() -> pb::ModelProto {
        let t = pb::TensorProto {
            name: "w".into(),
            data_type: 1,
            dims: vec![2],
            raw_data: Bytes::from_static(&[0, 0, 128, 63, 0, 0, 0, 64]),
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(pb::GraphProto {
                name: "g".into(),
                initializer: vec![t],
                node: vec![pb::NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["w".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                output: vec![pb::ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn message(r: Result<Model, FrontendError>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn garbage_is_not_a_model() {
        assert_eq!(message(decode(vec![])), "'<memory>' is empty");
        assert_eq!(
            message(decode(b"hello, this is text".to_vec())),
            "'<memory>' is not an ONNX model (not a protobuf ModelProto)"
        );
        // Valid protobuf, but only an ir_version.
        assert_eq!(
            message(decode(vec![0x08, 0x07])),
            "'<memory>' is not an ONNX model (no graph)"
        );
        let mut m = tiny();
        m.opset_import.clear();
        assert_eq!(
            message(decode(m.encode_to_vec())),
            "'<memory>' is not an ONNX model (no opset_import)"
        );
        let mut bytes = tiny().encode_to_vec();
        bytes.truncate(bytes.len() - 3);
        assert!(message(decode(bytes)).starts_with("failed to decode '<memory>' as an ONNX model"));
    }

    #[test]
    fn tensors_are_validated() {
        let mut m = tiny();
        let g = m.graph.as_mut().unwrap();
        g.initializer[0].dims = vec![3];
        assert_eq!(
            message(decode(m.encode_to_vec())),
            "'<memory>': tensor 'w': 8 data bytes for 3 elements of f32 (expected 12)"
        );
        let mut m = tiny();
        let g = m.graph.as_mut().unwrap();
        g.initializer[0].dims = vec![i64::MAX, i64::MAX];
        assert!(message(decode(m.encode_to_vec())).contains("tensor 'w'"));
        let mut m = tiny();
        m.graph.as_mut().unwrap().initializer[0].float_data = vec![1.0, 2.0];
        assert_eq!(
            message(decode(m.encode_to_vec())),
            "'<memory>': tensor 'w': data in more than one storage field"
        );
    }

    #[test]
    fn unsupported_fields_are_refused_not_dropped() {
        let mut m = tiny();
        m.training_info.push(pb::TrainingInfoProto::default());
        assert_eq!(
            message(decode(m.encode_to_vec())),
            "'<memory>': training_info is not supported"
        );
        let mut m = tiny();
        m.graph.as_mut().unwrap().output[0].r#type = Some(pb::TypeProto {
            denotation: "IMAGE".into(),
            value: None,
        });
        assert_eq!(
            message(decode(m.encode_to_vec())),
            "'<memory>': type denotation (value 'y') is not supported"
        );
    }

    #[test]
    fn external_data_needs_a_folder() {
        let mut m = tiny();
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data = Bytes::new();
        t.data_location = 1;
        t.external_data = vec![pb::StringStringEntryProto {
            key: "location".into(),
            value: "w.bin".into(),
        }];
        assert_eq!(
            message(decode(m.encode_to_vec())),
            "'<memory>': tensor 'w': external data file 'w.bin' cannot be found: the model's \
             folder is not known"
        );
    }

    fn external_model(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut m = tiny();
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data = Bytes::new();
        t.data_location = 1;
        t.external_data = entries
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        m.encode_to_vec()
    }

    #[cfg(unix)]
    #[test]
    fn external_data_is_confined_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        let outside = dir.path().join("secret.bin");
        std::fs::write(&outside, [0u8; 8]).unwrap();
        std::os::unix::fs::symlink(&outside, models.join("link.bin")).unwrap();
        let mut data = vec![9u8; 4];
        data.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        std::fs::write(models.join("w.bin"), &data).unwrap();
        let read = |entries: &[(&str, &str)]| {
            message(decode_onnx(
                Bytes::from(external_model(entries)),
                Some(&models),
                &ReadOptions::default(),
            ))
        };
        assert_eq!(
            read(&[("location", "link.bin")]),
            "'<memory>': tensor 'w': external data location 'link.bin' is outside the model's \
             folder"
        );
        assert_eq!(
            read(&[("location", "/etc/hostname")]),
            "'<memory>': tensor 'w': external data location '/etc/hostname' is outside the \
             model's folder"
        );
        // No length: the size comes from dtype and dims (2 x f32).
        assert_eq!(read(&[("location", "w.bin"), ("offset", "4")]), "ok");
        assert_eq!(
            read(&[("location", "w.bin"), ("offset", "8")]),
            "'<memory>': tensor 'w': external data (offset 8, length 8) runs past the end of \
             'w.bin' (12 bytes)"
        );
        assert_eq!(
            read(&[("location", "w.bin"), ("offset", "-1")]),
            "'<memory>': tensor 'w': external data has a bad 'offset' value '-1'"
        );
        assert_eq!(
            read(&[
                ("location", "w.bin"),
                ("offset", "18446744073709551615"),
                ("length", "8")
            ]),
            "'<memory>': tensor 'w': external data (offset 18446744073709551615, length 8) runs \
             past the end of 'w.bin' (12 bytes)"
        );
        let model = decode_onnx(
            Bytes::from(external_model(&[
                ("location", "w.bin"),
                ("offset", "4"),
                ("length", "8"),
            ])),
            Some(&models),
            &ReadOptions::default(),
        )
        .unwrap();
        let w = model.graph.constants().next().unwrap();
        let t = model.graph.value(w).init.as_ref().unwrap();
        assert_eq!(t.to_f32().unwrap(), vec![1.0, 2.0]);
    }

    /// As deep as prost's recursion limit allows: no stack overflow in a test thread, captures
    /// resolved through every level, and the round trip is exact.
    #[test]
    fn deeply_nested_subgraphs_round_trip() {
        let mut inner = pb::GraphProto {
            name: "leaf".into(),
            node: vec![pb::NodeProto {
                op_type: "Neg".into(),
                input: vec!["y".into()],
                output: vec!["z".into()],
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "z".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        for depth in 0..30 {
            inner = pb::GraphProto {
                name: format!("level{depth}"),
                node: vec![pb::NodeProto {
                    op_type: "If".into(),
                    input: vec!["y".into()],
                    output: vec!["z".into()],
                    attribute: vec![pb::AttributeProto {
                        name: "then_branch".into(),
                        r#type: 5,
                        g: Some(inner),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                output: vec![pb::ValueInfoProto {
                    name: "z".into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
        }
        let mut m = tiny();
        let g = m.graph.as_mut().unwrap();
        g.node.extend(inner.node);
        g.output = inner.output;
        let bytes = m.encode_to_vec();
        let model = decode(bytes.clone()).unwrap();
        let mut graph = &model.graph;
        let mut levels = 0;
        while let Some(sub) = graph
            .node_ids()
            .find_map(|n| graph.node(n).subgraphs().next())
        {
            let y = sub.names()["y"];
            assert_eq!(sub.value(y).def, spa_ir::ValueDef::Capture);
            graph = sub;
            levels += 1;
        }
        assert_eq!(levels, 30);
        let back = spa_backends::onnx::encode_onnx(&model).unwrap();
        assert_eq!(pb::ModelProto::decode(&back[..]).unwrap(), m);
    }

    #[test]
    fn subgraph_names_from_outer_scopes_are_captures() {
        let mut m = tiny();
        let branch = pb::GraphProto {
            name: "then".into(),
            node: vec![pb::NodeProto {
                op_type: "Neg".into(),
                input: vec!["y".into()],
                output: vec!["z".into()],
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "z".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let g = m.graph.as_mut().unwrap();
        g.node.push(pb::NodeProto {
            op_type: "If".into(),
            input: vec!["c".into()],
            output: vec!["out".into()],
            attribute: vec![pb::AttributeProto {
                name: "then_branch".into(),
                r#type: 5,
                g: Some(branch),
                ..Default::default()
            }],
            ..Default::default()
        });
        let model = decode(m.encode_to_vec()).unwrap();
        let node = model
            .graph
            .node_ids()
            .last()
            .map(|n| model.graph.node(n))
            .unwrap();
        let body = node.subgraphs().next().unwrap();
        let names: Vec<_> = body
            .value_ids()
            .map(|v| (body.value(v).name.clone(), body.value(v).def))
            .collect();
        assert_eq!(names[0], ("y".to_string(), spa_ir::ValueDef::Capture));
        // `c` is defined nowhere: a dangling name, not a capture.
        let c = model.graph.names()["c"];
        assert_eq!(model.graph.value(c).def, spa_ir::ValueDef::Undefined);
    }
}
