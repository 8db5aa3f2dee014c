#!/usr/bin/env bash
# Service benchmark (figures, no pass/fail): the real `tandem proxy` and
# `tandem worker` on a private redis-server, with the seed's architectures
# (MobileNetV2 sync, ResNet50 async: $BUILD/test-models from `make
# test-models`; random weights, so labels mean nothing, timings are real).
#
# Each figure is printed beside the model's own compute time from `tandem
# bench` (1 engine thread, as the service runs it), so the overhead shows:
#   1. POST /predict raw dog.jpg, and base64 JSON, at a fixed 10 req/s
#      (bench/service_pace.py: an open-loop pacer, because Debian's wrk has
#      no fixed-rate mode): p50/p99 vs the sync model's p50 — target p50
#      within 1.2x + 4 ms. Workers are not running here, so the sync path
#      has the CPUs to itself; jobs just queue.
#   2. the same at the machine's limit: wrk, 2 threads, 4 connections:
#      req/s and p50/p99, vs what the CPUs allow (CPUs / sync p50).
#   3. jobs/s with 2 workers draining a backlog of JOBS jobs (first start to
#      last finish, from the job records) vs two async benches run side by
#      side just before (target >= 85 %), and vs the model time the jobs
#      themselves recorded, which is the service's own overhead.
#   4. async completion with an empty queue: POST then GET /job/{id}?wait=30,
#      one at a time: client time POST -> result, and the job record's
#      created -> finished, vs the async model's p50 (target 1.2x + 10 ms).
# The machine is shared: run it on a quiet one for figures you want to keep.
# Environment: BUILD, TANDEM, DURATION (s per fixed-rate run, default 20),
# JOBS (default 60), ASYNC_RUNS (default 10), SYNC_MODEL, ASYNC_MODEL, IMAGE.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TANDEM=${TANDEM:-$BUILD/tandem}
TEST_DATA=${TEST_DATA:-data}
DURATION=${DURATION:-20}
JOBS=${JOBS:-60}
ASYNC_RUNS=${ASYNC_RUNS:-10}
MODELS=$BUILD/test-models
[ -d "$MODELS" ] || MODELS=build/test-models
SYNC_MODEL=${SYNC_MODEL:-$MODELS/mobilenetv2_op13.onnx}
ASYNC_MODEL=${ASYNC_MODEL:-$MODELS/resnet50_op13.onnx}
IMAGE=${IMAGE:-$TEST_DATA/images/dog.jpg}
. tests/lib.sh

for f in "$TANDEM" "$SYNC_MODEL" "$ASYNC_MODEL" "$IMAGE"; do
    if [ ! -e "$f" ]; then
        echo "bench/service.sh: missing $f (run 'make' and 'make test-models')" >&2
        exit 1
    fi
done
command -v wrk >/dev/null || { echo "bench/service.sh: wrk not installed (make deps)" >&2; exit 1; }
CPUS=$(nproc)
num() { /usr/bin/python3 -c "import json,sys; v=json.load(sys.stdin).get('$1'); print('%.2f' % v if v is not None else 'nan')"; }
calc() { /usr/bin/python3 -c "print('%.2f' % ($1))" 2>/dev/null || echo nan; }

echo "== model compute (tandem bench, 1 thread, 30 runs)"
SYNC_MS=$("$TANDEM" bench --model "$SYNC_MODEL" --threads 1 --iterations 30 | num p50_ms)
ASYNC_MS=$("$TANDEM" bench --model "$ASYNC_MODEL" --threads 1 --iterations 20 | num p50_ms)
echo "sync  $(basename "$SYNC_MODEL"): p50 $SYNC_MS ms"
echo "async $(basename "$ASYNC_MODEL"): p50 $ASYNC_MS ms"

start_redis || { echo "redis-server did not start" >&2; exit 1; }
PORT=$(free_port)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT PORT SYNC_MODEL_PATH=$SYNC_MODEL \
    ASYNC_MODEL_PATH=$ASYNC_MODEL NUM_WORKERS=2 ENGINE_THREADS=1 SYNC_THREADS=$CPUS \
    MAX_QUEUE=0 LOG_LEVEL=warn JOB_TTL=3600
URL=http://127.0.0.1:$PORT
start_bg proxy "$TANDEM" proxy
health() { curl -s -m 2 "$URL/health" | grep -q health; }
wait_until 60 health || { echo "proxy did not start: $(tail -3 "$TMP/proxy.log")" >&2; exit 1; }
printf '{"image_data": "%s"}' "$(base64 -w0 "$IMAGE")" >"$TMP/body.json"
# Warm-up: first requests touch every page of the sessions.
for i in 1 2 3 4; do curl -s -o /dev/null -X POST -H 'Content-Type: image/jpeg' --data-binary @"$IMAGE" "$URL/predict"; done

n=$((DURATION * 10))
echo
echo "== 1. POST /predict at 10 req/s for ${DURATION} s ($n requests, $(stat -c %s "$IMAGE") B $(basename "$IMAGE"), no workers)"
for kind in raw json; do
    if [ $kind = raw ]; then
        r=$(bench/service_pace.py "$URL/predict" "$IMAGE" image/jpeg 10 "$n")
    else
        r=$(bench/service_pace.py "$URL/predict" "$TMP/body.json" application/json 10 "$n")
    fi
    p50=$(num p50_ms <<<"$r")
    p99=$(num p99_ms <<<"$r")
    echo "$kind: p50 $p50 ms, p99 $p99 ms, rate $(num rate <<<"$r")/s, errors $(num errors <<<"$r")" \
        "| sync compute $SYNC_MS ms | p50/compute $(calc "$p50 / $SYNC_MS")," \
        "target p50 <= $(calc "1.2 * $SYNC_MS + 4") ms"
