#!/usr/bin/env python3
"""MLIR backend over the model zoo: for each classic export, prune (ratio 0.5), emit MLIR, verify it
with mlir-opt-22, compile it with iree-compile (llvm-cpu), run it with the IREE runtime and compare
with onnxruntime on the pruned ONNX (relative tolerance 1e-4 of the largest output magnitude).

One row per model goes to results/zoo_mlir.csv as soon as it is done (so a long run can be stopped
and resumed with --resume); a per-family N/M summary with the failure reasons is printed at the end.

  /opt/iree-venv/bin/python scripts/zoo_mlir.py                       # every classic model
  /opt/iree-venv/bin/python scripts/zoo_mlir.py --only tv_resnet50 tv_vit_b_16
  /opt/iree-venv/bin/python scripts/zoo_mlir.py --resume --max-mb 400 --timeout 900
  /opt/iree-venv/bin/python scripts/zoo_mlir.py --emit-only --csv results/zoo_mlir_emit.csv

Models come from $ZOO_DIR (default /tmp/zoo)/models, smallest first.
"""

import argparse
import collections
import csv
import glob
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlir_check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.environ.get("ZOO_DIR", "/tmp/zoo")
FIELDS = ["model", "family", "status", "reason", "emit_s", "mlir_bytes", "verify_s", "compile_s",
          "rel_err"]


def family(name):
    return name.split("_", 1)[0]


def zoo_models():
    d = os.path.join(ZOO, "models")
    paths = glob.glob(os.path.join(d, "*.onnx")) + glob.glob(os.path.join(d, "*", "*.onnx"))

    def size(p):
        total = os.path.getsize(p)
        for f in glob.glob(os.path.join(os.path.dirname(p), "*.data")):
            if os.path.dirname(p) != d:
                total += os.path.getsize(f)
        return total

    return sorted(((os.path.basename(p)[:-5], p, size(p)) for p in paths), key=lambda t: t[2])


def npz_inputs(name, path):
    for d in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        io = os.path.join(d, name + ".io.npz")
        if os.path.exists(io):
            z = np.load(io)
            return [(k[3:], z[k]) for k in z.files if k.startswith("in_")]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--pipeline", default="group,score,prune{ratio=0.5}")
    ap.add_argument("--spa-opt", default=os.path.join(ROOT, "target", "release", "spa-opt"))
    ap.add_argument("--csv", default=os.path.join(ROOT, "results", "zoo_mlir.csv"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--max-mb", type=float, default=1e9, help="skip models larger than this")
    ap.add_argument("--resume", action="store_true", help="keep rows already in the CSV")
    ap.add_argument("--emit-only", action="store_true",
                    help="stop after mlir-opt verifies (status 'verified'); no IREE")
    args = ap.parse_args()
    args.seed = 0

    tools = {
        "spa-opt": args.spa_opt,
        "mlir-opt": mlir_check.find_tool("mlir-opt-22", ["/usr/lib/llvm-22/bin/mlir-opt"]),
        "iree-compile": mlir_check.find_tool("iree-compile"),
    }
    if (not tools["iree-compile"] and not args.emit_only) or not tools["mlir-opt"]:
        sys.exit("zoo_mlir: needs iree-compile (iree-base-compiler) and mlir-opt-22")

    done = {}
    if args.resume and os.path.exists(args.csv):
        with open(args.csv) as f:
            for r in csv.DictReader(f):
                done[r["model"]] = r
    models = [m for m in zoo_models() if not args.only or m[0] in args.only]
    if not models:
        sys.exit(f"zoo_mlir: no models in {ZOO}/models")

    rows = dict(done)
    original_inputs = mlir_check.make_inputs

    def flush():
        os.makedirs(os.path.dirname(args.csv), exist_ok=True)
        tmp = args.csv + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            for name in sorted(rows):
                w.writerow({k: rows[name].get(k, "") for k in FIELDS})
        os.replace(tmp, args.csv)

    for name, path, size in models:
        if name in done:
            continue
        if size > args.max_mb * 1e6:
            rows[name] = {"model": name, "family": family(name), "status": "skipped",
                          "reason": f"larger than --max-mb ({size / 1e6:.0f} MB)"}
            flush()
            continue
        feeds = npz_inputs(name, path)
        mlir_check.make_inputs = (lambda p, s, f=feeds: f) if feeds else original_inputs
        with tempfile.TemporaryDirectory(prefix="zoo_mlir-") as work:
            try:
                row = mlir_check.check(path, args, tools, work)
            except Exception as e:  # one model's crash is that model's failure
                row = {"model": name, "status": "error", "reason": str(e)[:300]}
        row["model"] = name
        row["family"] = family(name)
        rows[name] = row
        flush()
        print(f"{row['status']:12} {name:32} {row.get('rel_err', '')!s:9} "
              f"emit {row.get('emit_s', '')!s:7} compile {row.get('compile_s', '')!s:8} "
              f"{row.get('reason', '')}", flush=True)

    by_family = collections.defaultdict(list)
    for r in rows.values():
        by_family[r["family"]].append(r)
    print("\nfamily  ok/total  failures")
    for fam in sorted(by_family):
        rs = by_family[fam]
        good = ("ok", "verified")
        ok = sum(r["status"] in good for r in rs)
        reasons = collections.Counter(
            f"{r['status']}: {r.get('reason', '')[:90]}" for r in rs if r["status"] not in good)
        print(f"{fam:6}  {ok}/{len(rs)}")
        for reason, n in reasons.most_common():
            print(f"          {n} x {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
