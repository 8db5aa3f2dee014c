#!/usr/bin/env bash
# tandem against the seed's own stack (figures, no pass/fail).
#
# The peer (bench/seed/) is the seed's design built as its text says: FastAPI
# + uvicorn, redis-py, a ProcessPoolExecutor of 2 workers, with ONNX Runtime
# 1.30 (onnxruntime-node's C library, through bench/seed/ort.py) doing the
# inference. Both stacks get the same models ($BUILD/test-models MobileNetV2
# sync, ResNet50 async), the same image (dog.jpg as JSON base64), the same
# thread settings (one compute thread per inference, ENGINE_THREADS=1 as
# tandem's default and intra_op_num_threads=1 for ORT, in the proxy and in
# each of the 2 worker processes; the proxies run requests concurrently:
# tandem on SYNC_THREADS=$(nproc) inference threads, the seed in FastAPI's
# thread pool, which ORT's Run does not block) and the same load, one
# stack after the other on one private redis-server:
#   1. POST /predict at a fixed 10 req/s for DURATION s ($BUILD/pace):
#      p50 and p99, with the workers up (each request's job is processed);
#   2. max req/s: wrk -t2 -c4 for DURATION s, the JSON body;
#   3. jobs/s: JOBS jobs pushed at once the seed's way (SET image:{id} EX
#      3600 + LPUSH queue:jobs) to 2 idle, warm workers, until every
#      result:{id} exists (polled every 5 ms);
#   4. RSS: the sum of VmRSS over every process of the stack (proxy; worker
#      supervisor or pool parent and its 2 children), at idle before 1 and
#      the highest sample (every 0.5 s) during 1-3.
# Each figure is printed for both stacks with the ratio tandem / seed beside
# issue #10's target, and appended to $BENCH_TABLE (bench/run.sh prints one
# table of all; run alone, this script prints its own).
# Environment: BUILD, TANDEM, DURATION (default 20), JOBS (default 60),
# SYNC_MODEL, ASYNC_MODEL, IMAGE, BENCH_TABLE.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
PACE=${PACE:-$BUILD/pace}
DURATION=${DURATION:-20}
JOBS=${JOBS:-60}
MODELS=$BUILD/test-models
[ -d "$MODELS" ] || MODELS=build/test-models
SYNC_MODEL=${SYNC_MODEL:-$MODELS/mobilenetv2_op13.onnx}
ASYNC_MODEL=${ASYNC_MODEL:-$MODELS/resnet50_op13.onnx}
IMAGE=${IMAGE:-$TEST_DATA/images/dog.jpg}
PY=/usr/bin/python3
. bench/lib.sh
bench_require bench/seed.sh "$TANDEM" "$SYNC_MODEL" "$ASYNC_MODEL" "$IMAGE"

if ! $PY -c 'import fastapi, uvicorn, redis' 2>/dev/null; then
    echo "bench/seed.sh: python3-fastapi, python3-uvicorn or python3-redis missing (scripts/deps.sh --test); no seed peer figures" >&2
    exit 1
fi
CPUS=$(nproc)
# ratio_row FIGURE TANDEM SEED OP TARGET: prints the line and the table row;
# OP is <= (lower is better) or >= (higher is better).
ratio_row() {
    local r met
    r=$(calc "$2 / $3")
    met=$($PY -c "import math,sys; r,t=float(sys.argv[1]),float(sys.argv[3]); print('n/a' if math.isnan(r) else 'yes' if (r <= t if sys.argv[2] == '<=' else r >= t) else 'no')" "$r" "$4" "$5" 2>/dev/null || echo n/a)
    printf '%-34s tandem %9s | seed %9s | ratio %6s  target %s %sx  %s\n' "$1" "$2" "$3" "$r" "$4" "$5" "$met"
    fig "vs seed: $1" "$2 / $3 = ${r}x" "$4 ${5}x" "$met"
}

ISA=$("$TANDEM" bench --model "$SYNC_MODEL" --threads 1 --iterations 3 | num isa)
ORT_VERSION=$(cd bench/seed && $PY -c 'import ort; print(ort.get_version_string())') ||
    { echo "bench/seed.sh: ONNX Runtime's C library could not be loaded" >&2; exit 1; }
echo "== tandem vs the seed's stack (FastAPI + uvicorn + redis-py + ProcessPoolExecutor, ONNX Runtime $ORT_VERSION)"
echo "$CPUS CPUs, tandem isa $ISA; 1 compute thread per inference in both stacks (proxy and 2 workers)"
echo "models $(basename "$SYNC_MODEL") / $(basename "$ASYNC_MODEL"), $(basename "$IMAGE") as JSON base64, DURATION=$DURATION s, JOBS=$JOBS"

start_redis || { echo "redis-server did not start" >&2; exit 1; }
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT PORT SYNC_MODEL_PATH=$SYNC_MODEL \
    ASYNC_MODEL_PATH=$ASYNC_MODEL NUM_WORKERS=2 ENGINE_THREADS=1 SYNC_THREADS=$CPUS \
    MAX_QUEUE=0 LOG_LEVEL=warn JOB_TTL=3600
