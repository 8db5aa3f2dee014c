#!/usr/bin/env bash
# Hostile clients against the real proxy (issue #7, HTTP side): a private
# redis-server, `tandem proxy` with the int8 fast model and `tandem worker`
# with the int8 slow model from $TEST_DATA/models/st-int8, and the clients of
# tests/hostile/client.py (Python stdlib, loopback only). Covers: many ?wait=
# requests on many jobs released by the worker (a use-after-free under ASan),
# ids no job can have (404 JSON, no lookup), URI and header limits (JSON),
# bodies over MAX_BODY_BYTES (413 JSON as soon as the limit is crossed,
# chunked or not), a slowloris of 1100 sockets from 127.0.0.2 while
# 127.0.0.1 is served, the whole-request deadline (REQUEST_TIMEOUT) for slow
# headers and slow bodies, and a SIGTERM drain bounded by DRAIN_TIMEOUT with
# a slow upload in flight.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png
DOG=$TEST_DATA/images/dog.jpg
JGET=tests/proxy/jget.py
CLIENT=tests/hostile/client.py
PY=/usr/bin/python3
require "$TANDEM" "$FAST" "$SLOW" "$CAT"
# The slowloris client needs ~1200 descriptors of its own.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 1300 ]; then
    bad "descriptor limit" "ulimit -n is $(ulimit -n), the slowloris needs 1300"
    finish
    exit 1
fi

