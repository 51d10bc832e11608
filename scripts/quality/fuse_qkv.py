#!/usr/bin/env python
"""Write `models/quality/mnist_vit_fused.onnx`: the MNIST ViT with its Q, K and V projections
fused into one MatMul per block, laid out as timm's ViT exports it.

Per block: `MatMul(x, [Wq Wk Wv]) + [bq bk bv]`, Reshape to (B, 16, 3, 4, 16), Transpose
(2, 0, 3, 1, 4), Split into ones on axis 0 and Squeeze, K transposed for the score MatMul. It
computes what `mnist_vit.onnx` computes (checked with onnxruntime on the test digits), so pruning
both must give the same result once `split-fused` has taken the fused projection apart
(`fused_qkv_vit_prunes_like_the_separate_one` in `tests/tests/obspa_quality.rs`).

Usage: /opt/zoo-venv/bin/python scripts/quality/fuse_qkv.py
"""
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper as nh

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "models", "quality")


def fuse(m, blocks=2, tokens=16, heads=4, dim=16):
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    nodes = list(g.node)
    byout = {o: n for n in nodes for o in n.output}
    users = {}
    for n in nodes:
        for i in n.input:
            users.setdefault(i, []).append(n)
    drop, before, extra = set(), {}, []
    for b in range(blocks):
        p = f"/blocks.{b}/attn/"
        mm = {s: byout[f"{p}{s}/MatMul_output_0"] for s in "qkv"}
        add = {s: byout[f"{p}{s}/Add_output_0"] for s in "qkv"}
        w = np.concatenate([nh.to_array(inits[mm[s].input[1]]) for s in "qkv"], 1)
        bias = np.concatenate([nh.to_array(inits[add[s].input[0]]) for s in "qkv"], 0)
        n = f"blocks.{b}.attn.qkv"
        extra += [nh.from_array(w, f"{n}.weight"), nh.from_array(bias, f"{n}.bias"),
                  nh.from_array(np.array([-1, tokens, 3, heads, dim], np.int64), f"{n}.shape"),
                  nh.from_array(np.array([1, 1, 1], np.int64), f"{n}.split"),
                  nh.from_array(np.array([0], np.int64), f"{n}.axis0")]
        # The values the separate projections' transposes produced: q and v as (B, H, N, D), k as
        # (B, H, D, N).
        q, k, v = f"{p}Transpose_output_0", f"{p}Transpose_2_output_0", f"{p}Transpose_1_output_0"
        before[id(mm["q"])] = [
            helper.make_node("MatMul", [mm["q"].input[0], f"{n}.weight"], [f"{n}.mm"], name=f"{p}qkv/MatMul"),
            helper.make_node("Add", [f"{n}.bias", f"{n}.mm"], [f"{n}.add"], name=f"{p}qkv/Add"),
            helper.make_node("Reshape", [f"{n}.add", f"{n}.shape"], [f"{n}.r"], name=f"{p}qkv/Reshape"),
            helper.make_node("Transpose", [f"{n}.r"], [f"{n}.t"], perm=[2, 0, 3, 1, 4], name=f"{p}qkv/Transpose"),
            helper.make_node("Split", [f"{n}.t", f"{n}.split"], [f"{n}.s0", f"{n}.s1", f"{n}.s2"], axis=0,
                             name=f"{p}qkv/Split"),
            helper.make_node("Squeeze", [f"{n}.s0", f"{n}.axis0"], [q], name=f"{p}qkv/Squeeze"),
            helper.make_node("Squeeze", [f"{n}.s1", f"{n}.axis0"], [f"{n}.k"], name=f"{p}qkv/Squeeze_1"),
            helper.make_node("Transpose", [f"{n}.k"], [k], perm=[0, 1, 3, 2], name=f"{p}qkv/Transpose_1"),
            helper.make_node("Squeeze", [f"{n}.s2", f"{n}.axis0"], [v], name=f"{p}qkv/Squeeze_2"),
        ]
        for s in "qkv":
            drop |= {id(mm[s]), id(add[s])}
            r = users[add[s].output[0]][0]
            drop.add(id(r))
            drop |= {id(t) for t in users[r.output[0]]}
    out = []
    for n in nodes:
        out += before.get(id(n), [])
        if id(n) not in drop:
            out.append(n)
    used = {i for n in out for i in n.input}
    out = [n for n in out if n.op_type != "Constant" or n.output[0] in used]
    del g.node[:]
    g.node.extend(out)
    g.initializer.extend(extra)
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]
    onnx.checker.check_model(m)
    return m


def main():
    import onnxruntime as ort
    src = os.path.join(MODELS, "mnist_vit.onnx")
    dst = os.path.join(MODELS, "mnist_vit_fused.onnx")
    m = fuse(onnx.load(src))
    onnx.save(m, dst)
    x = np.load(os.path.join(MODELS, "mnist_test.npz"))["x"].astype(np.float32) / 255.0
    outs = []
    for p in (src, dst):
        s = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {s.get_inputs()[0].name: x})[0])
    d = np.abs(outs[0] - outs[1]).max() / np.abs(outs[0]).max()
    assert d < 1e-5, d
    print(f"{dst}: {os.path.getsize(dst)} bytes, logits differ from mnist_vit.onnx by {d:.1e} (relative)")


if __name__ == "__main__":
    main()
