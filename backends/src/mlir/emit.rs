//! The emitter's state: SSA names, the two layouts a 4-D value may exist in, constants, and the
//! small builders every lowering uses (one per TOSA op form).
//!
//! Layouts: ONNX is NCHW, TOSA convolutions and pools are NHWC. A 4-D value may exist in either
//! form or both; a form is made on demand (a transpose, or a reshape when H = W = 1), and
//! layout-agnostic ops (elementwise, concat, slice, reductions) keep working in whatever form
//! their operands already have. So a chain conv -> relu -> conv never transposes back and forth,
//! and two consecutive transposes that compose to the identity are never emitted.

use super::host::{elem_size, f32_literal, float_literal, push_hex, HostTensor};
use super::MlirError;
use spa_ir::infer::InferResult;
use spa_ir::{DType, Graph, Model, Node, ValueId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

/// A tensor SSA value in the module.
#[derive(Clone, Debug)]
pub(crate) struct Val {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<i64>,
}

impl Val {
    pub fn ty(&self) -> String {
        tensor_type(self.dtype, &self.dims)
    }
    pub(crate) fn arg(&self) -> (String, String) {
        (self.name.clone(), self.ty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Layout {
    Nchw,
    Nhwc,
}

/// NCHW -> NHWC (`perm[i]` is the source axis of output axis `i`).
pub(crate) const TO_NHWC: [usize; 4] = [0, 2, 3, 1];
/// NHWC -> NCHW.
pub(crate) const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
/// Where NCHW axis `a` sits in NHWC.
pub(crate) const NHWC_POS: [usize; 4] = [0, 3, 1, 2];

/// The forms a graph value has been emitted in.
#[derive(Clone, Debug, Default)]
pub(crate) struct Forms {
    nchw: Option<Val>,
    nhwc: Option<Val>,
}

/// Options of the text emitter.
#[derive(Clone, Debug)]
pub struct MlirOptions {
    /// Constants with at most this many elements are written inline as `dense<...>`; larger
    /// ones as `dense_resource` blobs.
    pub inline_limit: usize,
    /// Replace blob contents by their size and digest (for snapshots; the text no longer parses).
    pub elide_resources: bool,
}

impl Default for MlirOptions {
    fn default() -> Self {
        MlirOptions {
            inline_limit: 16,
            elide_resources: false,
        }
    }
}

pub(crate) struct Emitter<'m> {
    pub g: &'m Graph,
    pub types: &'m InferResult,
    pub opts: &'m MlirOptions,
    pub opset: i64,
    body: String,
    next: u32,
    pub(crate) forms: HashMap<ValueId, Forms>,
    /// Values produced by a transpose: result name -> (source, perm), to compose and fold.
    transposed: HashMap<String, (Val, Vec<usize>)>,
    consts: HashMap<String, Val>,
    resources: Vec<(String, HostTensor<'static>)>,
    resource_names: HashMap<String, usize>,
    /// The current node's location, appended to its ops.
    loc: String,
    /// The node being lowered, for errors.
    pub node_label: String,
    pub node_op: String,
    /// Values of nodes over constants, evaluated on the host (see `fold_constant_nodes`).
    pub(crate) folded: HashMap<ValueId, HostTensor<'static>>,
}

/// `tensor<1x3xf32>` (`tensor<f32>` for a scalar).
pub(crate) fn tensor_type(dtype: DType, dims: &[i64]) -> String {
    let mut s = String::from("tensor<");
    for d in dims {
        let _ = write!(s, "{d}x");
    }
    s.push_str(elem_type(dtype).unwrap_or("none"));
    s.push('>');
    s
}

/// The MLIR element type of a dtype the emitter handles.
pub(crate) fn elem_type(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Bf16 => "bf16",
        DType::F64 => "f64",
        DType::I8 => "i8",
        DType::I16 => "i16",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::Bool => "i1",
        _ => return None,
    })
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\{:02X}", c as u32 & 0xff);
            }
            c => out.push(c),
        }
    }
    out
}

/// A resource key (`bare-id`) derived from a value name.
fn resource_key(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s.insert(0, '_');
    }
    s
}

pub(crate) fn ints_attr(kind: &str, v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("array<{kind}: {}>", items.join(", "))
}

