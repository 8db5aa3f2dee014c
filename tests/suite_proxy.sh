#!/usr/bin/env bash
# Proxy suite: a private redis-server, the real `tandem proxy` (fast model:
# MobileNetV1 0.5/128 int8) and `tandem worker` (slow model: MobileNetV2 int8)
# from $TEST_DATA/models/st-int8. Covers every endpoint of SPEC §2, the Redis
# keys and TTLs of §3 after a POST, every bad input of issue #3 (4xx JSON),
# ?wait= (held, released by the worker's result, time-out), backpressure
# (MAX_QUEUE), /metrics of two proxies sharing one Redis, Redis stopped and
# restarted under traffic (503 JSON meanwhile, recovery without restart) and
# a graceful SIGTERM.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png
DOG=$TEST_DATA/images/dog.jpg
JGET=tests/proxy/jget.py
require "$TANDEM" "$FAST" "$SLOW" "$CAT"

start_redis || { bad "redis-server starts"; finish; exit 1; }
PORT=$(free_port)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    PORT NUM_WORKERS=2 SYNC_THREADS=2 JOB_TTL=3600 MAX_BODY_BYTES=2M MAX_QUEUE=1000 \
    LOG_LEVEL=info QUEUE_NAME=queue:jobs REDIS_TIMEOUT_MS=500
unset LABELS_PATH JOB_ID_LENGTH
URL=http://127.0.0.1:$PORT

