#!/usr/bin/env bash
# Webhooks and fast/slow agreement, against a real stack: a private
# redis-server, `tandem proxy` (fast: MobileNetV1 0.5/128 int8) and
# `tandem worker` (slow: MobileNetV2 int8) from $TEST_DATA/models/st-int8, and a
# webhook receiver (tests/webhooks/listener.py) on 127.0.0.1.
#   - every finished job says whether the slow top-1 agrees with the fast one
#     (agrees_with_fast, fast_prediction), and /metrics counts agree/upgrade;
#   - callback_url (JSON field or ?callback_url=) gets the job object POSTed,
#     signed per Standard Webhooks (verified here with Python's hmac);
#   - a receiver answering 500 gets retries with back-off, then success or,
#     after WEBHOOK_MAX_ATTEMPTS, a failed webhook;
#   - destinations outside WEBHOOK_ALLOW (metadata, private, IPv6 loopback,
#     other schemes) are refused with 400 at POST time, before any job or
#     connection exists; a proxy without WEBHOOK_ALLOW refuses every callback;
#   - delivery latency (result stored -> webhook received) over 20 jobs.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png
DOG=$TEST_DATA/images/dog.jpg
JGET=tests/proxy/jget.py
HOOKS=tests/webhooks/hooks.py
require "$TANDEM" "$FAST" "$SLOW" "$CAT"

start_redis || { bad "redis-server starts"; finish; exit 1; }
PORT=$(free_port)
HPORT=$(free_port)
[ "$HPORT" != "$PORT" ] || HPORT=$((PORT + 1))
SECRET=whsec_$(head -c 32 /dev/urandom | base64 -w0)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    PORT NUM_WORKERS=2 SYNC_THREADS=2 JOB_TTL=3600 MAX_QUEUE=1000 LOG_LEVEL=info \
    QUEUE_NAME=queue:jobs WEBHOOK_ALLOW="127.0.0.1, localhost:$HPORT" WEBHOOK_SECRET=$SECRET WEBHOOK_BACKOFF_MS=200 \
    WEBHOOK_MAX_ATTEMPTS=3 WEBHOOK_TIMEOUT_MS=3000
unset LABELS_PATH JOB_ID_LENGTH
URL=http://127.0.0.1:$PORT
HOOK=http://127.0.0.1:$HPORT
LOG=$TMP/hooks.jsonl

