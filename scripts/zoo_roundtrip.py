#!/usr/bin/env python
"""Round trip over the zoo: `spa-opt m.onnx -o out.onnx` (no passes); the output must pass the onnx
checker and give bitwise-identical onnxruntime outputs. Also reports time against a plain copy.

Usage: /opt/zoo-venv/bin/python scripts/zoo_roundtrip.py [--kind classic|dynamo] [--only NAME ...]
Writes results/zoo_roundtrip_<kind>.csv and prints N/M.
"""
import argparse, csv, os, shutil, sys, tempfile, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_common import models, inputs_for, run_ort, spa, check, family, file_bytes, ROOT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="classic", choices=["classic", "dynamo"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, path in models(args.kind, args.only):
        row = {"name": name, "family": family(name), "bytes": file_bytes(path)}
        out_dir = tempfile.mkdtemp(prefix="spa-rt-")
        out = os.path.join(out_dir, name + ".onnx")
        try:
            rc, err, wall, _ = spa([path, "-o", out, "-q"])
            row["spa_s"] = round(wall, 3)
            if rc != 0:
                raise RuntimeError(f"spa-opt exit {rc}: {err.strip()[:300]}")
            check(out)
            feeds = inputs_for(name, path)
            feeds, a = run_ort(path, feeds)
            _, b = run_ort(out, feeds)
            same = all(k in b and a[k].shape == b[k].shape and
                       np.array_equal(a[k].view(np.uint8), b[k].view(np.uint8)) for k in a)
            if not same:
                raise RuntimeError("outputs differ")
            row["status"] = "ok"
        except Exception as e:
            row["status"] = "fail"
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            if not args.keep:
                shutil.rmtree(out_dir, ignore_errors=True)
        print(f"{name:34s} {row['status']:5s} {row.get('spa_s', '-'):>7}s {row['bytes']/1e6:9.1f}MB "
              f"{row.get('error', '')}", flush=True)
        rows.append(row)
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    with open(os.path.join(ROOT, "results", f"zoo_roundtrip_{args.kind}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["name", "family", "status", "bytes", "spa_s", "error"])
        w.writeheader()
        w.writerows(rows)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"round trip ({args.kind}): {ok}/{len(rows)} identical")
    fams = sorted({r["family"] for r in rows})
    for fam in fams:
        rs = [r for r in rows if r["family"] == fam]
        print(f"  {fam}: {sum(r['status'] == 'ok' for r in rs)}/{len(rs)}")


if __name__ == "__main__":
    main()
