#!/usr/bin/env python3
"""Generate tests/mlir/*.onnx: small models exercising the MLIR lowerings that the shared fixtures
do not (pool corner cases, resize modes, einsum, pads, slices, activations). Deterministic; the
files are committed so `cargo test` needs no Python. Checked with onnx.checker and onnxruntime.

  python3 scripts/gen_mlir_cases.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "mlir")


def model(name, nodes, inputs, outputs, inits, seed_doc=""):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="gen_mlir_cases")
    m.ir_version = 8
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(m, path)
    return path


def t(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def pools_and_pads(rng):
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c"], ["a"], alpha=0.1),
        helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["a"], ["q"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        helper.make_node("Add", ["m", "p"], ["s0"]),
        helper.make_node("Pad", ["s0", "pads", "pv"], ["pd"], mode="constant"),
        helper.make_node("HardSwish", ["pd"], ["h"]),
        helper.make_node("Clip", ["h", "lo", "hi"], ["cl"]),
        helper.make_node("Slice", ["cl", "st", "en", "ax"], ["sl"]),
        helper.make_node("Split", ["sl", "sp"], ["s1", "s2"], axis=1),
        helper.make_node("Mul", ["s1", "s2"], ["mu"]),
        helper.make_node("ReduceMean", ["mu"], ["y"], axes=[2, 3], keepdims=0),
        helper.make_node("GlobalMaxPool", ["q"], ["y2"]),
    ]
    inits = [const("w", w), const("pads", np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64)),
             const("pv", np.array(0.5, np.float32)), const("lo", np.array(-0.5, np.float32)),
             const("hi", np.array(2.0, np.float32)),
             const("st", np.array([1, 1], np.int64)), const("en", np.array([100, -1], np.int64)),
             const("ax", np.array([2, 3], np.int64)), const("sp", np.array([4, 4], np.int64))]
    return model("pools_and_pads", nodes, [t("x", [1, 3, 19, 19])], [t("y", None), t("y2", None)], inits)


def resize_modes(rng):
    nodes = [
        helper.make_node("Resize", ["x", "", "s2"], ["a"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Resize", ["x", "", "s2"], ["b"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["x", "", "", "sz"], ["c"], mode="linear",
                         coordinate_transformation_mode="align_corners"),
        helper.make_node("Resize", ["x", "", "", "sz"], ["d"], mode="nearest",
                         coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor"),
        helper.make_node("Add", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["c", "d"], ["cd"]),
        helper.make_node("Concat", ["ab", "cd"], ["y"], axis=1),
    ]
    inits = [const("s2", np.array([1, 1, 2, 2], np.float32)),
             const("sz", np.array([1, 2, 10, 10], np.int64))]
    return model("resize_modes", nodes, [t("x", [1, 2, 5, 5])], [t("y", None)], inits)


def einsum_attention(rng):
    wq = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Einsum", ["x", "wq"], ["q"], equation="bgid,bgjd->bgij"),
        helper.make_node("Softmax", ["q"], ["p"], axis=-1),
        helper.make_node("Einsum", ["p", "x"], ["o"], equation="bgij,bgjd->bgid"),
        helper.make_node("Einsum", ["o", "wv"], ["y"], equation="bgid,de->bige"),
    ]
    inits = [const("wq", wq), const("wv", rng.standard_normal((5, 3)).astype(np.float32))]
    return model("einsum_attention", nodes, [t("x", [2, 4, 6, 5])], [t("y", None)], inits)


def strided_and_masks(rng):
    """Slices with steps (positive, negative, an axis shorter than n*step) and a mask built from
    constants (ConstantOfShape -> ScatterND -> Equal -> Where, as Swin builds its shifted-window
    masks), which the emitter evaluates on the host."""
    nodes = [
        helper.make_node("ConstantOfShape", ["mshape"], ["m0"],
                         value=numpy_helper.from_array(np.array([0.0], np.float32))),
        helper.make_node("ScatterND", ["m0", "idx", "upd"], ["m1"]),
        helper.make_node("Equal", ["m1", "zero"], ["eq"]),
        helper.make_node("Where", ["eq", "zero", "big"], ["mask"]),
        helper.make_node("Add", ["x", "mask"], ["xm"]),
        helper.make_node("Slice", ["xm", "st", "en", "ax", "sp"], ["y"]),
        helper.make_node("Slice", ["x", "st2", "en2", "ax2", "sp2"], ["y2"]),
    ]
    inits = [const("mshape", np.array([1, 1, 9, 8], np.int64)),
             const("idx", np.array([[0, 0, 2, 3], [0, 0, 5, 1]], np.int64)),
             const("upd", np.array([1.0, 2.0], np.float32)),
             const("zero", np.array(0.0, np.float32)),
             const("big", np.array(-100.0, np.float32)),
             # rows 1,3,5,7 (9 rows: the last window is short); columns 7,4,1 (negative step)
             const("st", np.array([1, 7], np.int64)), const("en", np.array([100, -100], np.int64)),
             const("ax", np.array([2, 3], np.int64)), const("sp", np.array([2, -3], np.int64)),
             # channels 0 and 3, every column from 1
             const("st2", np.array([0, 1], np.int64)), const("en2", np.array([4, 8], np.int64)),
             const("ax2", np.array([1, 3], np.int64)), const("sp2", np.array([3, 1], np.int64))]
    return model("strided_and_masks", nodes, [t("x", [1, 4, 9, 8])], [t("y", None), t("y2", None)],
                 inits)


def conv_transposes(rng):
    """ConvTranspose: stride 2 with pads and output_padding, grouped, SAME_UPPER, and output_padding
    that reaches past TOSA's full output."""
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 2, 2, 2)).astype(np.float32)
    w3 = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w1", "b1"], ["a"], strides=[2, 2],
                         pads=[1, 1, 1, 1], output_padding=[1, 1]),
        helper.make_node("ConvTranspose", ["x", "w2"], ["b"], strides=[2, 2], group=2),
        helper.make_node("ConvTranspose", ["x", "w3"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("ConvTranspose", ["x", "w3"], ["d"], strides=[3, 2], pads=[0, 1, 0, 0],
                         output_padding=[2, 1]),
    ]
    inits = [const("w1", w1), const("b1", rng.standard_normal(3).astype(np.float32)),
             const("w2", w2), const("w3", w3)]
    return model("conv_transposes", nodes, [t("x", [1, 4, 5, 6])],
                 [t("a", None), t("b", None), t("c", None), t("d", None)], inits)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(11)
    paths = [pools_and_pads(rng), resize_modes(rng), einsum_attention(rng), strided_and_masks(rng),
             conv_transposes(rng)]
    try:
        import onnxruntime as ort
    except ImportError:
        return
    for p in paths:
        sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.ones([d for d in i.shape], np.float32) for i in sess.get_inputs()}
        outs = sess.run(None, feeds)
        print(os.path.basename(p), [o.shape for o in outs])


if __name__ == "__main__":
    main()
