#!/usr/bin/env python3
"""Numeric end-to-end check of spa-opt's MLIR backend.

For each ONNX model (and, with --pipeline, for its pruned form): spa-opt writes the ONNX it would
compare against and the MLIR module; mlir-opt-22 verifies the module; iree-compile compiles it
for the CPU (llvm-cpu); the IREE runtime runs it; the outputs must match onnxruntime on the same
ONNX model to a relative tolerance scaled by the largest reference magnitude (default 1e-4).

Needs a Python with iree-base-compiler, iree-base-runtime, onnxruntime, onnx and numpy
(e.g. /opt/iree-venv, see docs/mlir.md). Exit status is non-zero if any model fails.

  scripts/mlir_check.py tests/fixtures/*.onnx
  scripts/mlir_check.py --pipeline 'group,score,prune{ratio=0.5}' tests/fixtures/mlp.onnx
  scripts/mlir_check.py --csv out.csv --keep-going models/*.onnx
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NP_DTYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
}


def find_tool(name, fallbacks=()):
    for cand in (name, *fallbacks):
        path = shutil.which(cand)
        if path:
            return path
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(here):
        return here
    return None


def make_inputs(model_path, seed):
    model = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dtype = NP_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise RuntimeError(f"input '{inp.name}' has element type {tt.elem_type}")
        if np.issubdtype(dtype, np.integer):
            arr = rng.integers(0, 100, size=dims).astype(dtype)
        elif dtype == np.bool_:
            arr = rng.integers(0, 2, size=dims).astype(bool)
        else:
            arr = rng.standard_normal(dims).astype(dtype)
        feeds.append((inp.name, arr))
    return feeds


def rel_error(got, ref):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(ref))), 1e-6)
    return float(np.max(np.abs(got - ref))) / scale


def run(cmd, timeout):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - t


def first_line(text):
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return ""


def check(model_path, args, tools, workdir):
    """Returns a dict row; row['status'] is 'ok' or the failing stage."""
    name = os.path.splitext(os.path.basename(model_path))[0]
    if os.path.basename(model_path) == "model.onnx":
        name = os.path.basename(os.path.dirname(model_path))
    row = {"model": name, "status": "", "reason": "", "emit_s": "", "mlir_bytes": "",
           "verify_s": "", "compile_s": "", "rel_err": ""}
    ref_onnx = model_path
    passes = ["--pass", args.pipeline] if args.pipeline else []
    if args.pipeline:
        ref_onnx = os.path.join(workdir, name + ".pruned.onnx")
        p, _ = run([tools["spa-opt"], model_path, *passes, "-q", "-o", ref_onnx], args.timeout)
        if p.returncode != 0:
            row.update(status="prune", reason=first_line(p.stderr))
            return row
    mlir = os.path.join(workdir, name + ".mlir")
    p, dt = run([tools["spa-opt"], ref_onnx, "-q", "-o", mlir], args.timeout)
    if p.returncode != 0:
        row.update(status="emit", reason=first_line(p.stderr))
        return row
    row["emit_s"] = f"{dt:.3f}"
    row["mlir_bytes"] = os.path.getsize(mlir)
    if tools.get("mlir-opt"):
        p, dt = run([tools["mlir-opt"], mlir, "-o", os.devnull], args.timeout)
        row["verify_s"] = f"{dt:.3f}"
        if p.returncode != 0:
            row.update(status="mlir-opt", reason=first_line(p.stderr))
            return row
    if getattr(args, "emit_only", False):
        row["status"] = "verified"
        return row
    vmfb = os.path.join(workdir, name + ".vmfb")
    cmd = [tools["iree-compile"], mlir, "--iree-input-type=tosa",
           "--iree-hal-target-device=local",
           "--iree-hal-local-target-device-backends=llvm-cpu",
           "--iree-llvmcpu-target-cpu=host", "-o", vmfb]
    try:
        p, dt = run(cmd, args.timeout)
    except subprocess.TimeoutExpired:
        row.update(status="iree-compile", reason=f"timeout after {args.timeout}s")
        return row
    row["compile_s"] = f"{dt:.3f}"
    if p.returncode != 0:
        errs = [l for l in p.stderr.splitlines() if "error" in l]
        row.update(status="iree-compile", reason=(errs[0] if errs else first_line(p.stderr))[:300])
        return row

    feeds = make_inputs(ref_onnx, args.seed)
    sess = ort.InferenceSession(ref_onnx, providers=["CPUExecutionProvider"])
    refs = sess.run(None, dict(feeds))

    import iree.runtime as ireert
    config = ireert.Config("local-task")
    ctx = ireert.SystemContext(config=config)
    with open(vmfb, "rb") as f:
        vm_module = ireert.VmModule.copy_buffer(ctx.instance, f.read())
    ctx.add_vm_module(vm_module)
    fn = ctx.modules.module["main"]
    outs = fn(*[a for _, a in feeds])
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    outs = [np.asarray(o.to_host() if hasattr(o, "to_host") else o) for o in outs]
    if len(outs) != len(refs):
        row.update(status="mismatch", reason=f"{len(outs)} outputs, expected {len(refs)}")
        return row
    err = max(rel_error(o, r) for o, r in zip(outs, refs))
    row["rel_err"] = f"{err:.2e}"
    if not err <= args.tol:
        row.update(status="mismatch", reason=f"relative error {err:.3e} > {args.tol}")
        return row
    row["status"] = "ok"
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--pipeline", default="", help="spa-opt pass pipeline applied first")
    ap.add_argument("--spa-opt", default=os.path.join(ROOT, "target", "debug", "spa-opt"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--csv", help="write one row per model")
    ap.add_argument("--expect-fail", action="append", default=[],
                    help="model name expected not to lower (its failure does not fail the run)")
    args = ap.parse_args()

    tools = {
        "spa-opt": args.spa_opt,
        "mlir-opt": find_tool("mlir-opt-22", ["/usr/lib/llvm-22/bin/mlir-opt"]),
        "iree-compile": find_tool("iree-compile"),
    }
    if not tools["iree-compile"]:
        sys.exit("mlir_check: iree-compile not found (pip install iree-base-compiler)")
    if not tools["mlir-opt"]:
        print("mlir_check: note: mlir-opt-22 not found, skipping that stage", file=sys.stderr)

    rows = []
    bad = 0
    with tempfile.TemporaryDirectory(prefix="mlir_check-") as workdir:
        for m in args.models:
            try:
                row = check(m, args, tools, workdir)
            except Exception as e:  # a crash in one model is that model's failure
                row = {"model": os.path.basename(m), "status": "error", "reason": str(e)[:300]}
            rows.append(row)
            ok = row["status"] == "ok"
            expected = row["model"] in args.expect_fail
            if not ok and not expected:
                bad += 1
            tag = "ok" if ok else ("expected-fail" if expected else "FAIL")
            print(f"{tag:13} {row['model']:30} {row.get('rel_err', '')!s:10} "
                  f"{row['status'] if not ok else ''} {row.get('reason', '')}", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["model", "status", "reason", "emit_s", "mlir_bytes",
                                              "verify_s", "compile_s", "rel_err"])
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in w.fieldnames})
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(f"mlir_check: {n_ok}/{len(rows)} ok", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
