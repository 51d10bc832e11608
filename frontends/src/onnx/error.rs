//! Errors of the ONNX frontend: one line each, naming the file and the tensor, node or value.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FrontendError {
    #[error("cannot read '{file}': {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{file}' is empty")]
    Empty { file: String },
    /// Truncated or corrupt protobuf, or not protobuf at all.
    #[error("failed to decode '{file}' as an ONNX model: {source}")]
    Decode {
        file: String,
        #[source]
        source: prost::DecodeError,
    },
    /// Bytes that happen to parse as protobuf but carry no model.
    #[error("'{file}' is not an ONNX model ({reason})")]
    NotAModel { file: String, reason: &'static str },
    #[error("'{file}': tensor '{tensor}' has unknown data type code {code}")]
    UnknownDType {
        file: String,
        tensor: String,
        code: i32,
    },
    #[error("'{file}': tensor '{tensor}': {reason}")]
    BadTensor {
        file: String,
        tensor: String,
        reason: String,
    },
    #[error("'{file}': tensor '{tensor}': external data {reason}")]
    ExternalData {
        file: String,
        tensor: String,
        reason: String,
    },
    /// A field the IR cannot represent; refusing is better than dropping it silently.
    #[error("'{file}': {what} is not supported")]
    Unsupported { file: String, what: String },
    /// A structurally invalid message: an attribute without a kind, a type without an element type.
    #[error("'{file}': {context}: {reason}")]
    Malformed {
        file: String,
        context: String,
        reason: String,
    },
}