impl<'m> Emitter<'m> {
    pub fn new(model: &'m Model, types: &'m InferResult, opts: &'m MlirOptions) -> Emitter<'m> {
        Emitter {
            g: &model.graph,
            types,
            opts,
            opset: model.opset("").unwrap_or(spa_ir::infer::DEFAULT_OPSET),
            body: String::new(),
            next: 0,
            forms: HashMap::new(),
            transposed: HashMap::new(),
            consts: HashMap::new(),
            resources: Vec::new(),
            resource_names: HashMap::new(),
            loc: String::new(),
            node_label: String::new(),
            node_op: String::new(),
            folded: HashMap::new(),
        }
    }

    pub fn set_node(&mut self, node: &Node) {
        self.node_label = node.label();
        self.node_op = node.qualified_op();
        self.loc = format!(" loc(\"{}\")", escape(&node.label()));
    }

    pub fn unsupported(&self, reason: impl Into<String>) -> MlirError {
        MlirError::Unsupported {
            op: self.node_op.clone(),
            node: self.node_label.clone(),
            reason: reason.into(),
        }
    }

    fn fresh(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        format!("%{n}")
    }

    // ---- graph values ------------------------------------------------------------------------

    /// The static type of a graph value.
    pub fn value_type(&self, v: ValueId) -> Result<(DType, Vec<i64>), MlirError> {
        let value = self.g.value(v);
        let ty = self.types.ty(v).unwrap_or(&value.ty);
        let t = ty.as_tensor().ok_or_else(|| MlirError::DynamicShape {
            value: value.name.clone(),
            ty: ty.to_string(),
        })?;
        match (t.dtype, t.static_dims()) {
            (Some(d), Some(dims)) if elem_type(d).is_some() => Ok((d, dims)),
            (Some(d), Some(_)) => Err(MlirError::Unsupported {
                op: self.node_op.clone(),
                node: self.node_label.clone(),
                reason: format!("value '{}' has element type {d}", value.name),
            }),
            _ => Err(MlirError::DynamicShape {
                value: value.name.clone(),
                ty: ty.to_string(),
            }),
        }
    }

    /// A constant the model or inference knows the contents of.
    pub fn host(&self, v: ValueId) -> Option<HostTensor<'m>> {
        if let Some(t) = self.folded.get(&v) {
            return Some(HostTensor {
                dtype: t.dtype,
                dims: t.dims.clone(),
                bytes: Cow::Owned(t.bytes.to_vec()),
            });
        }
        // Contents inference computed are used for integer (shape) values only: float chains
        // are computed in the module, at the runtime's precision.
        let def = self.g.try_value(v).map(|x| x.def);
        let from_constant_node = match def {
            Some(spa_ir::ValueDef::Node(n, 0)) => {
                let node = self.g.node(n);
                // Exporters alias shared weights through Identity.
                if node.op_type == "Identity" && node.canonical_domain().is_empty() {
                    return self.host(node.input(0)?);
                }
                // Constants and constant fills are taken as they are (not float arithmetic).
                node.op_type == "Constant" || node.op_type == "ConstantOfShape"
            }
            _ => false,
        };
        let t = self.g.constant(v).or_else(|| {
            self.types
                .known_value(v)
                .filter(|t| from_constant_node || !t.dtype.is_float())
        })?;
        let bytes = t.raw_bytes().ok()?;
        let host = HostTensor {
            dtype: t.dtype,
            dims: t.dims.clone(),
            bytes,
        };
        (elem_size(t.dtype).map(|es| es * host.numel()) == Some(host.bytes.len())).then_some(host)
    }

    pub fn is_const(&self, v: ValueId) -> bool {
        !self.forms.contains_key(&v) && self.host(v).is_some()
    }

    /// Integer contents of a constant operand (shapes, axes, pads).
    pub fn const_ints(&self, v: ValueId) -> Option<Vec<i64>> {
        self.g
            .constant_ints(v)
            .or_else(|| self.types.known_value(v)?.to_i64().ok())
    }

    pub fn const_f32(&self, v: ValueId) -> Option<Vec<f32>> {
        self.host(v)?.to_f32()
    }

    /// Bind a graph value to an emitted SSA value in a layout.
    pub fn bind(&mut self, v: ValueId, layout: Layout, val: Val) {
        let f = self.forms.entry(v).or_default();
        match layout {
            Layout::Nchw => f.nchw = Some(val),
            Layout::Nhwc => f.nhwc = Some(val),
        }
    }

