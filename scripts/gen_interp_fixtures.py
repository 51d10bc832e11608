#!/usr/bin/env python3
"""Generate tests/fixtures/interp/*.onnx: one small model per op family, for the reference
interpreter's equivalence test against tract (tests/tests/interp_vs_tract.rs).

Deterministic (fixed seeds, fixed names); every model has f32 inputs only, default domain,
IR version 8, opset 17 unless noted. Finishes by checking each model with onnx.checker and
running it in onnxruntime. Run: python3 scripts/gen_interp_fixtures.py
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "interp")
F = TensorProto.FLOAT
MODELS = {}


def toposort(nodes, known):
    known, done, out = set(known), set(), []
    while len(out) < len(nodes):
        for i, n in enumerate(nodes):
            if i not in done and all(x == "" or x in known for x in n.input):
                out.append(n)
                done.add(i)
                known.update(n.output)
                break
        else:
            raise ValueError("cycle or undefined input")
    return out


def model(name, nodes, inputs, outputs, inits=(), opset=17):
    nodes = toposort(nodes, [n for n, _ in inputs] + [t.name for t in inits])
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="gen_interp_fixtures")
    m.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for o in m.graph.output:
        if o.name in types:
            o.type.CopyFrom(types[o.name])
    MODELS[name] = m


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def rnd(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def node(op, ins, outs, **kw):
    return helper.make_node(op, ins, outs, **kw)


# Convolutions
model("conv_transpose", [
    node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
         output_padding=[1, 1]),
    node("ConvTranspose", ["y", "w2"], ["z"], group=2, strides=[1, 2], dilations=[2, 1]),
], [("x", [2, 4, 5, 6])], [("z", F)],
    [const("w", rnd(1, 4, 6, 3, 3)), const("b", rnd(2, 6)), const("w2", rnd(3, 6, 2, 2, 3))])
model("conv1d_3d", [
    node("Conv", ["x", "w"], ["y"], dilations=[2], pads=[2, 1], strides=[2]),
    node("Unsqueeze", ["y", "ax"], ["y4"]),
    node("Unsqueeze", ["y4", "ax"], ["y5"]),
    node("Conv", ["y5", "w3", "b3"], ["z"], pads=[1, 1, 1, 1, 1, 1], group=2),
], [("x", [2, 3, 17])], [("z", F)],
    [const("w", rnd(4, 8, 3, 3)), const("ax", np.array([2], np.int64)),
     const("w3", rnd(5, 4, 4, 3, 3, 3)), const("b3", rnd(6, 4))])
model("conv_same_upper", [
    node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2]),
    node("Conv", ["y", "dw"], ["z"], auto_pad="SAME_LOWER", group=6),
], [("x", [1, 3, 9, 10])], [("z", F)], [const("w", rnd(7, 6, 3, 4, 4)), const("dw", rnd(8, 6, 1, 3, 3))])

# Pooling
model("pools", [
    node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    node("AveragePool", ["x"], ["b"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1],
         count_include_pad=1),
    node("AveragePool", ["x"], ["c"], kernel_shape=[2, 3], strides=[3, 2], pads=[1, 1, 0, 1],
         ceil_mode=1),
    node("GlobalMaxPool", ["x"], ["d"]),
    node("MaxPool", ["x"], ["e"], kernel_shape=[2, 2], dilations=[2, 2]),
], [("x", [2, 3, 12, 12])], [("a", F), ("b", F), ("c", F), ("d", F), ("e", F)])

# Resize
model("resize_nearest", [
    node("Resize", ["x", "", "s"], ["y"], mode="nearest"),
    node("Resize", ["x", "", "", "sz"], ["z"], mode="nearest",
         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
], [("x", [1, 2, 4, 5])], [("y", F), ("z", F)],
    [const("s", np.array([1, 1, 2, 1.5], np.float32)), const("sz", np.array([1, 2, 7, 3], np.int64))])
model("resize_linear", [
    node("Resize", ["x", "", "s"], ["y"], mode="linear"),
    node("Resize", ["x", "", "", "sz"], ["z"], mode="linear",
         coordinate_transformation_mode="align_corners"),
    node("Resize", ["x", "", "", "sz"], ["w"], mode="linear",
         coordinate_transformation_mode="pytorch_half_pixel"),
], [("x", [1, 2, 4, 5])], [("y", F), ("z", F), ("w", F)],
    [const("s", np.array([1, 1, 2, 2], np.float32)), const("sz", np.array([1, 2, 7, 3], np.int64))])

# Padding, slicing, gathering
model("pad_modes", [
    node("Pad", ["x", "p"], ["a"], mode="constant"),
    node("Pad", ["x", "p", "v"], ["b"], mode="constant"),
    node("Pad", ["x", "p"], ["c"], mode="reflect"),
    node("Pad", ["x", "p"], ["d"], mode="edge"),
], [("x", [1, 2, 4, 5])], [("a", F), ("b", F), ("c", F), ("d", F)],
    [const("p", np.array([0, 0, 2, 1, 0, 1, 1, 3], np.int64)), const("v", np.array(0.5, np.float32))])
model("slices", [
    node("Slice", ["x", "st", "en", "ax", "sp"], ["a"]),
    node("Slice", ["x", "st2", "en2"], ["b"]),
], [("x", [3, 6, 7])], [("a", F), ("b", F)],
    [const("st", np.array([-1, 5], np.int64)), const("en", np.array([-100, 0], np.int64)),
     const("ax", np.array([2, 1], np.int64)), const("sp", np.array([-2, -1], np.int64)),
     const("st2", np.array([1, 0, 2], np.int64)), const("en2", np.array([1000, -2, 9], np.int64))])
model("gathers", [
    node("Gather", ["x", "i"], ["a"], axis=1),
    node("Gather", ["x", "j"], ["b"], axis=0),
    node("GatherElements", ["x", "k"], ["c"], axis=2),
    node("GatherND", ["x", "n"], ["d"]),
], [("x", [3, 4, 5])], [("a", F), ("b", F), ("c", F), ("d", F)],
    [const("i", np.array([[0, -1], [2, 1]], np.int64)), const("j", np.array(-2, np.int64)),
     const("k", np.random.default_rng(9).integers(-5, 5, (3, 4, 2)).astype(np.int64)),
     const("n", np.array([[0, 1], [2, -1]], np.int64))])
model("scatter_trilu", [
    node("ScatterND", ["x", "n", "u"], ["a"]),
    node("Trilu", ["x"], ["b"], upper=0),
    node("Trilu", ["x", "k"], ["c"], upper=1),
    node("ScatterElements", ["x", "e", "ue"], ["d"], axis=1),
], [("x", [2, 4, 5])], [("a", F), ("b", F), ("c", F), ("d", F)],
    [const("n", np.array([[1, 2], [0, 0]], np.int64)), const("u", rnd(10, 2, 5)),
     const("k", np.array(1, np.int64)), const("e", np.array([[[3, 0, 1]], [[2, 2, 0]]], np.int64)),
     const("ue", rnd(11, 2, 1, 3))])

# Reductions and normalizations
model("reductions", [
    node("ReduceMean", ["x"], ["a"], axes=[1, 3], keepdims=0),
    node("ReduceMax", ["x"], ["b"], axes=[-1]),
    node("ReduceSum", ["x", "ax"], ["c"], keepdims=0),
    node("ReduceL2", ["x"], ["d"], axes=[0, 2]),
    node("ReduceLogSumExp", ["x"], ["e"], axes=[2]),
    node("ReduceMin", ["x"], ["f"], keepdims=0),
    node("ReduceProd", ["x"], ["g"], axes=[1]),
    node("ReduceSumSquare", ["x"], ["h"], axes=[3]),
], [("x", [2, 3, 4, 5])], [(n, F) for n in "abcdefgh"], [const("ax", np.array([0, 2], np.int64))])
model("softmaxes", [
    node("Softmax", ["x"], ["a"], axis=1),
    node("LogSoftmax", ["x"], ["b"], axis=-1),
    node("Softmax", ["x"], ["c"], axis=0),
], [("x", [3, 4, 5])], [("a", F), ("b", F), ("c", F)])
model("norms", [
    node("LayerNormalization", ["x", "s", "b"], ["a"], axis=-1, epsilon=1e-5),
    node("LayerNormalization", ["x", "s2"], ["b2"], axis=1),
    node("InstanceNormalization", ["x4", "is", "ib"], ["c"], epsilon=1e-3),
    node("BatchNormalization", ["x4", "is", "ib", "m", "v"], ["d"], epsilon=1e-3),
    node("LpNormalization", ["x"], ["e"], axis=1, p=2),
], [("x", [2, 3, 8]), ("x4", [2, 4, 3, 3])], [("a", F), ("b2", F), ("c", F), ("d", F), ("e", F)],
    [const("s", rnd(12, 8)), const("b", rnd(13, 8)), const("s2", rnd(14, 3, 8)),
     const("is", rnd(15, 4)), const("ib", rnd(16, 4)), const("m", rnd(17, 4)),
     const("v", np.abs(rnd(18, 4)) + 0.5)])

# Elementwise
acts = ["Relu", "Sigmoid", "Tanh", "Erf", "Neg", "Abs", "Floor", "Ceil", "Sign", "Softsign",
        "Softplus", "HardSwish"]
model("activations",
      [node(op, ["x"], [f"o{i}"]) for i, op in enumerate(acts)] + [
          node("HardSigmoid", ["x"], ["hs"], alpha=0.3, beta=0.4),
          node("LeakyRelu", ["x"], ["lr"], alpha=0.2),
          node("Elu", ["x"], ["el"], alpha=0.7),
          node("Selu", ["x"], ["se"]),
          node("Clip", ["x", "lo", "hi"], ["cl"]),
          node("Clip", ["x", "", "hi"], ["cl2"]),
          node("Abs", ["x"], ["ax"]),
          node("Sqrt", ["ax"], ["sq"]),
          node("Log", ["ax"], ["lg"]),
          node("Exp", ["x"], ["ex"]),
          node("Reciprocal", ["ax"], ["rc"]),
          node("Pow", ["x", "two"], ["pw"]),
          node("Round", ["x10"], ["rd"]),
          node("Mul", ["x", "ten"], ["x10"]),
          node("PRelu", ["x", "slope"], ["pr"]),
      ],
      [("x", [2, 3, 4])],
      [(f"o{i}", F) for i in range(len(acts))] + [(n, F) for n in
                                                  ["hs", "lr", "el", "se", "cl", "cl2", "sq", "lg", "ex", "rc", "pw", "rd", "pr"]],
      [const("lo", np.array(-0.3, np.float32)), const("hi", np.array(0.6, np.float32)),
       const("two", np.array(3.0, np.float32)), const("ten", np.array(10.0, np.float32)),
       const("slope", rnd(19, 3, 1))])
model("logic_where", [
    node("Greater", ["x", "y"], ["g"]),
    node("Less", ["x", "c"], ["l"]),
    node("Equal", ["xr", "yr"], ["e"]),
    node("Round", ["x"], ["xr"]),
    node("Round", ["y"], ["yr"]),
    node("Or", ["g", "e"], ["o"]),
    node("And", ["o", "l"], ["a"]),
    node("Not", ["a"], ["n"]),
    node("Where", ["n", "x", "y"], ["w"]),
    node("Cast", ["n"], ["nf"], to=F),
    node("Max", ["x", "y", "c"], ["mx"]),
    node("Min", ["x", "y"], ["mn"]),
    node("Sum", ["x", "y", "w"], ["sm"]),
    node("Mean", ["x", "y"], ["me"]),
    node("Div", ["x", "y"], ["dv"]),
    node("Sub", ["x", "y"], ["sb"]),
    node("GreaterOrEqual", ["x", "c"], ["ge"]),
    node("Cast", ["ge"], ["gef"], to=F),
], [("x", [2, 3, 4]), ("y", [3, 1])], [(n, F) for n in ["w", "nf", "mx", "mn", "sm", "me", "dv", "sb", "gef"]],
    [const("c", np.array(0.25, np.float32))])
model("int_shape_math", [
    node("Shape", ["x"], ["s"]),
    node("Gather", ["s", "one"], ["d1"], axis=0),
    node("Range", ["zero", "d1", "one"], ["r"]),
    node("Cast", ["r"], ["rf"], to=F),
    node("Mul", ["d1", "two"], ["d2"]),
    node("Unsqueeze", ["d2", "zax"], ["d2v"]),
    node("ConstantOfShape", ["d2v"], ["co"], value=helper.make_tensor("v", F, [1], [0.5])),
    node("Add", ["rf", "x"], ["y"]),
    node("Concat", ["y", "co2"], ["z"], axis=1),
    node("Reshape", ["co", "shp"], ["co2"]),
    node("CumSum", ["z", "one"], ["cs"], exclusive=1, reverse=1),
    node("ArgMax", ["z"], ["am"], axis=1, keepdims=0),
    node("Cast", ["am"], ["amf"], to=F),
    node("TopK", ["z", "k"], ["tv", "ti"], axis=1),
    node("Cast", ["ti"], ["tif"], to=F),
], [("x", [2, 4])], [("cs", F), ("amf", F), ("tv", F), ("tif", F)],
    [const("zero", np.array(0, np.int64)), const("one", np.array(1, np.int64)),
     const("two", np.array(2, np.int64)), const("zax", np.array([0], np.int64)),
     const("shp", np.array([2, 4], np.int64)), const("k", np.array([3], np.int64))])

# Data movement
model("movement", [
    node("Tile", ["x", "reps"], ["t"]),
    node("Expand", ["x", "es"], ["e"]),
    node("Split", ["x", "sp"], ["s1", "s2"], axis=2),
    node("Concat", ["s2", "s1"], ["c"], axis=2),
    node("Transpose", ["x"], ["tr"], perm=[2, 0, 1]),
    node("Flatten", ["x"], ["f"], axis=2),
    node("Unsqueeze", ["x", "ua"], ["u"]),
    node("Squeeze", ["u", "ua"], ["sq"]),
    node("DepthToSpace", ["x4"], ["d2s"], blocksize=2),
    node("DepthToSpace", ["x4"], ["d2c"], blocksize=2, mode="CRD"),
    node("SpaceToDepth", ["x4"], ["s2d"], blocksize=2),
    node("Identity", ["x"], ["id"]),
], [("x", [2, 1, 6]), ("x4", [1, 8, 2, 4])],
    [(n, F) for n in ["t", "e", "c", "tr", "f", "sq", "d2s", "d2c", "s2d", "id"]],
    [const("reps", np.array([2, 3, 1], np.int64)), const("es", np.array([3, 2, 4, 6], np.int64)),
     const("sp", np.array([2, 4], np.int64)), const("ua", np.array([0, 3], np.int64))])
model("matmuls", [
    node("MatMul", ["a", "b"], ["ab"]),
    node("MatMul", ["a", "w"], ["aw"]),
    node("MatMul", ["v", "w"], ["vw"]),
    node("Gemm", ["m", "g", "c"], ["gm"], alpha=0.5, beta=2.0, transA=1),
    node("Gemm", ["m2", "g"], ["gm2"], transB=1),
], [("a", [2, 3, 4, 5]), ("b", [3, 5, 6]), ("v", [5]), ("m", [7, 4]), ("m2", [3, 9])],
    [(n, F) for n in ["ab", "aw", "vw", "gm", "gm2"]],
    [const("w", rnd(20, 5, 3)), const("g", rnd(21, 7, 9)), const("c", rnd(22, 9))])
model("opset13_legacy", [
    node("Softmax", ["x"], ["a"], axis=1),
    node("Split", ["x"], ["s1", "s2"], axis=1, split=[1, 2]),
    node("Squeeze", ["s1"], ["b"], axes=[1]),
    node("ReduceSum", ["x"], ["c"], axes=[2]),
], [("x", [2, 3, 4])], [("a", F), ("b", F), ("s2", F), ("c", F)], opset=11)
model("matmul_big", [
    node("MatMul", ["x", "w"], ["y"]),
    node("Relu", ["y"], ["r"]),
    node("Conv", ["x4", "cw", "cb"], ["z"], pads=[1, 1, 1, 1]),
], [("x", [4, 96, 80]), ("x4", [3, 16, 20, 20])], [("r", F), ("z", F)],
    [const("w", rnd(23, 80, 130)), const("cw", rnd(24, 40, 16, 3, 3)), const("cb", rnd(25, 40))])


def main():
    os.makedirs(OUT, exist_ok=True)
    failed = 0
    for name, m in sorted(MODELS.items()):
        onnx.checker.check_model(m, full_check=True)
        path = os.path.join(OUT, name + ".onnx")
        onnx.save(m, path)
        try:
            import onnxruntime as ort
            s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            feeds = {i.name: np.random.default_rng(0).standard_normal(
                [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
                for i in s.get_inputs()}
            outs = s.run(None, feeds)
            print(name, [o.shape for o in outs])
        except ImportError:
            print(name)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: onnxruntime failed: {e}", file=sys.stderr)
            failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
