"""Independent check that a pruned MNIST ResNet written by spa-opt computes what channel removal means.

    /opt/zoo-venv/bin/python scripts/quality/check_cnn_prune.py PRUNED.onnx [ORIGINAL.onnx]

Removing channel c of a group means every consumer of the group's values sees nothing in channel
c, which is the same as multiplying the activation by 0 in channel c where the group's values are
consumed. This script rebuilds the PyTorch ResNet of train_mnist.py from the ORIGINAL ONNX
initializers, reads which channels spa-opt kept from each BatchNormalization's running mean in
PRUNED (every running mean is a distinct float), masks the block outputs and the blocks'
internal activations with those channels in PyTorch, and compares its logits on the test set with
onnxruntime's on PRUNED. Exit status 1 if they differ by more than 1e-4 (relative to the logits'
max).
"""
import os, sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_mnist import ResNet  # noqa: E402

MODELS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "quality")


def inits(path):
    """Initializers by name, plus the names the exporter aliased with Identity (it deduplicates
    equal parameters: a block's bn2 bias and its shortcut BN bias get identical gradients)."""
    g = onnx.load(path).graph
    out = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in out:
            out[n.output[0]] = out[n.input[0]]
    return out


def kept(orig, pruned, bn):
    o, p = orig[bn + ".running_mean"], pruned[bn + ".running_mean"]
    idx = []
    for v in p:
        hits = np.flatnonzero(o == v)
        if len(hits) != 1:
            raise ValueError(f"{bn}: running mean value {v} found {len(hits)} times in the original")
        idx.append(int(hits[0]))
    return idx


def check(pruned_path, orig_path=os.path.join(MODELS, "mnist_cnn.onnx")):
    """(max relative difference of the logits, accuracy of the masked PyTorch reference, accuracy of
    PRUNED with onnxruntime, channels kept per stage)."""
    torch.set_num_threads(1)
    orig, pruned = inits(orig_path), inits(pruned_path)
    model = ResNet()
    state = model.state_dict()
    missing = [k for k in state if k not in orig and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{orig_path}: no initializer for {missing}")
    model.load_state_dict({k: torch.from_numpy(orig[k].copy()) if k in orig else v for k, v in state.items()})
    model.eval()

    def mask(bn, n):
        m = torch.zeros(n)
        m[kept(orig, pruned, bn)] = 1
        return m.view(1, n, 1, 1)

    stem_m = mask("stem.1", 16)
    masks = {}
    for name, n in (("layer1", 16), ("layer2", 32), ("layer3", 64)):
        masks[name] = (mask(f"{name}.bn1", n), mask(f"{name}.bn2", n))
    # identity shortcut: layer1's output channels are the stem's
    if not torch.equal(masks["layer1"][1], stem_m):
        raise ValueError("layer1.bn2 and the stem kept different channels (they are one group)")

    def block(b, x, m1, m2):
        o = F.relu(b.bn1(b.conv1(x))) * m1
        o = b.bn2(b.conv2(o))
        s = x if b.short is None else b.short(x)
        return F.relu(o + s) * m2

    z = np.load(os.path.join(MODELS, "mnist_test.npz"))
    x = torch.from_numpy(z["x"].astype(np.float32) / 255.0)
    with torch.no_grad():
        h = model.stem(x) * stem_m
        for name in ("layer1", "layer2", "layer3"):
            h = block(getattr(model, name), h, *masks[name])
        ref = model.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)).numpy()

    import onnxruntime as ort

    sess = ort.InferenceSession(pruned_path, providers=["CPUExecutionProvider"])
    batch = sess.get_inputs()[0].shape[0]
    xs = x.numpy()
    if isinstance(batch, int):
        got = np.concatenate([sess.run(None, {"input": xs[i:i + batch]})[0] for i in range(0, len(xs), batch)])
    else:
        got = sess.run(None, {"input": xs})[0]
    diff = float(np.abs(got - ref).max() / np.abs(ref).max())
    acc_ref = float((ref.argmax(1) == z["y"]).mean())
    acc_got = float((got.argmax(1) == z["y"]).mean())
    kept_n = {k: int(v[1].sum()) for k, v in masks.items()}
    return diff, acc_ref, acc_got, kept_n


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pruned_path = sys.argv[1]
    diff, acc_ref, acc_got, kept_n = check(*sys.argv[1:3])
    print(f"{pruned_path}: kept {kept_n}, max rel. diff {diff:.2e}, accuracy torch-masked {acc_ref:.4f} "
          f"onnxruntime-pruned {acc_got:.4f}")
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    main()
