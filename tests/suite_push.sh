#!/usr/bin/env bash
# Push suite: GET /job/{id}/events (Server-Sent Events) and POST /predict
# with Prefer: wait, against a private redis-server, the real `tandem proxy`
# and `tandem worker` with the int8 models of $TEST_DATA/models/st-int8. The
# worker is started and stopped by the suite, so that streams can be opened
# on jobs that are still queued. Prints latency figures: result stored ->
# final event received (p50 over 50 jobs), and Prefer: wait total latency.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png
SSE=tests/push/sse.py
JGET=tests/proxy/jget.py
require "$TANDEM" "$FAST" "$SLOW" "$CAT"

start_redis || { bad "redis-server starts"; finish; exit 1; }
PORT=$(free_port)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    PORT NUM_WORKERS=1 SYNC_THREADS=2 MAX_QUEUE=1000 LOG_LEVEL=info \
    SSE_MAX_STREAMS=60 SSE_HEARTBEAT_S=1 PREFER_WAIT_MAX_S=20
URL=http://127.0.0.1:$PORT

start_proxy() {
    start_bg proxy "$TANDEM" proxy
    PROXY=$BG_PID
    wait_until 30 health
}
WORKER=""
start_worker() {
    start_bg worker "$TANDEM" worker
    WORKER=$BG_PID
}
stop_worker() {
    [ -n "$WORKER" ] || return 0
    kill -TERM -- "-$WORKER" 2>/dev/null
    local i
    for i in $(seq 100); do kill -0 "$WORKER" 2>/dev/null || break; sleep 0.1; done
    WORKER=""
}
post() { # NAME [curl args]: POST chelsea.png; the answer in $TMP/NAME.body, headers in .hdr
    local name=$1
    shift
    curl -s -m 40 -o "$TMP/$name.body" -D "$TMP/$name.hdr" -w '%{http_code} %{time_total}' \
        -H 'Content-Type: image/png' --data-binary @"$CAT" "$@" "$URL/predict"
}
jget() { "$JGET" "$TMP/$1.body" "${@:2}"; }
# events NAME ID [LAST_EVENT_ID] [TIMEOUT]: the stream's lines in $TMP/NAME.ev (in the background).
events() {
    "$SSE" events "$URL/job/$2/events" "${3:-}" "${4:-30}" >"$TMP/$1.ev" 2>&1 &
    EV_PID=$!
}
ev_seq() { # the "id:event" sequence of a stream
    /usr/bin/python3 -c '
import json, sys
print(" ".join("%s:%s" % (e["id"], e["event"]) for e in map(json.loads, (l for l in open(sys.argv[1]) if l.startswith("{"))) if "event" in e))' "$TMP/$1.ev"
}

export -f ev_seq jget
export TMP JGET

if ! start_proxy; then
    bad "proxy answers /health within 30 s" "$(tail -5 "$TMP/proxy.log")"
    finish
    exit 1
fi

