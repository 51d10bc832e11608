//! ONNX ops lowered to TOSA, one function per op family. Each reads its node's attributes and
//! constant operands, emits ops through [`Emitter`], and binds the node's outputs.

use super::emit::{broadcast_dims, ints_attr, Emitter, HostStep, Layout, Val, NHWC_POS, TO_NHWC};
use super::host::HostTensor;
use super::MlirError;
use spa_ir::{DType, Node, ValueId};

type R<T> = Result<T, MlirError>;

/// Inputs of each op that are read as constants at emission time (shapes, axes, pads), so
/// they are not computed in the module.
pub(crate) fn param_inputs(op: &str) -> &'static [usize] {
    match op {
        "Reshape" | "Expand" | "Tile" | "Squeeze" | "Unsqueeze" | "Split" | "TopK" => &[1],
        "Slice" => &[1, 2, 3, 4],
        "Pad" => &[1, 2, 3],
        "Clip" => &[1, 2],
        "Resize" | "Upsample" => &[1, 2, 3],
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2"
        | "ReduceSumSquare" => &[1],
        "ConstantOfShape" | "Range" | "Shape" | "Size" => &[0, 1, 2],
        "BatchNormalization" => &[1, 2, 3, 4],
        _ => &[],
    }
}

/// How a grouped convolution splits: `group` parts of `cg` input and `og` output channels, weight
/// slices of `w_len` along axis 0 permuted by `perm`, each part of NHWC dims `part`.
struct PerGroup<'p> {
    group: i64,
    cg: i64,
    og: i64,
    w_len: i64,
    perm: &'p [usize],
    part: [i64; 4],
}

fn input(node: &Node, i: usize) -> Option<ValueId> {
    node.input(i)
}