    /// Whether a value exists only in NHWC form (so layout-agnostic consumers should stay NHWC).
    pub fn prefers_nhwc(&self, v: ValueId) -> bool {
        self.forms
            .get(&v)
            .is_some_and(|f| f.nhwc.is_some() && f.nchw.is_none())
    }

    /// A graph value in the requested layout (NHWC only for 4-D values).
    pub fn get(&mut self, v: ValueId, layout: Layout) -> Result<Val, MlirError> {
        if let Some(f) = self.forms.get(&v) {
            let (have, other) = match layout {
                Layout::Nchw => (f.nchw.clone(), f.nhwc.clone()),
                Layout::Nhwc => (f.nhwc.clone(), f.nchw.clone()),
            };
            if let Some(val) = have {
                return Ok(val);
            }
            if let Some(src) = other {
                let perm = match layout {
                    Layout::Nchw => TO_NCHW,
                    Layout::Nhwc => TO_NHWC,
                };
                let out = self.relayout(&src, &perm);
                self.bind(v, layout, out.clone());
                return Ok(out);
            }
        }
        let Some(host) = self.host(v) else {
            let name = self.g.value(v).name.clone();
            return Err(self.unsupported(format!(
                "operand '{name}' is neither computed nor a constant"
            )));
        };
        let host = match layout {
            Layout::Nchw => host,
            Layout::Nhwc => self.permuted_host(host, &TO_NHWC)?,
        };
        let key = format!("{}#{layout:?}", v.0);
        let name = self.g.value(v).name.clone();
        self.constant_cached(&key, &name, host)
    }

    /// A value in NHWC or NCHW as chosen, accepting any rank (non-4-D values are NCHW-only).
    pub fn get_in(&mut self, v: ValueId, layout: Layout) -> Result<Val, MlirError> {
        let (_, dims) = self.value_type(v)?;
        if dims.len() == 4 {
            self.get(v, layout)
        } else {
            self.get(v, Layout::Nchw)
        }
    }

