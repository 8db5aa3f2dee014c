#!/usr/bin/env bash
# Both answers speak the same language: a private redis-server, the real
# `tandem proxy` (fast answer) and `tandem worker` (slow answer), on
#  - the shipped int8 pair (MobileNetV1's quantised uint8 softmax and
#    MobileNetV2's float softmax): scores are probabilities, "scores":
#    "probabilities";
#  - the float test models (logits): softmax applied, "scores": "softmax";
# in both cases every top-5 score of both answers is in [0,1], best first,
# and sums to at most 1;
#  - the 1001-class MobileNetV1 as both models with LABELS_PATH set, to the
#    1001-line (background first) and to the 1000-line labels file: the
#    proxy, the worker and `tandem classify --labels` name the same label
#    and the same top 5 for the same image.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
ST=$TEST_DATA/models/st-int8
V1=$ST/mobilenet_v1_0.5_128_quant.onnx
V2=$ST/mobilenet_v2_1.0_224_int8_per_tensor.onnx
F32_FAST=build/test-models/mobilenetv2_op13.onnx
F32_SLOW=build/test-models/resnet50_op13.onnx
IMAGES="chelsea.png coffee.png dog.jpg"
unset LABELS_PATH JOB_ID_LENGTH SYNC_MODEL_PATH ASYNC_MODEL_PATH

REQUIRE_HINT="make all test-models" require "$TANDEM" "$V1" "$V2" "$F32_FAST" "$F32_SLOW"
start_redis || { bad "redis-server starts"; finish; exit 1; }
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT PORT NUM_WORKERS=1 SYNC_THREADS=1 \
    ENGINE_THREADS=1 LOG_LEVEL=info QUEUE_NAME=queue:jobs


# start NAME FAST SLOW [LABELS]: proxy and worker on these models.
start() {
    local name=$1
    start_bg "$name-proxy" env SYNC_MODEL_PATH="$2" LABELS_PATH="${4:-}" "$TANDEM" proxy
    PROXY=$BG_PID
    start_bg "$name-worker" env ASYNC_MODEL_PATH="$3" LABELS_PATH="${4:-}" "$TANDEM" worker
    WORKER=$BG_PID
    wait_until 60 health
}
stop() {
    kill -TERM "$PROXY" "$WORKER" 2>/dev/null
    wait_until 30 gone "$PROXY"
    wait_until 30 gone "$WORKER"
}

# ask NAME IMAGE: posts the image, waits for its job; $TMP/NAME.fast and
# $TMP/NAME.job hold the two answers.
ask() {
    curl -s -m 30 -H 'Content-Type: application/octet-stream' --data-binary "@$TEST_DATA/images/$2" \
        "$URL/predict" >"$TMP/$1.fast"
    local id
    id=$(tests/proxy/jget.py "$TMP/$1.fast" job_id 2>/dev/null)
    curl -s -m 60 "$URL/job/$id?wait=30" >"$TMP/$1.job"
}

# probabilities NAME KIND: both answers' top 5 are probabilities (in [0,1],
# best first, sum <= 1) and the fast answer says how they were made (KIND).
probabilities() {
    /usr/bin/python3 - "$TMP/$1.fast" "$TMP/$1.job" "$2" <<'PY'
import json, sys
fast = json.load(open(sys.argv[1]))
job = json.load(open(sys.argv[2]))
(slow,) = job.values()
def fine(top):
    s = [t["score"] for t in top]
    return (len(s) == 5 and all(0 <= x <= 1 for x in s) and sum(s) <= 1 + 1e-4
            and all(a >= b for a, b in zip(s, s[1:])))
ok = fine(fast["top5"]) and slow["status"] == "done" and fine(slow["top5"]) \
    and fast.get("scores") == sys.argv[3]
if not ok:
    print("fast %s | slow %s" % (json.dumps(fast)[:300], json.dumps(slow)[:300]), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

# ---- scores are probabilities --------------------------------------------------
for pair in "int8 $V1 $V2 probabilities" "f32 $F32_FAST $F32_SLOW softmax"; do
    read -r name fast slow kind <<<"$pair"
    if ! start "$name" "$fast" "$slow"; then
        bad "$name: proxy answers" "$(tail -3 "$TMP/$name-proxy.log")"
        stop
        continue
    fi
    for img in $IMAGES; do
        ask "$name-$img" "$img"
        check "$name: $img: fast and slow top-5 scores are probabilities (\"scores\": \"$kind\")" \
            probabilities "$name-$img" "$kind"
    done
    stop
done

# Every classifier model shipped or generated for the tests, through `tandem
# classify` (the same code path): probabilities, best first, sum <= 1.
for m in "$V1" "$V2" build/test-models/mobilenetv2_*.onnx build/test-models/resnet50_*.onnx; do
    "$TANDEM" classify --model "$m" --top 5 "$TEST_DATA/images/chelsea.png" >"$TMP/cls.out" 2>&1
    if awk '/^  /{ if ($1 < 0 || $1 > 1 || (n && $1 > prev + 1e-6)) bad = 1; sum += $1; prev = $1; n++ }
            END { exit bad || n != 5 || sum > 1.0001 }' "$TMP/cls.out"; then
        ok "classify $(basename "$m"): top-5 scores are probabilities"
    else
        bad "classify $(basename "$m")" "$(head -c 300 "$TMP/cls.out")"
    fi
done

# ---- one label for one image: proxy, worker, classify ------------------------------
# same NAME IMAGE LABELS: fast, slow and `tandem classify` give the same top 5.
same() {
    "$TANDEM" classify --model "$V1" --labels "$3" "$TEST_DATA/images/$2" >"$TMP/$1.cli" 2>&1
    /usr/bin/python3 - "$TMP/$1.fast" "$TMP/$1.job" "$TMP/$1.cli" <<'PY'
import json, sys
fast = json.load(open(sys.argv[1]))
(slow,) = json.load(open(sys.argv[2])).values()
cli = [l.split(None, 1)[1] for l in open(sys.argv[3]).read().splitlines()[1:]]
a = [t["label"] for t in fast["top5"]]
b = [t["label"] for t in slow.get("top5", [])]
ok = a == b == cli and fast["result_sync"] == slow["prediction"] == cli[0]
print("%s: fast %s, slow %s, classify %s" % ("same" if ok else "DIFFERENT", a[:2], b[:2], cli[:2]),
      file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}
for labels in labels_imagenet.txt labels_imagenet_2012.txt; do
    n=$(grep -c "" "$ST/$labels")
    if ! start "lab$n" "$V1" "$V1" "$ST/$labels"; then
        bad "LABELS_PATH=$labels: proxy answers" "$(tail -3 "$TMP/lab$n-proxy.log")"
        stop
        continue
    fi
    for img in $IMAGES; do
        ask "lab$n-$img" "$img"
        if same "lab$n-$img" "$img" "$ST/$labels" 2>"$TMP/same.err"; then
            ok "1001-class model, LABELS_PATH with $n lines: $img: proxy, worker and classify agree ($(cat "$TMP/same.err"))"
        else
            bad "1001-class model, LABELS_PATH with $n lines: $img" "$(cat "$TMP/same.err")"
        fi
    done
    stop
done
check "the cat is a cat with the 1001-line labels file" \
    grep -qiE '"result_sync": ?"(tabby|tiger cat|Egyptian cat)' "$TMP/lab1001-chelsea.png.fast"

check "no sanitizer report in any log" \
    bash -c "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$TMP'/*.log"
finish