impl Emitter<'_> {
    fn req_input(&self, node: &Node, i: usize) -> R<ValueId> {
        input(node, i).ok_or_else(|| self.unsupported(format!("missing input {i}")))
    }

    fn out(&self, node: &Node, i: usize) -> R<(ValueId, DType, Vec<i64>)> {
        let v = node
            .output(i)
            .ok_or_else(|| self.unsupported(format!("missing output {i}")))?;
        let (d, dims) = self.value_type(v)?;
        Ok((v, d, dims))
    }

    fn ints_of(&self, v: ValueId, what: &str) -> R<Vec<i64>> {
        self.const_ints(v)
            .ok_or_else(|| self.unsupported(format!("{what} must be a constant")))
    }

    fn axis(&self, a: i64, rank: usize) -> R<usize> {
        let r = rank as i64;
        let a = if a < 0 { a + r } else { a };
        if (0..r.max(1)).contains(&a) {
            Ok(a as usize)
        } else {
            Err(self.unsupported(format!("axis {a} out of range for rank {rank}")))
        }
    }

    /// Lower one node. Returns an error naming the node for anything not handled.
    pub(crate) fn lower(&mut self, node: &Node) -> R<()> {
        if !node.canonical_domain().is_empty() {
            return Err(self.unsupported("ops outside the default ONNX domain are not lowered"));
        }
        let op = node.op_type.as_str();
        match op {
            "Identity" | "Dropout" => self.alias(node),
            "Constant" => Ok(()),
            "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "Tanh" | "Erf" | "Exp" | "Log" | "Abs"
            | "Floor" | "Ceil" | "Sin" | "Cos" | "Reciprocal" | "Neg" | "Sqrt" | "HardSigmoid"
            | "HardSwish" | "Softplus" | "Gelu" | "Mish" | "Elu" | "Not" | "Sign" | "Selu"
            | "Celu" => self.unary_op(node),
            "Cast" => self.cast_op(node),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Equal" | "Greater"
            | "Less" | "GreaterOrEqual" | "LessOrEqual" | "And" | "Or" | "Where" | "PRelu"
            | "Sum" | "Mean" => self.elementwise(node),
            "Conv" => self.conv(node),
            "ConvTranspose" => self.conv_transpose(node),
            "BatchNormalization" => self.batch_norm(node),
            "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" => self.pool(node),
            "Gemm" => self.gemm(node),
            "Einsum" => self.einsum(node),
            "Resize" | "Upsample" => self.resize(node),
            "MatMul" => self.matmul(node),
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => self.reshape_op(node),
            "Transpose" => self.transpose_op(node),
            "Concat" => self.concat_op(node),
            "Split" => self.split_op(node),
            "Slice" => self.slice_op(node),
            "Gather" => self.gather_op(node),
            "Expand" | "Tile" => self.expand_op(node),
            "Pad" => self.pad_op(node),
            "Softmax" | "LogSoftmax" => self.softmax(node),
            "LayerNormalization" => self.layer_norm(node),
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd"
            | "ReduceSumSquare" | "ReduceL2" => self.reduce_op(node),
            _ => Err(self.unsupported("no MLIR lowering for this op")),
        }
    }

    fn alias(&mut self, node: &Node) -> R<()> {
        let x = self.req_input(node, 0)?;
        let (y, _, _) = self.out(node, 0)?;
        let layout = if self.prefers_nhwc(x) {
            Layout::Nhwc
        } else {
            Layout::Nchw
        };
        let v = self.get_in(x, layout)?;
        self.bind(y, layout, v);
        Ok(())
    }

    /// The layout a layout-agnostic op over `inputs` should work in.
    fn pick_layout(&self, inputs: &[ValueId], out_rank: usize) -> Layout {
        if out_rank == 4 && inputs.iter().any(|&v| self.prefers_nhwc(v)) {
            Layout::Nhwc
        } else {
            Layout::Nchw
        }
    }

    /// An operand of an elementwise op, rank-extended to `rank` and in `layout`.
    fn broadcast_operand(&mut self, v: ValueId, rank: usize, layout: Layout) -> R<Val> {
        let (_, dims) = self.value_type(v)?;
        if dims.len() > rank {
            return Err(self.unsupported("operand rank exceeds result rank"));
        }
        let mut ext = vec![1i64; rank - dims.len()];
        ext.extend_from_slice(&dims);
        if layout == Layout::Nhwc && rank == 4 {
            if dims.len() == 4 {
                return self.get(v, Layout::Nhwc);
            }
            return self.transformed(
                v,
                &[HostStep::Reshape(ext), HostStep::Permute(TO_NHWC.to_vec())],
                "_nhwc",
            );
        }
        if dims.len() == rank {
            return self.get(v, Layout::Nchw);
        }
        self.transformed(v, &[HostStep::Reshape(ext)], "_bcast")
    }

    // ---- elementwise -------------------------------------------------------------------------

    fn unary_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let layout = self.pick_layout(&[xv], ydims.len());
        let x = self.get_in(xv, layout)?;
        if !x.dtype.is_float() && node.op_type != "Not" && node.op_type != "Abs" {
            return Err(self.unsupported(format!("element type {} not handled", x.dtype)));
        }
        let alpha = |d: f32| node.attr_float("alpha").unwrap_or(d) as f64;
        let r = match node.op_type.as_str() {
            "Relu" => self.clamp(&x, 0.0, f32::MAX as f64),
            "LeakyRelu" => {
                let ax = self.scale(&x, alpha(0.01))?;
                self.binary("tosa.maximum", &x, &ax, x.dtype)
            }
            "Clip" => {
                let (mut lo, mut hi) = (f32::MIN as f64, f32::MAX as f64);
                if self.opset < 11 {
                    lo = node.attr_float("min").map_or(lo, f64::from);
                    hi = node.attr_float("max").map_or(hi, f64::from);
                } else {
                    for (i, slot) in [(1usize, &mut lo), (2, &mut hi)] {
                        if let Some(v) = input(node, i) {
                            let c = self
                                .const_f32(v)
                                .and_then(|c| c.first().copied())
                                .ok_or_else(|| self.unsupported("Clip bounds must be constants"))?;
                            *slot = c as f64;
                        }
                    }
                }
                self.clamp(&x, lo, hi)
            }
            "Sigmoid" => self.unary("tosa.sigmoid", &x),
            "Tanh" => self.unary("tosa.tanh", &x),
            "Erf" => self.unary("tosa.erf", &x),
            "Exp" => self.unary("tosa.exp", &x),
            "Log" => self.unary("tosa.log", &x),
            "Abs" => self.unary("tosa.abs", &x),
            "Floor" => self.unary("tosa.floor", &x),
            "Ceil" => self.unary("tosa.ceil", &x),
            "Sin" => self.unary("tosa.sin", &x),
            "Cos" => self.unary("tosa.cos", &x),
            "Reciprocal" => self.unary("tosa.reciprocal", &x),
            "Not" => self.unary("tosa.logical_not", &x),
            "Neg" => self.negate(&x)?,
            "Sqrt" => {
                let r = self.unary("tosa.rsqrt", &x);
                self.unary("tosa.reciprocal", &r)
            }
            "HardSigmoid" => {
                let a = node.attr_float("alpha").unwrap_or(0.2) as f64;
                let b = node.attr_float("beta").unwrap_or(0.5) as f64;
                let t = self.scale(&x, a)?;
                let t = self.add_scalar(&t, b)?;
                self.clamp(&t, 0.0, 1.0)
            }
            "HardSwish" => {
                let t = self.scale(&x, 1.0 / 6.0)?;
                let t = self.add_scalar(&t, 0.5)?;
                let t = self.clamp(&t, 0.0, 1.0);
                self.mul(&x, &t)
            }
            "Softplus" => self.softplus(&x)?,
            "Mish" => {
                let sp = self.softplus(&x)?;
                let t = self.unary("tosa.tanh", &sp);
                self.mul(&x, &t)
            }
            "Gelu" => {
                if node.attr_str("approximate").is_some_and(|a| a != "none") {
                    let c = (2.0f64 / std::f64::consts::PI).sqrt();
                    let x3 = self.mul(&x, &x);
                    let x3 = self.mul(&x3, &x);
                    let t = self.scale(&x3, 0.044715)?;
                    let t = self.add(&x, &t);
                    let t = self.scale(&t, c)?;
                    let t = self.unary("tosa.tanh", &t);
                    let t = self.add_scalar(&t, 1.0)?;
                    let t = self.mul(&x, &t);
                    self.scale(&t, 0.5)?
                } else {
                    let t = self.scale(&x, std::f64::consts::FRAC_1_SQRT_2)?;
                    let t = self.unary("tosa.erf", &t);
                    let t = self.add_scalar(&t, 1.0)?;
                    let t = self.mul(&x, &t);
                    self.scale(&t, 0.5)?
                }
            }
            "Elu" | "Celu" | "Selu" => {
                let (a, gamma) = match node.op_type.as_str() {
                    "Selu" => (
                        node.attr_float("alpha").unwrap_or(1.673_263_2) as f64,
                        node.attr_float("gamma").unwrap_or(1.050_701) as f64,
                    ),
                    _ => (alpha(1.0), 1.0),
                };
                // a * (exp(x / k) - 1) for x < 0 (k = a for Celu, else 1), x otherwise.
                let k = if node.op_type == "Celu" { a } else { 1.0 };
                let t = self.scale(&x, 1.0 / k)?;
                let t = self.unary("tosa.exp", &t);
                let t = self.add_scalar(&t, -1.0)?;
                let t = self.scale(&t, a)?;
                let zero = self.scalar(x.dtype, 0.0, x.dims.len())?;
                let pos = self.binary("tosa.greater", &x, &zero, DType::Bool);
                let r = self.op(
                    "tosa.select",
                    &[
                        (pos.name.clone(), pos.ty()),
                        (x.name.clone(), x.ty()),
                        (t.name.clone(), t.ty()),
                    ],
                    "",
                    x.dtype,
                    &x.dims,
                );
                self.scale(&r, gamma)?
            }
            "Sign" => {
                let zero = self.scalar(x.dtype, 0.0, x.dims.len())?;
                let one = self.scalar(x.dtype, 1.0, x.dims.len())?;
                let m1 = self.scalar(x.dtype, -1.0, x.dims.len())?;
                let pos = self.binary("tosa.greater", &x, &zero, DType::Bool);
                let neg = self.binary("tosa.greater", &zero, &x, DType::Bool);
                let zeros = self.zeros(x.dtype, &x.dims)?;
                let a = self.select(&neg, &m1, &zeros);
                self.select(&pos, &one, &a)
            }
            _ => return Err(self.unsupported("no MLIR lowering for this op")),
        };
        self.bind(y, layout, r);
        Ok(())
    }

    fn select(&mut self, c: &Val, a: &Val, b: &Val) -> Val {
        let dims = broadcast_dims(&broadcast_dims(&c.dims, &a.dims), &b.dims);
        self.op(
            "tosa.select",
            &[
                (c.name.clone(), c.ty()),
                (a.name.clone(), a.ty()),
                (b.name.clone(), b.ty()),
            ],
            "",
            a.dtype,
            &dims,
        )
    }

    /// log(1 + exp(x)), written as max(x,0) + log(1 + exp(-|x|)) so it does not overflow.
    fn softplus(&mut self, x: &Val) -> R<Val> {
        let a = self.unary("tosa.abs", x);
        let na = self.negate(&a)?;
        let e = self.unary("tosa.exp", &na);
        let e1 = self.add_scalar(&e, 1.0)?;
        let l = self.unary("tosa.log", &e1);
        let r = self.clamp(x, 0.0, f32::MAX as f64);
        Ok(self.add(&r, &l))
    }

    fn cast_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, to, dims) = self.out(node, 0)?;
        if !self.forms.contains_key(&xv) {
            if let Some(h) = self.host(xv) {
                let c = h
                    .cast(to)
                    .ok_or_else(|| self.unsupported(format!("cannot cast {} to {to}", h.dtype)))?;
                let name = self.g.value(y).name.clone();
                let v = self.constant(&name, c)?;
                self.bind(y, Layout::Nchw, v);
                return Ok(());
            }
        }
        let layout = self.pick_layout(&[xv], dims.len());
        let x = self.get_in(xv, layout)?;
        let r = self.cast(&x, to);
        self.bind(y, layout, r);
        Ok(())
    }

    fn elementwise(&mut self, node: &Node) -> R<()> {
        let (y, ydt, ydims) = self.out(node, 0)?;
        let rank = ydims.len();
        let ins: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        if ins.is_empty() {
            return Err(self.unsupported("no inputs"));
        }
        let layout = self.pick_layout(&ins, rank);
        let mut vals = Vec::new();
        for &v in &ins {
            vals.push(self.broadcast_operand(v, rank, layout)?);
        }
        let dt = vals[0].dtype;
        let fold = |e: &mut Self, op: &str, vals: &[Val]| -> Val {
            let mut acc = vals[0].clone();
            for v in &vals[1..] {
                acc = e.binary(op, &acc, v, acc.dtype);
            }
            acc
        };
        let r = match node.op_type.as_str() {
            "Add" | "Sum" => fold(self, "tosa.add", &vals),
            "Mean" => {
                let s = fold(self, "tosa.add", &vals);
                self.scale(&s, 1.0 / vals.len() as f64)?
            }
            "Sub" => self.binary("tosa.sub", &vals[0], &vals[1], dt),
            "Mul" => self.binary("tosa.mul", &vals[0], &vals[1], dt),
            "Max" => fold(self, "tosa.maximum", &vals),
            "Min" => fold(self, "tosa.minimum", &vals),
            "Div" => {
                if !dt.is_float() {
                    return Err(self.unsupported("integer Div is not lowered"));
                }
                let rb = match self.const_f32(ins[1]).filter(|_| self.is_const(ins[1])) {
                    Some(c) if c.len() == 1 => self.scalar(dt, 1.0 / c[0] as f64, rank)?,
                    _ => self.unary("tosa.reciprocal", &vals[1]),
                };
                self.mul(&vals[0], &rb)
            }
            "Pow" => {
                let exp = self
                    .const_f32(ins[1])
                    .filter(|c| self.is_const(ins[1]) && c.len() == 1);
                match exp.as_deref() {
                    Some([e]) if *e == 2.0 => self.mul(&vals[0], &vals[0]),
                    Some([e]) if *e == 1.0 => vals[0].clone(),
                    Some([e]) if *e == 0.5 => {
                        let r = self.unary("tosa.rsqrt", &vals[0]);
                        self.unary("tosa.reciprocal", &r)
                    }
                    Some([e]) if *e == 3.0 => {
                        let s = self.mul(&vals[0], &vals[0]);
                        self.mul(&s, &vals[0])
                    }
                    _ => {
                        let b = self.cast(&vals[1], dt);
                        self.binary("tosa.pow", &vals[0], &b, dt)
                    }
                }
            }
            "PRelu" => {
                let zero = self.scalar(dt, 0.0, rank)?;
                let pos = self.binary("tosa.greater", &vals[0], &zero, DType::Bool);
                let neg = self.binary("tosa.mul", &vals[0], &vals[1], dt);
                self.select(&pos, &vals[0], &neg)
            }
            "Equal" => self.binary("tosa.equal", &vals[0], &vals[1], DType::Bool),
            "Greater" => self.binary("tosa.greater", &vals[0], &vals[1], DType::Bool),
            "GreaterOrEqual" => self.binary("tosa.greater_equal", &vals[0], &vals[1], DType::Bool),
            "Less" => self.binary("tosa.greater", &vals[1], &vals[0], DType::Bool),
            "LessOrEqual" => self.binary("tosa.greater_equal", &vals[1], &vals[0], DType::Bool),
            "And" => self.binary("tosa.logical_and", &vals[0], &vals[1], DType::Bool),
            "Or" => self.binary("tosa.logical_or", &vals[0], &vals[1], DType::Bool),
            "Where" => self.select(&vals[0], &vals[1], &vals[2]),
            _ => return Err(self.unsupported("no MLIR lowering for this op")),
        };
        let r = if r.dims != ydims_in(layout, &ydims) {
            // Broadcasting against a larger operand is always explicit in ONNX's output type.
            let want = ydims_in(layout, &ydims);
            let mult: Vec<i64> = r
                .dims
                .iter()
                .zip(&want)
                .map(|(&a, &b)| if a == 1 { b } else { 1 })
                .collect();
            self.tile(&r, &mult)
        } else {
            r
        };
        if r.dtype != ydt {
            return Err(self.unsupported(format!("result type {} expected {ydt}", r.dtype)));
        }
        self.bind(y, layout, r);
        Ok(())
    }

    // ---- convolution, normalization, pooling -------------------------------------------------

    /// ONNX pads for a spatial op, resolving auto_pad. Returns (top, left, bottom, right).
    fn spatial_pads(
        &self,
        node: &Node,
        in_hw: [i64; 2],
        k_eff: [i64; 2],
        strides: [i64; 2],
    ) -> R<[i64; 4]> {
        let auto = node.attr_str("auto_pad").unwrap_or("NOTSET");
        match auto {
            "NOTSET" => {
                let p = node.attr_ints("pads").unwrap_or(&[0, 0, 0, 0]);
                if p.len() != 4 {
                    return Err(self.unsupported("only 2-D spatial ops are lowered"));
                }
                Ok([p[0], p[1], p[2], p[3]])
            }
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut out = [0i64; 4];
                for i in 0..2 {
                    let o = (in_hw[i] + strides[i] - 1) / strides[i];
                    let total = ((o - 1) * strides[i] + k_eff[i] - in_hw[i]).max(0);
                    let small = total / 2;
                    let (lo, hi) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    out[i] = lo;
                    out[i + 2] = hi;
                }
                Ok(out)
            }
            other => Err(self.unsupported(format!("auto_pad {other}"))),
        }
    }

    /// Make a spatial op's padding exact for TOSA: the bottom/right pads become what the output
    /// size needs (TOSA requires the window arithmetic to divide exactly); input rows that no
    /// window reads are sliced off. Returns the (possibly sliced) NHWC input and TOSA's
    /// [top, bottom, left, right].
    fn exact_pads(
        &mut self,
        x: Val,
        pads: [i64; 4],
        k_eff: [i64; 2],
        strides: [i64; 2],
        out_hw: [i64; 2],
    ) -> R<(Val, [i64; 4])> {
        let mut x = x;
        let mut p = [pads[0], pads[2], pads[1], pads[3]];
        for i in 0..2 {
            let in_d = x.dims[1 + i];
            let lo = p[2 * i];
            let need = (out_hw[i] - 1) * strides[i] + k_eff[i] - in_d - lo;
            if need >= 0 {
                p[2 * i + 1] = need;
            } else {
                let mut size = x.dims.clone();
                size[1 + i] = in_d + need;
                x = self.slice(&x, &[0, 0, 0, 0], &size);
                p[2 * i + 1] = 0;
            }
            if lo < 0 {
                return Err(self.unsupported("negative pads"));
            }
        }
        Ok((x, p))
    }

    fn conv(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let wv = self.req_input(node, 1)?;
        let (y, ydt, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let (_, wdims) = self.value_type(wv)?;
        if xdims.len() != 4 || wdims.len() != 4 {
            return Err(self.unsupported("only 2-D convolutions are lowered"));
        }
        let group = node.attr_int("group").unwrap_or(1).max(1);
        let dil = node.attr_ints("dilations").unwrap_or(&[1, 1]).to_vec();
        let st = node.attr_ints("strides").unwrap_or(&[1, 1]).to_vec();
        if dil.len() != 2 || st.len() != 2 {
            return Err(self.unsupported("only 2-D convolutions are lowered"));
        }
        let (o, cg, kh, kw) = (wdims[0], wdims[1], wdims[2], wdims[3]);
        let k_eff = [(kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1];
        let pads = self.spatial_pads(node, [xdims[2], xdims[3]], k_eff, [st[0], st[1]])?;
        let x = self.get(xv, Layout::Nhwc)?;
        let (x, pad) = self.exact_pads(x, pads, k_eff, [st[0], st[1]], [ydims[2], ydims[3]])?;
        let bias = match input(node, 2) {
            Some(b) => self.get(b, Layout::Nchw)?,
            None => self.zeros(ydt, &[o])?,
        };
        let props = |kind: &str| {
            format!(
                "acc_type = {}, dilation = {}, pad = {}, stride = {}",
                kind,
                ints_attr("i64", &dil),
                ints_attr("i64", &pad),
                ints_attr("i64", &st)
            )
        };
        let acc = super::emit::elem_type(ydt).unwrap_or("f32").to_string();
        let out_nhwc = [ydims[0], ydims[2], ydims[3], ydims[1]];
        let c_in = xdims[1];
        let r = if group == 1 {
            let w = self.transformed(wv, &[HostStep::Permute(TO_NHWC.to_vec())], "_ohwi")?;
            self.op_zp("tosa.conv2d", &[&x, &w, &bias], 2, &props(&acc), &out_nhwc)?
        } else if group == c_in && cg == 1 && o % c_in == 0 {
            let m = o / c_in;
            let w = self.transformed(
                wv,
                &[
                    HostStep::Reshape(vec![c_in, m, kh, kw]),
                    HostStep::Permute(vec![2, 3, 0, 1]),
                ],
                "_hwcm",
            )?;
            self.op_zp(
                "tosa.depthwise_conv2d",
                &[&x, &w, &bias],
                2,
                &props(&acc),
                &out_nhwc,
            )?
        } else {
            if o % group != 0 || c_in != cg * group {
                return Err(self.unsupported("inconsistent group count"));
            }
            let og = o / group;
            let part = [out_nhwc[0], out_nhwc[1], out_nhwc[2], og];
            let groups = PerGroup {
                group,
                cg,
                og,
                w_len: og,
                perm: &TO_NHWC,
                part,
            };
            self.per_group("tosa.conv2d", &x, wv, &bias, &groups, &props(&acc))?
        };
        self.bind(y, Layout::Nhwc, r);
        Ok(())
    }

    /// ConvTranspose (2-D, no dilation) -> `tosa.transpose_conv2d` (one per group), computed
    /// without output padding at the top/left (TOSA's full output, extended at the bottom/right
    /// when ONNX's `output_padding` reaches past it), then sliced to ONNX's output window.
    /// Weights `[C, M/group, kH, kW]` are permuted on the host to TOSA's `[M, kH, kW, C]`.
    fn conv_transpose(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let wv = self.req_input(node, 1)?;
        let (y, ydt, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let (_, wdims) = self.value_type(wv)?;
        if xdims.len() != 4 || wdims.len() != 4 || ydims.len() != 4 {
            return Err(self.unsupported("only 2-D transposed convolutions are lowered"));
        }
        let group = node.attr_int("group").unwrap_or(1).max(1);
        let dil = node.attr_ints("dilations").unwrap_or(&[1, 1]).to_vec();
        let st = node.attr_ints("strides").unwrap_or(&[1, 1]).to_vec();
        if dil.len() != 2 || st.len() != 2 || st.iter().any(|&s| s < 1) {
            return Err(self.unsupported("only 2-D transposed convolutions are lowered"));
        }
        if dil.iter().any(|&d| d != 1) {
            return Err(self.unsupported("dilated ConvTranspose is not lowered"));
        }
        let (c_in, og, kh, kw) = (wdims[0], wdims[1], wdims[2], wdims[3]);
        let o = og * group;
        if c_in != xdims[1] || c_in % group != 0 || ydims[1] != o {
            return Err(self.unsupported("inconsistent group count"));
        }
        let cg = c_in / group;
        let k = [kh, kw];
        let out_pad = node.attr_ints("output_padding").unwrap_or(&[0, 0]).to_vec();
        let auto_pad = node.attr_str("auto_pad").unwrap_or("NOTSET");
        let explicit = node.attr_ints("pads").filter(|p| p.len() == 4);
        let mut begin = [0i64; 2];
        for d in 0..2 {
            let total = st[d] * (xdims[2 + d] - 1) + out_pad.get(d).copied().unwrap_or(0) + k[d]
                - ydims[2 + d];
            begin[d] = match (auto_pad, explicit) {
                ("NOTSET", Some(p)) if node.attr_ints("output_shape").is_none() => p[d],
                ("SAME_UPPER", _) => total / 2,
                _ => total - total / 2,
            };
            if begin[d] < 0 {
                return Err(self.unsupported("negative ConvTranspose padding"));
            }
        }
        let full = [(xdims[2] - 1) * st[0] + kh, (xdims[3] - 1) * st[1] + kw];
        let extra = [
            (begin[0] + ydims[2] - full[0]).max(0),
            (begin[1] + ydims[3] - full[1]).max(0),
        ];
        let x = self.get(xv, Layout::Nhwc)?;
        let bias = match input(node, 2) {
            Some(b) => self.get(b, Layout::Nchw)?,
            None => self.zeros(ydt, &[o])?,
        };
        let acc = super::emit::elem_type(ydt).unwrap_or("f32").to_string();
        let props = format!(
            "acc_type = {acc}, out_pad = {}, stride = {}",
            ints_attr("i64", &[0, extra[0], 0, extra[1]]),
            ints_attr("i64", &st)
        );
        let n = xdims[0];
        let full_dims = |c: i64| [n, full[0] + extra[0], full[1] + extra[1], c];
        let r = if group == 1 {
            let w = self.transformed(wv, &[HostStep::Permute(vec![1, 2, 3, 0])], "_ohwi")?;
            self.op_zp(
                "tosa.transpose_conv2d",
                &[&x, &w, &bias],
                2,
                &props,
                &full_dims(o),
            )?
        } else {
            let groups = PerGroup {
                group,
                cg,
                og,
                w_len: cg,
                perm: &[1, 2, 3, 0],
                part: full_dims(og),
            };
            self.per_group("tosa.transpose_conv2d", &x, wv, &bias, &groups, &props)?
        };
        let r = self.slice(&r, &[0, begin[0], begin[1], 0], &[n, ydims[2], ydims[3], o]);
        self.bind(y, Layout::Nhwc, r);
        Ok(())
    }

    /// A grouped convolution as one `op` per group: channel slice `gi` of `x` (NHWC), slice `gi`
    /// (`w_len` long) of the weight's axis 0 permuted by `perm` on the host, and bias slice `gi`;
    /// the parts are concatenated along the channels.
    fn per_group(
        &mut self,
        op: &str,
        x: &Val,
        wv: ValueId,
        bias: &Val,
        g: &PerGroup<'_>,
        props: &str,
    ) -> R<Val> {
        let mut parts = Vec::new();
        for gi in 0..g.group {
            let xs = self.slice(
                x,
                &[0, 0, 0, gi * g.cg],
                &[x.dims[0], x.dims[1], x.dims[2], g.cg],
            );
            let w = self.transformed(
                wv,
                &[
                    HostStep::Slice(0, (gi * g.w_len) as usize, g.w_len as usize),
                    HostStep::Permute(g.perm.to_vec()),
                ],
                &format!("_g{gi}"),
            )?;
            let b = self.slice(bias, &[gi * g.og], &[g.og]);
            parts.push(self.op_zp(op, &[&xs, &w, &b], 2, props, &g.part)?);
        }
        Ok(self.concat(&parts, 3))
    }

    fn batch_norm(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let eps = node.attr_float("epsilon").unwrap_or(1e-5);
        let mut params = Vec::new();
        for i in 1..5 {
            let v = self.req_input(node, i)?;
            params.push(self.const_f32(v).ok_or_else(|| {
                self.unsupported("BatchNormalization parameters must be constants")
            })?);
        }
        let c = params[0].len();
        if params.iter().any(|p| p.len() != c) || ydims.get(1) != Some(&(c as i64)) {
            return Err(self.unsupported("parameter sizes do not match the channel count"));
        }
        let scale: Vec<f32> = (0..c)
            .map(|i| params[0][i] / (params[3][i] + eps).sqrt())
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|i| params[1][i] - params[2][i] * scale[i])
            .collect();
        let rank = ydims.len();
        let layout = self.pick_layout(&[xv], rank);
        let x = self.get_in(xv, layout)?;
        let mut pdims = vec![1i64; rank];
        if layout == Layout::Nhwc {
            pdims[3] = c as i64;
        } else {
            pdims[1] = c as i64;
        }
        let name = self.g.value(y).name.clone();
        let s = self.constant(
            &format!("{name}_scale"),
            HostTensor::from_f32(pdims.clone(), &scale),
        )?;
        let t = self.constant(
            &format!("{name}_shift"),
            HostTensor::from_f32(pdims, &shift),
        )?;
        let s = self.cast(&s, x.dtype);
        let t = self.cast(&t, x.dtype);
        let m = self.mul(&x, &s);
        let r = self.add(&m, &t);
        self.bind(y, layout, r);
        Ok(())
    }

    fn pool(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        if xdims.len() != 4 {
            return Err(self.unsupported("only 2-D pooling is lowered"));
        }
        let global = node.op_type.starts_with("Global");
        let (k, st, pads) = if global {
            ([xdims[2], xdims[3]], [1, 1], [0i64; 4])
        } else {
            let k = node
                .attr_ints("kernel_shape")
                .filter(|k| k.len() == 2)
                .ok_or_else(|| self.unsupported("only 2-D pooling is lowered"))?;
            let s = node.attr_ints("strides").unwrap_or(&[1, 1]);
            if s.len() != 2 {
                return Err(self.unsupported("only 2-D pooling is lowered"));
            }
            if node
                .attr_ints("dilations")
                .is_some_and(|d| d.iter().any(|&x| x != 1))
            {
                return Err(self.unsupported("dilated pooling"));
            }
            let k = [k[0], k[1]];
            let s = [s[0], s[1]];
            let pads = self.spatial_pads(node, [xdims[2], xdims[3]], k, s)?;
            (k, s, pads)
        };
        let is_max = node.op_type.contains("Max");
        let x = self.get(xv, Layout::Nhwc)?;
        let count_pad = node.attr_int("count_include_pad").unwrap_or(0) == 1;
        let (x, pads) = if !is_max && count_pad && pads.iter().any(|&p| p != 0) {
            if node.attr_int("ceil_mode").unwrap_or(0) == 1 {
                return Err(self.unsupported("ceil_mode with count_include_pad"));
            }
            let x = self.pad(&x, &[0, 0, pads[0], pads[2], pads[1], pads[3], 0, 0], 0.0)?;
            (x, [0; 4])
        } else {
            (x, pads)
        };
        let (x, pad) = self.exact_pads(x, pads, k, st, [ydims[2], ydims[3]])?;
        let out = [ydims[0], ydims[2], ydims[3], ydims[1]];
        let props = format!(
            "kernel = {}, pad = {}, stride = {}",
            ints_attr("i64", &k),
            ints_attr("i64", &pad),
            ints_attr("i64", &st)
        );
        let r = if is_max {
            self.op(
                "tosa.max_pool2d",
                &[(x.name.clone(), x.ty())],
                &props,
                x.dtype,
                &out,
            )
        } else {
            let acc = super::emit::elem_type(x.dtype).unwrap_or("f32");
            self.op_zp(
                "tosa.avg_pool2d",
                &[&x],
                2,
                &format!("acc_type = {acc}, {props}"),
                &out,
            )?
        };
        self.bind(y, Layout::Nhwc, r);
        Ok(())
    }

    // ---- matrix products ---------------------------------------------------------------------

    fn matmul3(&mut self, a: &Val, b: &Val) -> R<Val> {
        let dims = [a.dims[0], a.dims[1], b.dims[2]];
        self.op_zp("tosa.matmul", &[a, b], 2, "", &dims)
    }

    fn gemm(&mut self, node: &Node) -> R<()> {
        let av = self.req_input(node, 0)?;
        let bv = self.req_input(node, 1)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, adims) = self.value_type(av)?;
        let (_, bdims) = self.value_type(bv)?;
        if adims.len() != 2 || bdims.len() != 2 {
            return Err(self.unsupported("Gemm operands must be 2-D"));
        }
        let ta = node.attr_int("transA").unwrap_or(0) == 1;
        let tb = node.attr_int("transB").unwrap_or(0) == 1;
        let alpha = node.attr_float("alpha").unwrap_or(1.0) as f64;
        let beta = node.attr_float("beta").unwrap_or(1.0) as f64;
        let a = self.get(av, Layout::Nchw)?;
        let a = if ta { self.transpose(&a, &[1, 0]) } else { a };
        let (m, k) = (a.dims[0], a.dims[1]);
        let a3 = self.reshape(&a, &[1, m, k]);
        let n = if tb { bdims[0] } else { bdims[1] };
        let mut steps = Vec::new();
        if tb {
            steps.push(HostStep::Permute(vec![1, 0]));
        }
        steps.push(HostStep::Reshape(vec![1, k, n]));
        let b3 = self.transformed(bv, &steps, "_kn")?;
        let p = self.matmul3(&a3, &b3)?;
        let p = self.reshape(&p, &[m, n]);
        let p = self.scale(&p, alpha)?;
        let r = match input(node, 2) {
            Some(cv) => {
                let c = self.broadcast_operand(cv, 2, Layout::Nchw)?;
                let c = self.scale(&c, beta)?;
                self.add(&p, &c)
            }
            None => p,
        };
        if r.dims != ydims {
            return Err(self.unsupported("result shape differs from the declared one"));
        }
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    fn matmul(&mut self, node: &Node) -> R<()> {
        let av = self.req_input(node, 0)?;
        let bv = self.req_input(node, 1)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, adims) = self.value_type(av)?;
        let (_, bdims) = self.value_type(bv)?;
        if adims.is_empty() || bdims.is_empty() {
            return Err(self.unsupported("scalar MatMul operands"));
        }
        let a = self.get(av, Layout::Nchw)?;
        // 1-D operands are promoted as numpy does.
        let a = if adims.len() == 1 {
            self.reshape(&a, &[1, adims[0]])
        } else {
            a
        };
        let (m, k) = (a.dims[a.dims.len() - 2], a.dims[a.dims.len() - 1]);
        let n = if bdims.len() == 1 {
            1
        } else {
            bdims[bdims.len() - 1]
        };
        let a_batch = &a.dims[..a.dims.len() - 2];
        let b_batch: Vec<i64> = if bdims.len() <= 2 {
            vec![]
        } else {
            bdims[..bdims.len() - 2].to_vec()
        };
        let out_rank = a_batch.len().max(b_batch.len());
        let pad = |b: &[i64]| {
            let mut v = vec![1i64; out_rank - b.len()];
            v.extend_from_slice(b);
            v
        };
        let ab = pad(a_batch);
        let bb = pad(&b_batch);
        let batch: Vec<i64> = broadcast_dims(&ab, &bb);
        let bsz: i64 = batch.iter().product();
        let r = if bb.iter().all(|&d| d == 1) {
            // A weight (or a broadcast B): fold the batch into the rows.
            let rows: i64 = ab.iter().product::<i64>() * m;
            let a2 = self.reshape(&a, &[1, rows, k]);
            let b3 = self.transformed(bv, &[HostStep::Reshape(vec![1, k, n])], "_kn")?;
            self.matmul3(&a2, &b3)?
        } else {
            let b = self.get(bv, Layout::Nchw)?;
            let mut a_full = ab.clone();
            a_full.extend([m, k]);
            let a4 = self.reshape(&a, &a_full);
            let mut a_mult: Vec<i64> = ab.iter().zip(&batch).map(|(x, y)| y / x).collect();
            a_mult.extend([1, 1]);
            let a4 = self.tile(&a4, &a_mult);
            let mut b_full = bb.clone();
            b_full.extend([k, n]);
            let b4 = self.reshape(&b, &b_full);
            let mut b_mult: Vec<i64> = bb.iter().zip(&batch).map(|(x, y)| y / x).collect();
            b_mult.extend([1, 1]);
            let b4 = self.tile(&b4, &b_mult);
            let a3 = self.reshape(&a4, &[bsz, m, k]);
            let b3 = self.reshape(&b4, &[bsz, k, n]);
            self.matmul3(&a3, &b3)?
        };
        let r = self.reshape(&r, &ydims);
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    /// Two-operand Einsum without ellipsis or traces: a batched matmul between transposes.
    fn einsum(&mut self, node: &Node) -> R<()> {
        let eq = node.attr_str("equation").unwrap_or_default();
        let [ta, tb, out] = spa_ir::ops::binary_einsum(node).ok_or_else(|| {
            self.unsupported(format!(
                "Einsum '{eq}': only two operands with distinct letters and a written-out \
                 output are lowered"
            ))
        })?;
        let (ta, tb) = (&ta, &tb);
        let av = self.req_input(node, 0)?;
        let bv = self.req_input(node, 1)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, adims) = self.value_type(av)?;
        let (_, bdims) = self.value_type(bv)?;
        if adims.len() != ta.len() || bdims.len() != tb.len() {
            return Err(self.unsupported("Einsum term ranks do not match the operands"));
        }
        let size = |c: char| -> i64 {
            ta.iter()
                .position(|&x| x == c)
                .map(|i| adims[i])
                .or_else(|| tb.iter().position(|&x| x == c).map(|i| bdims[i]))
                .unwrap_or(1)
        };
        let batch: Vec<char> = out
            .iter()
            .copied()
            .filter(|c| ta.contains(c) && tb.contains(c))
            .collect();
        let contr: Vec<char> = ta
            .iter()
            .copied()
            .filter(|c| tb.contains(c) && !out.contains(c))
            .collect();
        let lfree: Vec<char> = ta.iter().copied().filter(|c| !tb.contains(c)).collect();
        let rfree: Vec<char> = tb.iter().copied().filter(|c| !ta.contains(c)).collect();
        if lfree.iter().chain(&rfree).any(|c| !out.contains(c))
            || out.iter().any(|c| !ta.contains(c) && !tb.contains(c))
        {
            return Err(self.unsupported(format!("Einsum '{eq}' sums over a single operand")));
        }
        let pos = |t: &[char], cs: &[char]| -> Vec<usize> {
            cs.iter()
                .filter_map(|c| t.iter().position(|x| x == c))
                .collect()
        };
        let prod = |cs: &[char]| cs.iter().map(|&c| size(c)).product::<i64>();
        let (bsz, m, k, n) = (prod(&batch), prod(&lfree), prod(&contr), prod(&rfree));
        let a = self.get(av, Layout::Nchw)?;
        let pa: Vec<usize> = [pos(ta, &batch), pos(ta, &lfree), pos(ta, &contr)].concat();
        let a = self.transpose(&a, &pa);
        let a = self.reshape(&a, &[bsz, m, k]);
        let pb: Vec<usize> = [pos(tb, &batch), pos(tb, &contr), pos(tb, &rfree)].concat();
        let b = self.transformed(
            bv,
            &[HostStep::Permute(pb), HostStep::Reshape(vec![bsz, k, n])],
            "_einsum",
        )?;
        let r = self.matmul3(&a, &b)?;
        let order: Vec<char> = [batch, lfree, rfree].concat();
        let mid: Vec<i64> = order.iter().map(|&c| size(c)).collect();
        let r = self.reshape(&r, &mid);
        let back = pos(&order, &out);
        let r = self.transpose(&r, &back);
        if r.dims != ydims {
            return Err(self.unsupported("Einsum result shape differs from the declared one"));
        }
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    /// Resize/Upsample of H and W (nearest or linear) as `tosa.resize` in NHWC. TOSA samples at
    /// `(o * scale_d + offset) / scale_n`; ONNX's coordinate modes are that with
    /// `scale_n = 2*out`, `scale_d = 2*in` and the offset below, and its nearest rounding modes
    /// are offsets of TOSA's round-half-up.
    fn resize(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        if xdims.len() != 4 || xdims[0] != ydims[0] || xdims[1] != ydims[1] {
            return Err(self.unsupported("only 4-D resizes of H and W are lowered"));
        }
        if node.attr_int("antialias").unwrap_or(0) != 0 {
            return Err(self.unsupported("antialias"));
        }
        let mode = node.attr_str("mode").unwrap_or("nearest");
        let default_ct = if node.op_type == "Upsample" || self.opset < 11 {
            "asymmetric"
        } else {
            "half_pixel"
        };
        let ct = node
            .attr_str("coordinate_transformation_mode")
            .unwrap_or(default_ct);
        let nearest_mode = node
            .attr_str("nearest_mode")
            .unwrap_or("round_prefer_floor");
        let mut scale = Vec::new();
        let mut offset = Vec::new();
        let mut border = Vec::new();
        for i in 0..2 {
            let (inp, out) = (xdims[2 + i], ydims[2 + i]);
            let (sn, sd, mut off) = match ct {
                "asymmetric" => (2 * out, 2 * inp, 0),
                "half_pixel" => (2 * out, 2 * inp, inp - out),
                "pytorch_half_pixel" if out > 1 => (2 * out, 2 * inp, inp - out),
                "align_corners" if out > 1 => (2 * (out - 1), 2 * (inp - 1).max(0), 0),
                other => {
                    return Err(self.unsupported(format!("coordinate_transformation_mode {other}")))
                }
            };
            match mode {
                "linear" | "bilinear" => {}
                "nearest" => {
                    off += match nearest_mode {
                        "round_prefer_floor" => -1,
                        "round_prefer_ceil" => 0,
                        "floor" => -sn / 2,
                        "ceil" => sn / 2 - 1,
                        other => return Err(self.unsupported(format!("nearest_mode {other}"))),
                    };
                }
                other => return Err(self.unsupported(format!("mode {other}"))),
            }
            if sn <= 0 || sd <= 0 {
                return Err(self.unsupported("degenerate resize"));
            }
            scale.extend([sn, sd]);
            offset.push(off);
            border.push((out - 1) * sd - (inp - 1) * sn + off);
        }
        let x = self.get(xv, Layout::Nhwc)?;
        let s = self.shape_operand(&scale);
        let o = self.shape_operand(&offset);
        let b = self.shape_operand(&border);
        let tosa_mode = if mode == "nearest" {
            "NEAREST_NEIGHBOR"
        } else {
            "BILINEAR"
        };
        let out = [ydims[0], ydims[2], ydims[3], ydims[1]];
        let r = self.op(
            "tosa.resize",
            &[(x.name.clone(), x.ty()), s, o, b],
            &format!("mode = #tosa.resize_mode<{tosa_mode}>"),
            x.dtype,
            &out,
        );
        self.bind(y, Layout::Nhwc, r);
        Ok(())
    }

    // ---- shapes and data movement ------------------------------------------------------------

    fn reshape_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let x = self.get(xv, Layout::Nchw)?;
        let r = self.reshape(&x, &ydims);
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    fn transpose_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, _) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = xdims.len();
        let perm: Vec<usize> = match node.attr_ints("perm") {
            Some(p) => p
                .iter()
                .map(|&a| self.axis(a, rank))
                .collect::<R<Vec<usize>>>()?,
            None => (0..rank).rev().collect(),
        };
        let r = if rank == 4 && self.prefers_nhwc(xv) {
            // Compose with the NHWC form instead of transposing back to NCHW first.
            let x = self.get(xv, Layout::Nhwc)?;
            let p: Vec<usize> = perm.iter().map(|&a| NHWC_POS[a]).collect();
            self.transpose(&x, &p)
        } else {
            let x = self.get(xv, Layout::Nchw)?;
            self.transpose(&x, &perm)
        };
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    /// The axis of an NCHW-indexed op in the chosen layout.
    fn laid_axis(layout: Layout, axis: usize, rank: usize) -> usize {
        if layout == Layout::Nhwc && rank == 4 {
            NHWC_POS[axis]
        } else {
            axis
        }
    }

    fn concat_op(&mut self, node: &Node) -> R<()> {
        let (y, _, ydims) = self.out(node, 0)?;
        let rank = ydims.len();
        let axis = self.axis(node.attr_int("axis").unwrap_or(0), rank)?;
        let ins: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        let layout = self.pick_layout(&ins, rank);
        let mut vals = Vec::new();
        for &v in &ins {
            let (_, d) = self.value_type(v)?;
            if d.get(axis) == Some(&0) {
                continue;
            }
            vals.push(self.get_in(v, layout)?);
        }
        if vals.is_empty() {
            return Err(self.unsupported("every input is empty"));
        }
        let r = self.concat(&vals, Self::laid_axis(layout, axis, rank));
        self.bind(y, layout, r);
        Ok(())
    }

    fn split_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = xdims.len();
        let axis = self.axis(node.attr_int("axis").unwrap_or(0), rank)?;
        let layout = self.pick_layout(&[xv], rank);
        let x = self.get_in(xv, layout)?;
        let la = Self::laid_axis(layout, axis, rank);
        let mut off = 0i64;
        for i in 0..node.outputs.len() {
            let Some(yv) = node.output(i) else { continue };
            let (_, ydims) = self.value_type(yv)?;
            let len = ydims[axis];
            let mut start = vec![0i64; rank];
            start[la] = off;
            let mut size = x.dims.clone();
            size[la] = len;
            let r = self.slice(&x, &start, &size);
            self.bind(yv, layout, r);
            off += len;
        }
        Ok(())
    }

    fn slice_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = xdims.len();
        let (starts, axes, steps) = if self.opset < 10 {
            let s = node.attr_ints("starts").unwrap_or(&[]).to_vec();
            let a = node
                .attr_ints("axes")
                .map(|a| a.to_vec())
                .unwrap_or_else(|| (0..s.len() as i64).collect());
            (s.clone(), a, vec![1; s.len()])
        } else {
            let s = self.ints_of(self.req_input(node, 1)?, "Slice starts")?;
            let a = match input(node, 3) {
                Some(v) => self.ints_of(v, "Slice axes")?,
                None => (0..s.len() as i64).collect(),
            };
            let st = match input(node, 4) {
                Some(v) => self.ints_of(v, "Slice steps")?,
                None => vec![1; s.len()],
            };
            (s, a, st)
        };
        if steps.iter().any(|&s| s != 1) {
            return self.stepped_slice(node, xv, &xdims, &starts, &axes, &steps);
        }
        let mut start = vec![0i64; rank];
        for (i, &a) in axes.iter().enumerate() {
            let ax = self.axis(a, rank)?;
            let d = xdims[ax];
            let s = starts.get(i).copied().unwrap_or(0);
            let s = if s < 0 { s + d } else { s };
            start[ax] = s.clamp(0, d);
        }
        let layout = self.pick_layout(&[xv], rank);
        let x = self.get_in(xv, layout)?;
        let (st, sz) = if layout == Layout::Nhwc {
            (
                TO_NHWC.iter().map(|&a| start[a]).collect::<Vec<_>>(),
                TO_NHWC.iter().map(|&a| ydims[a]).collect::<Vec<_>>(),
            )
        } else {
            (start, ydims.clone())
        };
        let r = self.slice(&x, &st, &sz);
        self.bind(y, layout, r);
        Ok(())
    }

    /// Slice with steps: per stepped axis, take the `n * step` entries from the start (padded at
    /// the end when the axis is shorter), view them as `[n, step]` and keep column 0. A negative
    /// step reverses the axis first (`tosa.reverse`) and walks it forwards.
    fn stepped_slice(
        &mut self,
        node: &Node,
        xv: ValueId,
        xdims: &[i64],
        starts: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> R<()> {
        let (y, _, ydims) = self.out(node, 0)?;
        let rank = xdims.len();
        let mut cur = self.get(xv, Layout::Nchw)?;
        for (i, &a) in axes.iter().enumerate() {
            let ax = self.axis(a, rank)?;
            let d = xdims[ax];
            let n = ydims[ax];
            let step = steps.get(i).copied().unwrap_or(1);
            if step == 0 {
                return Err(self.unsupported("Slice step 0"));
            }
            let s = starts.get(i).copied().unwrap_or(0);
            let s = if s < 0 { s + d } else { s };
            let mut dims = cur.dims.clone();
            if n == 0 {
                return Err(self.unsupported("Slice with an empty result"));
            }
            let (first, step) = if step > 0 {
                (s.clamp(0, d), step)
            } else {
                // Reverse the axis: entry `s` becomes entry `d - 1 - s`.
                let r = self.op(
                    "tosa.reverse",
                    &[cur.arg()],
                    &format!("axis = {ax} : i32"),
                    cur.dtype,
                    &cur.dims,
                );
                cur = r;
                (d - 1 - s.clamp(0, d - 1), -step)
            };
            let want = n * step;
            let len = want.min(d - first);
            let mut start = vec![0i64; rank];
            start[ax] = first;
            dims[ax] = len;
            cur = self.slice(&cur, &start, &dims);
            if step == 1 {
                continue;
            }
            if len < want {
                let mut pads = vec![0i64; 2 * rank];
                pads[2 * ax + 1] = want - len;
                cur = self.pad(&cur, &pads, 0.0)?;
            }
            let mut split: Vec<i64> = cur.dims[..ax].to_vec();
            split.extend([n, step]);
            split.extend_from_slice(&cur.dims[ax + 1..]);
            let v = self.reshape(&cur, &split);
            let mut size = split.clone();
            size[ax + 1] = 1;
            let v = self.slice(&v, &vec![0i64; rank + 1], &size);
            let mut back = cur.dims.clone();
            back[ax] = n;
            cur = self.reshape(&v, &back);
        }
        if cur.dims != ydims {
            return Err(self.unsupported(format!(
                "stepped Slice came out as {:?} instead of {:?}",
                cur.dims, ydims
            )));
        }
        self.bind(y, Layout::Nchw, cur);
        Ok(())
    }

    fn gather_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let iv = self.req_input(node, 1)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = xdims.len();
        let axis = self.axis(node.attr_int("axis").unwrap_or(0), rank)?;
        let d = xdims[axis];
        let x = self.get(xv, Layout::Nchw)?;
        if let Some(idx) = self.const_ints(iv) {
            let idx: Vec<i64> = idx.iter().map(|&i| if i < 0 { i + d } else { i }).collect();
            if idx.iter().any(|&i| !(0..d).contains(&i)) {
                return Err(self.unsupported("Gather index out of range"));
            }
            let contiguous = idx.windows(2).all(|w| w[1] == w[0] + 1);
            if contiguous && !idx.is_empty() {
                let mut start = vec![0i64; rank];
                start[axis] = idx[0];
                let mut size = xdims.clone();
                size[axis] = idx.len() as i64;
                let s = self.slice(&x, &start, &size);
                let r = self.reshape(&s, &ydims);
                self.bind(y, Layout::Nchw, r);
                return Ok(());
            }
        }
        // General case: move the axis first, gather rows with tosa.gather, move it back.
        let (_, idims) = self.value_type(iv)?;
        let mut perm: Vec<usize> = vec![axis];
        perm.extend((0..rank).filter(|&a| a != axis));
        let xt = self.transpose(&x, &perm);
        let rest: i64 = xdims
            .iter()
            .enumerate()
            .filter(|(a, _)| *a != axis)
            .map(|(_, d)| d)
            .product();
        let x3 = self.reshape(&xt, &[1, d, rest]);
        let w: i64 = idims.iter().product();
        let idx = self.get(iv, Layout::Nchw)?;
        let idx = self.cast(&idx, DType::I32);
        let idx = self.reshape(&idx, &[1, w]);
        let g = self.op(
            "tosa.gather",
            &[(x3.name.clone(), x3.ty()), (idx.name.clone(), idx.ty())],
            "",
            x3.dtype,
            &[1, w, rest],
        );
        // [idims..., other axes in order] then move the index dims to `axis`.
        let mut mid: Vec<i64> = idims.clone();
        mid.extend(
            xdims
                .iter()
                .enumerate()
                .filter(|(a, _)| *a != axis)
                .map(|(_, d)| *d),
        );
        let g = self.reshape(&g, &mid);
        let ni = idims.len();
        let mut back: Vec<usize> = Vec::new();
        back.extend(ni..ni + axis);
        back.extend(0..ni);
        back.extend(ni + axis..mid.len());
        let r = self.transpose(&g, &back);
        let r = self.reshape(&r, &ydims);
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    fn expand_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = ydims.len();
        if node.op_type == "Tile" {
            let reps = self.ints_of(self.req_input(node, 1)?, "Tile repeats")?;
            let x = self.get(xv, Layout::Nchw)?;
            let r = self.tile(&x, &reps);
            self.bind(y, Layout::Nchw, r);
            return Ok(());
        }
        let layout = self.pick_layout(&[xv], rank);
        let x = self.broadcast_operand(xv, rank, layout)?;
        let want: Vec<i64> = if layout == Layout::Nhwc {
            TO_NHWC.iter().map(|&a| ydims[a]).collect()
        } else {
            ydims.clone()
        };
        let _ = xdims;
        let mult: Vec<i64> = x
            .dims
            .iter()
            .zip(&want)
            .map(|(&a, &b)| if a == 1 { b } else { 1 })
            .collect();
        let r = self.tile(&x, &mult);
        self.bind(y, layout, r);
        Ok(())
    }

    fn pad_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, _) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = xdims.len();
        let mode = node.attr_str("mode").unwrap_or("constant");
        if mode != "constant" {
            return Err(self.unsupported(format!("Pad mode {mode}")));
        }
        let (pads, value, axes) = if self.opset < 11 {
            (
                node.attr_ints("pads").unwrap_or(&[]).to_vec(),
                node.attr_float("value").unwrap_or(0.0) as f64,
                None,
            )
        } else {
            let p = self.ints_of(self.req_input(node, 1)?, "Pad pads")?;
            let v = match input(node, 2) {
                Some(c) => self
                    .const_f32(c)
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| self.unsupported("Pad value must be a constant"))?
                    as f64,
                None => 0.0,
            };
            let a = match input(node, 3) {
                Some(a) => Some(self.ints_of(a, "Pad axes")?),
                None => None,
            };
            (p, v, a)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&x| self.axis(x, rank)).collect::<R<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(self.unsupported("pads length does not match the axes"));
        }
        if pads.iter().any(|&p| p < 0) {
            return Err(self.unsupported("negative pads"));
        }
        let mut tp = vec![0i64; 2 * rank];
        for (i, &a) in axes.iter().enumerate() {
            tp[2 * a] = pads[i];
            tp[2 * a + 1] = pads[i + axes.len()];
        }
        let layout = self.pick_layout(&[xv], rank);
        let x = self.get_in(xv, layout)?;
        let tp = if layout == Layout::Nhwc {
            TO_NHWC
                .iter()
                .flat_map(|&a| [tp[2 * a], tp[2 * a + 1]])
                .collect()
        } else {
            tp
        };
        let r = self.pad(&x, &tp, value)?;
        self.bind(y, layout, r);
        Ok(())
    }

    // ---- reductions and normalizations -------------------------------------------------------

    fn softmax(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let rank = ydims.len();
        let default = if self.opset < 13 { 1 } else { -1 };
        let axis = self.axis(node.attr_int("axis").unwrap_or(default), rank)?;
        if self.opset < 13 && axis != rank - 1 {
            return Err(self.unsupported("opset < 13 Softmax over more than the last axis"));
        }
        let layout = self.pick_layout(&[xv], rank);
        let x = self.get_in(xv, layout)?;
        let a = Self::laid_axis(layout, axis, rank);
        let m = self.reduce("tosa.reduce_max", &x, a);
        let d = self.sub(&x, &m);
        let e = self.unary("tosa.exp", &d);
        let s = self.reduce("tosa.reduce_sum", &e, a);
        let r = if node.op_type == "LogSoftmax" {
            let l = self.unary("tosa.log", &s);
            self.sub(&d, &l)
        } else {
            let inv = self.unary("tosa.reciprocal", &s);
            self.mul(&e, &inv)
        };
        self.bind(y, layout, r);
        Ok(())
    }

    fn layer_norm(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        if node.outputs.iter().skip(1).any(|o| o.is_some()) {
            return Err(self.unsupported("LayerNormalization mean/inv_std outputs"));
        }
        let rank = ydims.len();
        let axis = self.axis(node.attr_int("axis").unwrap_or(-1), rank)?;
        let eps = node.attr_float("epsilon").unwrap_or(1e-5) as f64;
        let x = self.get(xv, Layout::Nchw)?;
        let n: i64 = ydims[axis..].iter().product();
        let mut s = x.clone();
        for a in axis..rank {
            s = self.reduce("tosa.reduce_sum", &s, a);
        }
        let mean = self.scale(&s, 1.0 / n as f64)?;
        let d = self.sub(&x, &mean);
        let sq = self.mul(&d, &d);
        let mut v = sq;
        for a in axis..rank {
            v = self.reduce("tosa.reduce_sum", &v, a);
        }
        let var = self.scale(&v, 1.0 / n as f64)?;
        let ve = self.add_scalar(&var, eps)?;
        let inv = self.unary("tosa.rsqrt", &ve);
        let mut r = self.mul(&d, &inv);
        if let Some(g) = input(node, 1) {
            let g = self.broadcast_operand(g, rank, Layout::Nchw)?;
            r = self.mul(&r, &g);
        }
        if let Some(b) = input(node, 2) {
            let b = self.broadcast_operand(b, rank, Layout::Nchw)?;
            r = self.add(&r, &b);
        }
        self.bind(y, Layout::Nchw, r);
        Ok(())
    }

    fn reduce_op(&mut self, node: &Node) -> R<()> {
        let xv = self.req_input(node, 0)?;
        let (y, _, ydims) = self.out(node, 0)?;
        let (_, xdims) = self.value_type(xv)?;
        let rank = xdims.len();
        let op = node.op_type.as_str();
        let axes_from_input = match op {
            "ReduceSum" => self.opset >= 13,
            _ => self.opset >= 18,
        };
        let axes = if axes_from_input {
            match input(node, 1) {
                Some(a) => Some(self.ints_of(a, "reduction axes")?),
                None => None,
            }
        } else {
            node.attr_ints("axes").map(|a| a.to_vec())
        };
        let axes: Vec<usize> = match axes {
            Some(a) if !a.is_empty() => a.iter().map(|&x| self.axis(x, rank)).collect::<R<_>>()?,
            _ if node.attr_int("noop_with_empty_axes").unwrap_or(0) == 1 => {
                return self.alias(node);
            }
            _ => (0..rank).collect(),
        };
        let keep = node.attr_int("keepdims").unwrap_or(1) == 1;
        let layout = if keep {
            self.pick_layout(&[xv], rank)
        } else {
            Layout::Nchw
        };
        let x = self.get_in(xv, layout)?;
        let (pre, tosa_op) = match op {
            "ReduceMean" | "ReduceSum" => (None, "tosa.reduce_sum"),
            "ReduceMax" => (None, "tosa.reduce_max"),
            "ReduceMin" => (None, "tosa.reduce_min"),
            "ReduceProd" => (None, "tosa.reduce_product"),
            _ => (Some(()), "tosa.reduce_sum"),
        };
        let mut r = if pre.is_some() { self.mul(&x, &x) } else { x };
        let mut count = 1i64;
        for &a in &axes {
            count *= xdims[a];
            r = self.reduce(tosa_op, &r, Self::laid_axis(layout, a, rank));
        }
        if op == "ReduceMean" {
            r = self.scale(&r, 1.0 / count as f64)?;
        }
        if op == "ReduceL2" {
            let q = self.unary("tosa.rsqrt", &r);
            r = self.unary("tosa.reciprocal", &q);
        }
        if !keep {
            r = self.reshape(&r, &ydims);
        }
        self.bind(y, layout, r);
        Ok(())
    }
}

/// Result dims as laid out.
fn ydims_in(layout: Layout, dims: &[i64]) -> Vec<i64> {
    if layout == Layout::Nhwc && dims.len() == 4 {
        TO_NHWC.iter().map(|&a| dims[a]).collect()
    } else {
        dims.to_vec()
    }
}
