#!/usr/bin/env bash
# Engine benchmark: `tandem bench` beside ONNX Runtime (tools/ort_bench.js) on
# the same files in the same run, batch 1. Prints a table of p50 latencies,
# the ratio tandem/ORT next to the target of the engine issue, and load time
# and peak RSS of both. Figures only: nothing here passes or fails on timing.
#
# Environment: BUILD (build), TANDEM ($BUILD/tandem), SHARED (../shared),
# BENCH_SCALE (1.0: multiplies the iteration counts). About 2 minutes on the
# 2-core machine at the default scale.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TANDEM=${TANDEM:-$BUILD/tandem}
SHARED=${SHARED:-../shared}
scale=${BENCH_SCALE:-1.0}
models=$BUILD/test-models
[ -d "$models" ] || models=build/test-models
mnv2=$models/mobilenetv2_op13.onnx
rn50=$models/resnet50_op13.onnx
int8=$SHARED/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx

for f in "$TANDEM" "$mnv2" "$rn50" "$int8"; do
    if [ ! -e "$f" ]; then
        echo "bench/engine.sh: $f is missing (make, make test-models)" >&2
        exit 1
    fi
done

iters() { # base count scaled, at least 5
    /usr/bin/python3 -c "import sys; print(max(5, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$scale"
}

results=$(mktemp)
trap 'rm -f "$results"' EXIT

# label, model, threads, precision, iterations, target ratio
run_case() {
    local label=$1 model=$2 threads=$3 precision=$4 n=$5 target=$6 t o tj rss
    echo "running $label: threads $threads, $precision, $n iterations" >&2
    # Peak RSS of tandem comes from the kernel via /usr/bin/time (in KiB).
    t=$(mktemp)
    tj=$(/usr/bin/time -f '%M' -o "$t" "$TANDEM" bench --model "$model" --threads "$threads" \
        --iterations "$n" --precision "$precision" 2>/dev/null | tail -n 1)
    rss=$(tail -n 1 "$t")
    rm -f "$t"
    o=$(node tools/ort_bench.js --model "$model" --threads "$threads" --iterations "$n" 2>/dev/null | tail -n 1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$threads" "$precision" "$target" \
        "${tj:-{\}}" "${o:-{\}}" "${rss:-0}" >>"$results"
}

run_case "MobileNetV2 f32" "$mnv2" 1 fp32 "$(iters 200)" 0.8
run_case "MobileNetV2 f32" "$mnv2" 2 fp32 "$(iters 200)" 0.8
run_case "ResNet50 f32" "$rn50" 1 fp32 "$(iters 40)" 1.0
run_case "ResNet50 f32" "$rn50" 2 fp32 "$(iters 40)" 1.0
run_case "ResNet50 bf16 vs ORT f32" "$rn50" 1 bf16 "$(iters 40)" 0.35
# An int8 model runs as it is quantised; fp32 is only tandem's default flag.
run_case "MobileNetV2 int8 (real)" "$int8" 1 fp32 "$(iters 200)" 0.5

/usr/bin/python3 - "$results" <<'EOF'
import json, sys

def num(d, k):
    v = d.get(k)
    return v if isinstance(v, (int, float)) else None

def fmt(v, spec=".2f"):
    return format(v, spec) if v is not None else "n/a"

rows = []
for line in open(sys.argv[1]):
    label, threads, prec, target, tj, oj, rss = line.rstrip("\n").split("\t")
    try:
        t = json.loads(tj)
    except ValueError:
        t = {}
    try:
        o = json.loads(oj)
    except ValueError:
        o = {}
    tp, op = num(t, "p50_ms"), num(o, "p50_ms")
    ratio = tp / op if tp and op else None
    t_rss = num(t, "peak_rss_mb") or (int(rss) / 1024 if rss.isdigit() and int(rss) else None)
    if "int8" in label:
        prec = "int8"
    rows.append([label, threads, prec, fmt(tp), fmt(op), fmt(ratio), "<= " + target,
                 "yes" if ratio is not None and ratio <= float(target) else ("no" if ratio else "n/a"),
                 fmt(num(t, "load_ms"), ".0f"), fmt(num(o, "load_ms"), ".0f"),
                 fmt(t_rss, ".0f"), fmt(num(o, "peak_rss_mb"), ".0f")])
head = ["model", "thr", "prec", "tandem p50 ms", "ORT p50 ms", "ratio", "target", "meets",
        "load ms tandem", "load ms ORT", "RSS MB tandem", "RSS MB ORT"]
w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
for r in [head, ["-" * x for x in w]] + rows:
    print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
print("\nratio = tandem p50 / ORT p50 at batch 1, same file, same run; ORT's RSS includes the"
      " Node.js runtime; n/a = tandem did not report it or failed.")
EOF