start_redis || { bad "redis-server starts"; finish; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    NUM_WORKERS=1 SYNC_THREADS=2 JOB_TTL=3600 MAX_BODY_BYTES=2M MAX_QUEUE=1000 \
    LOG_LEVEL=info QUEUE_NAME=queue:jobs REDIS_TIMEOUT_MS=500
unset LABELS_PATH JOB_ID_LENGTH MAX_CONNECTIONS MAX_CONNECTIONS_PER_IP MAX_WAITERS \
    REQUEST_TIMEOUT DRAIN_TIMEOUT

# start_proxy NAME [VAR=value...]: a proxy on a fresh port; sets PORT, URL, PROXY.
# It starts with a soft descriptor limit of $SOFT_NOFILE (default: the shell's).
start_proxy() {
    local name=$1
    shift
    PORT=$(free_port)
    URL=http://127.0.0.1:$PORT
    start_bg "$name" bash -c 'ulimit -Sn "$1" && shift && exec "$@"' _ "${SOFT_NOFILE:-$(ulimit -n)}" \
        env PORT="$PORT" "$@" "$TANDEM" proxy
    PROXY=$BG_PID
    if ! wait_until 30 health; then
        bad "$name answers /health within 30 s" "$(tail -5 "$TMP/$name.log")"
        return 1
    fi
}
jget() { "$JGET" "$TMP/$1.body" "${@:2}"; }
# req NAME curl-args...: body in $TMP/NAME.body, code in $CODE, seconds in $SECS.
req() {
    local name=$1 out
    shift
    out=$(curl -s -m 40 -o "$TMP/$name.body" -w '%{http_code} %{time_total}' "$@")
    CODE=${out% *}
    SECS=${out#* }
}
is_json_error() { [ -n "$("$JGET" "$1" error 2>/dev/null)" ]; }
# expect_error NAME CODES DESCRIPTION curl-args...
expect_error() {
    local name=$1 want=$2 d=$3
    shift 3
    req "$name" "$@"
    if [[ " $want " == *" $CODE "* ]] && is_json_error "$TMP/$name.body"; then
        ok "$d -> $CODE $(jget "$name" error | cut -c1-70)"
    else
        bad "$d" "got $CODE $(head -c 200 "$TMP/$name.body")"
    fi
}
# upload NAME client-upload-args...: the client's JSON answer in $TMP/NAME.json.
upload() {
    local name=$1
    shift
    timeout 120 "$PY" "$CLIENT" upload 127.0.0.1 "$PORT" "$@" >"$TMP/$name.json" 2>"$TMP/$name.err"
}
uget() { "$JGET" "$TMP/$1.json" "${@:2}"; }

start_proxy proxy || { finish; exit 1; }

# ---- ?wait=: several waiters on several jobs, released by the worker --------------
ids=()
for i in 1 2 3 4; do
    if [ $((i % 2)) = 1 ]; then img=$CAT type=image/png; else img=$DOG type=image/jpeg; fi
    req job$i -X POST -H "Content-Type: $type" --data-binary @"$img" "$URL/predict"
    ids+=("$(jget job$i job_id)")
done
check "4 jobs queued (${ids[*]})" bash -c "[ \"\$(redis-cli -p $RPORT LLEN queue:jobs)\" = 4 ]"
waiters=()
n=0
for id in "${ids[@]}"; do
    for k in 1 2 3; do
        n=$((n + 1))
        curl -s -m 60 -o "$TMP/w$n.body" -w '%{http_code}' "$URL/job/$id?wait=30" >"$TMP/w$n.code" &
        waiters+=($!)
        echo "$id" >"$TMP/w$n.id"
    done
done
sleep 1
start_bg worker "$TANDEM" worker
WORKER=$BG_PID
wait "${waiters[@]}"
good=0
for i in $(seq "$n"); do
    id=$(cat "$TMP/w$i.id")
    [ "$(cat "$TMP/w$i.code")" = 200 ] && [ "$("$JGET" "$TMP/w$i.body" "$id" status 2>/dev/null)" = done ] &&
        good=$((good + 1))
done
check "12 ?wait= requests on 4 jobs (3 each) all end 200 done as the worker finishes ($good/12)" \
    test "$good" = 12
check "the proxy survives them" kill -0 "$PROXY"
kill -TERM -- "-$WORKER" 2>/dev/null # the jobs below stay queued

# ---- ids no job can have: 404 JSON, never looked up -------------------------------------
long=$(head -c 5000 /dev/zero | tr '\0' a)
expect_error id1 404 "GET /job/{a UUID}" "$URL/job/123e4567-e89b-12d3-a456-426614174000"
expect_error id2 404 "GET /job/{upper case}" "$URL/job/ABCDEF"
expect_error id3 404 "GET /job/{5000 characters}" "$URL/job/$long"
expect_error id4 404 "GET /job/{5000 characters}?wait=5" "$URL/job/$long?wait=5"
check "... at once (${SECS}s < 1)" awk "BEGIN{exit !($SECS < 1)}"
expect_error id5 404 "GET /job/{3 characters}" "$URL/job/abc"

# ---- limits of the request line and headers: JSON, not libmicrohttpd's HTML -----------
expect_error uri 414 "a 12 kB request URI" "$URL/job/$(head -c 12000 /dev/zero | tr '\0' a)"
big_hdr="X-Big: $(head -c 40000 /dev/zero | tr '\0' b)"
expect_error hdr 431 "40 kB of request headers" -H "$big_hdr" "$URL/health"
echo "X-Big: $(head -c 300000 /dev/zero | tr '\0' b)" >"$TMP/hdr2.txt"
req hdr2 -H @"$TMP/hdr2.txt" "$URL/health"
echo "# past libmicrohttpd's per-connection memory (300 kB header) it answers itself: $CODE $(head -c 60 "$TMP/hdr2.body")"
check "the proxy answers /health after them" health

# ---- bodies over MAX_BODY_BYTES=2M: 413 JSON as soon as the limit is crossed ---------------
head -c 50000000 /dev/urandom >"$TMP/50m.bin"
head -c 22000000 "$TMP/50m.bin" >"$TMP/22m.bin"
upload c50 /predict "$TMP/50m.bin" 0 --chunked
check "50 MB chunked upload -> 413 JSON after $(uget c50 sent) bytes sent ($(uget c50 secs)s)" \
    bash -c "[ \"\$($JGET $TMP/c50.json status)\" = 413 ] &&
             $PY -c 'import json,sys; b=json.load(open(sys.argv[1]))[\"body\"]; assert json.loads(b)[\"error\"]' $TMP/c50.json &&
             [ \"\$($JGET $TMP/c50.json sent)\" -lt 8000000 ]"
upload c22 /predict "$TMP/22m.bin" 0 --chunked
check "22 MB chunked upload -> 413 before the body ends ($(uget c22 sent) of 22000000 bytes sent)" \
    bash -c "[ \"\$($JGET $TMP/c22.json status)\" = 413 ] && [ \"\$($JGET $TMP/c22.json sent)\" -lt 8000000 ]"
upload l22 /predict "$TMP/22m.bin" 0
check "22 MB with Content-Length -> 413 from the headers ($(uget l22 sent) bytes sent)" \
    bash -c "[ \"\$($JGET $TMP/l22.json status)\" = 413 ] && [ \"\$($JGET $TMP/l22.json sent)\" -lt 8000000 ]"
upload ok /predict "$CAT" 0 --chunked --type image/png
check "a chunked upload under the limit -> 200 ($(uget ok status))" test "$(uget ok status)" = 200
check "the proxy is alive after the big bodies" health

# ---- slowloris: 1100 sockets from 127.0.0.2, one header byte every 5 s -----------------------
"$PY" "$CLIENT" slowloris 127.0.0.1 "$PORT" 1100 120 --source 127.0.0.2 --interval 5 \
    --status "$TMP/loris.status" >"$TMP/loris.log" 2>&1 &
LORIS=$!
loris_in() { grep -qE 'opened=(1[1-9][0-9]{2}|[2-9][0-9]{3})' "$TMP/loris.status" 2>/dev/null; }
wait_until 30 loris_in
sleep 6 # every socket has sent a byte, and over-limit ones were refused and came back
# What the proxy holds for 127.0.0.2: its side of the established connections.
served() { ss -Htn state established "( sport = :$PORT )" | grep -c '127\.0\.0\.2:'; }
HELD=$(served)
echo "# slowloris (client's view): $(cat "$TMP/loris.status" 2>/dev/null); the proxy holds $HELD of its connections"
hok=0 pok=0
for i in $(seq 20); do
    req sh$i -m 5 "$URL/health"
    [ "$CODE" = 200 ] && hok=$((hok + 1))
    req sp$i -m 5 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
    [ "$CODE" = 200 ] && pok=$((pok + 1))
done
rate=$(((hok + pok) * 100 / 40))
echo "# slowloris: $(cat "$TMP/loris.status" 2>/dev/null), the proxy holding $(served); from 127.0.0.1: /health $hok/20, POST /predict $pok/20 = $rate %"
check "while 127.0.0.2 holds 1100 slow sockets, >= 95 % of 127.0.0.1's requests succeed ($rate %)" \
    test "$rate" -ge 95
check "the attacker holds at most MAX_CONNECTIONS_PER_IP=256 of the proxy's connections ($HELD)" \
    test "$HELD" -le 256 -a "$HELD" -ge 200
kill -TERM "$LORIS" 2>/dev/null
wait "$LORIS" 2>/dev/null
rok=0
for i in $(seq 10); do
    req rh$i -m 5 "$URL/health"
    [ "$CODE" = 200 ] && rok=$((rok + 1))
    req rp$i -m 5 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
    [ "$CODE" = 200 ] && rok=$((rok + 1))
done
check "once the sockets close, every request succeeds at once ($rok/20)" test "$rok" = 20
check "the proxy logged its descriptor limit" grep -q 'file descriptors: limit' "$TMP/proxy.log"

# ---- the whole-request deadline: REQUEST_TIMEOUT=3 ------------------------------------------
kill -TERM "$PROXY"
wait_until 15 bash -c "! kill -0 $PROXY 2>/dev/null"
MAX_WAITERS=1024 "$TANDEM" proxy >"$TMP/mw.log" 2>&1
rc=$?
check "MAX_WAITERS not below MAX_CONNECTIONS is refused at start (exit $rc, names both)" \
    bash -c "[ $rc = 2 ] && grep -q 'MAX_WAITERS=1024 (?wait= and Prefer: wait) + SSE_MAX_STREAMS=256 must be below' '$TMP/mw.log'"
SOFT_NOFILE=1024 start_proxy proxy2 REQUEST_TIMEOUT=3 MAX_WAITERS=4 || { finish; exit 1; }
check "a soft descriptor limit of 1024 is raised to the hard one at start, and logged" \
    grep -q "file descriptors: limit $(ulimit -Hn) (was 1024" "$TMP/proxy2.log"

# ---- ?wait= holders are capped (MAX_WAITERS=4): the rest are answered at once -------------------
req qj -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
QID=$(jget qj job_id)
pids=()
for i in $(seq 8); do
    curl -s -m 20 -o /dev/null -w '%{http_code} %{time_total}\n' "$URL/job/$QID?wait=3" >"$TMP/cap$i" &
    pids+=($!)
done
wait "${pids[@]}"
held=$(cat "$TMP"/cap* | awk '$1 == 200 && $2 >= 2.5' | wc -l)
quick=$(cat "$TMP"/cap* | awk '$1 == 200 && $2 < 1.5' | wc -l)
check "8 ?wait=3 on a queued job with MAX_WAITERS=4: 4 held for 3 s, 4 answered at once ($held, $quick)" \
    test "$held" = 4 -a "$quick" = 4
"$PY" "$CLIENT" trickle-headers 127.0.0.1 "$PORT" 1 20 >"$TMP/th.json"
after=$("$JGET" "$TMP/th.json" closed_after)
check "headers sent one byte a second are cut at REQUEST_TIMEOUT=3 (after ${after}s)" \
    awk "BEGIN{exit !(\"$after\" != \"None\" && $after >= 2.5 && $after < 6)}"
head -c 1000000 /dev/urandom >"$TMP/1m.bin"
upload slowbody /predict "$TMP/1m.bin" 20000
check "a body sent at 20 kB/s -> 408 JSON at REQUEST_TIMEOUT ($(uget slowbody status) after $(uget slowbody secs)s)" \
    bash -c "[ \"\$($JGET $TMP/slowbody.json status)\" = 408 ] &&
             awk 'BEGIN{exit !($(uget slowbody secs) < 6)}'"
upload fastbody /predict "$CAT" 400000 --type image/png
check "a body that arrives within the deadline -> 200 ($(uget fastbody status) in $(uget fastbody secs)s)" \
    test "$(uget fastbody status)" = 200
# Idle keep-alive time is not taken from the next upload: 2.5 s idle after a
# GET, then a 1.5 s body, all within 3 s of its headers (4 s after the GET).
upload idlefirst /predict "$CAT" "$(($(stat -c %s "$CAT") * 2 / 3))" --type image/png --idle-before 2.5
check "after 2.5 s idle on a keep-alive connection, a 1.5 s upload gets its whole deadline -> 200 ($(uget idlefirst status) in $(uget idlefirst secs)s)" \
    test "$(uget idlefirst status)" = 200

# ---- SIGTERM with a slow upload in flight: bounded by DRAIN_TIMEOUT=3 ------------------------
kill -TERM "$PROXY"
wait_until 15 bash -c "! kill -0 $PROXY 2>/dev/null"
start_proxy proxy3 REQUEST_TIMEOUT=120 DRAIN_TIMEOUT=3 || { finish; exit 1; }
upload slow /predict "$TMP/1m.bin" 5000 &
SLOWUP=$!
upload normal /predict "$CAT" 120000 --type image/png &
NORMAL=$!
sleep 1
kill -TERM "$PROXY"
t0=$(date +%s%N)
timeout 20 tail -s 0.05 --pid="$PROXY" -f /dev/null
kill -KILL "$PROXY" 2>/dev/null # only if it outlived the 20 s
wait "$PROXY" 2>/dev/null
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
wait "$NORMAL" "$SLOWUP"
check "SIGTERM: the normal request in flight is answered ($(uget normal status))" \
    test "$(uget normal status)" = 200
check "SIGTERM with a slow upload in flight: exit 0 (exit $rc) within DRAIN_TIMEOUT=3 (${ms} ms)" \
    test "$rc" -eq 0 -a "$ms" -lt 4000
check "SIGTERM: the drain names what it cut" grep -q 'DRAIN_TIMEOUT=3' "$TMP/proxy3.log"

check "no sanitizer report in the proxies' logs" \
    bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$TMP'/proxy*.log"
finish
