#!/usr/bin/env python3
"""Deterministic generator for the ONNX test fixtures of spa-opt.

Writes small valid models into ``tests/fixtures/`` and malformed inputs for
negative tests into ``tests/invalid/``.  The generated files are committed, so
``cargo test`` never needs Python; rerun this script only to change them:

    python3 scripts/gen_fixtures.py

Requirements: onnx==1.23.2 and numpy; onnxruntime==1.32.0 is optional and is
only used for the self-check at the end.  Running the script twice produces
byte-identical files (all randomness comes from numpy ``default_rng`` with
fixed seeds, and nothing time- or path-dependent is written).

Naming follows the PyTorch exporter: parameters are ``conv1.weight``,
``bn1.running_mean`` ...; nodes are ``/conv1/Conv``; node outputs are
``/conv1/Conv_output_0``.  MatMul weights are stored already transposed, i.e.
as [in_features, out_features].
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
INVALID = ROOT / "tests" / "invalid"

OPSET = 17
IR_VERSION = 8
PRODUCER = "gen_fixtures"
PRODUCER_VERSION = "1"

F32 = TensorProto.FLOAT
I64 = TensorProto.INT64


# --------------------------------------------------------------------------
# Small graph-building helper
# --------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes/initializers and names them the way PyTorch does."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self._node_names: set[str] = set()

    # -- tensors -----------------------------------------------------------
    def input(self, name: str, elem_type: int, shape) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, elem_type: int, shape) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def init(self, name: str, array: np.ndarray) -> str:
        """Initializer stored in raw_data (numpy_helper always uses raw_data)."""
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, name: str, shape, fan_in: int | None = None) -> str:
        if fan_in is None:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        std = math.sqrt(2.0 / fan_in)
        w = (self.rng.standard_normal(shape) * std).astype(np.float32)
        return self.init(name, w)

    def bias(self, name: str, n: int) -> str:
        return self.init(name, (self.rng.standard_normal(n) * 0.1).astype(np.float32))

    # -- nodes -------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        name, i = base, 0
        while name in self._node_names:
            i += 1
            name = f"{base}_{i}"
        self._node_names.add(name)
        return name

    def node(self, op: str, scope: str, inputs, n_out: int = 1, domain: str = "",
             doc_string: str | None = None, **attrs):
        name = self.unique_name(f"{scope}/{op}")
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        nd = helper.make_node(op, list(inputs), outs, name=name, domain=domain or None, **attrs)
        if doc_string:
            nd.doc_string = doc_string
        self.nodes.append(nd)
        return outs[0] if n_out == 1 else outs

    def const(self, scope: str, array: np.ndarray) -> str:
        """PyTorch-style Constant node (``/attn/Constant`` -> ``/attn/Constant_output_0``)."""
        name = self.unique_name(f"{scope}/Constant")
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(
            "Constant", [], [out], name=name,
            value=numpy_helper.from_array(np.asarray(array), "")))
        return out

    # -- common blocks -----------------------------------------------------
    def conv(self, scope: str, x: str, cin: int, cout: int, k: int = 3, stride: int = 1,
             pad: int | None = None, group: int = 1, dilation: int = 1, bias: bool = True) -> str:
        if pad is None:
            pad = dilation * (k - 1) // 2
        pname = scope.strip("/").replace("/", ".")
        w = self.weight(f"{pname}.weight", (cout, cin // group, k, k))
        ins = [x, w]
        if bias:
            ins.append(self.bias(f"{pname}.bias", cout))
        attrs = dict(kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride],
                     dilations=[dilation, dilation], group=group)
        return self.node("Conv", scope, ins, **attrs)

    def bn(self, scope: str, x: str, c: int) -> str:
        pname = scope.strip("/").replace("/", ".")
        r = self.rng
        s = self.init(f"{pname}.weight", (1.0 + 0.1 * r.standard_normal(c)).astype(np.float32))
        b = self.init(f"{pname}.bias", (0.1 * r.standard_normal(c)).astype(np.float32))
        m = self.init(f"{pname}.running_mean", (0.1 * r.standard_normal(c)).astype(np.float32))
        v = self.init(f"{pname}.running_var", r.uniform(0.5, 1.5, c).astype(np.float32))
        return self.node("BatchNormalization", scope, [x, s, b, m, v], epsilon=1e-5, momentum=0.9)

    def gemm(self, scope: str, x: str, fin: int, fout: int, trans_b: bool = True) -> str:
        pname = scope.strip("/").replace("/", ".")
        shape = (fout, fin) if trans_b else (fin, fout)
        w = self.weight(f"{pname}.weight", shape, fan_in=fin)
        b = self.bias(f"{pname}.bias", fout)
        return self.node("Gemm", scope, [x, w, b], alpha=1.0, beta=1.0, transB=1 if trans_b else 0)

    def linear_matmul(self, scope: str, x: str, fin: int, fout: int, bias: bool = True) -> str:
        pname = scope.strip("/").replace("/", ".")
        w = self.weight(f"{pname}.weight", (fin, fout), fan_in=fin)
        y = self.node("MatMul", scope, [x, w])
        if bias:
            b = self.bias(f"{pname}.bias", fout)
            y = self.node("Add", scope, [y, b])
        return y

    def head(self, x: str, c: int, classes: int = 10, out_name: str = "output") -> None:
        """Relu-free classifier head: GlobalAveragePool -> Flatten -> Gemm."""
        p = self.node("GlobalAveragePool", "/pool", [x])
        f = self.node("Flatten", "", [p], axis=1)
        y = self.gemm("/fc", f, c, classes)
        self.rename_output(y, out_name)
        self.output(out_name, F32, [1, classes])

    def rename_output(self, old: str, new: str) -> None:
        for nd in self.nodes:
            for i, o in enumerate(nd.output):
                if o == old:
                    nd.output[i] = new

    # -- assembly ----------------------------------------------------------
    def graph(self, name: str, doc_string: str | None = None) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, name, self.inputs, self.outputs,
                                 initializer=self.initializers, doc_string=doc_string,
                                 value_info=self.value_info)

    def model(self, name: str, doc_string: str | None = None, opsets=None,
              functions=None) -> onnx.ModelProto:
        return make_model(self.graph(name, doc_string), opsets=opsets, functions=functions)


def make_model(graph, opsets=None, functions=None, ir_version=IR_VERSION) -> onnx.ModelProto:
    opsets = opsets or [("", OPSET)]
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                          producer_name=PRODUCER, producer_version=PRODUCER_VERSION,
                          functions=functions or [])
    m.ir_version = ir_version
    return m


def i64(*v) -> np.ndarray:
    return np.array(v, dtype=np.int64)


# --------------------------------------------------------------------------
# Valid fixtures
# --------------------------------------------------------------------------


def build_conv_bn_residual(seed: int = 1, annotate: bool = True) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    x = g.input("input", F32, [1, 3, 32, 32])
    c1 = g.conv("/conv1", x, 3, 16)
    b1 = g.bn("/bn1", c1, 16)
    r1 = g.node("Relu", "/relu1", [b1])
    c2 = g.conv("/conv2", r1, 16, 16)
    b2 = g.bn("/bn2", c2, 16)
    a = g.node("Add", "", [b2, r1],
               doc_string="residual connection: bn2(conv2(x)) + x" if annotate else None)
    r2 = g.node("Relu", "/relu2", [a])
    c3 = g.conv("/conv3", r2, 16, 32, stride=2)
    r3 = g.node("Relu", "/relu3", [c3])
    g.head(r3, 32)
    if annotate:
        g.value_info = [
            helper.make_tensor_value_info(c1, F32, [1, 16, 32, 32]),
            helper.make_tensor_value_info(r1, F32, [1, 16, 32, 32]),
            helper.make_tensor_value_info(a, F32, [1, 16, 32, 32]),
            helper.make_tensor_value_info(c3, F32, [1, 32, 16, 16]),
            helper.make_tensor_value_info("/pool/GlobalAveragePool_output_0", F32, [1, 32, 1, 1]),
        ]
    m = g.model("conv_bn_residual",
                doc_string="README example: conv-bn-relu residual block + strided conv + classifier"
                if annotate else None)
    if annotate:
        m.doc_string = "spa-opt test fixture (generated by scripts/gen_fixtures.py)"
        helper.set_model_props(m, {
            "author": "spa-opt test suite",
            "license": "Apache-2.0",
            "fixture": "conv_bn_residual",
        })
    return m


def build_concat_block() -> onnx.ModelProto:
    g = GraphBuilder(2)
    x = g.input("input", F32, [1, 3, 32, 32])
    a = g.node("Relu", "/branch_a", [g.conv("/branch_a/conv", x, 3, 8)])
    b = g.node("Relu", "/branch_b", [g.conv("/branch_b/conv", x, 3, 12)])
    ab = g.node("Concat", "/concat1", [a, b], axis=1)  # 20 channels
    c = g.node("Relu", "/branch_c", [g.conv("/branch_c/conv", x, 3, 8)])
    abc = g.node("Concat", "/concat2", [ab, c], axis=1)  # 28 channels
    y = g.node("Relu", "/relu", [g.conv("/conv", abc, 28, 16)])
    g.head(y, 16)
    return g.model("concat_block")


def build_grouped_depthwise() -> onnx.ModelProto:
    g = GraphBuilder(3)
    x = g.input("input", F32, [1, 3, 32, 32])
    y = g.conv("/conv1", x, 3, 16)
    y = g.conv("/grouped", y, 16, 32, group=4)
    y = g.conv("/depthwise", y, 32, 32, group=32)
    y = g.conv("/depthwise_mult2", y, 32, 64, group=32)
    y = g.conv("/dilated", y, 64, 16, dilation=2)
    y = g.node("Relu", "/relu", [y])
    g.head(y, 16)
    return g.model("grouped_depthwise")


def build_transformer_block(einsum: bool = False) -> onnx.ModelProto:
    """LayerNorm, 4 heads of 8 dims, an MLP. With `einsum`, the attention's two products are
    Einsums (as MaxViT and JAX exports write them); the weights are the same."""
    S, H, NH, HD, FF = 8, 32, 4, 8, 64
    g = GraphBuilder(4)
    x = g.input("x", F32, [1, S, H])

    def layernorm(scope, v):
        p = scope.strip("/")
        w = g.init(f"{p}.weight", (1.0 + 0.1 * g.rng.standard_normal(H)).astype(np.float32))
        b = g.init(f"{p}.bias", (0.1 * g.rng.standard_normal(H)).astype(np.float32))
        return g.node("LayerNormalization", scope, [v, w, b], axis=-1, epsilon=1e-5)

    h = layernorm("/ln1", x)
    q = g.linear_matmul("/attn/q_proj", h, H, H)
    k = g.linear_matmul("/attn/k_proj", h, H, H)
    v = g.linear_matmul("/attn/v_proj", h, H, H)

    # view(B, T, n_head, head_dim) with B, T = x.size(): computed at run time.
    shp = g.node("Shape", "/attn", [h])
    bdim = g.node("Gather", "/attn", [shp, g.const("/attn", np.array(0, dtype=np.int64))], axis=0)
    shp2 = g.node("Shape", "/attn", [h])
    tdim = g.node("Gather", "/attn", [shp2, g.const("/attn", np.array(1, dtype=np.int64))], axis=0)
    bu = g.node("Unsqueeze", "/attn", [bdim, g.const("/attn", i64(0))])
    tu = g.node("Unsqueeze", "/attn", [tdim, g.const("/attn", i64(0))])
    heads_shape = g.node("Concat", "/attn",
                         [bu, tu, g.const("/attn", i64(NH)), g.const("/attn", i64(HD))], axis=0)

    def split_heads(t, perm):
        r = g.node("Reshape", "/attn", [t, heads_shape])
        return g.node("Transpose", "/attn", [r], perm=perm)

    qh = split_heads(q, [0, 2, 1, 3])  # [1,4,8,8]
    kh = split_heads(k, [0, 2, 1, 3])
    vh = split_heads(v, [0, 2, 1, 3])
    if einsum:
        scores = g.node("Einsum", "/attn", [qh, kh], equation="bhid,bhjd->bhij")
    else:
        kt = g.node("Transpose", "/attn", [kh], perm=[0, 1, 3, 2])
        scores = g.node("MatMul", "/attn", [qh, kt])
    scores = g.node("Div", "/attn", [scores, g.const("/attn", np.array(math.sqrt(HD), dtype=np.float32))])
    probs = g.node("Softmax", "/attn", [scores], axis=-1)
    if einsum:
        ctx = g.node("Einsum", "/attn", [probs, vh], equation="bhij,bhjd->bhid")
    else:
        ctx = g.node("MatMul", "/attn", [probs, vh])  # [1,4,8,8]
    ctx = g.node("Transpose", "/attn", [ctx], perm=[0, 2, 1, 3])  # [1,8,4,8]
    merged_shape = g.init("/attn/merge_heads_shape", i64(1, S, H))
    ctx = g.node("Reshape", "/attn", [ctx, merged_shape])
    attn_out = g.linear_matmul("/attn/out_proj", ctx, H, H)
    h1 = g.node("Add", "", [x, attn_out])

    h2 = layernorm("/ln2", h1)
    f = g.linear_matmul("/mlp/fc1", h2, H, FF)
    # GELU(x) = x * 0.5 * (1 + erf(x / sqrt(2))) as exported by torch.onnx (opset < 20)
    d = g.node("Div", "/mlp/act", [f, g.const("/mlp/act", np.array(math.sqrt(2.0), dtype=np.float32))])
    e = g.node("Erf", "/mlp/act", [d])
    a1 = g.node("Add", "/mlp/act", [e, g.const("/mlp/act", np.array(1.0, dtype=np.float32))])
    m1 = g.node("Mul", "/mlp/act", [f, a1])
    gelu = g.node("Mul", "/mlp/act", [m1, g.const("/mlp/act", np.array(0.5, dtype=np.float32))])
    f2 = g.linear_matmul("/mlp/fc2", gelu, FF, H)
    y = g.node("Add", "", [h1, f2])
    g.rename_output(y, "y")
    g.output("y", F32, [1, S, H])
    return g.model("transformer_block_einsum" if einsum else "transformer_block")


def _mlp(seed: int, batch) -> GraphBuilder:
    g = GraphBuilder(seed)
    x = g.input("input", F32, [batch, 64])
    y = g.gemm("/fc1", x, 64, 128, trans_b=True)
    y = g.node("Relu", "/relu", [y])
    y = g.gemm("/fc2", y, 128, 96, trans_b=False)  # weight stored [in, out]
    y = g.node("Sigmoid", "/sigmoid", [y])
    y = g.linear_matmul("/fc3", y, 96, 10)
    g.rename_output(y, "output")
    g.output("output", F32, [batch, 10])
    return g


def build_mlp() -> onnx.ModelProto:
    return _mlp(5, 1).model("mlp")


def build_dynamic_batch() -> onnx.ModelProto:
    return _mlp(11, "batch").model("dynamic_batch")


def build_channel_shuffle() -> onnx.ModelProto:
    g = GraphBuilder(6)
    x = g.input("input", F32, [1, 3, 32, 32])
    y = g.conv("/conv1", x, 3, 16)
    y = g.node("Reshape", "/shuffle", [y, g.init("/shuffle/split_shape", i64(1, 4, 4, 32, 32))])
    y = g.node("Transpose", "/shuffle", [y], perm=[0, 2, 1, 3, 4])
    y = g.node("Reshape", "/shuffle", [y, g.init("/shuffle/merge_shape", i64(1, 16, 32, 32))])
    y = g.conv("/conv2", y, 16, 8)
    y = g.node("Relu", "/relu", [y])
    g.head(y, 8)
    return g.model("channel_shuffle")


def build_constant_nodes() -> onnx.ModelProto:
    """Paddle2ONNX style: every parameter is a Constant node, no initializers."""
    rng = np.random.default_rng(8)
    nodes: list[onnx.NodeProto] = []
    counters: dict[str, int] = {}

    def name(op):
        i = counters.get(op, 0)
        counters[op] = i + 1
        return f"p2o.{op}.{i}"

    def const_tensor(out, arr):
        nodes.append(helper.make_node("Constant", [], [out], name=name("Constant"),
                                      value=numpy_helper.from_array(arr, out)))
        return out

    def op(op_type, ins, out, **attrs):
        nodes.append(helper.make_node(op_type, ins, [out], name=name(op_type), **attrs))
        return out

    def w(shape, fan_in):
        return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    def b(n):
        return (rng.standard_normal(n) * 0.1).astype(np.float32)

    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    y = op("Conv", ["x", const_tensor("conv2d_0.w_0", w((8, 3, 3, 3), 27)),
                    const_tensor("conv2d_0.b_0", b(8))], "conv2d_0.tmp_1", **conv)
    y = op("Relu", [y], "relu_0.tmp_0")
    y = op("Conv", [y, const_tensor("conv2d_1.w_0", w((16, 8, 3, 3), 72)),
                    const_tensor("conv2d_1.b_0", b(16))], "conv2d_1.tmp_1", **conv)
    y = op("Relu", [y], "relu_1.tmp_0")
    nodes.append(helper.make_node("Constant", [], ["scale_0.scale"], name=name("Constant"),
                                  value_float=0.5))
    y = op("Mul", [y, "scale_0.scale"], "scale_0.tmp_0")
    y = op("GlobalAveragePool", [y], "pool2d_0.tmp_0")
    nodes.append(helper.make_node("Constant", [], ["reshape2_0.shape"], name=name("Constant"),
                                  value_ints=[1, 16]))
    y = op("Reshape", [y, "reshape2_0.shape"], "reshape2_0.tmp_0")
    y = op("MatMul", [y, const_tensor("linear_0.w_0", w((16, 10), 16))], "linear_0.tmp_0")
    op("Add", [y, const_tensor("linear_0.b_0", b(10))], "output")
    graph = helper.make_graph(nodes, "constant_nodes",
                              [helper.make_tensor_value_info("x", F32, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", F32, [1, 10])])
    return make_model(graph)


def _bf16_bits(vals: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (round to nearest even)."""
    u = vals.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def dtypes_initializers():
    """(TensorProto, numpy value as float64 for the reference) for build_dtypes."""
    out = []

    def raw(name, arr, dt=None):
        t = numpy_helper.from_array(np.ascontiguousarray(arr), name)
        if dt is not None:
            t.data_type = dt
        return t

    f16 = np.array([[0.5, -1.25, 2.0, 0.125]], dtype=np.float16)
    out.append((raw("w_f16", f16), f16.astype(np.float64)))
    bf = np.array([[1.5, -0.75, 3.0, -2.25]], dtype=np.float32)  # exactly representable
    t = helper.make_tensor("w_bf16", TensorProto.BFLOAT16, [1, 4],
                           _bf16_bits(bf).tobytes(), raw=True)
    out.append((t, bf.astype(np.float64)))
    f64 = np.array([[0.1, 0.2, -0.3, 0.4]], dtype=np.float64)
    out.append((raw("w_f64", f64), f64))
    for nm, dt, vals in [
        ("w_i8", np.int8, [-3, 7, -128, 127]),
        ("w_u8", np.uint8, [0, 1, 200, 255]),
        ("w_i16", np.int16, [-300, 2, 1000, -1]),
        ("w_u16", np.uint16, [65535, 0, 4, 9]),
        ("w_i32", np.int32, [-70000, 5, 6, 100000]),
        ("w_u32", np.uint32, [4000000000, 1, 2, 3]),
        ("w_i64", np.int64, [-(2**40), 2**33, -1, 42]),
        ("w_u64", np.uint64, [2**50, 0, 7, 8]),
    ]:
        a = np.array([vals], dtype=dt)
        out.append((raw(nm, a), a.astype(np.float64)))
    mask = np.array([[True, False, True, True]])
    out.append((raw("w_bool", mask), mask.astype(np.float64)))

    # Non-raw storage fields.
    t = TensorProto(name="w_f32_float_data", data_type=TensorProto.FLOAT, dims=[1, 4])
    fd = np.array([0.25, -0.5, 1.75, -3.0], dtype=np.float32)
    t.float_data.extend(fd.tolist())
    out.append((t, fd.reshape(1, 4).astype(np.float64)))

    t = TensorProto(name="w_i64_int64_data", data_type=TensorProto.INT64, dims=[])  # scalar
    t.int64_data.extend([-5])
    out.append((t, np.array(-5.0)))

    t = TensorProto(name="w_f16_int32_data", data_type=TensorProto.FLOAT16, dims=[1, 4])
    h = np.array([1.0, -0.5, 0.75, 4.0], dtype=np.float16)
    t.int32_data.extend(int(b) for b in h.view(np.uint16))
    out.append((t, h.reshape(1, 4).astype(np.float64)))

    t = TensorProto(name="w_i8_int32_data", data_type=TensorProto.INT8, dims=[4])
    t.int32_data.extend([-1, 2, -3, 4])
    out.append((t, np.array([-1.0, 2.0, -3.0, 4.0])))

    t = TensorProto(name="w_f64_double_data", data_type=TensorProto.DOUBLE, dims=[1, 4])
    t.double_data.extend([1e-3, -2e-3, 3e-3, -4e-3])
    out.append((t, np.array([[1e-3, -2e-3, 3e-3, -4e-3]])))

    t = TensorProto(name="w_u64_uint64_data", data_type=TensorProto.UINT64, dims=[1, 4])
    t.uint64_data.extend([1, 2, 3, 2**63])
    out.append((t, np.array([[1, 2, 3, 2.0**63]])))
    return out


