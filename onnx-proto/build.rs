//! Compiles the vendored `proto/onnx.proto` with protox (pure Rust, no `protoc`) and prost-build.
//!
//! The schema is proto2, but the IR has no notion of field presence (an empty string and an absent
//! one are the same), so the descriptor is switched to proto3 semantics before generation: scalar
//! fields become plain values instead of `Option`s, and a decode -> IR -> encode round trip is the
//! identity on the generated types. Repeated scalars that proto2 leaves unpacked are marked
//! `packed = false` so the wire format stays the one every ONNX writer uses. Only
//! `AttributeProto.f` keeps its presence (`Option<f32>`), so that `-0.0` survives.

use prost_build::Config;
use protox::prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use protox::prost_reflect::prost_types::{DescriptorProto, FieldOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let mut fds = protox::compile(["onnx.proto"], ["proto"])?;
    for file in &mut fds.file {
        file.syntax = Some("proto3".to_string());
        for msg in &mut file.message_type {
            keep_proto2_packing(msg);
            if msg.name() == "AttributeProto" {
                // proto3 would skip writing `f = -0.0` (it equals the default) and lose its sign.
                for field in &mut msg.field {
                    if field.name() == "f" {
                        field.proto3_optional = Some(true);
                    }
                }
            }
        }
    }
    let mut config = Config::new();
    // Every `bytes` field is `bytes::Bytes`, so decoding from a memory map shares raw_data.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}

fn keep_proto2_packing(msg: &mut DescriptorProto) {
    for field in &mut msg.field {
        let packable = !matches!(
            field.r#type(),
            Type::String | Type::Bytes | Type::Message | Type::Group
        );
        let repeated = field.label() == Label::Repeated;
        if repeated && packable {
            let options = field.options.get_or_insert_with(FieldOptions::default);
            if options.packed.is_none() {
                options.packed = Some(false);
            }
        }
    }
    for nested in &mut msg.nested_type {
        keep_proto2_packing(nested);
    }
}