req() { # NAME curl-args...: body in $TMP/NAME.body, code in $CODE
    local name=$1
    shift
    CODE=$(curl -s -m 40 -o "$TMP/$name.body" -w '%{http_code}' "$@")
}
jget() { "$JGET" "$TMP/$1.body" "${@:2}"; }
hooks() { "$HOOKS" "$LOG" "$SECRET" "$@"; }
metric() { curl -s -m 5 "$URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
urlenc() { /usr/bin/python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
job_field() { curl -s -m 5 "$URL/job/$1" | "$JGET" /dev/stdin "$1" "${@:2}"; }
cat_file() { # callback_url -> the path of a JSON body with the cat and that callback_url
    local f
    f=$(mktemp "$TMP/body-XXXXXX")
    cat_json "$1" >"$f"
    echo "$f"
}
cat_json() { # callback_url (or nothing) -> a JSON body with the cat
    if [ -n "${1:-}" ]; then
        printf '{"image_data": "%s", "callback_url": "%s"}' "$(base64 -w0 "$CAT")" "$1"
    else
        printf '{"image_data": "%s"}' "$(base64 -w0 "$CAT")"
    fi
}

# ---- configuration ---------------------------------------------------------------
WEBHOOK_SECRET= PORT=$(free_port) timeout 20 "$TANDEM" proxy >"$TMP/nosecret.log" 2>&1
rc=$?
check "WEBHOOK_ALLOW without WEBHOOK_SECRET: the proxy refuses to start (exit 1, says why)" \
    bash -c "[ $rc -eq 1 ] && grep -q 'WEBHOOK_SECRET is empty' '$TMP/nosecret.log'"
WEBHOOK_ALLOW='10.0.0.0/33' PORT=$(free_port) timeout 20 "$TANDEM" proxy >"$TMP/badallow.log" 2>&1
rc=$?
check "a bad WEBHOOK_ALLOW entry stops the proxy (exit 1, names it)" \
    bash -c "[ $rc -eq 1 ] && grep -q '10.0.0.0/33' '$TMP/badallow.log'"
WEBHOOK_SECRET=whsec_c2hvcnQ= PORT=$(free_port) timeout 20 "$TANDEM" proxy >"$TMP/short.log" 2>&1
rc=$?
check "a WEBHOOK_SECRET key under 24 bytes stops the proxy" \
    bash -c "[ $rc -eq 1 ] && grep -q '5 bytes' '$TMP/short.log'"
out=$("$TANDEM" proxy --check-config 2>&1)
check "--check-config does not print the secret" \
    bash -c "! grep -qF -- '$SECRET' <<<\"\$1\" && grep -q 'WEBHOOK_SECRET=(set' <<<\"\$1\"" _ "$out"

# ---- start -------------------------------------------------------------------------
start_bg listener /usr/bin/python3 tests/webhooks/listener.py "$HPORT" "$LOG"
start_bg proxy "$TANDEM" proxy
PROXY=$BG_PID
start_bg worker "$TANDEM" worker
listening() { curl -s -m 2 -o /dev/null -X POST "$HOOK/ok/probe" 2>/dev/null; }
if ! wait_until 30 health || ! wait_until 10 listening; then
    bad "proxy and listener answer within 30 s" "$(tail -5 "$TMP/proxy.log")"
    finish
    exit 1
fi
check "the proxy logs that webhooks are on" grep -q 'webhooks on: destinations 127.0.0.1, localhost' "$TMP/proxy.log"

# ---- agreement -----------------------------------------------------------------------
declare -A FASTL
agreement_ok() { # NAME of a finished job answer, fast label
    local id=$1 fast=$2 slow agrees
    slow=$(jget "j$id" "$id" prediction)
    agrees=$(jget "j$id" "$id" agrees_with_fast)
    [ "$(jget "j$id" "$id" fast_prediction)" = "$fast" ] || return 1
    if [ "$slow" = "$fast" ]; then [ "$agrees" = true ]; else [ "$agrees" = false ]; fi
}
cat_json >"$TMP/cat.json"
for img in cat dog; do
    if [ $img = cat ]; then
        req "p_$img" -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/cat.json" "$URL/predict"
    else
        req "p_$img" -X POST -H 'Content-Type: image/jpeg' --data-binary @"$DOG" "$URL/predict"
    fi
    id=$(jget "p_$img" job_id)
    FASTL[$img]=$(jget "p_$img" result_sync)
    req "j$id" "$URL/job/$id?wait=30"
    slow=$(jget "j$id" "$id" prediction)
    agrees=$(jget "j$id" "$id" agrees_with_fast)
    check "$img: fast '${FASTL[$img]}', slow '$slow' -> agrees_with_fast=$agrees, consistent with the labels" \
        agreement_ok "$id" "${FASTL[$img]}"
    [ $img = cat ] && CATID=$id
done
check "the cat is a cat to both models (fast '${FASTL[cat]}', slow '$(jget "j$CATID" "$CATID" prediction)')" \
    bash -c "grep -qiE 'cat|tabby|lynx' <<<'${FASTL[cat]}' &&
             grep -qiE 'cat|tabby|lynx' <<<\"\$($JGET $TMP/j$CATID.body $CATID prediction)\""
req jq "$URL/job/$CATID"
check "job:{id} in Redis holds agrees_with_fast (0|1) and the fast label" \
    bash -c "[[ \"\$(redis-cli -p $RPORT HGET job:$CATID agrees_with_fast)\" =~ ^[01]\$ ]] &&
             [ \"\$(redis-cli -p $RPORT HGET job:$CATID sync_label)\" = '${FASTL[cat]}' ]"

# ---- a signed webhook ----------------------------------------------------------------
cat_json "$HOOK/ok/json" >"$TMP/cathook.json"
req h1 -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/cathook.json" "$URL/predict"
H1=$(jget h1 job_id)
check "POST /predict with a JSON callback_url -> 200 and a job ($H1)" \
    bash -c "[ $CODE = 200 ] && [[ '$H1' =~ ^[a-z0-9]{6}\$ ]]"
got_one() { [ "$(hooks count "$1")" -ge "${2:-1}" ]; }
wait_until 30 got_one "$H1"
hooks verify "$H1" >"$TMP/h1.hook" 2>"$TMP/h1.err"
check "the webhook arrives, signed (webhook-id = job id, timestamp, v1 HMAC-SHA256 verified)" \
    bash -c "[ -s '$TMP/h1.hook' ]" || cat "$TMP/h1.err"
req jh1 "$URL/job/$H1"
check "its body is the job object: status done, the job's prediction, agrees_with_fast" \
    bash -c "[ \"\$($JGET $TMP/h1.hook $H1 status)\" = done ] &&
             [ \"\$($JGET $TMP/h1.hook $H1 prediction)\" = \"\$($JGET $TMP/jh1.body $H1 prediction)\" ] &&
             [ -n \"\$($JGET $TMP/h1.hook $H1 agrees_with_fast)\" ]"
delivered() { [ "$(job_field "$1" webhook status)" = "${2:-delivered}" ]; }
wait_until 10 delivered "$H1"
req jh1 "$URL/job/$H1"
check "GET /job shows webhook {status: delivered, attempts: 1} and not the URL" \
    bash -c "[ \"\$($JGET $TMP/jh1.body $H1 webhook status)\" = delivered ] &&
             [ \"\$($JGET $TMP/jh1.body $H1 webhook attempts)\" = 1 ] &&
             ! grep -q '/ok/json' $TMP/jh1.body"
check "exactly one request for a delivered webhook" test "$(hooks count "$H1")" -eq 1

req h2 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" \
    "$URL/predict?callback_url=$(urlenc "$HOOK/ok/raw?x=1&y=2")"
H2=$(jget h2 job_id)
wait_until 30 got_one "$H2"
h2_ok() { hooks verify "$H2" >/dev/null && grep -qF '"path": "/ok/raw?x=1&y=2"' "$LOG"; }
check "a raw image body with ?callback_url= (URL-encoded, with its own query) is delivered there" \
    h2_ok

# A listed name: resolved once by the proxy, connected to at the checked
# address, and the request still names the host.
req h5 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict?callback_url=http://LocalHost:$HPORT/ok/name"
H5=$(jget h5 job_id)
wait_until 30 got_one "$H5"
h5_ok() { hooks verify "$H5" >/dev/null && grep -F "\"webhook-id\": \"$H5\"" "$LOG" | grep -qiF "\"host\": \"localhost:$HPORT\""; }
check "a callback to a listed name (localhost:$HPORT) is delivered, Host header kept" h5_ok

# ---- retries -------------------------------------------------------------------------
req h3 -X POST -H 'Content-Type: application/json' --data-binary @"$(cat_file "$HOOK/flaky/2")" "$URL/predict"
H3=$(jget h3 job_id)
wait_until 30 got_one "$H3" 3
wait_until 10 delivered "$H3"
gaps=$(hooks gaps "$H3" | tr '\n' ' ')
h3_ok() {
    [ "$(hooks count "$H3")" -eq 3 ] && hooks verify "$H3" >/dev/null &&
        [ "$(job_field "$H3" webhook attempts)" = 3 ]
}
check "receiver answers 500 twice: 3 signed attempts, same webhook-id, then delivered (gaps: ${gaps}s)" \
    h3_ok
check "back-off: the second gap is at least the first, both >= WEBHOOK_BACKOFF_MS (0.2 s, 0.4 s)" \
    /usr/bin/python3 -c "import sys; g=[float(x) for x in sys.argv[1:]]; sys.exit(not (len(g)==2 and g[0]>=0.19 and g[1]>=0.39 and g[1]>=g[0]))" $gaps

req h4 -X POST -H 'Content-Type: application/json' --data-binary @"$(cat_file "$HOOK/down")" "$URL/predict"
H4=$(jget h4 job_id)
wait_until 30 got_one "$H4" 3
wait_until 10 delivered "$H4" failed
sleep 1
h4_ok() {
    [ "$(job_field "$H4" webhook status)" = failed ] && [ "$(job_field "$H4" webhook attempts)" = 3 ] &&
        [ "$(job_field "$H4" webhook error)" = 'HTTP 500' ] && [ "$(hooks count "$H4")" -eq 3 ]
}
check "receiver always 500: given up after WEBHOOK_MAX_ATTEMPTS=3 (webhook failed, error HTTP 500), no 4th try" \
    h4_ok

# ---- refused destinations -------------------------------------------------------------
jobs_before=$(rcli --scan --pattern 'job:*' | wc -l)
refused() { # DESCRIPTION URL: 400 JSON naming callback_url, for JSON and query forms
    local d=$1 u=$2 c1 c2
    req r1 -X POST -H 'Content-Type: application/json' --data-binary @"$(cat_file "$u")" "$URL/predict"
    c1=$CODE
    local e1
    e1=$(jget r1 error)
    req r2 -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict?callback_url=$(urlenc "$u")"
    c2=$CODE
    if [ "$c1" = 400 ] && [ "$c2" = 400 ] && [[ "$e1" == *"callback_url refused"* ]] &&
        [[ "$(jget r2 error)" == *"callback_url refused"* ]]; then
        ok "$d -> 400: ${e1:0:110}"
    else
        bad "$d" "got $c1/$c2: $(head -c 200 "$TMP/r1.body")"
    fi
}
refused "cloud metadata address http://169.254.169.254/" "http://169.254.169.254/latest/meta-data/"
refused "private address http://10.0.0.1/" "http://10.0.0.1/hook"
refused "IPv6 loopback (not listed) http://[::1]:$HPORT/" "http://[::1]:$HPORT/ok/v6"
refused "IPv4-mapped metadata address" "http://[::ffff:169.254.169.254]/"
refused "decimal spelling of 10.0.0.1" "http://167772161/"
refused "public address not in WEBHOOK_ALLOW" "http://93.184.216.34/"
refused "a name not in WEBHOOK_ALLOW (not even looked up)" "http://example.com/hook"
refused "localhost at a port other than the listed one" "http://localhost:$RPORT/ok/localhost"
refused "gopher:// to Redis" "gopher://127.0.0.1:$RPORT/_FLUSHALL"
refused "credentials in the URL" "http://u:p@127.0.0.1:$HPORT/ok/cred"
refused "not a URL" "hook"
req both -X POST -H 'Content-Type: application/json' --data-binary @"$(cat_file "$HOOK/ok/a")" \
    "$URL/predict?callback_url=$HOOK/ok/b"
check "callback_url in both body and query -> 400" test "$CODE" = 400
check "no job was created by any refused request" \
    test "$(rcli --scan --pattern 'job:*' | wc -l)" -eq "$jobs_before"
check "nothing was sent for them" bash -c "! grep -qE '/ok/(v6|cred|localhost|a|b)' '$LOG'"

# A proxy without WEBHOOK_ALLOW: webhooks off, callback_url refused.
PORT2=$(free_port)
WEBHOOK_ALLOW= PORT=$PORT2 start_bg proxy2 "$TANDEM" proxy
health2() { curl -s -m 2 "http://127.0.0.1:$PORT2/health" 2>/dev/null | grep -q '"health"'; }
wait_until 30 health2
req off -X POST -H 'Content-Type: application/json' --data-binary @"$(cat_file "$HOOK/ok/off")" \
    "http://127.0.0.1:$PORT2/predict"
check "WEBHOOK_ALLOW empty: callback_url -> 400 'not enabled'" \
    bash -c "[ $CODE = 400 ] && grep -q 'not enabled' '$TMP/off.body'"
req on -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/cat.json" "http://127.0.0.1:$PORT2/predict"
check "... and requests without one work as before" test "$CODE" = 200

# ---- delivery latency ----------------------------------------------------------------------
LAT_IDS=()
for i in $(seq 20); do
    req "l$i" -X POST -H 'Content-Type: image/png' --data-binary @"$CAT" "$URL/predict?callback_url=$HOOK/ok/lat$i"
    LAT_IDS+=("$(jget "l$i" job_id)")
    sleep 0.1
done
all_in() { local id; for id in "${LAT_IDS[@]}"; do got_one "$id" || return 1; done; }
wait_until 60 all_in
lat=$(hooks latency "${LAT_IDS[@]}")
check "20 webhooks delivered; result stored -> webhook received: $lat ms" \
    bash -c "[[ '$lat' == n=20* ]] && /usr/bin/python3 -c \"import sys; sys.exit(float('$lat'.split('p50=')[1].split()[0]) > 5000)\""

# ---- metrics ----------------------------------------------------------------------------------
sleep 1
processed=$(metric tandem_jobs_processed_total)
agree=$(metric 'tandem_fast_slow_agreement_total{result="agree"}')
upgrade=$(metric 'tandem_fast_slow_agreement_total{result="upgrade"}')
check "agreement counters add up to the finished jobs (agree $agree + upgrade $upgrade = $processed)" \
    bash -c "[ -n '$processed' ] && [ $((agree + upgrade)) -eq '$processed' ] && [ '$processed' -gt 0 ]"
n_agree=0 n_total=0
for id in $(rcli --scan --pattern 'job:*' | sed 's/^job://'); do
    a=$(rcli HGET "job:$id" agrees_with_fast)
    [ -n "$a" ] || continue
    n_total=$((n_total + 1))
    [ "$a" = 1 ] && n_agree=$((n_agree + 1))
done
check "... and match the job records ($n_agree of $n_total agree)" \
    bash -c "[ $n_agree -eq '$agree' ] && [ $n_total -eq '$processed' ]"
delivered_n=$(metric 'tandem_webhook_attempts_total{result="delivered"}')
retried_n=$(metric 'tandem_webhook_attempts_total{result="retried"}')
failed_n=$(metric 'tandem_webhook_attempts_total{result="failed"}')
check "webhook counters: delivered $delivered_n (= 24), retried $retried_n (2 + 2), failed $failed_n (1)" \
    bash -c "[ '$delivered_n' = 24 ] && [ '$retried_n' = 4 ] && [ '$failed_n' = 1 ]"
check "nothing left to deliver (webhooks:due empty)" test "$(rcli ZCARD webhooks:due)" -eq 0

# ---- shutdown -------------------------------------------------------------------------------
t0=$(date +%s%N)
kill -TERM "$PROXY"
stopped() { ! kill -0 "$PROXY" 2>/dev/null; }
wait_until 10 stopped
ms=$((($(date +%s%N) - t0) / 1000000))
check "SIGTERM stops the proxy and its delivery threads promptly (${ms} ms)" \
    bash -c "[ $ms -lt 5000 ] && grep -q 'stopped' '$TMP/proxy.log'"

finish
