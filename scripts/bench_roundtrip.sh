#!/usr/bin/env bash
# Time an ONNX round trip (read, no passes, write) against a plain `cp` of the same bytes.
#
#   scripts/bench_roundtrip.sh MODEL.onnx [EXTRA_FILE...]
#
# EXTRA_FILEs (external data) are copied by the `cp` side too and count in the file size.
# Environment: SPA_OPT (default target/release/spa-opt; any binary taking `IN -o OUT` works, e.g.
# target/release/examples/roundtrip), RUNS (default 5). Uses hyperfine for the times when it is
# installed, else a loop (median of RUNS); peak RSS always comes from /usr/bin/time.
# Reports: median wall time of each, their ratio, and peak RSS / file size.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
model=$1
shift
extra=("$@")
spa_opt=${SPA_OPT:-target/release/spa-opt}
runs=${RUNS:-5}
for f in "$model" "${extra[@]}"; do
    [[ -f $f ]] || { echo "no such file: $f" >&2; exit 2; }
done
[[ -x $spa_opt ]] || { echo "not executable: $spa_opt (cargo build --release first)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d /tmp/spa-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
out=$work/out.onnx
copy_cmd=(cp "$model" "${extra[@]}" "$work/")
spa_cmd=("$spa_opt" "$model" -o "$out")

size=0
for f in "$model" "${extra[@]}"; do
    size=$((size + $(stat -c %s "$f")))
done

# Warm the page cache so both sides read from memory.
cat "$model" "${extra[@]}" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Wall seconds of one run (nanosecond clock; /usr/bin/time only has 10 ms resolution).
wall() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f\n", (b - a) / 1e9}'
}

# Peak RSS (KiB) over RUNS runs.
peak_rss() {
    local max=0 r
    for _ in $(seq "$runs"); do
        r=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1)
        ((r > max)) && max=$r
    done
    echo "$max"
}

if command -v hyperfine >/dev/null; then
    hyperfine --warmup 1 --runs "$runs" --export-json "$work/h.json" \
        -n spa-opt "${spa_cmd[*]}" -n cp "${copy_cmd[*]}" >&2
    read -r t_spa t_cp < <(python3 -c '
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
print(r["spa-opt"], r["cp"])' "$work/h.json")
else
    "${spa_cmd[@]}" >/dev/null 2>&1 || { echo "failed: ${spa_cmd[*]}" >&2; "${spa_cmd[@]}"; exit 1; }
    "${copy_cmd[@]}"
    spa_times=() cp_times=()
    # Interleaved, so that background load hits both sides alike.
    for _ in $(seq "$runs"); do
        spa_times+=("$(wall "${spa_cmd[@]}")")
        cp_times+=("$(wall "${copy_cmd[@]}")")
    done
    t_spa=$(printf '%s\n' "${spa_times[@]}" | median)
    t_cp=$(printf '%s\n' "${cp_times[@]}" | median)
fi

rss_spa=$(peak_rss "${spa_cmd[@]}")
rss_cp=$(peak_rss "${copy_cmd[@]}")

awk -v model="$model" -v size="$size" -v ts="$t_spa" -v tc="$t_cp" -v rs="$rss_spa" -v rc="$rss_cp" \
    -v runs="$runs" 'BEGIN {
    mb = size / 1048576
    printf "model          %s (%.1f MiB incl. external data)\n", model, mb
    printf "spa-opt        %.3f s median of %d, peak RSS %.1f MiB\n", ts, runs, rs / 1024
    printf "cp             %.3f s median of %d, peak RSS %.1f MiB\n", tc, runs, rc / 1024
    printf "time ratio     %.2fx cp\n", (tc > 0) ? ts / tc : 0
    printf "RSS / size     %.2f\n", (size > 0) ? rs * 1024 / size : 0
}'