# req NAME curl-args...: body in $TMP/NAME.body, headers in $TMP/NAME.hdr,
# HTTP code in $CODE, seconds in $SECS. Every request has a time limit.
req() {
    local name=$1 out
    shift
    out=$(curl -s -m 40 -o "$TMP/$name.body" -D "$TMP/$name.hdr" \
        -w '%{http_code} %{time_total}' "$@")
    CODE=${out% *}
    SECS=${out#* }
}
jget() { "$JGET" "$TMP/$1.body" "${@:2}"; }
is_json_error() { [ -n "$(jget "$1" error 2>/dev/null)" ]; }

# expect_error NAME CODE DESCRIPTION curl-args...: the code and a JSON {"error": ...}.
expect_error() {
    local name=$1 want=$2 d=$3
    shift 3
    req "$name" "$@"
    if [[ " $want " == *" $CODE "* ]] && is_json_error "$name"; then
        ok "$d -> $CODE $(jget "$name" error | cut -c1-70)"
    else
        bad "$d" "got $CODE $(head -c 200 "$TMP/$name.body")"
    fi
}

# ---- configuration -----------------------------------------------------------
out=$("$TANDEM" proxy --help 2>&1)
check "proxy --help documents PORT, SYNC_MODEL_PATH, MAX_BODY_BYTES, MAX_QUEUE" \
    bash -c "grep -q PORT <<<\"\$1\" && grep -q SYNC_MODEL_PATH <<<\"\$1\" &&
             grep -q MAX_BODY_BYTES <<<\"\$1\" && grep -q MAX_QUEUE <<<\"\$1\"" _ "$out"
JOB_ID_LENGTH=3 "$TANDEM" proxy --check-config >"$TMP/cc.log" 2>&1
rc=$?
check "JOB_ID_LENGTH=3 refused with exit 2 and a message" \
    bash -c "[ $rc -eq 2 ] && grep -q JOB_ID_LENGTH '$TMP/cc.log'"
SYNC_MODEL_PATH=$TMP/missing.onnx timeout 10 "$TANDEM" proxy >"$TMP/missing.log" 2>&1
rc=$?
check "a missing sync model stops the proxy at start (exit 1, names the file)" \
    bash -c "[ $rc -eq 1 ] && grep -q missing.onnx '$TMP/missing.log'"

# ---- start --------------------------------------------------------------------
start_bg proxy "$TANDEM" proxy
PROXY=$BG_PID
if ! wait_until 30 health; then
    bad "proxy answers /health within 30 s" "$(tail -5 "$TMP/proxy.log")"
    finish
    exit 1
fi

# ---- endpoints -------------------------------------------------------------------
req health "$URL/health"
check "GET /health -> 200 {\"health\": \"ok\"}" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/health.body health)\" = ok ]"
req meta "$URL/metadata"
check "GET /metadata -> the seed's object" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/meta.body prediction_sample)\" = 'Persian cat' ] &&
             [ \"\$($JGET $TMP/meta.body data_sample)\" = 'base64 encoded image file' ]"

printf '{"image_data": "%s"}' "$(base64 -w0 "$CAT")" >"$TMP/cat.json"
req p1 -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/cat.json" "$URL/predict"
ID=$(jget p1 job_id)
LABEL=$(jget p1 result_sync)
check "POST /predict (JSON base64 chelsea.png) -> 200, 6-char job id ($ID)" \
    bash -c "[ $CODE = 200 ] && [[ '$ID' =~ ^[a-z0-9]{6}\$ ]]"
check "result_sync is a cat label ($LABEL)" grep -qiE 'cat|tabby|lynx' <<<"$LABEL"
check "answer has top5 (5 labels with scores), model, inference_ms, status queued" \
    bash -c "[ \"\$($JGET $TMP/p1.body top5 4 label)\" != '' ] &&
             $JGET $TMP/p1.body top5 0 score >/dev/null &&
             [ \"\$($JGET $TMP/p1.body model)\" = mobilenet_v1_0.5_128_quant.onnx ] &&
             $JGET $TMP/p1.body inference_ms >/dev/null &&
             [ \"\$($JGET $TMP/p1.body status)\" = queued ]"
check "logs 'POST /predict - job_id: $ID' and 'Sync prediction: $LABEL' with level, role, pid" \
    bash -c "grep -qE 'Z INFO proxy\[[0-9]+\] POST /predict - job_id: $ID' '$TMP/proxy.log' &&
             grep -q 'Sync prediction: ' '$TMP/proxy.log'"

# The job exists in Redis the moment the answer arrives (SPEC §3 keys).
check "image:{id} holds the base64 of the file" \
    bash -c "[ \"\$(redis-cli -p $RPORT GET image:$ID)\" = \"\$(base64 -w0 '$CAT')\" ]"
ttl=$(rcli TTL "image:$ID")
check "image:{id} has EX 3600 (TTL $ttl)" test "$ttl" -gt 3500 -a "$ttl" -le 3600
check "queue:jobs holds the id (LPUSH)" bash -c "[ \"\$(redis-cli -p $RPORT LINDEX queue:jobs 0)\" = $ID ]"
check "job:{id} status record: queued, sync label, TTL ~3600" \
    bash -c "[ \"\$(redis-cli -p $RPORT HGET job:$ID status)\" = queued ] &&
             [ -n \"\$(redis-cli -p $RPORT HGET job:$ID sync_label)\" ] &&
             [ \"\$(redis-cli -p $RPORT TTL job:$ID)\" -gt 3500 ]"

req p2 -X POST -H 'Content-Type: image/jpeg' --data-binary @"$DOG" "$URL/predict"
check "POST /predict raw image/jpeg (dog.jpg) -> 200 with a job id" \
    bash -c "[ $CODE = 200 ] && [[ \"\$($JGET $TMP/p2.body job_id)\" =~ ^[a-z0-9]{6}\$ ]]"
# A raw body is base64-encoded for Redis by the inference thread's stager.
check "raw body: image:{id} holds the base64 of the file" \
    bash -c "[ \"\$(redis-cli -p $RPORT GET image:\$($JGET $TMP/p2.body job_id))\" = \"\$(base64 -w0 '$DOG')\" ]"
req p3 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
check "POST /predict raw image/png -> 200, same label as the JSON request" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/p3.body result_sync)\" = '$LABEL' ]"
req p4 -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$CAT" "$URL/predict"
check "POST /predict raw application/octet-stream -> 200" test "$CODE" = 200
printf '{"image_data": "%s"}' "$(base64 -w 76 "$CAT" | sed 's/$/\\n/' | tr -d '\n')" >"$TMP/wrapped.json"
req p5 -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/wrapped.json" "$URL/predict"
check "base64 wrapped at 76 columns with \\n -> 200" test "$CODE" = 200
check "wrapped base64: image:{id} holds it re-encoded in one line" \
    bash -c "[ \"\$(redis-cli -p $RPORT GET image:\$($JGET $TMP/p5.body job_id))\" = \"\$(base64 -w0 '$CAT')\" ]"
printf '{"image_data": "data:image/png;base64,%s"}' "$(base64 -w0 "$CAT")" >"$TMP/dataurl.json"
req p6 -X POST --data-binary @"$TMP/dataurl.json" "$URL/predict"
check "data URL, no Content-Type (curl's form type) -> 200" test "$CODE" = 200
req pt "$URL/predict/test"
check "GET /predict/test -> 200 with job id and label" \
    bash -c "[ $CODE = 200 ] && [[ \"\$($JGET $TMP/pt.body job_id)\" =~ ^[a-z0-9]{6}\$ ]] &&
             [ -n \"\$($JGET $TMP/pt.body result_sync)\" ]"
ids=$(rcli LRANGE queue:jobs 0 -1 | sort -u | wc -l)
check "every accepted POST queued a distinct job ($ids)" test "$ids" -eq 7

req j1 "$URL/job/$ID"
check "GET /job/{id} before any worker -> 200 prediction \"\" status queued" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/j1.body $ID prediction)\" = '' ] &&
             [ \"\$($JGET $TMP/j1.body $ID status)\" = queued ] &&
             [ \"\$($JGET $TMP/j1.body $ID attempts)\" = 0 ]"
req jw "$URL/job/$ID?wait=1"
check "GET /job/{id}?wait=1 with no worker returns queued after ~1 s (${SECS}s)" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/jw.body $ID status)\" = queued ] &&
             awk 'BEGIN{exit !($SECS >= 0.9 && $SECS < 3)}'"

# 100 requests held at once tie up no thread: other requests are answered meanwhile.
held=()
for i in $(seq 100); do
    curl -s -m 10 -o /dev/null -w '%{http_code}\n' "$URL/job/$ID?wait=2" >>"$TMP/held100" &
    held+=($!)
done
sleep 0.5
req hh "$URL/health"
HSECS=$SECS
req hp "$URL/predict/test"
check "100 held ?wait=2 requests: /health (${HSECS}s) and /predict/test (${SECS}s) answered meanwhile" \
    bash -c "[ $CODE = 200 ] && awk 'BEGIN{exit !($HSECS < 0.5 && $SECS < 1.5)}'"
wait "${held[@]}"
check "the 100 held requests all end with 200" test "$(grep -c '^200$' "$TMP/held100")" = 100

# ---- bad input -------------------------------------------------------------------
expect_error e1 404 "GET /job/{unknown id}" "$URL/job/zzzz99"
expect_error e2 404 "GET /job/{id with odd characters}" "$URL/job/AB-c.d"
expect_error e3 400 "GET /job/{id}?wait=0" "$URL/job/$ID?wait=0"
expect_error e4 400 "GET /job/{id}?wait=31" "$URL/job/$ID?wait=31"
expect_error e5 400 "GET /job/{id}?wait=abc" "$URL/job/$ID?wait=abc"
expect_error e6 404 "unknown path" "$URL/nothing/here"
expect_error e7 405 "GET /predict (wrong method)" "$URL/predict"
check "405 names the allowed method (Allow: POST)" grep -qi '^Allow: POST' "$TMP/e7.hdr"
expect_error e8 405 "DELETE /job/{id}" -X DELETE "$URL/job/$ID"
expect_error e9 400 "POST /predict, empty body" -X POST -H 'Content-Type: application/json' "$URL/predict"
expect_error e10 400 "POST /predict, body not JSON" -X POST -H 'Content-Type: application/json' -d 'hello' "$URL/predict"
expect_error e11 400 "POST /predict, missing image_data" -X POST -H 'Content-Type: application/json' -d '{"image": "x"}' "$URL/predict"
expect_error e12 400 "POST /predict, image_data not a string" -X POST -H 'Content-Type: application/json' -d '{"image_data": 42}' "$URL/predict"
expect_error e13 400 "POST /predict, bad base64" -X POST -H 'Content-Type: application/json' -d '{"image_data": "@@not base64@@"}' "$URL/predict"
expect_error e14 400 "POST /predict, base64 of text (not JPEG/PNG)" -X POST -H 'Content-Type: application/json' -d "{\"image_data\": \"$(echo 'just some text' | base64 -w0)\"}" "$URL/predict"
printf 'GIF89a\x01\x00\x01\x00\x00\x00\x00;' >"$TMP/x.gif"
expect_error e15 400 "POST /predict, a GIF sent as image/jpeg" -X POST -H 'Content-Type: image/jpeg' --data-binary @"$TMP/x.gif" "$URL/predict"
expect_error e16 415 "POST /predict, Content-Type image/gif" -X POST -H 'Content-Type: image/gif' --data-binary @"$TMP/x.gif" "$URL/predict"
head -c 4000 "$DOG" >"$TMP/trunc.jpg"
expect_error e17 400 "POST /predict, truncated JPEG" -X POST -H 'Content-Type: image/jpeg' --data-binary @"$TMP/trunc.jpg" "$URL/predict"
head -c 20000 "$CAT" >"$TMP/trunc.png"
expect_error e18 400 "POST /predict, truncated PNG" -X POST -H 'Content-Type: image/png' --data-binary @"$TMP/trunc.png" "$URL/predict"
/usr/bin/python3 -c "from PIL import Image; Image.new('L', (20000, 20000)).save('$TMP/bomb.png', optimize=True)"
expect_error e19 "413 400" "POST /predict, decompression bomb (20000x20000 PNG, $(stat -c %s "$TMP/bomb.png") bytes)" \
    -X POST -H 'Content-Type: image/png' --data-binary @"$TMP/bomb.png" "$URL/predict"
head -c 3000000 /dev/urandom >"$TMP/big.bin"
expect_error e20 413 "POST /predict, 3 MB body over MAX_BODY_BYTES=2M" -X POST -H 'Content-Type: image/jpeg' --data-binary @"$TMP/big.bin" "$URL/predict"
expect_error e21 413 "POST /predict, chunked 3 MB body over the limit" -X POST -H 'Content-Type: image/jpeg' -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big.bin" "$URL/predict"
expect_error e22 400 "POST /predict, JSON with duplicate image_data" -X POST -H 'Content-Type: application/json' -d '{"image_data": "a", "image_data": "b"}' "$URL/predict"
check "proxy still alive after the bad inputs" kill -0 "$PROXY"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$PROXY/status")
check "proxy RSS stays bounded (${rss} kB < 400 MB)" test "${rss:-999999999}" -lt 409600

# ---- workers: the slow answer, ?wait= released by it --------------------------------
start_bg worker "$TANDEM" worker
WORKER=$BG_PID
workers_up() { [ "$(rcli SCARD workers)" -ge 2 ]; }
check "2 workers start" wait_until 60 workers_up
req w1 "$URL/job/$ID?wait=30"
ALABEL=$(jget w1 "$ID" prediction)
check "GET /job/{id}?wait=30 -> done with a cat label from the slow model ($ALABEL, ${SECS}s)" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/w1.body $ID status)\" = done ] &&
             grep -qiE 'cat|tabby|lynx' <<<'$ALABEL'"
check "result:{id} = that label, TTL ~3600" \
    bash -c "[ \"\$(redis-cli -p $RPORT GET result:$ID)\" = '$ALABEL' ] &&
             [ \"\$(redis-cli -p $RPORT TTL result:$ID)\" -gt 3500 ]"
check "done answer has top5, model, attempts 1" \
    bash -c "$JGET $TMP/w1.body $ID top5 0 label >/dev/null &&
             [ -n \"\$($JGET $TMP/w1.body $ID model)\" ] &&
             [ \"\$($JGET $TMP/w1.body $ID attempts)\" = 1 ]"
# A fresh job, waited on right away: the answer comes when the worker stores it.
req p7 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
ID7=$(jget p7 job_id)
req w7 "$URL/job/$ID7?wait=30"
check "fresh job: ?wait=30 returns done as soon as the result exists (${SECS}s < 10)" \
    bash -c "[ \"\$($JGET $TMP/w7.body $ID7 status)\" = done ] && awk 'BEGIN{exit !($SECS < 10)}'"
drained() { [ "$(rcli LLEN queue:jobs)" = 0 ] && [ "$(rcli HGET "job:$(jget pt job_id)" status)" = done ]; }
check "every queued job is processed" wait_until 60 drained

# ---- metrics -------------------------------------------------------------------------
req m "$URL/metrics"
for pat in 'tandem_http_requests_total{endpoint="predict",code="200"}' \
    'tandem_http_requests_total{endpoint="predict",code="400"}' \
    'tandem_http_requests_total{endpoint="job",code="404"}' \
    'tandem_sync_response_seconds_bucket{le="+Inf"}' 'tandem_sync_response_seconds_sum' \
    'tandem_sync_inference_seconds_count' 'tandem_http_error_ratio' 'tandem_redis_up 1' \
    'tandem_queue_length 0' 'tandem_workers_alive 2' 'tandem_jobs_processed_total' \
    'tandem_async_inference_seconds_count' 'tandem_dead_letter_length 0'; do
    check "/metrics has $pat" grep -qF "$pat" "$TMP/m.body"
done
processed=$(awk '/^tandem_jobs_processed_total / {print $2}' "$TMP/m.body")
check "/metrics counts the workers' jobs ($processed >= 9)" test "${processed:-0}" -ge 9

# ---- a second proxy on the same Redis; backpressure -----------------------------------------
# The workers stop (SIGTERM, bounded wait) so that the backlog can build up.
kill -TERM -- "-$WORKER" 2>/dev/null
worker_gone() { ! kill -0 "$WORKER" 2>/dev/null; }
check "worker supervisor stops on SIGTERM" wait_until 20 worker_gone
PORT2=$(free_port)
PORT=$PORT2 MAX_QUEUE=2 start_bg proxy2 "$TANDEM" proxy
health2() { curl -s -m 2 "http://127.0.0.1:$PORT2/health" | grep -q health; }
wait_until 30 health2
for i in 1 2 3; do
    req bp$i -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "http://127.0.0.1:$PORT2/predict"
done
check "backlog below MAX_QUEUE=2: queued" bash -c "[[ \"\$($JGET $TMP/bp1.body job_id)\" =~ ^[a-z0-9]{6}\$ ]]"
check "backlog at MAX_QUEUE: 200 with result_sync, job_id null and a reason" \
    bash -c "[ $CODE = 200 ] && [ \"\$($JGET $TMP/bp3.body job_id)\" = null ] &&
             [ -n \"\$($JGET $TMP/bp3.body reason)\" ] && [ -n \"\$($JGET $TMP/bp3.body result_sync)\" ]"
check "backpressure answer carries Retry-After" grep -qi '^Retry-After: [0-9]' "$TMP/bp3.hdr"
req m2 "http://127.0.0.1:$PORT2/metrics"
check "the second proxy's /metrics sees the system: processed jobs and queue length 2" \
    bash -c "grep -q '^tandem_queue_length 2' $TMP/m2.body &&
             awk '/^tandem_jobs_processed_total / {exit !(\$2 >= 9)}' $TMP/m2.body &&
             grep -q '^tandem_backpressure_total 1' $TMP/m2.body"

# ---- Redis stopped during traffic, then back on the same port -------------------------------
stop_redis
codes=""
for i in 1 2 3; do
    req down$i -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
    codes="$codes $CODE"
done
check "Redis down: POST /predict -> 503 JSON with the sync label, fast ($codes; last ${SECS}s)" \
    bash -c "[ '$codes' = ' 503 503 503' ] && [ -n \"\$($JGET $TMP/down3.body error)\" ] &&
             [ \"\$($JGET $TMP/down3.body result_sync)\" = '$LABEL' ] &&
             awk 'BEGIN{exit !($SECS < 3)}'"
check "Redis down: 503 carries Retry-After" grep -qi '^Retry-After' "$TMP/down3.hdr"
expect_error dj 503 "Redis down: GET /job/{id}" "$URL/job/$ID"
req dm "$URL/metrics"
check "Redis down: /metrics still answers, tandem_redis_up 0" \
    bash -c "[ $CODE = 200 ] && grep -q '^tandem_redis_up 0' $TMP/dm.body"
req dh "$URL/health"
check "Redis down: proxy alive, /health 200" test "$CODE" = 200
start_redis "$RPORT" || bad "redis-server restarts on port $RPORT"
back() {
    req back -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict"
    [ "$CODE" = 200 ]
}
check "Redis back: POST /predict -> 200 again without a proxy restart" wait_until 20 back
ID8=$(jget back job_id)
check "Redis back: the new job is in Redis" test "$(rcli EXISTS "image:$ID8")" = 1
req back2 "$URL/job/$ID8"
check "Redis back: GET /job/{id} -> 200" test "$CODE" = 200

# ---- graceful stop --------------------------------------------------------------------------
curl -s -m 20 -o "$TMP/held.body" -w '%{http_code}' "$URL/job/$ID8?wait=15" >"$TMP/held.code" &
HELD=$!
sleep 0.5
kill -TERM "$PROXY"
t0=$(date +%s%N)
timeout 20 tail --pid="$PROXY" -f /dev/null
kill -KILL "$PROXY" 2>/dev/null # only if it outlived the 20 s
wait "$PROXY" 2>/dev/null
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
wait "$HELD"
check "SIGTERM: the held ?wait= request is answered (code $(cat "$TMP/held.code"))" \
    grep -q 200 "$TMP/held.code"
check "SIGTERM: proxy exits 0 (exit $rc) promptly (${ms} ms)" test "$rc" -eq 0 -a "$ms" -lt 10000
check "SIGTERM: logs 'stopped'" grep -q 'INFO proxy\[[0-9]*\] stopped' "$TMP/proxy.log"
check "no sanitizer report in the proxies' logs" \
    bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$TMP'/proxy*.log"
finish
