//! Errors of the IR crate. Each names the node, value, tensor or location it concerns.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    #[error("node '{node}' ({op}): input '{value}' is never defined")]
    UndefinedInput {
        node: String,
        op: String,
        value: String,
    },
    #[error("graph output '{value}' is never defined")]
    UndefinedOutput { value: String },
    #[error("value '{value}' is defined more than once")]
    Redefined { value: String },
    #[error("the graph has a cycle through node '{node}' ({op})")]
    Cycle { node: String, op: String },
    #[error("node '{node}' ({op}): {reason}")]
    Shape {
        node: String,
        op: String,
        reason: String,
    },
    #[error("value '{value}': declared type {declared} does not match inferred type {inferred}")]
    TypeMismatch {
        value: String,
        declared: String,
        inferred: String,
    },
    #[error("value '{value}': channel expression {expr} has size {}, but axis {axis} has {dim}", show_size(.size))]
    ChannelSize {
        value: String,
        expr: String,
        size: Option<u64>,
        axis: usize,
        dim: String,
    },
    /// A channel expression that refers to a missing space, or sits on a non-tensor type.
    #[error("value '{value}': {reason}")]
    BadChannels { value: String, reason: String },
    #[error("node '{node}' ({op}): {reason}")]
    BadNode {
        node: String,
        op: String,
        reason: String,
    },
}

fn show_size(size: &Option<u64>) -> String {
    match size {
        Some(n) => n.to_string(),
        None => "overflowing".to_string(),
    }
}
