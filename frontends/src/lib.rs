//! spa-frontends: read models into the spa IR. Today that is ONNX ([`onnx`]): the protobuf is
//! decoded zero-copy from a memory map, external data is mapped and sliced, and every field the IR
//! can hold is kept so that the ONNX backend writes back what was read.
//!
//! A frontend never decides what to prune and never writes files; what it cannot represent it
//! refuses with an error instead of dropping silently.

pub mod onnx;
