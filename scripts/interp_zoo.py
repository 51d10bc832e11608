#!/usr/bin/env python3
"""Compare the reference interpreter with onnxruntime over ONNX models.

Usage: python3 scripts/interp_zoo.py [--zoo /tmp/zoo/models] [--fixtures] [--only NAME ...]
           [--bin target/release/examples/interp_run] [--out results/interp_zoo.csv] [--timeout 600]

For each model: inputs from <name>.io.npz next to it (zoo exports) or deterministic random inputs
(numpy default_rng(0), dynamic dims set to 1; integer inputs in [0, 100), bools true); runs
onnxruntime and `interp_run run` (build it first: cargo build --release -p spa-ir --example
interp_run) and compares every output: max |ort - interp| / max(|ort|, |interp|) <= 1e-4.
Prints and writes one CSV row per model and the summary "N/M models match to 1e-4".
"""
import argparse, csv, glob, os, subprocess, sys, tempfile, time
import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NP = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
      "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
      "tensor(int8)": np.int8, "tensor(bool)": np.bool_}
TOL = 1e-4


def inputs_for(path, sess):
    npz = path[:-len(".onnx")] + ".io.npz"
    names = [i.name for i in sess.get_inputs()]
    if os.path.exists(npz):
        z = np.load(npz)
        found = {n: z[k] for n in names for k in (n, "in_" + n, "input_" + n) if k in z.files}
        if len(found) == len(names):
            return found
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        t = NP.get(i.type, np.float32)
        if np.issubdtype(t, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(t)
        elif t is np.bool_:
            feeds[i.name] = np.ones(shape, dtype=bool)
        else:
            feeds[i.name] = rng.integers(0, 100, size=shape).astype(t)
    return feeds


def rel_diff(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    a = np.where(both_nan, 0, a)
    b = np.where(both_nan, 0, b)
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
    d = np.abs(a - b).max() / scale
    return float(d) if np.isfinite(d) else float("inf")


def check(path, binary, timeout):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = inputs_for(path, sess)
    t0 = time.perf_counter()
    ref = sess.run(None, feeds)
    ort_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "run", path, os.path.join(tmp, "out")]
        for n, v in feeds.items():
            f = os.path.join(tmp, f"in{len(args)}.npy")
            np.save(f, np.ascontiguousarray(v))
            args.append(f"{n}={f}")
        t0 = time.perf_counter()
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        interp_s = time.perf_counter() - t0
        if p.returncode != 0:
            return "error", None, ort_s, interp_s, p.stderr.strip().splitlines()[-1][:300] if p.stderr.strip() else "failed"
        worst = 0.0
        for i, r in enumerate(ref):
            got = np.load(os.path.join(tmp, "out", f"out_{i}.npy"))
            worst = max(worst, rel_diff(np.asarray(r), got))
    return ("match" if worst <= TOL else "mismatch"), worst, ort_s, interp_s, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="/tmp/zoo/models")
    ap.add_argument("--fixtures", action="store_true", help="also the ONNX test fixtures")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/examples/interp_run"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results/interp_zoo.csv"))
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()
    paths = []
    if a.zoo and os.path.isdir(a.zoo):
        paths += sorted(glob.glob(os.path.join(a.zoo, "*.onnx")) + glob.glob(os.path.join(a.zoo, "*", "*.onnx")))
    if a.fixtures:
        fx = os.path.join(ROOT, "tests", "fixtures")
        paths += sorted(glob.glob(os.path.join(fx, "*.onnx")) + glob.glob(os.path.join(fx, "interp", "*.onnx")))
        paths.append(os.path.join(fx, "external_data", "model.onnx"))
    if a.only:
        paths = [p for p in paths if os.path.basename(p)[:-5] in a.only]
    rows, ok = [], 0
    for p in paths:
        name = os.path.relpath(p, a.zoo) if p.startswith(a.zoo) else os.path.relpath(p, ROOT)
        try:
            status, d, ort_s, interp_s, err = check(p, a.bin, a.timeout)
        except subprocess.TimeoutExpired:
            status, d, ort_s, interp_s, err = "timeout", None, None, None, f"over {a.timeout} s"
        except Exception as e:  # noqa: BLE001  (onnxruntime cannot run it: not counted)
            status, d, ort_s, interp_s, err = "ort-error", None, None, None, str(e).splitlines()[0][:300]
        ok += status == "match"
        rows.append({"model": name, "status": status,
                     "max_rel_diff": "" if d is None else f"{d:.3g}",
                     "ort_s": "" if ort_s is None else f"{ort_s:.3f}",
                     "interp_s": "" if interp_s is None else f"{interp_s:.3f}", "error": err})
        print(f"{name:50s} {status:9s} {rows[-1]['max_rel_diff']:>10s} {err}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["model"])
        w.writeheader()
        w.writerows(rows)
    total = sum(r["status"] != "ort-error" for r in rows)
    print(f"{ok}/{total} models match onnxruntime to {TOL:g} (relative to the largest magnitude)")


if __name__ == "__main__":
    main()