done

cat >"$TMP/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("BODY_TYPE")
LUA
# wrk prints e.g. "50%   12.34ms"; units us/ms/s.
to_ms() { /usr/bin/python3 -c "
import re,sys
m=re.match(r'([0-9.]+)(us|ms|s|m)\$', sys.argv[1])
print('nan' if not m else '%.2f' % (float(m.group(1))*{'us':1e-3,'ms':1,'s':1e3,'m':6e4}[m.group(2)]))" "$1"; }
echo
echo "== 2. POST /predict at the limit (wrk -t2 -c4, ${DURATION} s; $CPUS CPUs, $CPUS inference threads)"
for kind in raw json; do
    if [ $kind = raw ]; then bf=$IMAGE bt=image/jpeg; else bf=$TMP/body.json bt=application/json; fi
    BODY_FILE=$bf BODY_TYPE=$bt wrk -t2 -c4 -d"${DURATION}s" --latency -s "$TMP/post.lua" "$URL/predict" >"$TMP/wrk.txt" 2>&1
    rps=$(awk '/^Requests\/sec/ {print $2}' "$TMP/wrk.txt")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$TMP/wrk.txt")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$TMP/wrk.txt")")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$TMP/wrk.txt")
    ideal=$(calc "$CPUS * 1000 / $SYNC_MS")
    echo "$kind: ${rps:-nan} req/s, p50 $p50 ms, p99 $p99 ms, non-2xx ${non2xx:-0}" \
        "| CPUs allow $ideal req/s | achieved $(calc "100 * ${rps:-0} / $ideal") %"
done

echo
echo "== 3. jobs/s with 2 workers ($JOBS jobs queued, then the workers start)"
# Keep exactly JOBS of the queued jobs; the images of the others just expire.
rcli LTRIM queue:jobs 0 $((JOBS - 1)) >/dev/null
queued=$(rcli LLEN queue:jobs)
ids=$(rcli LRANGE queue:jobs 0 -1)
# Two inferences at once run slower than one alone (the two CPUs share caches
# and memory bandwidth): two benches side by side, just before the workers
# start, measure what the CPUs allow them.
"$TANDEM" bench --model "$ASYNC_MODEL" --threads 1 --iterations 20 >"$TMP/pair1.json" &
other=$!
pair=$("$TANDEM" bench --model "$ASYNC_MODEL" --threads 1 --iterations 20 | num p50_ms)
wait "$other"
pair=$(calc "($pair + $(num p50_ms <"$TMP/pair1.json")) / 2")
before=$(rcli HGET metrics:workers processed)
before=${before:-0}
start_bg worker "$TANDEM" worker
t0=$(date +%s%N)
drained() { [ "$(rcli HGET metrics:workers processed)" -ge $((before + queued)) ] 2>/dev/null; }
up() { [ "$(rcli SCARD workers)" -ge 2 ]; }
wait_until 60 up
tstart=$(date +%s%N)
wait_until 600 drained
# The span from the first job's start to the last one's finish, read from
# the job records (ms), not from this script's 0.1 s polling.
read -r secs job_ms < <(for id in $ids; do echo "HMGET job:$id started finished inference_ms"; done |
    rcli | /usr/bin/python3 -c "
import statistics, sys
v = sys.stdin.read().split()
start, end, ms = [int(x) for x in v[0::3]], [int(x) for x in v[1::3]], [float(x) for x in v[2::3]]
print('%.3f %.2f' % ((max(end) - min(start)) / 1000.0, statistics.median(ms)))")
jps=$(calc "$queued / $secs")
ideal=$(calc "2 * 1000 / $pair")
echo "$queued jobs in $secs s, first start to last finish (after $(calc "($tstart - $t0) / 1e9") s of worker start-up): $jps jobs/s"
echo "  vs two side-by-side benches ($pair ms each, $ideal jobs/s): $(calc "100 * $jps / $ideal") %, target >= 85 %"
echo "  vs the jobs' own model time (median $job_ms ms, $(calc "2000 / $job_ms") jobs/s): $(calc "100 * $jps * $job_ms / 2000") %"

echo
echo "== 4. async completion, empty queue, one job at a time ($ASYNC_RUNS runs)"
client=() record=()
for i in $(seq "$ASYNC_RUNS"); do
    t0=$(date +%s%N)
    id=$(curl -s -X POST -H 'Content-Type: image/jpeg' --data-binary @"$IMAGE" "$URL/predict" |
        /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['job_id'])")
    curl -s -m 40 -o /dev/null "$URL/job/$id?wait=30"
    t1=$(date +%s%N)
    client+=("$(calc "($t1 - $t0) / 1e6")")
    record+=("$(calc "$(rcli HGET "job:$id" finished) - $(rcli HGET "job:$id" created)")")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
c50=$(med "${client[@]}")
r50=$(med "${record[@]}")
echo "client POST -> result (includes the sync answer): p50 $c50 ms | sync + async compute $(calc "$SYNC_MS + $ASYNC_MS") ms"
echo "job created -> result stored: p50 $r50 ms | async compute $ASYNC_MS ms | ratio $(calc "$r50 / $ASYNC_MS"), target <= $(calc "1.2 * $ASYNC_MS + 10") ms"