def dtypes_scale(v: np.ndarray):
    """Integer tensors with large values are multiplied by 1/max|v| after the Cast so
    every initializer contributes a value in [-1, 1] to the f32 result."""
    m = float(np.max(np.abs(v)))
    return np.float32(1.0 / m) if m > 8 else None


def build_dtypes() -> onnx.ModelProto:
    g = GraphBuilder(9)
    x = g.input("x", F32, [1, 4])
    acc = x
    mask = None
    for t, v in dtypes_initializers():
        g.initializers.append(t)
        c = g.node("Cast", f"/{t.name}", [t.name], to=F32)
        if t.name == "w_bool":
            mask = c
            continue
        scale = dtypes_scale(v)
        if scale is not None:
            c = g.node("Mul", f"/{t.name}", [c, g.init(f"/{t.name}/scale", np.array(scale))])
        acc = g.node("Add", f"/{t.name}", [acc, c])
    y = g.node("Mul", "/mask", [acc, mask])
    g.rename_output(y, "y")
    g.output("y", F32, [1, 4])
    # Second output in a non-f32 dtype: the result cast to f16.
    h = g.node("Cast", "/to_f16", ["y"], to=TensorProto.FLOAT16)
    g.rename_output(h, "y_f16")
    g.output("y_f16", TensorProto.FLOAT16, [1, 4])
    return g.model("dtypes")