printf '{"image_data": "%s"}' "$(base64 -w0 "$IMAGE")" >"$TMP/body.json"
cat >"$TMP/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
post() { curl -s -m 30 -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/body.json" "$URL/predict"; }
# Total VmRSS (kB) of every process in the given sessions (start_bg: setsid).
rss_total() {
    local s p t=0 kb
    for s in "$@"; do
        for p in $(ps -o pid= -s "$s"); do
            kb=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
            t=$((t + ${kb:-0}))
        done
    done
    echo "$t"
}
queue_empty() { [ "$(rcli LLEN queue:jobs)" -eq 0 ]; }

# run_stack NAME: starts the stack, measures, stops it; sets P50_x P99_x
# RPS_x JPS_x RSSI_x RSSL_x for x = NAME.
run_stack() {
    local name=$1 proxy workers ready r n=$((DURATION * 10)) sampler
    rcli FLUSHALL >/dev/null
    if [ "$name" = tandem ]; then
        start_bg "$name-proxy" "$TANDEM" proxy
        proxy=$BG_PID
        start_bg "$name-worker" "$TANDEM" worker
        workers=$BG_PID
        ready() { [ "$(rcli SCARD workers)" -ge 2 ]; }
    else
        start_bg "$name-proxy" $PY bench/seed/proxy.py
        proxy=$BG_PID
        start_bg "$name-worker" $PY bench/seed/worker.py
        workers=$BG_PID
        ready() { grep -q '^ready' "$TMP/seed-worker.log"; }
    fi
    if ! wait_until 60 health || ! wait_until 60 ready; then
        echo "$name did not start:" >&2
        tail -n 5 "$TMP/$name-proxy.log" "$TMP/$name-worker.log" >&2
        return 1
    fi
    # Warm-up: the first requests and jobs touch every page of the sessions.
    for r in 1 2 3 4; do post >/dev/null; done
    wait_until 30 queue_empty
    sleep 2
    printf -v "RSSI_$name" %s "$(rss_total "$proxy" "$workers")"
    (while :; do rss_total "$proxy" "$workers"; sleep 0.5; done) >"$TMP/$name-rss.txt" 2>/dev/null &
    sampler=$!

    r=$("$PACE" "$URL/predict" "$TMP/body.json" application/json 10 "$n")
    printf -v "P50_$name" %s "$(num p50_ms <<<"$r")"
    printf -v "P99_$name" %s "$(num p99_ms <<<"$r")"
    echo "$name: 10 req/s for $DURATION s: p50 $(num p50_ms <<<"$r") ms, p99 $(num p99_ms <<<"$r") ms, errors $(num errors <<<"$r")"

    BODY_FILE=$TMP/body.json wrk -t2 -c4 -d"${DURATION}s" --latency -s "$TMP/post.lua" "$URL/predict" >"$TMP/$name-wrk.txt" 2>&1
    r=$(awk '/^Requests\/sec/ {print $2}' "$TMP/$name-wrk.txt")
    printf -v "RPS_$name" %s "${r:-nan}"
    echo "$name: wrk -c4 for $DURATION s: ${r:-nan} req/s, non-2xx $(awk '/Non-2xx/ {print $NF}' "$TMP/$name-wrk.txt" | grep . || echo 0)"

    # The backlog wrk left behind is not part of the drain.
    rcli DEL queue:jobs >/dev/null
    sleep 2
    r=$($PY - "$RPORT" "$JOBS" "$IMAGE" <<'PY'
import base64, sys, time
import redis
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = redis.Redis(host="127.0.0.1", port=port)
b64 = base64.b64encode(open(path, "rb").read())
ids = ["drain%04d" % i for i in range(n)]
t0 = time.monotonic()
p = r.pipeline(transaction=False)
for i in ids:
    p.set("image:" + i, b64, ex=3600)
    p.lpush("queue:jobs", i)
p.execute()
keys = ["result:" + i for i in ids]
while r.exists(*keys) < n:
    if time.monotonic() - t0 > 600:
        print("nan")
        sys.exit(0)
    time.sleep(0.005)
print("%.2f" % (n / (time.monotonic() - t0)))
PY
)
    printf -v "JPS_$name" %s "$r"
    echo "$name: $JOBS jobs drained by 2 workers: $r jobs/s"
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    printf -v "RSSL_$name" %s "$(sort -n "$TMP/$name-rss.txt" | tail -1)"
    kill -TERM -- "-$proxy" "-$workers" 2>/dev/null
    wait_until 10 gone "$proxy"
    wait_until 10 gone "$workers"
    kill -KILL -- "-$proxy" "-$workers" 2>/dev/null
    return 0
}

echo
run_stack tandem || exit 1
run_stack seed || exit 1
mb() { calc "$1 / 1024"; }
echo
echo "== tandem / seed (one run, same machine; figures are noisy on a shared one)"
ratio_row "POST /predict p50, 10 req/s (ms)" "$P50_tandem" "$P50_seed" "<=" 0.5
ratio_row "POST /predict p99, 10 req/s (ms)" "$P99_tandem" "$P99_seed" "<=" 0.3
ratio_row "max req/s, wrk -c4" "$RPS_tandem" "$RPS_seed" ">=" 3
ratio_row "jobs/s, 2 workers, $JOBS jobs" "$JPS_tandem" "$JPS_seed" ">=" 1.5
ratio_row "total RSS idle (MB)" "$(mb "$RSSI_tandem")" "$(mb "$RSSI_seed")" "<=" 0.5
ratio_row "total RSS under load (MB)" "$(mb "$RSSL_tandem")" "$(mb "$RSSL_seed")" "<=" 0.5
table_end
