//! MLIR out: the model's main graph as one `func.func @main` in upstream dialects, TOSA where TOSA
//! has the op (convolutions, pools, matmul, elementwise, reductions, data movement) and
//! decompositions into TOSA ops otherwise (softmax, layer norm, GELU, batch norm as a per-channel
//! multiply-add). Written as text; no LLVM is needed unless the `mlir` feature asks for the
//! in-process verifier ([`verify`]).
//!
//! Form (see docs/mlir.md): `func.func`, `func.return` and `arith.constant` in their custom form,
//! every TOSA op in the generic form `"tosa.op"(...) <{props}> : (...) -> ...`, which both
//! `mlir-opt-22` and `iree-compile --iree-input-type=tosa` (IREE 3.13) parse. Constants larger than
//! [`MlirOptions::inline_limit`] elements are `dense_resource` blobs in the trailing
//! `{-# dialect_resources #-}` section (hex, prefixed by their alignment), so a module is about
//! twice its weights' size in bytes and is written at memory speed.
//!
//! Static shapes are required (MLIR types are taken from shape inference); an op the emitter does
//! not lower, or a dynamic dimension, is one error naming the op type and the node, never a
//! silently wrong module.

mod emit;
mod host;
mod lower;
#[cfg(feature = "mlir")]
pub mod verify;

pub use emit::MlirOptions;

use crate::text::{write_text_atomic, TextWriteError};
use emit::{Emitter, Layout, Val};
use host::HostTensor;
use spa_ir::{IrError, Model, NodeId, Tensor, ValueDef, ValueId};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MlirError {
    #[error("cannot lower {op} node '{node}' to MLIR: {reason}")]
    Unsupported {
        op: String,
        node: String,
        reason: String,
    },
    #[error(
        "value '{value}' has type {ty}; MLIR output needs static shapes and known element types"
    )]
    DynamicShape { value: String, ty: String },
    #[error("cannot emit MLIR: {0}")]
    Ir(#[from] IrError),
    #[error("the emitted MLIR module does not verify: {0}")]
    Invalid(String),
    #[error(transparent)]
    Write(#[from] TextWriteError),
}

/// The module as text.
pub fn emit_mlir(model: &Model, opts: &MlirOptions) -> Result<String, MlirError> {
    let types = spa_ir::infer::infer_types(model)?;
    let mut e = Emitter::new(model, &types, opts);
    let g = &model.graph;

    let mut inputs = Vec::new();
    for &v in &g.inputs {
        let (dtype, dims) = e.value_type(v)?;
        let val = Val {
            name: format!("%arg{}", inputs.len()),
            dtype,
            dims,
        };
        e.bind(v, Layout::Nchw, val.clone());
        inputs.push(val);
    }

    // Only nodes that outputs depend on through data operands are lowered; shape computations
    // feeding Reshape and the like are read as constants and dropped.
    let order = g.topo_order()?;
    fold_constant_nodes(&mut e, model, &order);
    let mut live = vec![false; g.value_capacity()];
    for &v in &g.outputs {
        live[v.index()] = true;
    }
    let mut needed = vec![false; g.node_capacity()];
    for &n in order.iter().rev() {
        let node = g.node(n);
        if !node.outputs.iter().flatten().any(|o| live[o.index()]) {
            continue;
        }
        let folded = node.outputs.iter().flatten().all(|&o| e.host(o).is_some());
        if folded {
            continue;
        }
        needed[n.index()] = true;
        let params = lower::param_inputs(&node.op_type);
        for (i, v) in node.inputs.iter().enumerate() {
            if let Some(v) = v {
                if !params.contains(&i) {
                    live[v.index()] = true;
                }
            }
        }
    }
    for &n in &order {
        if !needed[n.index()] {
            continue;
        }
        let node = g.node(n);
        e.set_node(node);
        if node.subgraphs().next().is_some() {
            return Err(e.unsupported("control flow with subgraphs is not lowered"));
        }
        e.lower(node)?;
    }

    let mut outputs = Vec::new();
    for &v in &g.outputs {
        let def = g.value(v).def;
        if let ValueDef::Node(n, _) = def {
            e.set_node(g.node(n));
        }
        let val = e.get(v, Layout::Nchw)?;
        let (dtype, dims) = e.value_type(v)?;
        if val.dtype != dtype || val.dims != dims {
            return Err(MlirError::Invalid(format!(
                "output '{}' came out as {} instead of {}",
                g.value(v).name,
                val.ty(),
                emit::tensor_type(dtype, &dims)
            )));
        }
        outputs.push(val);
    }
    Ok(e.finish(&inputs, &outputs))
}

/// Largest result (bytes) of a node over constants that is evaluated on the host.
const FOLD_MAX_BYTES: u64 = 64 << 20;

/// Evaluate every node whose inputs are all constants on the host, with the reference
/// interpreter, as `fold-constants` would: masks built from ConstantOfShape/ScatterND, index
/// tables, weight casts and transposes become constants instead of ops that have no TOSA form.
/// A node the interpreter cannot evaluate is left to the lowering (and its error).
fn fold_constant_nodes(e: &mut Emitter<'_>, model: &Model, order: &[NodeId]) {
    let g = &model.graph;
    for &n in order {
        let node = g.node(n);
        if !spa_ir::interp::foldable(node) {
            continue;
        }
        let outs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        if outs.is_empty() || outs.iter().all(|&o| e.host(o).is_some()) {
            continue;
        }
        let mut owned = Vec::with_capacity(node.inputs.len());
        for i in &node.inputs {
            owned.push(match i {
                None => None,
                Some(v) => match e.host(*v) {
                    Some(h) => Some(Tensor::from_raw(
                        h.dtype,
                        h.dims,
                        bytes::Bytes::from(h.bytes.into_owned()),
                    )),
                    None => break,
                },
            });
        }
        if owned.len() != node.inputs.len() {
            continue;
        }
        let refs: Vec<Option<&Tensor>> = owned.iter().map(Option::as_ref).collect();
        let Ok(values) = spa_ir::interp::eval_constant_node(model, g, n, &refs) else {
            continue;
        };
        if values.len() != outs.len() || values.iter().any(|t| t.byte_len() > FOLD_MAX_BYTES) {
            continue;
        }
        for (o, t) in outs.into_iter().zip(values) {
            let Ok(bytes) = t.raw_bytes() else {
                continue;
            };
            let host = HostTensor {
                dtype: t.dtype,
                dims: t.dims.clone(),
                bytes: std::borrow::Cow::Owned(bytes.into_owned()),
            };
            e.folded.insert(o, host);
        }
    }
}

/// Emit and write atomically; with the `mlir` feature the module is verified first, and an
/// invalid module is never written.
pub fn write_mlir(
    model: &Model,
    path: &Path,
    input: Option<&Path>,
    opts: &MlirOptions,
) -> Result<(), MlirError> {
    let text = emit_mlir(model, opts)?;
    #[cfg(feature = "mlir")]
    verify::verify_module(&text)?;
    write_text_atomic(path, text.as_bytes(), input)?;
    Ok(())
}
