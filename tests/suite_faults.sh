#!/usr/bin/env bash
# Redis and worker faults (issue #7 items 4, 5, 7, 8 and the restart policy),
# against a private redis-server, the real `tandem worker` supervisor, the
# real proxy and `tandem up`, with the int8 MobileNetV2 as the slow model:
#  - Redis blocked for 3 s twice (a busy Lua script) with REDIS_TIMEOUT_MS=300
#    while jobs run and arrive: every job ends done, no processing list keeps
#    anything (a lost BLMOVE/start reply used to strand jobs for good);
#  - a job that kills every worker that takes it (TANDEM_TEST_HOOK=kill:...)
#    is dead-lettered after MAX_WORKER_DEATHS with the reason; a job that
#    stalls its worker for 3.5 heartbeat TTLs is run once, not reaped;
#  - queue entries that are no job id (5000 bytes, odd characters) are
#    dead-lettered with a reason, logged and counted, not dropped or run;
#  - image:{id} gone once the job is done; queue:dead capped; `tandem up`
#    gives Redis a maxmemory with noeviction; the proxy answers 503 JSON with
#    the fast label when Redis is out of memory; workers caught at maxmemory
#    finish every job once memory is back;
#  - one worker SIGKILLed every 2 s for 20 s keeps >= 35 % of its
#    undisturbed jobs/s over 10 s (both figures printed; the target is 50 %,
#    the bound is generous for a noisy machine).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
CAT=$TEST_DATA/images/chelsea.png
require "$TANDEM" "$SLOW" "$FAST" "$CAT"

