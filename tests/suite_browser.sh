#!/usr/bin/env bash
# Browser suite: the web page in Debian's headless Chromium (playwright-core,
# no browser download) against a real stack: a private redis-server, `tandem
# proxy` and, started by the test once the fast answer is on screen,
# `tandem worker`, with the int8 models of $TEST_DATA/models/st-int8. The test
# (tests/browser/page.js) uploads chelsea.png, sees the fast label, sees the
# accurate label replace it through Server-Sent Events, and saves screenshots
# in $BUILD/browser/.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
CAT=$TEST_DATA/images/chelsea.png
OUT=$BUILD/browser
REQUIRE_HINT="make deps installs chromium and playwright-core" \
    require "$TANDEM" "$FAST" "$SLOW" "$CAT" /usr/bin/chromium node_modules/playwright-core/package.json

start_redis || { bad "redis-server starts"; finish; exit 1; }
PORT=$(free_port)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    PORT NUM_WORKERS=1 SYNC_THREADS=2 MAX_QUEUE=1 MAX_BODY_BYTES=2M LOG_LEVEL=info
start_bg proxy "$TANDEM" proxy
health() { curl -s -m 2 "http://127.0.0.1:$PORT/health" 2>/dev/null | grep -q '"health"'; }
if ! wait_until 30 health; then
    bad "proxy answers /health within 30 s" "$(tail -5 "$TMP/proxy.log")"
    finish
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
URL=http://127.0.0.1:$PORT IMAGE=$CAT IMAGE2=$TEST_DATA/images/dog.jpg OUT_DIR=$OUT WORKER_CMD="$TANDEM worker" \
    WORKER_PID_FILE=$TMP/worker.pid REDIS_STOP_CMD="redis-cli -p $RPORT shutdown nosave" \
    timeout 150 node tests/browser/page.js >"$TMP/page.out" 2>&1
rc=$?
[ -s "$TMP/worker.pid" ] && PGIDS+=("$(cat "$TMP/worker.pid")")
cat "$TMP/page.out"
PASS=$((PASS + $(grep -c '^ok - ' "$TMP/page.out")))
FAIL=$((FAIL + $(grep -c '^FAIL - ' "$TMP/page.out")))
[ "$rc" -eq 0 ] || grep -q '^FAIL - ' "$TMP/page.out" || bad "browser test exits 0" "exit $rc"
for shot in fast accurate narrow; do
    check "screenshot $OUT/$shot.png saved" test -s "$OUT/$shot.png"
done
check "no sanitizer report in the proxy's log" \
    bash -c "! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' '$TMP/proxy.log'"
finish
