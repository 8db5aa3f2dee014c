#!/usr/bin/env bash
# Engine benchmark: `tandem bench` beside ONNX Runtime (tools/ort_bench.js) on
# the same files in the same run, batch 1. Prints a table of p50 latencies,
# the ratio tandem/ORT next to the target of the engine issue, and load time
# and peak RSS of both. Figures only: nothing here passes or fails on timing.
#
# The machine is shared: its speed drifts by 20-40 % over seconds. So each
# case runs ROUNDS rounds, tandem then ORT back to back in each, and the
# ratio reported is the median of the per-round ratios (each round's two
# runs saw much the same machine); the p50 columns are medians over rounds.
#
# Environment: BUILD (build), TANDEM ($BUILD/tandem), TEST_DATA (data),
# BENCH_SCALE (1.0: multiplies the iteration counts), ROUNDS (5). About 3
# minutes on the 2-core machine at the defaults.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TANDEM=${TANDEM:-$BUILD/tandem}
TEST_DATA=${TEST_DATA:-data}
scale=${BENCH_SCALE:-1.0}
rounds=${ROUNDS:-5}
models=$BUILD/test-models
[ -d "$models" ] || models=build/test-models
mnv2=$models/mobilenetv2_op13.onnx
rn50=$models/resnet50_op13.onnx
int8=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx

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

# label, model, threads, precision, iterations, target ratio: one results
# line per round.
run_case() {
    local label=$1 model=$2 threads=$3 precision=$4 n=$5 target=$6 t o tj rss r
    echo "running $label: threads $threads, $precision, $rounds rounds of $n iterations" >&2
    for ((r = 0; r < rounds; r++)); do
        # Peak RSS of tandem comes from the kernel via /usr/bin/time (in KiB).
        t=$(mktemp)
        tj=$(/usr/bin/time -f '%M' -o "$t" "$TANDEM" bench --model "$model" --threads "$threads" \
            --iterations "$n" --precision "$precision" 2>/dev/null | tail -n 1)
        rss=$(tail -n 1 "$t")
        rm -f "$t"
        o=$(node tools/ort_bench.js --model "$model" --threads "$threads" --iterations "$n" 2>/dev/null | tail -n 1)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$threads" "$precision" "$target" \
            "${tj:-{\}}" "${o:-{\}}" "${rss:-0}" >>"$results"
    done
}

run_case "MobileNetV2 f32" "$mnv2" 1 fp32 "$(iters 100)" 0.8
run_case "MobileNetV2 f32" "$mnv2" 2 fp32 "$(iters 100)" 0.8
run_case "ResNet50 f32" "$rn50" 1 fp32 "$(iters 15)" 1.0
run_case "ResNet50 f32" "$rn50" 2 fp32 "$(iters 15)" 1.0
run_case "ResNet50 bf16 vs ORT f32" "$rn50" 1 bf16 "$(iters 15)" 0.35
# An int8 model runs as it is quantised; fp32 is only tandem's default flag.
run_case "MobileNetV2 int8 (real)" "$int8" 1 fp32 "$(iters 100)" 0.5

/usr/bin/python3 - "$results" <<'EOF'
import json, sys

def num(d, k):
    v = d.get(k)
    return v if isinstance(v, (int, float)) else None

def fmt(v, spec=".2f"):
    return format(v, spec) if v is not None else "n/a"

from statistics import median

def load(j):
    try:
        return json.loads(j)
    except ValueError:
        return {}

cases = {}
for line in open(sys.argv[1]):
    label, threads, prec, target, tj, oj, rss = line.rstrip("\n").split("\t")
    cases.setdefault((label, threads, prec, target), []).append((load(tj), load(oj), rss))

def med(xs):
    xs = [x for x in xs if x is not None]
    return median(xs) if xs else None

rows = []
for (label, threads, prec, target), runs in cases.items():
    tps = [num(t, "p50_ms") for t, _, _ in runs]
    ops = [num(o, "p50_ms") for _, o, _ in runs]
    ratio = med([a / b if a and b else None for a, b in zip(tps, ops)])
    t_rss = med([num(t, "peak_rss_mb") or (int(r) / 1024 if r.isdigit() and int(r) else None)
                 for t, _, r in runs])
    if "int8" in label:
        prec = "int8"
    rows.append([label, threads, prec, fmt(med(tps)), fmt(med(ops)), fmt(ratio), "<= " + target,
                 "yes" if ratio is not None and ratio <= float(target) else ("no" if ratio else "n/a"),
                 fmt(med([num(t, "load_ms") for t, _, _ in runs]), ".0f"),
                 fmt(med([num(o, "load_ms") for _, o, _ in runs]), ".0f"),
                 fmt(t_rss, ".0f"), fmt(med([num(o, "peak_rss_mb") for _, o, _ in runs]), ".0f"),
                 str(len(runs))])
head = ["model", "thr", "prec", "tandem p50 ms", "ORT p50 ms", "ratio", "target", "meets",
        "load ms tandem", "load ms ORT", "RSS MB tandem", "RSS MB ORT", "rounds"]
w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
for r in [head, ["-" * x for x in w]] + rows:
    print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
print("\nratio = median over rounds of (tandem p50 / ORT p50) at batch 1, same file, each round"
      " running both back to back; other columns are medians over rounds; ORT's RSS includes the"
      " Node.js runtime; n/a = tandem did not report it or failed.")
EOF