def dtypes_reference(x: np.ndarray) -> np.ndarray:
    acc = x.astype(np.float64)
    mask = None
    for t, v in dtypes_initializers():
        v32 = v.astype(np.float32).astype(np.float64)
        if t.name == "w_bool":
            mask = v32
            continue
        scale = dtypes_scale(v)
        if scale is not None:
            v32 = v32 * np.float64(scale)
        acc = acc + v32
    return acc * mask


def build_if_subgraph() -> onnx.ModelProto:
    g = GraphBuilder(10)
    x = g.input("input", F32, [1, 3, 16, 16])
    stem = g.node("Relu", "/stem", [g.conv("/stem/conv", x, 3, 8)])
    s = g.node("ReduceSum", "", [x], keepdims=0)
    cond = g.node("Greater", "", [s, g.const("", np.array(0.0, dtype=np.float32))])
    then_w = g.weight("then_conv.weight", (8, 8, 3, 3))
    shared_b = g.bias("shared.bias", 8)

    # then: Relu(Conv3x3(stem, then_conv.weight [outer initializer], shared.bias))
    tb = GraphBuilder(0)
    tc = tb.node("Conv", "/then/conv", [stem, then_w, shared_b],
                 kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    tr = tb.node("Relu", "/then/relu", [tc])
    tb.output(tr, F32, [1, 8, 16, 16])
    then_graph = tb.graph("then_branch")

    # else: Conv1x1(Relu(stem) * -1, else_conv.weight [branch-local initializer], shared.bias)
    eb = GraphBuilder(0)
    eb._node_names = tb._node_names
    ew = eb.init("else_conv.weight",
                 (g.rng.standard_normal((8, 8, 1, 1)) * 0.5).astype(np.float32))
    en = eb.node("Neg", "/else", [stem])
    ec = eb.node("Conv", "/else/conv", [en, ew, shared_b], kernel_shape=[1, 1])
    eb.output(ec, F32, [1, 8, 16, 16])
    else_graph = eb.graph("else_branch")

    y = g.node("If", "", [cond], then_branch=then_graph, else_branch=else_graph)
    g.head(y, 8)
    return g.model("if_subgraph")


def build_local_function() -> onnx.ModelProto:
    fn = helper.make_function(
        "spa.test", "Swish", ["X"], ["Y"],
        [helper.make_node("Sigmoid", ["X"], ["sig"], name="Swish/Sigmoid"),
         helper.make_node("Mul", ["X", "sig"], ["Y"], name="Swish/Mul")],
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="Swish(x) = x * sigmoid(x)")
    g = GraphBuilder(12)
    x = g.input("input", F32, [1, 3, 16, 16])
    y = g.conv("/conv1", x, 3, 8)
    y = g.node("Swish", "/act1", [y], domain="spa.test")
    y = g.conv("/conv2", y, 8, 16)
    y = g.node("Swish", "/act2", [y], domain="spa.test")
    g.head(y, 16)
    return g.model("local_function", opsets=[("", OPSET), ("spa.test", 1)], functions=[fn])


def build_attention_gqa() -> onnx.ModelProto:
    S, H, NQ, NKV, HD = 8, 32, 4, 2, 8
    rep = NQ // NKV
    g = GraphBuilder(13)
    x = g.input("hidden_states", F32, [1, S, H])
    q = g.linear_matmul("/self_attn/q_proj", x, H, NQ * HD, bias=False)
    k = g.linear_matmul("/self_attn/k_proj", x, H, NKV * HD, bias=False)
    v = g.linear_matmul("/self_attn/v_proj", x, H, NKV * HD, bias=False)
    q_shape = g.init("/self_attn/q_shape", i64(1, S, NQ, HD))
    kv_shape = g.init("/self_attn/kv_shape", i64(1, S, NKV, HD))
    qh = g.node("Transpose", "/self_attn", [g.node("Reshape", "/self_attn", [q, q_shape])],
                perm=[0, 2, 1, 3])  # [1,4,8,8]
    kh = g.node("Transpose", "/self_attn", [g.node("Reshape", "/self_attn", [k, kv_shape])],
                perm=[0, 2, 1, 3])  # [1,2,8,8]
    vh = g.node("Transpose", "/self_attn", [g.node("Reshape", "/self_attn", [v, kv_shape])],
                perm=[0, 2, 1, 3])

    # transformers' repeat_kv: x[:, :, None].expand(b, nkv, rep, s, d).reshape(b, nkv*rep, s, d)
    unsq_axes = g.init("/self_attn/repeat_kv/unsqueeze_axes", i64(2))
    expand_shape = g.init("/self_attn/repeat_kv/expand_shape", i64(1, NKV, rep, S, HD))
    rep_shape = g.init("/self_attn/repeat_kv/reshape_shape", i64(1, NQ, S, HD))

    def repeat_kv(t):
        u = g.node("Unsqueeze", "/self_attn/repeat_kv", [t, unsq_axes])
        e = g.node("Expand", "/self_attn/repeat_kv", [u, expand_shape])
        return g.node("Reshape", "/self_attn/repeat_kv", [e, rep_shape])

    kr = repeat_kv(kh)
    vr = repeat_kv(vh)
    kt = g.node("Transpose", "/self_attn", [kr], perm=[0, 1, 3, 2])
    scores = g.node("MatMul", "/self_attn", [qh, kt])
    scores = g.node("Mul", "/self_attn", [scores, g.init(
        "/self_attn/scaling", np.array(1.0 / math.sqrt(HD), dtype=np.float32))])
    probs = g.node("Softmax", "/self_attn", [scores], axis=-1)
    ctx = g.node("MatMul", "/self_attn", [probs, vr])
    ctx = g.node("Transpose", "/self_attn", [ctx], perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", "/self_attn", [ctx, g.init("/self_attn/out_shape", i64(1, S, H))])
    y = g.linear_matmul("/self_attn/o_proj", ctx, NQ * HD, H, bias=False)
    g.rename_output(y, "attn_output")
    g.output("attn_output", F32, [1, S, H])
    return g.model("attention_gqa")


# --------------------------------------------------------------------------
# Writing helpers
# --------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def save(model: onnx.ModelProto, path: Path) -> None:
    write_bytes(path, model.SerializeToString())


def reset_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def save_with_external(model: onnx.ModelProto, folder: Path, threshold: int = 64) -> None:
    """All initializers with >= `threshold` bytes of raw_data go into folder/weights.bin."""
    reset_dir(folder)
    # convert_model_to_external_data compares sys.getsizeof(raw_data), which includes
    # the Python bytes-object header (33 bytes); compensate so the threshold is in
    # payload bytes.  It also refuses if "weights.bin" exists relative to the CWD.
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        convert_model_to_external_data(model, all_tensors_to_one_file=True,
                                       location="weights.bin",
                                       size_threshold=threshold + sys.getsizeof(b""))
    finally:
        os.chdir(cwd)
    onnx.save_model(model, str(folder / "model.onnx"))


# --------------------------------------------------------------------------
# Invalid inputs
# --------------------------------------------------------------------------


def _varint(buf: bytes, pos: int):
    val, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        val |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return val, pos


def _fields(buf: bytes, start: int, end: int):
    """Yield (field_number, wire_type, len_pos, value_start, value_end) for a message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wt = key >> 3, key & 7
        len_pos = pos
        if wt == 0:
            _, pos = _varint(buf, pos)
            vs = len_pos
        elif wt == 1:
            vs, pos = pos, pos + 8
        elif wt == 5:
            vs, pos = pos, pos + 4
        elif wt == 2:
            n, vs = _varint(buf, pos)
            pos = vs + n
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield field, wt, len_pos, vs, pos


def corrupt_length(data: bytes, tensor_name: str) -> bytes:
    """Overwrite the raw_data length varint of initializer `tensor_name` in place
    (same number of bytes) with the largest value of that width."""
    buf = bytearray(data)
    for f, wt, _, gs, ge in _fields(data, 0, len(data)):
        if f != 7:  # ModelProto.graph
            continue
        for gf, gwt, _, ts, te in _fields(data, gs, ge):
            if gf != 5:  # GraphProto.initializer
                continue
            fields = list(_fields(data, ts, te))
            names = [data[s:e].decode() for (tf, _, _, s, e) in fields if tf == 8]
            if names != [tensor_name]:
                continue
            for tf, twt, len_pos, vs, _ in fields:
                if tf == 9:  # TensorProto.raw_data
                    width = vs - len_pos
                    buf[len_pos:vs] = b"\xff" * (width - 1) + b"\x7f"
                    absurd, _ = _varint(bytes(buf), len_pos)
                    assert absurd > len(data), (absurd, len(data))
                    return bytes(buf)
    raise AssertionError(f"initializer {tensor_name} not found")


def small_gemm_model(seed: int) -> onnx.ModelProto:
    g = GraphBuilder(seed)
    x = g.input("input", F32, [1, 8])
    y = g.gemm("/fc", x, 8, 4)
    g.rename_output(y, "output")
    g.output("output", F32, [1, 4])
    return g.model("small_gemm")


def build_aliased_params() -> onnx.ModelProto:
    """An MLP exported the way torch.onnx exports a freshly initialized model: equal parameters are
    stored once and the copies are aliased with Identity (here both hidden layers' zero biases of
    128, as ``fc2.bias = Identity(fc1.bias)``). The two hidden layers are unrelated channel groups."""
    g = GraphBuilder(12)
    x = g.input("input", F32, [1, 64])
    zeros = g.init("fc1.bias", np.zeros(128, np.float32))
    g.nodes.append(helper.make_node("Identity", [zeros], ["fc2.bias"], name="Identity_0"))
    y = g.node("MatMul", "/fc1", [x, g.weight("fc1.weight", (64, 128), fan_in=64)])
    y = g.node("Add", "/fc1", [y, zeros])
    y = g.node("Relu", "/relu1", [y])
    y = g.node("MatMul", "/fc2", [y, g.weight("fc2.weight", (128, 128), fan_in=128)])
    y = g.node("Add", "/fc2", [y, "fc2.bias"])
    y = g.node("Relu", "/relu2", [y])
    y = g.linear_matmul("/fc3", y, 128, 10)
    g.rename_output(y, "output")
    g.output("output", F32, [1, 10])
    return g.model("aliased_params")


def build_invalid(conv_bn_bytes: bytes) -> list[Path]:
    # Only the files/folders written below are replaced; anything else in tests/invalid stays.
    INVALID.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, data: bytes):
        p = INVALID / name
        write_bytes(p, data)
        written.append(p)

    put("truncated.onnx", conv_bn_bytes[: int(len(conv_bn_bytes) * 0.6)])
    put("corrupt.onnx", corrupt_length(conv_bn_bytes, "conv3.weight"))
    put("not_onnx.onnx", b"hello, this is not a model\n")
    put("empty.onnx", b"")

    # unknown_dtype: data_type is `int32` on the wire, so 99 can be set directly.
    m = small_gemm_model(21)
    for t in m.graph.initializer:
        if t.name == "fc.bias":
            t.data_type = 99
    put("unknown_dtype.onnx", m.SerializeToString())

    # undefined_input: Add consumes "ghost", which nothing produces.
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="/Relu"),
         helper.make_node("Add", ["a", "ghost"], ["y"], name="/Add")],
        "undefined_input",
        [helper.make_tensor_value_info("x", F32, [1, 4])],
        [helper.make_tensor_value_info("y", F32, [1, 4])])
    put("undefined_input.onnx", make_model(g).SerializeToString())

    # cycle: A(x, b) -> a ; B(a) -> b
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["a"], name="A"),
         helper.make_node("Relu", ["a"], ["b"], name="B")],
        "cycle",
        [helper.make_tensor_value_info("x", F32, [1, 4])],
        [helper.make_tensor_value_info("a", F32, [1, 4])])
    put("cycle.onnx", make_model(g).SerializeToString())

    # shape_mismatch: [1,4] + [1,5] cannot broadcast; value_info claims [1,4].
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["sum"], name="/Add"),
         helper.make_node("Relu", ["sum"], ["y"], name="/Relu")],
        "shape_mismatch",
        [helper.make_tensor_value_info("x", F32, [1, 4])],
        [helper.make_tensor_value_info("y", F32, [1, 4])],
        initializer=[numpy_helper.from_array(
            np.arange(5, dtype=np.float32).reshape(1, 5), "w")],
        value_info=[helper.make_tensor_value_info("sum", F32, [1, 4])])
    put("shape_mismatch.onnx", make_model(g).SerializeToString())

    # missing_external: references weights.bin, which is then removed.
    folder = INVALID / "missing_external"
    save_with_external(small_gemm_model(22), folder)
    (folder / "weights.bin").unlink()
    written.append(folder / "model.onnx")

    # short_external: weights.bin cut in half so offset+length overruns it.
    folder = INVALID / "short_external"
    save_with_external(small_gemm_model(23), folder, threshold=1)
    binp = folder / "weights.bin"
    full = binp.read_bytes()
    binp.write_bytes(full[: len(full) // 2])
    written += [folder / "model.onnx", binp]

    # escape_external: location points outside the model directory.
    m = small_gemm_model(24)
    for t in m.graph.initializer:
        if t.name == "fc.weight":
            n = len(t.raw_data)
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", str(n))):
                e = t.external_data.add()
                e.key, e.value = k, v
    folder = INVALID / "escape_external"
    reset_dir(folder)
    p = folder / "model.onnx"
    write_bytes(p, m.SerializeToString())
    written.append(p)
    return written


# --------------------------------------------------------------------------
# Self-checks
# --------------------------------------------------------------------------


def check_valid(path: Path, ort) -> str:
    onnx.checker.check_model(str(path), full_check=True)
    m = onnx.load(str(path))  # also loads external data
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    assert len(inferred.graph.output) == len(m.graph.output)
    if ort is None:
        return "checker ok (onnxruntime not importable)"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1234)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 3 for d in i.shape]
        assert i.type == "tensor(float)", i.type
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    outs = sess.run(None, feeds)
    for o, meta in zip(outs, sess.get_outputs()):
        assert np.all(np.isfinite(o.astype(np.float64))), f"{path}: non-finite {meta.name}"
        declared = [d if isinstance(d, int) else 3 for d in meta.shape]
        assert list(o.shape) == declared, (path, meta.name, o.shape, meta.shape)

    name = path.name if path.parent == FIXTURES else f"{path.parent.name}/{path.name}"
    extra = ""
    if name == "dtypes.onnx":
        ref = dtypes_reference(feeds["x"])
        np.testing.assert_allclose(outs[0], ref, rtol=1e-5, atol=1e-5)
        extra = " (matches numpy reference)"
    if name == "if_subgraph.onnx":
        xa = np.abs(feeds["input"])
        ya = sess.run(None, {"input": xa})[0]
        yb = sess.run(None, {"input": -xa})[0]
        assert not np.allclose(ya, yb), "If branches give identical results"
        extra = " (both branches exercised)"
    shapes = ", ".join(f"{meta.name}{list(o.shape)}:{o.dtype}"
                       for o, meta in zip(outs, sess.get_outputs()))
    return shapes + extra


def expect_rejected(path: Path) -> str:
    """Every invalid input must be rejected by onnx itself (load, checker, or inference)."""
    try:
        m = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001
        return f"onnx.load: {type(e).__name__}: {str(e).splitlines()[0][:90]}"
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # noqa: BLE001
        return f"checker: {type(e).__name__}: {str(e).splitlines()[0][:90]}"
    raise AssertionError(f"{path} was accepted by onnx but is meant to be invalid")


# --------------------------------------------------------------------------


def main() -> int:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    valid = {
        "conv_bn_residual.onnx": build_conv_bn_residual,
        "concat_block.onnx": build_concat_block,
        "grouped_depthwise.onnx": build_grouped_depthwise,
        "transformer_block.onnx": build_transformer_block,
        "transformer_block_einsum.onnx": lambda: build_transformer_block(einsum=True),
        "mlp.onnx": build_mlp,
        "channel_shuffle.onnx": build_channel_shuffle,
        "constant_nodes.onnx": build_constant_nodes,
        "dtypes.onnx": build_dtypes,
        "if_subgraph.onnx": build_if_subgraph,
        "local_function.onnx": build_local_function,
        "dynamic_batch.onnx": build_dynamic_batch,
        "attention_gqa.onnx": build_attention_gqa,
        "aliased_params.onnx": build_aliased_params,
    }
    paths = []
    for fname, build in valid.items():
        p = FIXTURES / fname
        save(build(), p)
        paths.append(p)

    ext = build_conv_bn_residual(seed=7, annotate=False)
    ext.graph.name = "external_data"
    save_with_external(ext, FIXTURES / "external_data")
    paths.append(FIXTURES / "external_data" / "model.onnx")

    invalid = build_invalid((FIXTURES / "conv_bn_residual.onnx").read_bytes())

    try:
        import onnxruntime as ort  # type: ignore
    except ImportError:
        ort = None
        print("note: onnxruntime not importable; only running onnx.checker")

    failures = 0
    print("== valid fixtures ==")
    for p in paths:
        rel = p.relative_to(ROOT)
        try:
            print(f"ok   {rel}: {check_valid(p, ort)}")
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL {rel}: {type(e).__name__}: {e}")
        if p.stat().st_size > 200 * 1024:
            failures += 1
            print(f"FAIL {rel}: {p.stat().st_size} bytes is too large")

    print("== invalid inputs (must be rejected by onnx) ==")
    for p in invalid:
        if p.suffix != ".onnx":
            continue
        rel = p.relative_to(ROOT)
        try:
            print(f"ok   {rel}: {expect_rejected(p)}")
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL {rel}: {e}")

    print("== sha256 ==")
    for p in sorted(list(FIXTURES.rglob("*.onnx")) + list(FIXTURES.rglob("*.bin"))
                    + list(INVALID.rglob("*"))):
        if p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            print(f"{digest}  {p.stat().st_size:7d}  {p.relative_to(ROOT)}")

    if failures:
        print(f"\n{failures} fixture check(s) FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
