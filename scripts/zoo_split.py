#!/usr/bin/env python
"""Run `split-fused` on every zoo model and check that it keeps the function.

For each model: spa-opt runs `--pass=split-fused`; where it split fused projections (one MatMul
for Q, K and V taken apart after a reshape; docs/obspa.md), the onnx checker passes and
onnxruntime gives the same outputs for the model's example inputs as for the original (relative
difference, scaled by the largest magnitude). Models where nothing matched are only required to
run.

Usage: /opt/zoo-venv/bin/python scripts/zoo_split.py [--kind classic|dynamo] [--only NAME ...]
Writes results/zoo_split_<kind>.csv.
"""
import argparse, csv, os, re, sys, tempfile, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_common import models, inputs_for, run_ort, spa, check, family, rel_diff, ROOT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="classic", choices=["classic", "dynamo"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--csv", default=None, help="output CSV (default results/zoo_split_<kind>.csv)")
    args = ap.parse_args()
    rows = []
    for name, path in models(args.kind, args.only):
        row = {"name": name, "family": family(name), "status": "ok", "split": "", "rel_diff": "", "error": ""}
        tmp = tempfile.mkdtemp(prefix="spa-split-")
        try:
            out = os.path.join(tmp, name + ".onnx")
            rc, err, wall, _ = spa([path, "--pass=split-fused", "--pass-statistics", "-o", out])
            if rc != 0:
                raise RuntimeError(f"spa-opt exit {rc}: {err.strip().splitlines()[-1][:300] if err.strip() else ''}")
            m = re.search(r"\((\d+)\) fused projections split", err)
            row["split"] = int(m.group(1)) if m else 0
            if row["split"]:
                check(out)
                feeds, ref = run_ort(path, inputs_for(name, path))
                _, got = run_ort(out, feeds)
                row["rel_diff"] = f"{max(rel_diff(v, got[k]) for k, v in ref.items()):.2e}"
        except Exception as e:  # a failure is a row of the table, not the end of the run
            row.update(status="fail", error=str(e)[:300])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append(row)
        print(f"{name:34} {row['status']:4} split={row['split']} diff={row['rel_diff']} {row['error']}", flush=True)
    dst = args.csv or os.path.join(ROOT, "results", f"zoo_split_{args.kind}.csv")
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    split = [r for r in rows if r["split"]]
    print(f"split-fused ({args.kind}): {sum(r['status'] == 'ok' for r in rows)}/{len(rows)} ok; "
          f"{len(split)} models with {sum(r['split'] for r in split)} fused projections split")


if __name__ == "__main__":
    main()
