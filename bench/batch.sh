#!/usr/bin/env bash
# Micro-batching in workers (issue #10 item 4; figures, no pass/fail): the
# real `tandem worker` supervisor on a private redis-server, for the f32
# ResNet50 of build/test-models and the int8 MobileNetV2 of
# $TEST_DATA/models/st-int8, at BATCH_MAX 1, 2, 4 and 8:
#   - jobs/s: NUM_WORKERS workers (default 2) drain a backlog of JOBS jobs
#     (written the seed's way in one pipeline once the workers are up);
#   - the latency cost: a burst of BURST jobs (default the largest batch)
#     pushed at once (one LPUSH) onto one idle, warmed-up worker; the time
#     from that push to the result of the first and of the last job of the
#     burst (at BATCH_MAX=1 one job after the other, at 8 all in one batch);
#   - the worker's peak RSS (each batch size plans its own sessions).
# Each gain is against BATCH_MAX=1 in the same run; BATCH_MAX should be the
# default only where it wins >= 10 %. Each figure is the best of ROUNDS
# (default 2) rounds, run in turn. The machine is shared: run it on a quiet
# one for figures you want to keep.
# Environment: BUILD, TANDEM, TEST_DATA, JOBS_F32 (default 48), JOBS_INT8
# (default 192), NUM_WORKERS, BATCHES (default "1 2 4 8"), BURST, ROUNDS,
# BENCH_TABLE.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
NUM_WORKERS=${NUM_WORKERS:-2}
BATCHES=${BATCHES:-1 2 4 8}
F32=$BUILD/test-models/resnet50_op13.onnx
INT8=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
IMG=$TEST_DATA/images/chelsea.png

for f in "$TANDEM" "$F32" "$INT8" "$IMG"; do
    if [ ! -e "$f" ]; then
        echo "bench/batch.sh: missing $f (run 'make all test-models')" >&2
        exit 1
    fi
done
start_redis || { echo "bench/batch.sh: redis-server did not start" >&2; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT LOG_LEVEL=warn QUEUE_NAME=queue:jobs
unset LABELS_PATH TANDEM_TEST_HOOK

# push N PREFIX: N jobs' images, then all ids in one LPUSH (queue order =
# id order); prints the time of the push, ms since the epoch.
push() {
    /usr/bin/python3 - "$1" "$2" "$IMG" "$RPORT" <<'PY'
import base64, socket, sys, time
n, prefix, path, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
b64 = base64.b64encode(open(path, "rb").read())
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
ids = ["%s%04d" % (prefix, i) for i in range(n)]
s.sendall(b"".join(cmd("SET", "image:" + i, b64, "EX", 3600) for i in ids))
for _ in ids:
    f.readline()
t = time.time() * 1000
s.sendall(cmd("LPUSH", "queue:jobs", *ids))
f.readline()
print("%.0f" % t)
PY
}
done_count() { rcli --scan --pattern "result:$1*" | wc -l; }
all_done() { [ "$(done_count "$1")" -ge "$2" ]; }
workers_up() { [ "$(rcli --scan --pattern 'worker:*' | wc -l)" -ge "$1" ]; }
stop_sup() {
    kill -TERM "$1" 2>/dev/null
    wait_until 30 gone "$1"
    wait "$1" 2>/dev/null
}
# peak RSS (MB) of the children of supervisor $1, the largest
peak_rss() {
    local p m=0 v
    for p in $(pgrep -P "$1"); do
        v=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null)
        [ -n "$v" ] && [ "$v" -gt "$m" ] && m=$v
    done
    echo $((m / 1024))
}