start_redis || { bad "redis-server starts"; finish; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT ASYNC_MODEL_PATH=$SLOW NUM_WORKERS=2 \
    HEARTBEAT_TTL=4 MAX_ATTEMPTS=3 LOG_LEVEL=info QUEUE_NAME=queue:jobs
unset LABELS_PATH TANDEM_TEST_HOOK IMAGE_KEEP_DONE DEAD_LETTER_MAX DEAD_LETTER_AGE \
    MAX_WORKER_DEATHS REDIS_MAXMEMORY

has_result() { [ "$(rcli EXISTS "result:$1")" = 1 ]; }
is_status() { [ "$(rcli HGET "job:$1" status)" = "$2" ]; }
count_results() { rcli --scan --pattern "result:$1*" | wc -l; }
all_results() { [ "$(count_results "$1")" -eq "$2" ]; }
processing_empty() {
    local k
    for k in $(rcli --scan --pattern 'processing:*'); do
        [ "$(rcli LLEN "$k")" = 0 ] || return 1
    done
}
workers_up() { [ "$(rcli --scan --pattern 'worker:*' | wc -l)" -ge "$1" ]; }
# stop_sup PID: SIGTERM, wait for the exit; the status is in $SUP_RC.
stop_sup() {
    kill -TERM "$1" 2>/dev/null
    wait_until 30 gone "$1"
    wait "$1" 2>/dev/null
    SUP_RC=$?
}
# stall SECONDS: Redis runs a busy script that long (DEBUG SLEEP is disabled
# in Debian's build); it ends by itself, below lua-time-limit (5 s).
stall() {
    rcli EVAL "local t = redis.call('TIME')
local s = tonumber(t[1]) + tonumber(t[2]) / 1e6
repeat t = redis.call('TIME') until tonumber(t[1]) + tonumber(t[2]) / 1e6 - s >= $1
return 1" 0 >/dev/null
}

# ---- Redis stalls: no job stranded (#7 item 4) ----------------------------
REDIS_TIMEOUT_MS=300 start_bg stall "$TANDEM" worker
SUP=$BG_PID
check "stalls: supervisor starts 2 workers" wait_until 30 workers_up 2
for round in a b; do
    enqueue_many 10 "$CAT" "st${round}x" # the workers are busy when Redis stops
    stall 3 &
    stall_pid=$!
    sleep 0.3
    enqueue_many 10 "$CAT" "st${round}y" & # blocked behind the script, served after it
    push_pid=$!
    wait "$stall_pid"
    wait "$push_pid"
    sleep 2
done
if wait_until 60 all_results st 40; then
    ok "stalls: all 40 jobs have a result after Redis was blocked 3 s twice"
else
    stuck=$(for k in $(rcli --scan --pattern 'processing:*'); do rcli LRANGE "$k" 0 -1; done | paste -sd' ')
    bad "stalls: all 40 jobs have a result after Redis was blocked 3 s twice" \
        "$(count_results st) results; held in processing lists: $stuck"
fi
ndone=$(for r in a b; do for p in x y; do for i in $(seq -f '%04g' 0 9); do
    rcli HGET "job:st$r$p$i" status; done; done; done | grep -cx done)
check "stalls: every job's status is done ($ndone/40)" test "$ndone" -eq 40
lists_empty() { [ "$(rcli LLEN queue:jobs)" = 0 ] && processing_empty; }
check "stalls: queue and processing lists are empty" lists_empty
check "stalls: the workers logged the outage" grep -q 'redis unavailable' "$TMP/stall.log"
stop_sup "$SUP"
check "stalls: supervisor exits 0 on SIGTERM" test "$SUP_RC" -eq 0

# ---- a job that kills its worker every time (#7 item 5) ---------------------
rcli DEL queue:dead >/dev/null
TANDEM_TEST_HOOK=kill:boom MAX_WORKER_DEATHS=3 start_bg boom "$TANDEM" worker
SUP=$BG_PID
check "deaths: supervisor starts 2 workers" wait_until 30 workers_up 2
enqueue_seed boom0001 "$CAT"
enqueue_many 20 "$CAT" calm
if wait_until 60 is_status boom0001 failed; then
    ok "deaths: the killer job ends failed"
    check "deaths: after exactly 3 worker deaths ($(rcli HGET job:boom0001 deaths))" \
        test "$(rcli HGET job:boom0001 deaths)" = 3
    err=$(rcli HGET job:boom0001 error)
    check "deaths: its error gives the reason ($err)" \
        bash -c "grep -q 'died 3 times' <<<'$err' && grep -q SIGKILL <<<'$err'"
    check "deaths: it is in queue:dead" bash -c "redis-cli -p $RPORT LRANGE queue:dead 0 -1 | grep -qx boom0001"
else
    bad "deaths: the killer job ends failed" "status $(rcli HGET job:boom0001 status), $(grep -c 'Processing job: boom0001' "$TMP/boom.log") runs"
fi
check "deaths: the other 20 jobs are done" wait_until 60 all_results calm 20
sleep 1
runs=$(grep -c 'Processing job: boom0001' "$TMP/boom.log")
check "deaths: it ran 3 times, not again ($runs)" test "$runs" -eq 3
check "deaths: the supervisor restarted each killed worker at once (no back-off)" \
    bash -c "! grep -q 'restarting the slot' '$TMP/boom.log'"
stop_sup "$SUP"

# ---- a slow job is not reaped while its worker lives -------------------------
TANDEM_TEST_HOOK=sleep:slow:7000 HEARTBEAT_TTL=2 start_bg slowjob "$TANDEM" worker
SUP=$BG_PID
check "slow job: supervisor starts 2 workers" wait_until 30 workers_up 2
enqueue_seed slow0001 "$CAT"
check "slow job: a job that stalls its worker 7 s (HEARTBEAT_TTL=2) is done" \
    wait_until 30 has_result slow0001
check "slow job: its worker really stalled 7 s, 3.5 times HEARTBEAT_TTL (test hook)" \
    grep -q 'test hook: job slow0001 stalls its worker for 7000 ms' "$TMP/slowjob.log"
runs=$(grep -c 'Processing job: slow0001' "$TMP/slowjob.log")
check "slow job: it ran once, on one worker ($runs runs)" test "$runs" -eq 1
check "slow job: one attempt, no death, nothing requeued" \
    bash -c "[ \"\$(redis-cli -p $RPORT HGET job:slow0001 attempts)\" = 1 ] &&
             [ -z \"\$(redis-cli -p $RPORT HGET job:slow0001 deaths)\" ] &&
             ! grep -q 'heartbeat expired' '$TMP/slowjob.log'"
stop_sup "$SUP"

# ---- queue entries that are no job id (#7 item 7, worker part) ---------------
rcli DEL queue:dead metrics:workers >/dev/null
start_bg badids "$TANDEM" worker
SUP=$BG_PID
check "bad ids: supervisor starts 2 workers" wait_until 30 workers_up 2
long=$(head -c 5000 /dev/zero | tr '\0' 'x')
rcli LPUSH queue:jobs "$long" >/dev/null
base64 -w0 "$CAT" | rcli -x SET image:UPPER-Case-id >/dev/null
rcli LPUSH queue:jobs "UPPER-Case-id" >/dev/null
rcli LPUSH queue:jobs "ab" >/dev/null
# Valid ids whose keys another producer made of another type.
rcli SET job:wrongtype0 "not a hash" >/dev/null
enqueue_seed wrongtype0 "$CAT"
rcli HSET image:hashimg0 a b >/dev/null
rcli LPUSH queue:jobs hashimg0 >/dev/null
enqueue_seed good0001 "$CAT"
check "bad ids: a good job behind them is done" wait_until 30 has_result good0001
invalid() { [ "$(rcli HGET metrics:workers invalid)" = 4 ]; }
check "bad ids: all 4 counted in metrics:workers invalid" wait_until 10 invalid
dead=$(rcli LRANGE queue:dead 0 -1)
check "bad ids: each is in queue:dead (the long one as its first 128 bytes)" \
    bash -c "grep -qx 'UPPER-Case-id' <<<'$dead' && grep -qx ab <<<'$dead' &&
             grep -qx '$(head -c 128 /dev/zero | tr '\0' x)' <<<'$dead'"
check "bad ids: the odd one was not run (no result) and says why" \
    bash -c "[ \"\$(redis-cli -p $RPORT EXISTS result:UPPER-Case-id)\" = 0 ] &&
             redis-cli -p $RPORT HGET job:UPPER-Case-id error | grep -q 'not a job id'"
check "bad ids: the worker logged them" \
    bash -c "[ \$(grep -c 'dead-lettered a queue entry that is not a job id' '$TMP/badids.log') -eq 3 ]"
check "bad ids: a job whose job:{id} is no hash is dead-lettered, not retried for ever" \
    bash -c "redis-cli -p $RPORT LRANGE queue:dead 0 -1 | grep -qx wrongtype0 &&
             grep -q 'job wrongtype0 moved to queue:dead: redis refused' '$TMP/badids.log'"
check "bad ids: a job whose image:{id} is no string fails after MAX_ATTEMPTS" \
    bash -c "for i in \$(seq 100); do
               [ \"\$(redis-cli -p $RPORT HGET job:hashimg0 status)\" = failed ] && break; sleep 0.1; done
             redis-cli -p $RPORT HGET job:hashimg0 error | grep -q 'cannot be read' &&
             [ \"\$(redis-cli -p $RPORT HGET job:hashimg0 attempts)\" = 3 ]"
check "bad ids: processing lists are empty" processing_empty

# ---- Redis memory (#7 item 8) -----------------------------------------------
check "memory: image:{id} is deleted once the job is done" \
    test "$(rcli EXISTS image:good0001)" = 0
stop_sup "$SUP"
IMAGE_KEEP_DONE=30 DEAD_LETTER_MAX=4 start_bg mem "$TANDEM" worker
SUP=$BG_PID
check "memory: supervisor starts 2 workers" wait_until 30 workers_up 2
enqueue_seed keep0001 "$CAT"
if wait_until 30 has_result keep0001; then
    ttl=$(rcli TTL image:keep0001)
    check "memory: IMAGE_KEEP_DONE=30 cuts image:{id}'s TTL to 30 s ($ttl)" \
        test "$ttl" -gt 0 -a "$ttl" -le 30
else
    bad "memory: keep0001 is done"
fi
rcli DEL queue:dead >/dev/null
for i in 1 2 3 4 5 6 7; do
    printf 'not an image' | base64 | rcli -x SET "image:poison$i" >/dev/null
    rcli LPUSH queue:jobs "poison$i" >/dev/null
done
all_failed() {
    local i
    for i in 1 2 3 4 5 6 7; do is_status "poison$i" failed || return 1; done
}
check "memory: 7 poison jobs fail" wait_until 60 all_failed
n=$(rcli LLEN queue:dead)
check "memory: DEAD_LETTER_MAX=4 bounds queue:dead ($n entries)" test "$n" -eq 4
ttl=$(rcli TTL queue:dead)
check "memory: queue:dead expires (TTL $ttl <= DEAD_LETTER_AGE 86400)" test "$ttl" -gt 0 -a "$ttl" -le 86400
stop_sup "$SUP"

# The proxy when Redis is out of memory: 503 JSON with the fast answer.
PORT=$(free_port)
PORT=$PORT SYNC_MODEL_PATH=$FAST SYNC_THREADS=1 start_bg proxy "$TANDEM" proxy
PROXY=$BG_PID
health() { curl -s -m 2 "http://127.0.0.1:$PORT/health" | grep -q health; }
if wait_until 30 health; then
    rcli CONFIG SET maxmemory-policy noeviction >/dev/null
    rcli CONFIG SET maxmemory 1 >/dev/null
    code=$(curl -s -m 20 -o "$TMP/oom.body" -w '%{http_code}' -H 'Content-Type: image/png' \
        --data-binary "@$CAT" "http://127.0.0.1:$PORT/predict")
    rcli CONFIG SET maxmemory 0 >/dev/null
    check "oom: POST /predict -> 503 ($code) JSON with the fast label and the reason" \
        /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[2]))
ok = sys.argv[1] == "503" and d.get("result_sync") and "out of memory" in d.get("error", "")
sys.exit(0 if ok else 1)' "$code" "$TMP/oom.body"
    code=$(curl -s -m 20 -o "$TMP/oom2.body" -w '%{http_code}' -H 'Content-Type: image/png' \
        --data-binary "@$CAT" "http://127.0.0.1:$PORT/predict")
    check "oom: with memory again, POST /predict -> 200 ($code)" test "$code" = 200
else
    bad "oom: proxy answers /health" "$(tail -5 "$TMP/proxy.log")"
fi
kill -TERM "$PROXY"
wait_until 20 gone "$PROXY"

# Workers at maxmemory: jobs in hand complete, the rest wait; none is lost.
start_bg oomw "$TANDEM" worker
SUP=$BG_PID
check "oom: supervisor starts 2 workers" wait_until 30 workers_up 2
enqueue_many 30 "$CAT" oomj
sleep 0.2
rcli CONFIG SET maxmemory 1 >/dev/null
sleep 2
rcli CONFIG SET maxmemory 0 >/dev/null
check "oom: 30 jobs caught by 2 s at maxmemory all end done" wait_until 60 all_results oomj 30
check "oom: the workers logged it" grep -q 'redis out of memory' "$TMP/oomw.log"
check "oom: queue and processing lists are empty" lists_empty
stop_sup "$SUP"

# `tandem up` starts Redis with a maxmemory and noeviction.
UPORT=$(free_port)
start_bg up env -u REDIS_HOST -u REDIS_PORT PORT="$UPORT" SYNC_MODEL_PATH="$FAST" \
    REDIS_MAXMEMORY=64M "$TANDEM" up
UP=$BG_PID
uhealth() { curl -s -m 2 "http://127.0.0.1:$UPORT/health" | grep -q health; }
if wait_until 60 uhealth; then
    uport=$(grep -o 'redis-server (pid [0-9]*) on 127.0.0.1:[0-9]*' "$TMP/up.log" | head -1 | sed 's/.*://')
    mm=$(redis-cli -p "$uport" CONFIG GET maxmemory | tail -1)
    pol=$(redis-cli -p "$uport" CONFIG GET maxmemory-policy | tail -1)
    check "up: Redis has maxmemory REDIS_MAXMEMORY=64M ($mm) and policy noeviction ($pol)" \
        test "$mm" = 67108864 -a "$pol" = noeviction
else
    bad "up: answers /health" "$(tail -5 "$TMP/up.log")"
fi
kill -TERM "$UP"
wait_until 40 gone "$UP"

# ---- restart policy: throughput with a worker SIGKILLed every 2 s ------------
NUM_WORKERS=1 start_bg tput "$TANDEM" worker
SUP=$BG_PID
check "restart: supervisor starts 1 worker" wait_until 30 workers_up 1
# rate PHASE SECONDS KILL: jobs/s over SECONDS (metrics:workers processed),
# the queue kept fed; with KILL=1 the worker is SIGKILLed every 2 s. Sets
# RATE, KILLS and FED (jobs enqueued, all named PHASE*).
IMG=$TEST_DATA/images/rocket.jpg
rate() {
    local phase=$1 secs=$2 kill=$3 p0 p1 t0 t1 now last batch=0 victim
    KILLS=0 FED=0
    p0=$(rcli HGET metrics:workers processed)
    t0=$(date +%s%N)
    last=$t0
    while now=$(date +%s%N) && [ $((now - t0)) -lt $((secs * 1000000000)) ]; do
        if [ "$(rcli LLEN queue:jobs)" -lt 100 ]; then
            enqueue_many 100 "$IMG" "$phase$(printf %03d $batch)x"
            batch=$((batch + 1)) FED=$((FED + 100))
        fi
        if [ "$kill" = 1 ] && [ $((now - last)) -ge 2000000000 ]; then
            victim=$(pgrep -P "$SUP" | head -1)
            [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null && KILLS=$((KILLS + 1))
            last=$now
        fi
        sleep 0.1
    done
    t1=$(date +%s%N)
    p1=$(rcli HGET metrics:workers processed)
    RATE=$(/usr/bin/python3 -c "print('%.1f' % (($p1 - ${p0:-0}) / (($t1 - $t0) / 1e9)))")
}
rate calm 10 0
calm=$RATE
rate hurt 20 1
hurt=$RATE hurt_fed=$FED
pct=$(/usr/bin/python3 -c "print(int(100 * $hurt / $calm))")
echo "# restart: 1 worker, undisturbed: $calm jobs/s; SIGKILLed every 2 s ($KILLS kills in 20 s): $hurt jobs/s = $pct % (target >= 50 %)"
check "restart: throughput under a SIGKILL every 2 s is >= 35 % of undisturbed ($pct %)" \
    test "$pct" -ge 35
wait_until 120 all_results hurt "$hurt_fed"
n=$(count_results hurt)
check "restart: every job fed during the kills is done ($n/$hurt_fed)" test "$n" -eq "$hurt_fed"
check "restart: killed workers were restarted at once" \
    bash -c "! grep -q 'restarting the slot' '$TMP/tput.log'"
stop_sup "$SUP"

check "no sanitizer report in any log" \
    bash -c "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$TMP'/*.log"

finish
