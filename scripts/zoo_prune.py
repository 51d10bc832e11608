#!/usr/bin/env python
"""Prune every zoo model with `group,score{criterion=l2},prune{ratio=0.5}` and check the result.

For each model: spa-opt runs; the pruned model passes the onnx checker; onnxruntime runs it with
the same inputs and the output shapes are unchanged; params and FLOPs drop (from the prune report);
and mask equivalence holds: with `exact-only=true`, the physically pruned model and the masked model
(same channels zeroed, shapes kept) give the same outputs (relative 1e-4, scaled by the largest
magnitude).

Usage: /opt/zoo-venv/bin/python scripts/zoo_prune.py [--kind classic|dynamo] [--only NAME ...]
Writes results/zoo_prune_<kind>.csv.

--pipeline replaces the pipeline (then the mask-equivalence runs are skipped: they are defined
for l2 scores), e.g. obspa with synthetic calibration data over part of the zoo:

    scripts/zoo_prune.py --only tv_squeezenet1_1 timm_vit_tiny_patch16_224 \
        --pipeline 'group,score{criterion=obspa,data=synthetic},prune{ratio=0.5}' --csv results/zoo_obspa.csv
"""
import argparse, csv, json, os, shutil, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_common import models, inputs_for, run_ort, spa, check, family, rel_diff, ROOT

PIPE = "group,score{criterion=l2},prune{ratio=0.5}"
MASK = "group,score{criterion=l2},prune{ratio=0.5,exact-only=true,mode=%s}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="classic", choices=["classic", "dynamo"])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--no-mask", action="store_true", help="skip the mask-equivalence runs")
    ap.add_argument("--pipeline", default=PIPE, help=f"the pipeline to check (default {PIPE}; another skips the mask runs)")
    ap.add_argument("--csv", default=None, help="output CSV (default results/zoo_prune_<kind>.csv)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per spa-opt run")
    args = ap.parse_args()
    if args.pipeline != PIPE:
        args.no_mask = True
    rows = []
    cols = ["name", "family", "status", "spa_s", "peak_rss_mb", "params_kept", "flops_kept", "groups",
            "pruned_groups", "mask_rel_diff", "error"]
    # Rows are written as they come, so a long run stopped early keeps what it measured.
    csv_path = args.csv or os.path.join(ROOT, "results", f"zoo_prune_{args.kind}.csv")
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    out_file = open(csv_path, "w", newline="")
    writer = csv.DictWriter(out_file, cols)
    writer.writeheader()
    out_file.flush()
    for name, path in models(args.kind, args.only):
        if name in args.skip:
            continue
        row = {"name": name, "family": family(name)}
        tmp = tempfile.mkdtemp(prefix="spa-prune-")
        try:
            rep = os.path.join(tmp, "report.json")
            out = os.path.join(tmp, name + ".onnx")
            rc, err, wall, rss = spa([path, "--pass=" + args.pipeline, "--report", rep, "-o", out, "-q"],
                                     timeout=args.timeout)
            row["spa_s"] = round(wall, 2)
            if rss > 0:  # none when GNU time could not write it (the run was killed)
                row["peak_rss_mb"] = round(rss / 2**20)
            if rc != 0:
                why = err.strip().splitlines()[-1][:300] if err.strip() else ""
                if rc == -9 and not why:
                    why = "killed by SIGKILL (the kernel's OOM killer, if not a timeout)"
                raise RuntimeError(f"spa-opt exit {rc}: {why}")
            r = json.load(open(rep))
            if isinstance(r, list):  # several prune passes: from the first one's input to the last one's output
                r = dict(r[-1], params_before=r[0]["params_before"], flops_before=r[0]["flops_before"])
            row["params_kept"] = round(r["params_after"] / max(r["params_before"], 1), 4)
            row["flops_kept"] = round(r["flops_after"] / max(r["flops_before"], 1), 4)
            row["groups"] = len(r["groups"])
            row["pruned_groups"] = sum(g["kept"] < g["size"] for g in r["groups"])
            check(out)
            feeds = inputs_for(name, path)
            feeds, ref = run_ort(path, feeds)
            _, got = run_ort(out, feeds)
            for k, v in ref.items():
                if k not in got or got[k].shape != v.shape:
                    raise RuntimeError(f"output {k} shape {v.shape} -> {got.get(k, None) is not None and got[k].shape}")
            if not (r["params_after"] < r["params_before"] and r["flops_after"] < r["flops_before"]):
                raise RuntimeError("params/FLOPs did not drop")
            if not args.no_mask:
                pe = os.path.join(tmp, "exact_pruned.onnx")
                me = os.path.join(tmp, "exact_masked.onnx")
                for mode, o in (("remove", pe), ("mask", me)):
                    rc, err, _, _ = spa([path, "--pass=" + MASK % mode, "-o", o, "-q"])
                    if rc != 0:
                        raise RuntimeError(f"spa-opt ({mode}) exit {rc}: {err.strip()[-300:]}")
                _, a = run_ort(pe, feeds)
                _, b = run_ort(me, feeds)
                diff = max(rel_diff(a[k], b[k]) for k in a)
                row["mask_rel_diff"] = f"{diff:.2e}"
                if not diff <= 1e-4:
                    raise RuntimeError(f"mask equivalence fails: rel diff {diff:.3g}")
            row["status"] = "ok"
        except Exception as e:
            row["status"] = "fail"
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{name:34s} {row['status']:5s} {row.get('spa_s', '-'):>6}s {row.get('peak_rss_mb', '-'):>6}MB params={row.get('params_kept', '-')} "
              f"flops={row.get('flops_kept', '-')} mask={row.get('mask_rel_diff', '-')} {row.get('error', '')}",
              flush=True)
        rows.append(row)
        writer.writerow(row)
        out_file.flush()
    out_file.close()
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"prune ({args.kind}): {ok}/{len(rows)} ok")
    for fam in sorted({r["family"] for r in rows}):
        rs = [r for r in rows if r["family"] == fam]
        print(f"  {fam}: {sum(r['status'] == 'ok' for r in rs)}/{len(rs)}")


if __name__ == "__main__":
    main()
