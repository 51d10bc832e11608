//! spa-onnx-proto: the ONNX protobuf schema (`proto/onnx.proto`, vendored unchanged from the onnx
//! 1.23.2 Python package, IR version 14) as prost types.
//!
//! Every `bytes` field is a `bytes::Bytes`: decoding a `ModelProto` from a `Bytes` that wraps a
//! memory map shares `raw_data` with the map instead of copying it. Scalar fields have proto3
//! semantics (no presence), see `build.rs`. This crate holds generated types only: no I/O, no
//! conversion to the IR.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));

pub use prost::Message;
