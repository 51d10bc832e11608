#!/usr/bin/env python3
"""Compare the clean-up of the classic (TorchScript) exports with the dynamo exports of the same
models, from the CSVs scripts/zoo_canon.py writes (results/zoo_canon_classic.csv and
results/zoo_canon_dynamo.csv): per family, node and noise-op counts before and after
`canonicalize,fold-bn,cse,dce`, and how close the cleaned classic graph gets to the dynamo one.

  python3 scripts/zoo_canon_compare.py [--examples tv_resnet50 tv_swin_t ...]
"""
import argparse, collections, csv, os, statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(kind):
    with open(os.path.join(ROOT, "results", f"zoo_canon_{kind}.csv"), newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def num(r, k):
    return int(r[k]) if r.get(k) else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", nargs="*", default=[
        "tv_resnet50", "tv_swin_t", "tv_vit_b_16", "tv_convnext_tiny", "tv_shufflenet_v2_x1_0",
        "tv_maxvit_t", "timm_levit_128s", "timm_mobilevit_xxs", "hf_bert_tiny", "hf_gpt2_tiny",
        "hf_llama_tiny"])
    args = ap.parse_args()
    classic, dynamo = load("classic"), load("dynamo")
    both = sorted(set(classic) & set(dynamo))
    fam = collections.defaultdict(list)
    for n in both:
        fam[n.split("_", 1)[0]].append(n)
    print("| family | models | classic nodes before -> after | dynamo nodes before -> after "
          "| classic noise before -> after | dynamo noise before -> after "
          "| cleaned classic / dynamo (median) |")
    print("|---|---|---|---|---|---|---|")
    for f, names in sorted(fam.items()):
        c, d = [classic[n] for n in names], [dynamo[n] for n in names]
        ratio = statistics.median(num(a, "nodes_after") / max(1, num(b, "nodes_after"))
                                  for a, b in zip(c, d))
        s = lambda rows, k: sum(num(r, k) for r in rows)
        print(f"| {f} | {len(names)} | {s(c, 'nodes_before')} -> {s(c, 'nodes_after')} "
              f"| {s(d, 'nodes_before')} -> {s(d, 'nodes_after')} "
              f"| {s(c, 'noise_before')} -> {s(c, 'noise_after')} "
              f"| {s(d, 'noise_before')} -> {s(d, 'noise_after')} | {ratio:.2f} |")
    print()
    print("| model | classic before -> after | dynamo before -> after |")
    print("|---|---|---|")
    for n in args.examples:
        if n in classic and n in dynamo:
            a, b = classic[n], dynamo[n]
            print(f"| {n} | {num(a, 'nodes_before')} -> {num(a, 'nodes_after')} "
                  f"| {num(b, 'nodes_before')} -> {num(b, 'nodes_after')} |")
    for kind, rows in (("classic", classic), ("dynamo", dynamo)):
        ok = sum(r.get("clean_ok") == "True" for r in rows.values())
        full = sum(r.get("full_ok") == "True" for r in rows.values())
        print(f"\n{kind}: clean outputs equal {ok}/{len(rows)}, full pipeline runs {full}/{len(rows)}")


if __name__ == "__main__":
    main()
