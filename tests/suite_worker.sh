#!/usr/bin/env bash
# Worker pool fault tests: a private redis-server, the real `tandem worker`
# supervisor and the real int8 MobileNetV2 from $TEST_DATA/models/st-int8 as the
# slow model. Jobs are written the seed's way (image:{id} + LPUSH), so these
# checks need no proxy. Covers: a job end to end (keys, TTLs, status record,
# logs); 200 jobs while worker children are killed with SIGKILL again and
# again (none lost); a poison job (dead-lettered after MAX_ATTEMPTS, others
# unaffected); an expired image; the processing list of a vanished worker
# (heartbeat expired) requeued; Redis restarted under the workers; SIGTERM
# (finish or requeue, exit 0); bad configuration and models.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png
require "$TANDEM" "$SLOW" "$CAT"

start_redis || { bad "redis-server starts"; finish; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT ASYNC_MODEL_PATH=$SLOW NUM_WORKERS=2 \
    HEARTBEAT_TTL=4 MAX_ATTEMPTS=3 LOG_LEVEL=info QUEUE_NAME=queue:jobs
unset LABELS_PATH

# ---- configuration ------------------------------------------------------
out=$("$TANDEM" worker --help 2>&1)
check "worker --help documents NUM_WORKERS and HEARTBEAT_TTL" \
    grep -q HEARTBEAT_TTL <<<"$out"
NUM_WORKERS=0 "$TANDEM" worker --check-config >"$TMP/cc.log" 2>&1
rc=$?
check "NUM_WORKERS=0 refused with exit 2 and a message" \
    bash -c "[ $rc -eq 2 ] && grep -q NUM_WORKERS '$TMP/cc.log'"
ASYNC_MODEL_PATH=$TMP/missing.onnx timeout 10 "$TANDEM" worker >"$TMP/missing.log" 2>&1
rc=$?
check "a missing model is refused at start (exit 1, names the file)" \
    bash -c "[ $rc -eq 1 ] && grep -q missing.onnx '$TMP/missing.log'"
echo "not a model" >"$TMP/junk.onnx"
ASYNC_MODEL_PATH=$TMP/junk.onnx timeout 20 "$TANDEM" worker >"$TMP/junk.log" 2>&1
rc=$?
check "an unloadable model stops the supervisor (exit 1) instead of a restart loop" \
    bash -c "[ $rc -eq 1 ] && grep -q 'cannot load' '$TMP/junk.log'"

# ---- one job end to end -------------------------------------------------
start_bg sup "$TANDEM" worker
SUP=$BG_PID
workers_up() { [ "$(rcli SCARD workers)" -ge 2 ]; }
check "supervisor starts 2 workers with heartbeats" wait_until 30 workers_up
enqueue_seed one001 "$CAT"
has_result() { [ "$(rcli EXISTS "result:$1")" = 1 ]; }
if wait_until 30 has_result one001; then
    label=$(rcli GET result:one001)
    check "result:{id} is a cat label ($label)" grep -qiE 'cat|tabby|lynx' <<<"$label"
    ttl=$(rcli TTL result:one001)
    check "result:{id} has EX 3600 (TTL $ttl)" test "$ttl" -gt 3500 -a "$ttl" -le 3600
    check "status record done with top-5, model and time" \
        bash -c "[ \"\$(redis-cli -p $RPORT HGET job:one001 status)\" = done ] &&
                 redis-cli -p $RPORT HGET job:one001 top5 | grep -q score &&
                 [ -n \"\$(redis-cli -p $RPORT HGET job:one001 inference_ms)\" ]"
    check "logs 'Processing job: one001' and 'Async prediction:'" \
        bash -c "grep -q 'Processing job: one001' '$TMP/sup.log' && grep -q 'Async prediction: ' '$TMP/sup.log'"
    check "log lines carry level, role and pid" \
        grep -qE '^[0-9T:.-]+Z INFO worker\[[0-9]+\] Processing job' "$TMP/sup.log"
else
    bad "job one001 gets a result within 30 s" "$(tail -5 "$TMP/sup.log")"
fi
check "metrics:workers counts the job" test "$(rcli HGET metrics:workers processed)" -ge 1

# A job that already has a result is not redone.
rcli SET result:again1 "kept label" EX 3600 >/dev/null
enqueue_seed again1 "$CAT"
queue_empty() { [ "$(rcli LLEN queue:jobs)" = 0 ]; }
wait_until 10 queue_empty
sleep 0.5
check "a job with a result already is not redone" \
    test "$(rcli GET result:again1)" = "kept label"

# ---- poison and expired jobs ---------------------------------------------
printf 'this is not an image' | base64 | rcli -x SET image:poison1 >/dev/null
rcli LPUSH queue:jobs poison1 >/dev/null
enqueue_seed after01 "$CAT"
rcli LPUSH queue:jobs expired1 >/dev/null # no image:{id}: it "expired"
is_status() { [ "$(rcli HGET "job:$1" status)" = "$2" ]; }
check "a good job behind a poison job is done" wait_until 30 has_result after01
check "poison job ends failed" wait_until 30 is_status poison1 failed
check "poison job was tried MAX_ATTEMPTS=3 times" test "$(rcli HGET job:poison1 attempts)" = 3
check "poison job's error says why" bash -c "redis-cli -p $RPORT HGET job:poison1 error | grep -q 'bad image'"
check "poison job is in queue:dead" bash -c "redis-cli -p $RPORT LRANGE queue:dead 0 -1 | grep -qx poison1"
check "a job whose image is gone ends expired" wait_until 20 is_status expired1 expired
check "expired jobs are counted" test "$(rcli HGET metrics:workers expired)" -ge 1

# ---- a vanished worker's processing list --------------------------------
# ghost0000 is "held" by a worker on a host that is gone (no heartbeat key).
base64 -w0 "$CAT" | rcli -x SET image:ghost0000 >/dev/null
rcli LPUSH processing:deadhost-77-abcdef ghost0000 >/dev/null
rcli SADD workers deadhost-77-abcdef >/dev/null
check "a vanished worker's job is requeued and done (heartbeat expired)" \
    wait_until 30 has_result ghost0000
check "the vanished worker is forgotten" \
    bash -c "[ \"\$(redis-cli -p $RPORT SISMEMBER workers deadhost-77-abcdef)\" = 0 ] &&
             [ \"\$(redis-cli -p $RPORT LLEN processing:deadhost-77-abcdef)\" = 0 ]"

# ---- 200 jobs while workers are killed -----------------------------------
enqueue_many 200 "$CAT" kill
kills=0
end=$(($(date +%s) + 240))
while [ "$kills" -lt 12 ] && [ "$(date +%s)" -lt "$end" ]; do
    sleep 0.6
    victims=($(pgrep -P "$SUP"))
    [ "${#victims[@]}" -gt 0 ] || continue
    kill -KILL "${victims[RANDOM % ${#victims[@]}]}" 2>/dev/null && kills=$((kills + 1))
done
count_results() { rcli --scan --pattern 'result:kill*' | wc -l; }
all_done() { [ "$(count_results)" -eq 200 ]; }
wait_until 240 all_done
n=$(count_results)
check "200 jobs under $kills SIGKILLs: every one has a result ($n)" test "$n" -eq 200
cat_labels=$(for i in $(seq -f '%04g' 0 199); do rcli GET "result:kill$i"; done | grep -ciE 'cat|tabby|lynx')
check "every result is a cat label ($cat_labels/200)" test "$cat_labels" -eq 200
check "none dead-lettered" bash -c "! redis-cli -p $RPORT LRANGE queue:dead 0 -1 | grep -q '^kill'"
check "queue and processing lists are empty" \
    bash -c "[ \"\$(redis-cli -p $RPORT LLEN queue:jobs)\" = 0 ] &&
             for k in \$(redis-cli -p $RPORT --scan --pattern 'processing:*'); do
               [ \"\$(redis-cli -p $RPORT LLEN \$k)\" = 0 ] || exit 1; done"
check "supervisor logged the deaths (signal 9) and restarted" \
    bash -c "grep -q 'killed by signal 9 (SIGKILL)' '$TMP/sup.log' && [ \$(grep -c 'started worker' '$TMP/sup.log') -gt 2 ]"
check "supervisor survived" kill -0 "$SUP"

# ---- Redis restart under the workers --------------------------------------
# Both slots running again first (after the kills they may be in back-off).
two_alive() {
    [ "$(pgrep -P "$SUP" | wc -l)" -eq 2 ] && [ "$(rcli --scan --pattern 'worker:*' | wc -l)" -ge 2 ]
}
check "both workers are back after the kills (restart back-off)" wait_until 60 two_alive
stop_redis
sleep 2
start_redis "$RPORT" || bad "redis-server restarts on port $RPORT"
enqueue_seed back001 "$CAT"
check "after a Redis restart the workers reconnect by themselves" wait_until 30 has_result back001
if grep -q 'redis unavailable' "$TMP/sup.log" && grep -q 'redis is back' "$TMP/sup.log"; then
    ok "workers logged the outage and the recovery"
else
    bad "workers logged the outage and the recovery" "$(grep -iE 'redis|WARN' "$TMP/sup.log" | tail -8)"
fi
check "heartbeats are back after the restart" wait_until 10 workers_up

# ---- SIGTERM ------------------------------------------------------------
enqueue_many 30 "$CAT" term
sleep 0.3
kill -TERM "$SUP"
gone() { ! kill -0 "$SUP" 2>/dev/null; }
wait_until 30 gone
wait "$SUP"
rc=$?
check "SIGTERM: supervisor exits 0" test "$rc" -eq 0
done_n=$(rcli --scan --pattern 'result:term*' | wc -l)
queued_n=$(rcli LRANGE queue:jobs 0 -1 | grep -c '^term')
check "SIGTERM: every job is done or back in the queue ($done_n + $queued_n = 30)" \
    test $((done_n + queued_n)) -eq 30
check "SIGTERM: no job left in a processing list" \
    bash -c "for k in \$(redis-cli -p $RPORT --scan --pattern 'processing:*'); do
               [ \"\$(redis-cli -p $RPORT LLEN \$k)\" = 0 ] || exit 1; done"
check "SIGTERM: no heartbeat left" test -z "$(rcli --scan --pattern 'worker:*')"
check "SIGTERM: no worker process left" test -z "$(pgrep -P "$SUP" 2>/dev/null)"

check "no sanitizer report in any log" \
    bash -c "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$TMP'/*.log"

finish