# run MODEL NAME JOBS BATCH: prints "jobs_per_s first_ms last_ms rss_mb"
# (the burst's first and last job).
run() {
    local model=$1 name=$2 jobs=$3 b=$4 sup t0 t1 rate first last rss
    rcli FLUSHALL >/dev/null
    ASYNC_MODEL_PATH=$model NUM_WORKERS=$NUM_WORKERS BATCH_MAX=$b start_bg "$name-$b" "$TANDEM" worker
    sup=$BG_PID
    if ! wait_until 60 workers_up "$NUM_WORKERS"; then
        echo "bench/batch.sh: workers did not start: $(tail -3 "$TMP/$name-$b.log")" >&2
        stop_sup "$sup"
        return 1
    fi
    t0=$(push "$jobs" "tp")
    wait_until $((jobs * 5)) all_done tp "$jobs"
    # the last result's time, from the job records (not the polling)
    t1=$(rcli EVAL "local m = 0
        for _, k in ipairs(redis.call('KEYS', 'job:tp*')) do
          m = math.max(m, tonumber(redis.call('HGET', k, 'finished')) or 0)
        end
        return m" 0)
    rate=$(/usr/bin/python3 -c "print('%.1f' % ($(done_count tp) / (($t1 - $t0) / 1000)))")
    rss=$(peak_rss "$sup")
    stop_sup "$sup"
    # The burst: one worker, idle, then BURST jobs at once.
    rcli FLUSHALL >/dev/null
    ASYNC_MODEL_PATH=$model NUM_WORKERS=1 BATCH_MAX=$b start_bg "$name-$b-burst" "$TANDEM" worker
    sup=$BG_PID
    wait_until 60 workers_up 1
    # a first burst warms the sessions up (a session's first run is slower)
    push "$BURST" "wu" >/dev/null
    wait_until 60 all_done wu "$BURST"
    sleep 0.5
    t0=$(push "$BURST" "bu")
    wait_until 60 all_done bu "$BURST"
    first=$(($(rcli HGET job:bu0000 finished) - t0))
    last=$(($(rcli HGET "job:bu$(printf %04d $((BURST - 1)))" finished) - t0))
    stop_sup "$sup"
    echo "$rate $first $last $rss"
}

BURST=${BURST:-$(tr ' ' '\n' <<<"$BATCHES" | sort -n | tail -1)}
ROUNDS=${ROUNDS:-2}
declare -A R
for spec in "f32 ResNet50:$F32:${JOBS_F32:-48}" "int8 MobileNetV2:$INT8:${JOBS_INT8:-192}"; do
    name=${spec%%:*}
    rest=${spec#*:}
    model=${rest%%:*}
    jobs=${rest##*:}
    echo "== micro-batching: $name ($(basename "$model")), $jobs jobs of $(basename "$IMG"), $NUM_WORKERS workers; best of $ROUNDS rounds"
    # Rounds in turn, so that a change in the machine's load hits every batch size.
    for r in $(seq "$ROUNDS"); do
        for b in $BATCHES; do
            R[$name,$b,$r]=$(run "$model" "${name// /_}" "$jobs" "$b") || exit 1
        done
    done
    for b in $BATCHES; do
        R[$name,$b]=$(for r in $(seq "$ROUNDS"); do echo "${R[$name,$b,$r]}"; done |
            awk 'NR == 1 {a = $1; f = $2; l = $3; m = $4}
                 {if ($1 > a) a = $1; if ($2 < f) f = $2; if ($3 < l) l = $3; if ($4 > m) m = $4}
                 END {print a, f, l, m}')
    done
    read -r base _ <<<"${R[$name,1]}"
    best=1 bestrate=$base
    for b in $BATCHES; do
        read -r rate first last rss <<<"${R[$name,$b]}"
        rounds=$(for r in $(seq "$ROUNDS"); do read -r x _ <<<"${R[$name,$b,$r]}"; echo "$x"; done | paste -sd/)
        gain=$(/usr/bin/python3 -c "print('%+.0f' % (100 * ($rate / $base - 1)))")
        printf 'BATCH_MAX=%-2s %6.1f jobs/s (%s) = %4s %% vs 1; burst of %s: first result %5s ms, last %5s ms; worker peak RSS %4s MB\n' \
            "$b" "$rate" "$rounds" "$gain" "$BURST" "$first" "$last" "$rss"
        if /usr/bin/python3 -c "import sys; sys.exit(not $rate > $bestrate)"; then
            best=$b bestrate=$rate
        fi
    done
    gain=$(/usr/bin/python3 -c "print('%+.0f' % (100 * ($bestrate / $base - 1)))")
    verdict=$(/usr/bin/python3 -c "print('yes' if $bestrate >= 1.1 * $base else 'no')")
    echo "best: BATCH_MAX=$best, $gain % jobs/s against 1; wins >= 10 %: $verdict"
    if [ -n "${BENCH_TABLE:-}" ]; then
        printf '4. batching gain, %s (best of BATCH_MAX %s)\t%s %% at BATCH_MAX=%s\tdefault > 1 only if >= +10 %%\t%s\n' \
            "$name" "$BATCHES" "$gain" "$best" "" >>"$BENCH_TABLE"
    fi
done
