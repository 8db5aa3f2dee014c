#!/usr/bin/env bash
# Micro-batching in workers (BATCH_MAX, issue #10 item 4), for real: a private
# redis-server, the real `tandem worker` supervisor and the real int8
# MobileNetV2 of $TEST_DATA/models/st-int8 (dynamic batch axis). Jobs are
# written the seed's way (image:{id} + LPUSH) before the workers start, so a
# backlog waits. Covers: BATCH_MAX bounds; a backlog of seven different images
# at BATCH_MAX=4 ends with the labels BATCH_MAX=1 gives, in batches that
# really happened (the worker's batch log line), each job ending on its own
# (status record, agreement with a fast answer, webhook scheduled, metrics,
# one log line, stored once); a model whose input fixes its batch runs one job
# at a time and says so; a worker SIGKILLed in the middle of a batch loses no
# job of it and stores none twice, and the jobs of that batch then run alone;
# bench/batch.sh runs (tiny, figures unchecked).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
FIXED=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
IMAGES=(chelsea.png dog.jpg eagle.jpg giraffe.jpg rocket.jpg coffee.png astronaut.png)
require "$TANDEM" "$SLOW" "$FIXED"

start_redis || { bad "redis-server starts"; finish; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT ASYNC_MODEL_PATH=$SLOW NUM_WORKERS=1 \
    HEARTBEAT_TTL=4 MAX_ATTEMPTS=3 LOG_LEVEL=info QUEUE_NAME=queue:jobs
unset LABELS_PATH TANDEM_TEST_HOOK

workers_up() { [ "$(rcli --scan --pattern 'worker:*' | wc -l)" -ge 1 ]; }
count_results() { rcli --scan --pattern "result:$1*" | wc -l; }
all_results() { [ "$(count_results "$1")" -eq "$2" ]; }
processing_empty() {
    local k
    for k in $(rcli --scan --pattern 'processing:*'); do
        [ "$(rcli LLEN "$k")" = 0 ] || return 1
    done
}
stop_sup() {
    kill -TERM "$1" 2>/dev/null
    wait_until 30 gone "$1"
    wait "$1" 2>/dev/null
}
# enqueue PREFIX COPIES: COPIES jobs of each image, PREFIX<image index><copy>,
# in queue order (the first one is taken first).
enqueue() {
    local c i
    for c in $(seq 0 $(($2 - 1))); do
        for i in "${!IMAGES[@]}"; do enqueue_seed "$1$i$c" "$TEST_DATA/images/${IMAGES[$i]}"; done
    done
}
# runs ID LOG: the "Async prediction" lines of job ID in LOG.
runs() { grep -c "Async prediction: .*(job $1," "$2"; }

# ---- configuration ------------------------------------------------------
check "worker --help documents BATCH_MAX" bash -c "'$TANDEM' worker --help 2>&1 | grep -q BATCH_MAX"
for v in 0 33 x; do
    BATCH_MAX=$v "$TANDEM" worker --check-config >"$TMP/cc.log" 2>&1
    rc=$?
    check "BATCH_MAX=$v refused with exit 2 and a message" \
        bash -c "[ $rc -eq 2 ] && grep -q BATCH_MAX '$TMP/cc.log'"
done

# ---- reference labels, one job at a time ----------------------------------
enqueue ref 1
BATCH_MAX=1 start_bg ref "$TANDEM" worker
SUP=$BG_PID
check "BATCH_MAX=1: the reference jobs are done" wait_until 60 all_results ref 7
stop_sup "$SUP"
declare -A REF
for i in "${!IMAGES[@]}"; do REF[$i]=$(rcli HGET "job:ref${i}0" top5); done
check "BATCH_MAX=1 runs no batch" bash -c "! grep -q 'batch of' '$TMP/ref.log'"

# ---- a backlog at BATCH_MAX=4 ---------------------------------------------
# 21 jobs, three of each image; two carry a fast answer (one the slow model
# confirms, one it upgrades) and one a callback_url, as the proxy writes them.
enqueue bat 3
rcli HSET job:bat00 status queued sync_label "$(rcli HGET job:ref00 label)" >/dev/null
rcli HSET job:bat10 status queued sync_label "not the label" >/dev/null
rcli HSET job:bat20 status queued callback_url http://127.0.0.1:9/hook >/dev/null
BATCH_MAX=4 start_bg bat "$TANDEM" worker
SUP=$BG_PID
check "BATCH_MAX=4: the worker plans batches" wait_until 30 grep -q 'batches of up to 4 jobs' "$TMP/bat.log"
check "BATCH_MAX=4: all 21 jobs are done" wait_until 60 all_results bat 21
stop_sup "$SUP"
wrong=""
for c in 0 1 2; do
    for i in "${!IMAGES[@]}"; do
        id=bat$i$c
        [ "$(rcli HGET "job:$id" status)" = done ] || wrong+=" $id:status=$(rcli HGET "job:$id" status)"
        [ "$(rcli HGET "job:$id" top5)" = "${REF[$i]}" ] || wrong+=" $id:top5"
        [ "$(rcli HGET "job:$id" attempts)" = 1 ] || wrong+=" $id:attempts"
        [ "$(rcli HGET "job:$id" label)" = "$(rcli GET "result:$id")" ] || wrong+=" $id:result"
        [ "$(runs "$id" "$TMP/bat.log")" = 1 ] || wrong+=" $id:runs=$(runs "$id" "$TMP/bat.log")"
    done
done
check "BATCH_MAX=4: each job is done once, with the top 5 of BATCH_MAX=1 for its image" test -z "$wrong"
[ -n "$wrong" ] && echo "#$wrong"
batched=$(grep -o 'batch of [0-9]* jobs' "$TMP/bat.log" | awk '{s += $3} END {print s + 0}')
fours=$(grep -c 'batch of 4 jobs' "$TMP/bat.log")
check "BATCH_MAX=4: batches happened ($fours of 4; $batched of 21 jobs ran in a batch)" \
    test "$fours" -ge 4
grep -m2 'batch of' "$TMP/bat.log" | sed 's/^/# /'
check "BATCH_MAX=4: metrics count 21 more jobs processed, none twice" \
    test "$(rcli HGET metrics:workers processed)" = 28
check "BATCH_MAX=4: a fast answer the slow one confirms: agrees_with_fast 1" \
    test "$(rcli HGET job:bat00 agrees_with_fast)" = 1
check "BATCH_MAX=4: a fast answer the slow one upgrades: agrees_with_fast 0" \
    test "$(rcli HGET job:bat10 agrees_with_fast)" = 0
check "BATCH_MAX=4: metrics count one agreement and one upgrade" \
    test "$(rcli HMGET metrics:workers agree upgrade | paste -sd,)" = "1,1"
check "BATCH_MAX=4: the job with a callback_url has its webhook scheduled" \
    bash -c "[ \"\$(redis-cli -p $RPORT HGET job:bat20 webhook)\" = pending ] &&
             [ -n \"\$(redis-cli -p $RPORT ZSCORE webhooks:due bat20)\" ]"
check "BATCH_MAX=4: queue and processing lists are empty" \
    bash -c "[ \"\$(redis-cli -p $RPORT LLEN queue:jobs)\" = 0 ]" && processing_empty

# ---- a model whose input fixes its batch ----------------------------------
enqueue fix 1
ASYNC_MODEL_PATH=$FIXED BATCH_MAX=4 start_bg fix "$TANDEM" worker
SUP=$BG_PID
check "fixed batch: all 7 jobs are done" wait_until 60 all_results fix 7
stop_sup "$SUP"
check "fixed batch: the worker says the model fixes its batch to 1" \
    grep -q 'BATCH_MAX=4: .*fixes the batch to 1, so jobs run one at a time' "$TMP/fix.log"
check "fixed batch: no batch ran" bash -c "! grep -q 'batch of' '$TMP/fix.log'"

# ---- SIGKILL in the middle of a batch ---------------------------------------
# The second job of the first batch stalls its worker (test hook) after the
# batch is taken and started, before it runs: the worker is killed then.
enqueue kil 2
TANDEM_TEST_HOOK=sleep:kil10:3000 BATCH_MAX=4 start_bg kil "$TANDEM" worker
SUP=$BG_PID
check "kill: the batch is taken and stalls" \
    wait_until 30 grep -q 'test hook: job kil10 stalls' "$TMP/kil.log"
held=$(rcli --scan --pattern 'processing:*' | head -1)
held=$(rcli LRANGE "$held" 0 -1 | sort | paste -sd' ')
running=0
for id in $held; do [ "$(rcli HGET "job:$id" status)" = running ] && running=$((running + 1)); done
check "kill: the worker holds 4 jobs, each marked running ($held)" \
    test "$(wc -w <<<"$held")" = 4 -a "$running" = 4
victim=$(pgrep -P "$SUP" | head -1)
kill -KILL "$victim"
check "kill: all 14 jobs are done" wait_until 60 all_results kil 14
stop_sup "$SUP"
wrong=""
for id in $held; do
    [ "$(rcli HGET "job:$id" deaths)" = 1 ] || wrong+=" $id:deaths=$(rcli HGET "job:$id" deaths)"
    grep 'batch of' "$TMP/kil.log" | grep -q "$id" && wrong+=" $id:batched"
done
check "kill: each job of the killed batch counts one death and then ran alone" test -z "$wrong"
[ -n "$wrong" ] && echo "#$wrong"
wrong=""
for c in 0 1; do
    for i in "${!IMAGES[@]}"; do
        id=kil$i$c
        [ "$(rcli HGET "job:$id" status)" = done ] || wrong+=" $id:status"
        [ "$(rcli HGET "job:$id" top5)" = "${REF[$i]}" ] || wrong+=" $id:top5"
        [ "$(runs "$id" "$TMP/kil.log")" = 1 ] || wrong+=" $id:runs=$(runs "$id" "$TMP/kil.log")"
    done
done
check "kill: every job is done once with its image's top 5; none lost, none stored twice" test -z "$wrong"
[ -n "$wrong" ] && echo "#$wrong"
check "kill: metrics count 7 + 21 + 7 + 14 jobs processed" \
    test "$(rcli HGET metrics:workers processed)" = 49
check "kill: nothing dead-lettered; queue and processing lists empty" \
    bash -c "[ \"\$(redis-cli -p $RPORT LLEN queue:dead)\" = 0 ] &&
             [ \"\$(redis-cli -p $RPORT LLEN queue:jobs)\" = 0 ]" && processing_empty
check "kill: the jobs after the killed batch still ran in a batch" grep -q 'batch of' "$TMP/kil.log"

# ---- bench/batch.sh runs (its figures are not checked) ----------------------
if [ -f "$BUILD/test-models/resnet50_op13.onnx" ]; then
    JOBS_F32=4 JOBS_INT8=8 BATCHES="1 2" ROUNDS=1 bench/batch.sh >"$TMP/bench.txt" 2>&1
    rc=$?
    check "bench/batch.sh prints jobs/s, latency and RSS per BATCH_MAX for both models" \
        bash -c "[ $rc -eq 0 ] && [ \"\$(grep -c '^BATCH_MAX=[12] .* jobs/s .* first result .* last .* RSS' '$TMP/bench.txt')\" = 4 ] &&
                 [ \"\$(grep -c '^best: BATCH_MAX=' '$TMP/bench.txt')\" = 2 ]"
else
    echo "# bench/batch.sh not run: $BUILD/test-models missing (make test-models)"
fi

check "no sanitizer report in any log" \
    bash -c "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$TMP'/*.log"

finish
