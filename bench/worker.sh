#!/usr/bin/env bash
# Worker pool throughput (figures, no pass/fail): the real `tandem worker`
# supervisor with NUM_WORKERS workers (default 2) and the real int8
# MobileNetV2 from $TEST_DATA/models/st-int8 as the slow model, on a private
# redis-server. JOBS jobs (default 100) are written the seed's way (image:{id}
# + LPUSH, no proxy) in one pipeline once the workers are up; the figures are
# the wall time to drain them, the mean take-to-done span from the job
# records, and how close the pool comes to what inference alone would allow
# (the inference times the jobs recorded). The machine is shared: run it on a
# quiet one for figures you want to keep.
# Environment: BUILD, TANDEM, TEST_DATA, JOBS, NUM_WORKERS.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
JOBS=${JOBS:-100}
NUM_WORKERS=${NUM_WORKERS:-2}
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png

for f in "$TANDEM" "$SLOW" "$CAT"; do
    if [ ! -e "$f" ]; then
        echo "bench/worker.sh: missing $f (run 'make')" >&2
        exit 1
    fi
done
start_redis || { echo "bench/worker.sh: redis-server did not start" >&2; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT ASYNC_MODEL_PATH=$SLOW NUM_WORKERS \
    LOG_LEVEL=warn QUEUE_NAME=queue:jobs
unset LABELS_PATH
start_bg sup "$TANDEM" worker
workers_up() { [ "$(rcli SCARD workers)" -ge "$NUM_WORKERS" ]; }
wait_until 60 workers_up || { echo "bench/worker.sh: workers did not start: $(tail -3 "$TMP/sup.log")" >&2; exit 1; }

echo "== worker pool: $JOBS jobs of $(basename "$CAT"), $NUM_WORKERS workers, $(basename "$SLOW")"
t0=$(date +%s%N)
enqueue_many "$JOBS" "$CAT" tput
drained() { [ "$(rcli --scan --pattern 'result:tput*' | wc -l)" -eq "$JOBS" ]; }
if ! wait_until $((JOBS * 5)) drained; then
    echo "bench/worker.sh: $JOBS jobs did not finish in $((JOBS * 5)) s" >&2
    exit 1
fi
t1=$(date +%s%N)
sum=$(rcli HGET metrics:workers inference_ms_sum)
cnt=$(rcli HGET metrics:workers inference_count)
for i in $(seq -f '%04g' 0 $((JOBS - 1))); do rcli HMGET "job:tput$i" started finished | paste -sd' '; done \
    >"$TMP/tput.txt"
/usr/bin/python3 - "$t0" "$t1" "$sum" "$cnt" "$JOBS" "$NUM_WORKERS" "$TMP/tput.txt" <<'PY'
import sys
t0, t1, s, c, jobs, workers = map(float, sys.argv[1:7])
spans = [int(b) - int(a) for a, b in (l.split() for l in open(sys.argv[7]) if len(l.split()) == 2)]
print("per job, take to done: mean %.1f ms (image read, decode, inference, result)"
      % (sum(spans) / max(1, len(spans))))
secs = (t1 - t0) / 1e9
ms = s / max(1, c)
ideal = workers * 1000 / ms
print("throughput: %d jobs in %.2f s = %.1f jobs/s with %d workers; mean inference %.1f ms, "
      "inference alone would allow %.1f jobs/s: %.0f %% of that (decode and Redis I/O are the rest)"
      % (jobs, secs, jobs / secs, workers, ms, ideal, 100 * (jobs / secs) / ideal))
PY