    fn permuted_host(
        &self,
        host: HostTensor<'m>,
        perm: &[usize],
    ) -> Result<HostTensor<'m>, MlirError> {
        host.permuted(perm)
            .ok_or_else(|| self.unsupported("constant cannot be permuted"))
    }

    /// Permute from one layout to the other: a reshape where the moved axis has size 1.
    fn relayout(&mut self, src: &Val, perm: &[usize]) -> Val {
        let out_dims: Vec<i64> = perm.iter().map(|&p| src.dims[p]).collect();
        let moved_trivially = {
            // Only the relative order of non-unit axes matters for the data order.
            let order = |p: &[usize]| -> Vec<usize> {
                p.iter().copied().filter(|&a| src.dims[a] != 1).collect()
            };
            let ident: Vec<usize> = (0..src.dims.len()).collect();
            order(perm) == order(&ident)
        };
        if moved_trivially {
            self.reshape(src, &out_dims)
        } else {
            self.transpose(src, perm)
        }
    }

    /// A constant operand after a transform done on the host when it is a constant, or by ops
    /// when it is not (the value's NCHW form is the ONNX layout).
    pub fn transformed(
        &mut self,
        v: ValueId,
        steps: &[HostStep],
        label: &str,
    ) -> Result<Val, MlirError> {
        if !self.forms.contains_key(&v) {
            if let Some(mut host) = self.host(v) {
                let key = format!("{}#{steps:?}", v.0);
                if let Some(c) = self.consts.get(&key) {
                    return Ok(c.clone());
                }
                for s in steps {
                    host = match s {
                        HostStep::Reshape(d) => host.reshaped(d.clone()),
                        HostStep::Permute(p) => self.permuted_host(host, p)?,
                        HostStep::Slice(a, st, len) => host
                            .sliced(*a, *st, *len)
                            .ok_or_else(|| self.unsupported("constant slice out of range"))?,
                    };
                }
                let name = format!("{}{label}", self.g.value(v).name);
                return self.constant_cached(&key, &name, host);
            }
        }
        let mut val = self.get(v, Layout::Nchw)?;
        for s in steps {
            val = match s {
                HostStep::Reshape(d) => self.reshape(&val, d),
                HostStep::Permute(p) => self.transpose(&val, p),
                HostStep::Slice(a, st, len) => {
                    let mut start = vec![0; val.dims.len()];
                    let mut size = val.dims.clone();
                    start[*a] = *st as i64;
                    size[*a] = *len as i64;
                    self.slice(&val, &start, &size)
                }
            };
        }
        Ok(val)
    }

    // ---- constants ---------------------------------------------------------------------------

    fn constant_cached(
        &mut self,
        key: &str,
        name: &str,
        host: HostTensor<'_>,
    ) -> Result<Val, MlirError> {
        if let Some(c) = self.consts.get(key) {
            return Ok(c.clone());
        }
        let c = self.constant(name, host)?;
        self.consts.insert(key.to_string(), c.clone());
        Ok(c)
    }

    /// Emit `arith.constant`: splat or small constants inline, others as a resource blob.
    pub fn constant(&mut self, name: &str, host: HostTensor<'_>) -> Result<Val, MlirError> {
        let ety = elem_type(host.dtype)
            .ok_or_else(|| self.unsupported(format!("constant '{name}' of type {}", host.dtype)))?;
        let es = elem_size(host.dtype).unwrap_or(1);
        let n = host.numel();
        let ty = tensor_type(host.dtype, &host.dims);
        let splat = n > 0
            && host.bytes.len() == n * es
            && host.bytes.chunks_exact(es).all(|c| c == &host.bytes[..es]);
        let literal = if n == 0 {
            "dense<>".to_string()
        } else if splat {
            let one = HostTensor {
                dtype: host.dtype,
                dims: vec![],
                bytes: Cow::Borrowed(&host.bytes[..es]),
            };
            format!("dense<{}>", self.elements(&one)?.join(", "))
        } else if n <= self.opts.inline_limit || host.dtype == DType::Bool {
            let elems = self.elements(&host)?;
            format!("dense<{}>", nest(&elems, &host.dims))
        } else {
            let mut key = resource_key(name);
            let count = self.resource_names.entry(key.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                key = format!("{key}_{}", *count - 1);
            }
            let owned = HostTensor {
                dtype: host.dtype,
                dims: host.dims.clone(),
                bytes: Cow::Owned(host.bytes.into_owned()),
            };
            self.resources.push((key.clone(), owned));
            format!("dense_resource<{key}>")
        };
        let _ = ety;
        let res = self.fresh();
        let _ = writeln!(self.body, "    {res} = arith.constant {literal} : {ty}");
        Ok(Val {
            name: res,
            dtype: host.dtype,
            dims: host.dims,
        })
    }

    fn elements(&self, host: &HostTensor<'_>) -> Result<Vec<String>, MlirError> {
        if host.dtype == DType::Bool {
            return Ok(host
                .bytes
                .iter()
                .map(|&b| if b != 0 { "true" } else { "false" }.to_string())
                .collect());
        }
        if host.dtype.is_float() {
            let vals = host
                .to_f32()
                .ok_or_else(|| self.unsupported("unreadable float constant"))?;
            if host.dtype == DType::F64 {
                let exact: Vec<f64> = host
                    .bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                return Ok(exact.iter().map(|&x| float_lit64(x)).collect());
            }
            return Ok(vals.iter().map(|&x| float_lit32(x)).collect());
        }
        let vals = host
            .to_i64()
            .ok_or_else(|| self.unsupported("unreadable integer constant"))?;
        Ok(vals.iter().map(|x| x.to_string()).collect())
    }

    /// A splat f32-typed (or other float) scalar constant broadcastable to `rank` dims.
    pub fn scalar(&mut self, dtype: DType, value: f64, rank: usize) -> Result<Val, MlirError> {
        let key = format!("scalar#{dtype:?}#{value:?}#{rank}");
        if let Some(c) = self.consts.get(&key) {
            return Ok(c.clone());
        }
        let ty = tensor_type(dtype, &vec![1; rank]);
        let lit = if dtype.is_float() {
            float_lit64(value)
        } else if dtype == DType::Bool {
            (value != 0.0).to_string()
        } else {
            (value as i64).to_string()
        };
        let res = self.fresh();
        let _ = writeln!(self.body, "    {res} = arith.constant dense<{lit}> : {ty}");
        let val = Val {
            name: res,
            dtype,
            dims: vec![1; rank],
        };
        self.consts.insert(key, val.clone());
        Ok(val)
    }

    /// A zero-filled constant of any shape.
    pub fn zeros(&mut self, dtype: DType, dims: &[i64]) -> Result<Val, MlirError> {
        let key = format!("zeros#{dtype:?}#{dims:?}");
        if let Some(c) = self.consts.get(&key) {
            return Ok(c.clone());
        }
        let ty = tensor_type(dtype, dims);
        let lit = if dtype.is_float() { "0.0" } else { "0" };
        let res = self.fresh();
        let _ = writeln!(self.body, "    {res} = arith.constant dense<{lit}> : {ty}");
        let val = Val {
            name: res,
            dtype,
            dims: dims.to_vec(),
        };
        self.consts.insert(key, val.clone());
        Ok(val)
    }

    fn zp(&mut self, dtype: DType) -> Result<Val, MlirError> {
        self.zeros(dtype, &[1])
    }

    /// A `!tosa.shape` operand.
    pub fn shape_operand(&mut self, dims: &[i64]) -> (String, String) {
        self.const_shape(dims)
    }

    fn const_shape(&mut self, dims: &[i64]) -> (String, String) {
        let key = format!("shape#{dims:?}");
        let ty = format!("!tosa.shape<{}>", dims.len());
        if let Some(c) = self.consts.get(&key) {
            return (c.name.clone(), ty);
        }
        let items: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        let res = self.fresh();
        let _ = writeln!(
            self.body,
            "    {res} = \"tosa.const_shape\"() <{{values = dense<[{}]> : tensor<{}xindex>}}> : () -> {ty}",
            items.join(", "),
            dims.len()
        );
        self.consts.insert(
            key,
            Val {
                name: res.clone(),
                dtype: DType::I64,
                dims: vec![],
            },
        );
        (res, ty)
    }

    // ---- ops ---------------------------------------------------------------------------------

    /// Emit one op in generic form and return its single result.
    pub fn op(
        &mut self,
        op: &str,
        args: &[(String, String)],
        props: &str,
        dtype: DType,
        dims: &[i64],
    ) -> Val {
        let res = self.fresh();
        let names: Vec<&str> = args.iter().map(|a| a.0.as_str()).collect();
        let tys: Vec<&str> = args.iter().map(|a| a.1.as_str()).collect();
        let ty = tensor_type(dtype, dims);
        let props = if props.is_empty() {
            String::new()
        } else {
            format!(" <{{{props}}}>")
        };
        let _ = writeln!(
            self.body,
            "    {res} = \"{op}\"({}){props} : ({}) -> {ty}{}",
            names.join(", "),
            tys.join(", "),
            self.loc
        );
        Val {
            name: res,
            dtype,
            dims: dims.to_vec(),
        }
    }

    pub fn unary(&mut self, op: &str, x: &Val) -> Val {
        self.op(op, &[x.arg()], "", x.dtype, &x.dims)
    }

    /// Elementwise binary op; operands must have equal ranks (broadcast dims of 1).
    pub fn binary(&mut self, op: &str, a: &Val, b: &Val, out_dtype: DType) -> Val {
        let dims = broadcast_dims(&a.dims, &b.dims);
        if op == "tosa.mul" {
            let shift = self.zeros(DType::I8, &[1]).map(|v| v.arg());
            let shift = shift.unwrap_or_default();
            return self.op(op, &[a.arg(), b.arg(), shift], "", out_dtype, &dims);
        }
        self.op(op, &[a.arg(), b.arg()], "", out_dtype, &dims)
    }

    pub fn add(&mut self, a: &Val, b: &Val) -> Val {
        self.binary("tosa.add", a, b, a.dtype)
    }
    pub fn sub(&mut self, a: &Val, b: &Val) -> Val {
        self.binary("tosa.sub", a, b, a.dtype)
    }
    pub fn mul(&mut self, a: &Val, b: &Val) -> Val {
        self.binary("tosa.mul", a, b, a.dtype)
    }

    /// Multiply by a scalar constant (skipped for 1).
    pub fn scale(&mut self, x: &Val, k: f64) -> Result<Val, MlirError> {
        if k == 1.0 {
            return Ok(x.clone());
        }
        let c = self.scalar(x.dtype, k, x.dims.len())?;
        Ok(self.mul(x, &c))
    }

    pub fn add_scalar(&mut self, x: &Val, k: f64) -> Result<Val, MlirError> {
        if k == 0.0 {
            return Ok(x.clone());
        }
        let c = self.scalar(x.dtype, k, x.dims.len())?;
        Ok(self.add(x, &c))
    }

    pub fn clamp(&mut self, x: &Val, lo: f64, hi: f64) -> Val {
        let (lo, hi) = if x.dtype.is_float() {
            let ety = elem_type(x.dtype).unwrap_or("f32");
            let lit = |v: f64| {
                let v = v.clamp(f32::MIN as f64, f32::MAX as f64);
                format!("{} : {ety}", float_literal(v))
            };
            (lit(lo), lit(hi))
        } else {
            let ety = elem_type(x.dtype).unwrap_or("i32");
            (
                format!("{} : {ety}", lo as i64),
                format!("{} : {ety}", hi as i64),
            )
        };
        self.op(
            "tosa.clamp",
            &[x.arg()],
            &format!("max_val = {hi}, min_val = {lo}"),
            x.dtype,
            &x.dims,
        )
    }

    pub fn negate(&mut self, x: &Val) -> Result<Val, MlirError> {
        let zp = self.zp(x.dtype)?;
        Ok(self.op(
            "tosa.negate",
            &[x.arg(), zp.arg(), zp.arg()],
            "",
            x.dtype,
            &x.dims,
        ))
    }

    pub fn reshape(&mut self, x: &Val, dims: &[i64]) -> Val {
        if x.dims == dims {
            return x.clone();
        }
        let shape = self.const_shape(dims);
        self.op("tosa.reshape", &[x.arg(), shape], "", x.dtype, dims)
    }

    /// Transpose (`perm[i]` is the source axis of output axis `i`); composes with a transpose
    /// that produced `x`, and folds to nothing when the result is the identity.
    pub fn transpose(&mut self, x: &Val, perm: &[usize]) -> Val {
        let (src, perm): (Val, Vec<usize>) = match self.transposed.get(&x.name) {
            Some((src, p0)) => (src.clone(), perm.iter().map(|&i| p0[i]).collect()),
            None => (x.clone(), perm.to_vec()),
        };
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return src;
        }
        let dims: Vec<i64> = perm.iter().map(|&p| src.dims[p]).collect();
        let p: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
        let out = self.op(
            "tosa.transpose",
            &[src.arg()],
            &format!("perms = {}", ints_attr("i32", &p)),
            src.dtype,
            &dims,
        );
        self.transposed.insert(out.name.clone(), (src, perm));
        out
    }

    pub fn slice(&mut self, x: &Val, start: &[i64], size: &[i64]) -> Val {
        if start.iter().all(|&s| s == 0) && size == x.dims.as_slice() {
            return x.clone();
        }
        let s = self.const_shape(start);
        let z = self.const_shape(size);
        self.op("tosa.slice", &[x.arg(), s, z], "", x.dtype, size)
    }

    pub fn concat(&mut self, xs: &[Val], axis: usize) -> Val {
        if xs.len() == 1 {
            return xs[0].clone();
        }
        let mut dims = xs[0].dims.clone();
        dims[axis] = xs.iter().map(|x| x.dims[axis]).sum();
        let args: Vec<(String, String)> = xs.iter().map(|x| x.arg()).collect();
        self.op(
            "tosa.concat",
            &args,
            &format!("axis = {axis} : i32"),
            xs[0].dtype,
            &dims,
        )
    }

    /// `tosa.reduce_*` over one axis (kept as size 1).
    pub fn reduce(&mut self, op: &str, x: &Val, axis: usize) -> Val {
        let mut dims = x.dims.clone();
        dims[axis] = 1;
        self.op(
            op,
            &[x.arg()],
            &format!("axis = {axis} : i32"),
            x.dtype,
            &dims,
        )
    }

    pub fn tile(&mut self, x: &Val, multiples: &[i64]) -> Val {
        if multiples.iter().all(|&m| m == 1) {
            return x.clone();
        }
        let dims: Vec<i64> = x.dims.iter().zip(multiples).map(|(d, m)| d * m).collect();
        let m = self.const_shape(multiples);
        self.op("tosa.tile", &[x.arg(), m], "", x.dtype, &dims)
    }

    pub fn pad(&mut self, x: &Val, pads: &[i64], value: f64) -> Result<Val, MlirError> {
        if pads.iter().all(|&p| p == 0) {
            return Ok(x.clone());
        }
        let dims: Vec<i64> = x
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| d + pads[2 * i] + pads[2 * i + 1])
            .collect();
        let p = self.const_shape(pads);
        let c = self.scalar(x.dtype, value, 1)?;
        Ok(self.op("tosa.pad", &[x.arg(), p, c.arg()], "", x.dtype, &dims))
    }

    pub fn cast(&mut self, x: &Val, to: DType) -> Val {
        if x.dtype == to {
            return x.clone();
        }
        self.op("tosa.cast", &[x.arg()], "", to, &x.dims)
    }

    /// An op with zero-point operands (convolutions, matmul, avg_pool).
    pub fn op_zp(
        &mut self,
        op: &str,
        args: &[&Val],
        n_zp: usize,
        props: &str,
        dims: &[i64],
    ) -> Result<Val, MlirError> {
        let dtype = args[0].dtype;
        let zp = self.zp(dtype)?;
        let mut a: Vec<(String, String)> = args.iter().map(|v| v.arg()).collect();
        for _ in 0..n_zp {
            a.push(zp.arg());
        }
        Ok(self.op(op, &a, props, dtype, dims))
    }

    // ---- output ------------------------------------------------------------------------------

    /// The whole module: the function around the body, then the resource section.
    pub fn finish(self, inputs: &[Val], outputs: &[Val]) -> String {
        let mut blob_len = 0usize;
        for (_, r) in &self.resources {
            blob_len += r.bytes.len() * 2 + 64;
        }
        let mut out = String::with_capacity(self.body.len() + blob_len + 1024);
        out.push_str("module {\n  func.func @main(");
        let args: Vec<String> = inputs
            .iter()
            .map(|v| format!("{}: {}", v.name, v.ty()))
            .collect();
        out.push_str(&args.join(", "));
        out.push_str(") -> (");
        let rtys: Vec<String> = outputs.iter().map(|v| v.ty()).collect();
        out.push_str(&rtys.join(", "));
        out.push_str(") {\n");
        out.push_str(&self.body);
        let rets: Vec<&str> = outputs.iter().map(|v| v.name.as_str()).collect();
        let _ = writeln!(out, "    return {} : {}", rets.join(", "), rtys.join(", "));
        out.push_str("  }\n}\n");
        if !self.resources.is_empty() {
            out.push_str("\n{-#\n  dialect_resources: {\n    builtin: {\n");
            let last = self.resources.len() - 1;
            for (i, (key, t)) in self.resources.iter().enumerate() {
                let _ = write!(out, "      {key}: \"");
                if self.opts.elide_resources {
                    let _ = write!(
                        out,
                        "<{} bytes of {}, {}>",
                        t.bytes.len(),
                        tensor_type(t.dtype, &t.dims),
                        digest(&t.bytes)
                    );
                } else {
                    let align = elem_size(t.dtype).unwrap_or(1).max(1) as u32;
                    out.push_str("0x");
                    push_hex(&mut out, &align.to_le_bytes());
                    push_hex(&mut out, &t.bytes);
                }
                out.push('"');
                if i != last {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str("    }\n  }\n#-}\n");
        }
        out
    }
}

/// A short FNV-1a digest of blob contents for elided output.
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Steps applied to a constant on the host (or by ops when it is not constant).
#[derive(Clone, Debug)]
pub(crate) enum HostStep {
    Reshape(Vec<i64>),
    Permute(Vec<usize>),
    Slice(usize, usize, usize),
}

pub(crate) fn broadcast_dims(a: &[i64], b: &[i64]) -> Vec<i64> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| if x == 1 { y } else { x })
        .collect()
}

fn float_lit32(x: f32) -> String {
    if x.is_finite() {
        f32_literal(x)
    } else {
        format!("0x{:08X}", x.to_bits())
    }
}

fn float_lit64(x: f64) -> String {
    if x.is_finite() {
        float_literal(x)
    } else {
        format!("0x{:016X}", x.to_bits())
    }
}

/// Nest a flat element list into `[[...], ...]` following dims (a scalar is the bare element).
fn nest(elems: &[String], dims: &[i64]) -> String {
    if dims.is_empty() {
        return elems.first().cloned().unwrap_or_default();
    }
    let inner: usize = dims[1..].iter().map(|&d| d.max(0) as usize).product();
    let n = dims[0].max(0) as usize;
    let parts: Vec<String> = (0..n)
        .map(|i| {
            let lo = (i * inner).min(elems.len());
            let hi = ((i + 1) * inner).min(elems.len());
            nest(&elems[lo..hi], &dims[1..])
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
