//! spa-ir: the channel-aware graph IR of spa-opt.
//!
//! A [`Model`] owns a [`Graph`] of generic [`Node`]s and [`Value`]s in arenas addressed by typed ids.
//! Value types may carry channel-space expressions (`f32[1,64@g0,56,56]`) written by the `group`
//! pass. Tensors keep their dtype and exact bytes. What an op means lives in the op registry
//! ([`ops`]); the text format ([`text`]) prints and parses the IR; the [`verify`] module checks it.
//!
//! This crate never reads or writes protobuf, never touches files, and never decides what to
//! prune: frontends build the IR, passes transform it, backends write it.

pub mod attr;
pub mod coupling;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod model;
pub mod ops;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;

pub use attr::{AttrKind, AttrValue, Attribute, SparseTensor};
pub use dtype::DType;
pub use error::IrError;
pub use graph::{Graph, Node, NodeId, Value, ValueDef, ValueId};
pub use interp::InterpError;
pub use model::{ChannelSpace, Function, Model, OpsetImport};
pub use tensor::{ExternalData, Tensor, TensorData};
pub use types::{Axis, ChannelExpr, Dim, SpaceId, TensorType, Type};
