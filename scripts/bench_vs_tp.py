#!/usr/bin/env python
"""Speed against Torch-Pruning, same machine, same run.

For each architecture: Torch-Pruning's DependencyGraph build + pruner.step() (torch import and model
construction excluded; measured by ../shared/zoo/tp_bench.py in its own process), against the wall
time of the whole `spa-opt` process (read ONNX, group, score, prune, write ONNX) with
`group,score{criterion=l2},prune{ratio=0.5}`; spa-opt is the best of --repeat runs.

Usage: /opt/zoo-venv/bin/python scripts/bench_vs_tp.py [--only tv_resnet50 ...] [--repeat 3]
Writes results/bench_vs_tp.csv and prints a table.
"""
import argparse, csv, json, os, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_common import models, spa_rss, ZOO, ROOT, file_bytes

DEFAULT = ["tv_resnet50", "tv_densenet201", "tv_vit_b_16", "tv_swin_t", "tv_regnet_y_128gf", "tv_vit_h_14"]
TP = os.path.join(ROOT, "..", "shared", "zoo", "tp_bench.py")


def tp_times(name):
    res = os.path.join(ZOO, "results", "tp_plain", name + ".json")
    if os.path.exists(res):
        os.remove(res)
    subprocess.run([sys.executable, TP, "--only", name, "--timeout", "1800"], env=dict(os.environ, ZOO_DIR=ZOO),
                   capture_output=True, text=True)
    with open(res) as f:
        r = json.load(f)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-tp", action="store_true")
    args = ap.parse_args()
    paths = dict(models("classic", args.only))
    rows = []
    for name in args.only:
        path = paths[name]
        tmp = tempfile.mkdtemp(prefix="spa-bench-")
        out = os.path.join(tmp, "out.onnx")
        best, rss = None, 0
        for _ in range(args.repeat):
            rc, wall, peak = spa_rss([path, "--pass=group,score{criterion=l2},prune{ratio=0.5}", "-o", out, "-q"])
            if rc != 0:
                raise SystemExit(f"spa-opt failed on {name}")
            best = wall if best is None else min(best, wall)
            rss = max(rss, peak)
        row = {"name": name, "model_mb": round(file_bytes(path) / 1e6, 1), "spa_s": round(best, 3),
               "spa_peak_rss_mb": round(rss / 1e6, 1)}
        if not args.skip_tp:
            r = tp_times(name)
            row["tp_status"] = r.get("status")
            if r.get("dg_build_s") is not None and r.get("step_s") is not None:
                row["tp_dg_s"] = r["dg_build_s"]
                row["tp_step_s"] = r["step_s"]
                row["tp_s"] = round(r["dg_build_s"] + r["step_s"], 3)
                row["speedup"] = round(row["tp_s"] / best, 1)
        print(row, flush=True)
        rows.append(row)
        subprocess.run(["rm", "-rf", tmp])
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    cols = ["name", "model_mb", "spa_s", "spa_peak_rss_mb", "tp_status", "tp_dg_s", "tp_step_s", "tp_s", "speedup"]
    with open(os.path.join(ROOT, "results", "bench_vs_tp.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    print(f"{'model':22s} {'MB':>8s} {'spa-opt s':>10s} {'TP s':>8s} {'speed-up':>9s}")
    for r in rows:
        print(f"{r['name']:22s} {r['model_mb']:8.1f} {r['spa_s']:10.3f} {r.get('tp_s', '-'):>8} {r.get('speedup', '-'):>9}")


if __name__ == "__main__":
    main()