# ---- events while the job waits: queued, heartbeats, then running and done ------------
out=$(post q1)
ID=$(jget q1 job_id)
events s1 "$ID"
wait_until 10 grep -q '"event": "queued"' "$TMP/s1.ev"
check "a stream opened on a queued job starts with 200 text/event-stream and event queued (id 1)" \
    bash -c "head -1 '$TMP/s1.ev' | grep -q '\"status\": 200, \"type\": \"text/event-stream\"' &&
             [ \"\$(ev_seq s1)\" = '1:queued' ]"
check "the queued event carries the job object ({\"$ID\": {status queued, sync ...}})" \
    /usr/bin/python3 -c "
import json, sys
e = [json.loads(l) for l in open('$TMP/s1.ev') if '\"event\"' in l][0]
j = e['job']['$ID']
sys.exit(not (j['status'] == 'queued' and j['sync']['prediction']))"
wait_until 5 grep -q '"comment": "ping"' "$TMP/s1.ev"
check "an idle stream gets heartbeat comments (SSE_HEARTBEAT_S=1)" grep -q '"comment": "ping"' "$TMP/s1.ev"
check "GET /stats counts the open stream" bash -c "curl -s '$URL/stats' | grep -q '\"event_streams\":1'"

# The same job, Last-Event-ID 1: nothing until the job moves on.
events s1b "$ID" 1
sleep 0.5
check "Last-Event-ID: 1 on a queued job: no queued event again" bash -c "[ -z \"\$(ev_seq s1b)\" ]"

start_worker
wait_until 30 grep -q EOF "$TMP/s1.ev"
check "a worker finishes the job: queued, running, done (ids 1, 2, 3), then the stream ends" \
    bash -c "[ \"\$(ev_seq s1)\" = '1:queued 2:running 3:done' ] && grep -q '^EOF' '$TMP/s1.ev'"
check "the done event carries the result (prediction, top5, finished_ms)" \
    /usr/bin/python3 -c "
import json, sys
e = [json.loads(l) for l in open('$TMP/s1.ev') if '\"event\": \"done\"' in l][0]
j = e['job']['$ID']
sys.exit(not (j['status'] == 'done' and j['prediction'] and len(j['top5']) == 5 and j['finished_ms']))"
check "the running event shows the job as it ran (status running, no result)" \
    /usr/bin/python3 -c "
import json, sys
e = [json.loads(l) for l in open('$TMP/s1.ev') if '\"event\": \"running\"' in l][0]
j = e['job']['$ID']
sys.exit(not (j['status'] == 'running' and j['prediction'] == '' and 'top5' not in j and j['started_ms']))"
wait_until 10 grep -q EOF "$TMP/s1b.ev"
check "the reconnected stream (Last-Event-ID 1) gets running and done only" \
    bash -c "[ \"\$(ev_seq s1b)\" = '2:running 3:done' ]"

# ---- Last-Event-ID on a finished job -------------------------------------------------------
"$SSE" events "$URL/job/$ID/events" "" 10 >"$TMP/d0.ev"
check "a stream on a finished job: running and done at once, then the end" \
    bash -c "[ \"\$(ev_seq d0)\" = '2:running 3:done' ] && grep -q '^EOF' '$TMP/d0.ev'"
"$SSE" events "$URL/job/$ID/events" 2 10 >"$TMP/d2.ev"
check "Last-Event-ID: 2 -> only done" bash -c "[ \"\$(ev_seq d2)\" = '3:done' ]"
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Last-Event-ID: 3' "$URL/job/$ID/events")
check "Last-Event-ID: 3 (the client has the final event) -> 204, which stops an EventSource" \
    test "$code" = 204
code=$(curl -s -m 10 -o "$TMP/nf.body" -w '%{http_code}' "$URL/job/zzzzzz/events")
check "an unknown job -> 404 JSON" bash -c "[ $code = 404 ] && [ -n \"\$($JGET $TMP/nf.body error)\" ]"
code=$(curl -s -m 10 -o "$TMP/bi.body" -w '%{http_code}' "$URL/job/AB/events")
check "an id no job can have -> 404 JSON, as for an unknown one" bash -c "[ $code = 404 ] && [ -n \"\$($JGET $TMP/bi.body error)\" ]"

# ---- Prefer: wait ---------------------------------------------------------------------------
out=$(post n1)
check "without Prefer: the answer is unchanged (status queued, no async, no Preference-Applied)" \
    bash -c "[ '${out% *}' = 200 ] && [ \"\$(jget n1 status)\" = queued ] &&
             ! grep -q '\"async\"' '$TMP/n1.body' && ! grep -qi '^Preference-Applied' '$TMP/n1.hdr'"
out=$(post w1 -H 'Prefer: wait=10')
check "Prefer: wait=10 -> 200 with Preference-Applied: wait=10 ($(awk '{printf "%.0f ms", $2 * 1000}' <<<"$out"))" \
    bash -c "[ '${out% *}' = 200 ] && grep -qi '^Preference-Applied: wait=10' '$TMP/w1.hdr'"
check "... the fast and the accurate result in one answer (result_sync, top5; async: done, prediction, top5)" \
    bash -c "[ -n \"\$(jget w1 result_sync)\" ] && [ -n \"\$(jget w1 top5 4 label)\" ] &&
             [ \"\$(jget w1 status)\" = done ] && [ \"\$(jget w1 async status)\" = done ] &&
             [ -n \"\$(jget w1 async prediction)\" ] && [ -n \"\$(jget w1 async top5 0 label)\" ] &&
             [ \"\$(jget w1 async prediction)\" = \"\$(curl -s $URL/job/\$(jget w1 job_id) | $JGET /dev/stdin \$(jget w1 job_id) prediction)\" ]"
out=$(post w2 -H 'Prefer: respond-async, wait=100')
check "Prefer: wait=100 is capped by PREFER_WAIT_MAX_S=20 (Preference-Applied: wait=20)" \
    bash -c "[ '${out% *}' = 200 ] && grep -qi '^Preference-Applied: wait=20' '$TMP/w2.hdr'"
stop_worker
out=$(post w3 -H 'Prefer: wait=1')
secs=${out#* }
check "with no worker, Prefer: wait=1 answers after ~1 s with the job still queued ($secs s)" \
    bash -c "[ '${out% *}' = 200 ] && awk 'BEGIN{exit !($secs >= 0.9 && $secs < 5)}' &&
             [ \"\$(jget w3 status)\" = queued ] && [ \"\$(jget w3 async status)\" = queued ] &&
             grep -qi '^Preference-Applied: wait=1' '$TMP/w3.hdr'"
out=$(post w4 -H 'Prefer: wait=abc')
check "a Prefer it does not understand is ignored (answer as without it)" \
    bash -c "[ '${out% *}' = 200 ] && [ \"\$(jget w4 status)\" = queued ] && ! grep -qi '^Preference-Applied' '$TMP/w4.hdr'"

# ---- the stream budget (SSE_MAX_STREAMS=60) and latency over 50 jobs -------------------------
rcli DEL queue:jobs >/dev/null
"$SSE" latency "$URL" "$CAT" 50 >"$TMP/lat.out" 2>&1 &
LAT=$!
wait_until 60 grep -q READY "$TMP/lat.out"
check "50 streams open on queued jobs" grep -q READY "$TMP/lat.out"
for i in $(seq 10); do
    out=$(post b$i)
    events b$i "$(jget b$i job_id)" "" 60
    [ "$i" = 1 ] && B1=$EV_PID
done
wait_until 10 bash -c "[ \$(grep -l '\"event\": \"queued\"' $TMP/b*.ev | wc -l) -ge 10 ]"
out=$(post b11)
code=$(curl -s -m 10 -o "$TMP/over.body" -D "$TMP/over.hdr" -w '%{http_code}' "$URL/job/$(jget b11 job_id)/events")
check "past SSE_MAX_STREAMS open streams: 503 JSON with Retry-After ($(jget over error 2>/dev/null | cut -c1-50))" \
    bash -c "[ $code = 503 ] && [ -n \"\$($JGET $TMP/over.body error)\" ] && grep -qi '^Retry-After' '$TMP/over.hdr'"
check "GET /stats: 60 streams open" bash -c "curl -s '$URL/stats' | grep -q '\"event_streams\":60'"
# A client that leaves frees its place (found by the next heartbeat).
kill "$B1"
retry() { [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' -H 'Last-Event-ID: 1' "$URL/job/$(jget b11 job_id)/events")" = 200 ]; }
# (one try only: a stream that got in holds the place again until its own client is found gone)
check "a client that leaves frees its place within a few heartbeats" wait_until 10 retry
start_worker
wait $LAT
rc=$?
sed -n '/^event sequences/,$p' "$TMP/lat.out"
check "all 50 streams: queued, running, done, then the end" \
    grep -q '^event sequences: 1:queued 2:running 3:done (x50)$' "$TMP/lat.out"
check "result stored -> final event received measured on 50 jobs" \
    bash -c "[ $rc = 0 ] && grep -q 'over 50 (0 errors)' '$TMP/lat.out'"

# ---- Prefer: wait latency -----------------------------------------------------------------
"$SSE" prefer "$URL" "$CAT" 30 >"$TMP/pw.out" 2>&1
rc=$?
cat "$TMP/pw.out"
check "30 Prefer: wait=30 answers, each with the final job" test "$rc" = 0

# ---- shutdown with a stream open --------------------------------------------------------
stop_worker
out=$(post z1)
events z1 "$(jget z1 job_id)" "" 30
wait_until 10 grep -q '"event": "queued"' "$TMP/z1.ev"
kill -TERM "$PROXY"
wait_until 15 bash -c "! kill -0 $PROXY 2>/dev/null"
check "SIGTERM with a stream open: the stream ends and the proxy exits" \
    bash -c "! kill -0 $PROXY 2>/dev/null && grep -q '^EOF' '$TMP/z1.ev'"
check "no sanitizer report in the proxy's log" \
    bash -c "! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' '$TMP/proxy.log'"
finish
