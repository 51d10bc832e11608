//! spa-backends: write the spa IR out. [`onnx`] writes ONNX protobuf (the exact inverse of the
//! ONNX frontend, with external data, atomically); [`text`] writes the `.spa` text atomically.
//!
//! A backend never changes the model it is given and never leaves a partial file behind: output
//! goes to a temp file in the destination folder and is renamed into place.

pub mod mlir;
pub mod onnx;
pub mod text;
