#!/usr/bin/env python
"""Graph clean-up and the full pipeline over the zoo, checked with onnxruntime.

For each model:
  1. `canonicalize,fold-bn,cse,dce`: node counts before/after (total and the noise ops: Shape,
     Gather, Concat, Unsqueeze, Identity, Constant, ...), the onnx checker, and onnxruntime outputs
     equal to the original's (relative 1e-5, scaled by the largest magnitude).
  2. `canonicalize,group,score,prune{ratio=0.5},fold-bn,cse,dce`: runs, passes the checker and runs
     in onnxruntime with unchanged output shapes; onnxruntime latency (1 thread, median of N runs
     after warm-up) of the original and the pruned model, same process, same machine.

Usage: /opt/zoo-venv/bin/python scripts/zoo_canon.py [--kind classic|dynamo] [--only NAME ...]
       [--runs 5] [--no-latency]
Writes results/zoo_canon_<kind>.csv (a run with --only/--skip updates only its models' rows)
and prints per-family summaries over the whole file.
"""
import argparse, collections, csv, os, shutil, statistics, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_common import models, inputs_for, run_ort, spa, check, family, rel_diff, ROOT

CLEAN = "canonicalize,fold-bn,cse,dce"
FULL = "canonicalize,group,score,prune{ratio=0.5},fold-bn,cse,dce"
NOISE = ("Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Identity", "Constant", "Cast",
         "Dropout", "Reshape", "Transpose", "ConstantOfShape", "Slice", "Equal", "Where", "Expand")


def op_counts(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return collections.Counter(n.op_type for n in m.graph.node)


def latency(path, feeds, runs):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    sess.run(names, feeds)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(names, feeds)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="classic", choices=["classic", "dynamo"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--max-mb", type=float, default=1e9, help="skip models larger than this")
    args = ap.parse_args()
    rows = []
    for name, path in models(args.kind, args.only):
        if name in args.skip or os.path.getsize(path) > args.max_mb * 1e6:
            continue
        row = {"name": name, "family": family(name)}
        tmp = tempfile.mkdtemp(prefix="spa-canon-")
        try:
            before = op_counts(path)
            row["nodes_before"] = sum(before.values())
            row["noise_before"] = sum(before[o] for o in NOISE)
            out = os.path.join(tmp, name + ".clean.onnx")
            rc, err, wall, _ = spa([path, "--pass=" + CLEAN, "-o", out, "-q"])
            row["clean_s"] = round(wall, 2)
            if rc != 0:
                raise RuntimeError(f"clean: exit {rc}: {err.strip().splitlines()[-1][:300] if err.strip() else ''}")
            after = op_counts(out)
            row["nodes_after"] = sum(after.values())
            row["noise_after"] = sum(after[o] for o in NOISE)
            check(out)
            feeds = inputs_for(name, path)
            feeds, ref = run_ort(path, feeds)
            _, got = run_ort(out, feeds)
            d = max(rel_diff(v, got.get(k, [])) for k, v in ref.items())
            row["clean_rel_diff"] = f"{d:.2e}"
            row["clean_ok"] = d <= 1e-5
            full = os.path.join(tmp, name + ".full.onnx")
            rc, err, wall, _ = spa([path, "--pass=" + FULL, "-o", full, "-q"])
            row["full_s"] = round(wall, 2)
            if rc != 0:
                raise RuntimeError(f"full: exit {rc}: {err.strip().splitlines()[-1][:300] if err.strip() else ''}")
            check(full)
            _, got = run_ort(full, feeds)
            for k, v in ref.items():
                if k not in got or got[k].shape != v.shape:
                    raise RuntimeError(f"full: output {k} shape changed")
            row["full_nodes"] = sum(op_counts(full).values())
            row["full_ok"] = True
            if not args.no_latency:
                t0 = latency(path, feeds, args.runs)
                t1 = latency(full, feeds, args.runs)
                row["ort_ms_before"] = round(t0 * 1e3, 2)
                row["ort_ms_full"] = round(t1 * 1e3, 2)
                row["speedup"] = round(t0 / t1, 2)
            row["status"] = "ok" if row["clean_ok"] else "clean outputs differ"
        except Exception as e:
            row["status"] = "FAIL: " + str(e).replace("\n", " ")[:300]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print({k: row[k] for k in row if k != "family"}, flush=True)
        rows.append(row)
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    fields = ["name", "family", "status", "nodes_before", "nodes_after", "noise_before", "noise_after",
              "clean_rel_diff", "clean_ok", "clean_s", "full_ok", "full_nodes", "full_s",
              "ort_ms_before", "ort_ms_full", "speedup"]
    out_csv = os.path.join(ROOT, "results", f"zoo_canon_{args.kind}.csv")
    if (args.only or args.skip) and os.path.exists(out_csv):
        # A partial run updates its models' rows and keeps every other model's row.
        done = {r["name"] for r in rows}
        with open(out_csv, newline="") as f:
            old = [r for r in csv.DictReader(f) if r["name"] not in done]
        for r in old:
            for k in ("nodes_before", "nodes_after", "noise_before", "noise_after"):
                if r.get(k):
                    r[k] = int(r[k])
                else:
                    r.pop(k, None)
            for k in ("clean_ok", "full_ok"):
                r[k] = r.get(k) == "True"
            if r.get("speedup"):
                r["speedup"] = float(r["speedup"])
            else:
                r.pop("speedup", None)
        rows = sorted(old + rows, key=lambda r: r["name"])
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    fam = collections.defaultdict(list)
    for r in rows:
        fam[r["family"]].append(r)
    print("\nfamily  models  clean-ok  full-ok  nodes before->after  noise before->after  median speed-up")
    for k, rs in sorted(fam.items()):
        ok = [r for r in rs if r.get("clean_ok")]
        full = [r for r in rs if r.get("full_ok")]
        nb = sum(r.get("nodes_before", 0) for r in rs)
        na = sum(r.get("nodes_after", 0) for r in rs)
        zb = sum(r.get("noise_before", 0) for r in rs)
        za = sum(r.get("noise_after", 0) for r in rs)
        sp = [r["speedup"] for r in rs if "speedup" in r]
        med = f"{statistics.median(sp):.2f}x" if sp else "-"
        print(f"{k:7} {len(rs):6}  {len(ok):8}  {len(full):7}  {nb:7} -> {na:<7}  {zb:7} -> {za:<7}  {med}")
    print(f"\nclean outputs equal: {sum(1 for r in rows if r.get('clean_ok'))}/{len(rows)}; "
          f"full pipeline runs: {sum(1 for r in rows if r.get('full_ok'))}/{len(rows)}")


if __name__ == "__main__":
    main()
