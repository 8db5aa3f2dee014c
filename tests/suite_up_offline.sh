#!/usr/bin/env bash
# `tandem up` offline, as a newcomer runs it: no MODEL_MIRROR, no model path,
# no MODEL_SET, no Model Zoo download possible (a proxy that refuses every
# connection stands in for "no network"), started outside the repository.
# It must run the real int8 pair shipped in data/models/st-int8 (found beside
# the binary), say so in one log line, and answer real labels: chelsea.png is
# a cat for the fast and the accurate model, dog.jpg a dog for the accurate
# one, with probabilities. Random-weight test models left in MODEL_DIR by an
# earlier run are passed over without TANDEM_ALLOW_TEST_MODELS=1.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
TANDEM=$(realpath "$TANDEM")
TEST_DATA=$(realpath "$TEST_DATA")
JGET=$(realpath tests/proxy/jget.py)
unset REDIS_HOST REDIS_PORT MODEL_MIRROR MODEL_SET TANDEM_ALLOW_TEST_MODELS SYNC_MODEL_PATH \
    ASYNC_MODEL_PATH MODEL_DIR LABELS_PATH no_proxy NO_PROXY https_proxy http_proxy HTTPS_PROXY \
    ALL_PROXY
export NUM_WORKERS=1
# For `tandem up` only (curl here must reach the proxy directly).
OFFLINE=(https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9
    HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9)
cats='"(tabby|tiger cat|Egyptian cat|Persian cat|Siamese cat)"'
dogs='"(malamute|Siberian husky|Eskimo dog|German shepherd|[a-zA-Z ]*(terrier|hound|retriever|spaniel|schnauzer))"'

require "$TANDEM"

# up_in NAME DIR: `tandem up` with DIR as the current directory; waits for /health.
up_in() {
    PORT=$(free_port)
    URL=http://127.0.0.1:$PORT
    (cd "$2" && exec setsid env "${OFFLINE[@]}" PORT="$PORT" "$TANDEM" up >>"$TMP/$1.log" 2>&1) &
    UP=$!
    PGIDS+=("$UP")
    health() { curl -s -m 2 "$URL/health" 2>/dev/null | grep -q '"ok"'; }
    wait_until 90 health
}
down() {
    kill -TERM "$UP" 2>/dev/null
    wait_until 40 gone "$UP"
}

# ask NAME IMAGE TYPE: the fast answer in $TMP/NAME.fast, the job in $TMP/NAME.job.
ask() {
    curl -s -m 30 -H "Content-Type: $3" --data-binary "@$TEST_DATA/images/$2" "$URL/predict" \
        >"$TMP/$1.fast"
    local id
    id=$("$JGET" "$TMP/$1.fast" job_id 2>/dev/null)
    curl -s -m 40 "$URL/job/$id?wait=30" | "$JGET" /dev/stdin "$id" >"$TMP/$1.job" 2>/dev/null
}

mkdir -p "$TMP/fresh"
if up_in fresh "$TMP/fresh"; then
    ok "tandem up offline, no MODEL_MIRROR, outside the repository: answers /health"
    check "one log line says the shipped int8 pair runs" \
        grep -q 'running the real int8 pair shipped with tandem.*mobilenet_v1_0.5_128_quant.onnx.*mobilenet_v2_1.0_224_int8_per_tensor.onnx' "$TMP/fresh.log"
    check "no random-weight test models were made" \
        bash -c "! grep -q 'RANDOM WEIGHTS' '$TMP/fresh.log' && [ ! -e '$TMP/fresh/models/TEST-MODELS' ]"
    ask cat chelsea.png image/png
    check "chelsea.png: the fast answer is a cat, with probabilities ($(grep -o '"result_sync":"[^"]*"' "$TMP/cat.fast"))" \
        bash -c "grep -qE '\"result_sync\": ?$cats' '$TMP/cat.fast' && grep -q '\"scores\": \\?\"probabilities\"' '$TMP/cat.fast'"
    check "chelsea.png: the accurate answer is a cat ($(grep -o '"prediction": *"[^"]*"' "$TMP/cat.job" | head -1))" \
        grep -qE "\"prediction\": ?$cats" "$TMP/cat.job"
    ask dog dog.jpg image/jpeg
    check "dog.jpg: the accurate answer is a dog ($(grep -o '"prediction": *"[^"]*"' "$TMP/dog.job" | head -1))" \
        grep -qE "\"prediction\": ?$dogs" "$TMP/dog.job"
else
    bad "tandem up offline answers /health within 90 s" "$(tail -5 "$TMP/fresh.log")"
fi
down

# Test models from an earlier TANDEM_ALLOW_TEST_MODELS=1 run: passed over
# (junk files here: loading them would stop the proxy).
mkdir -p "$TMP/marked/models"
echo "random-weight test models from tools/gen_test_models.py" >"$TMP/marked/models/TEST-MODELS"
echo junk >"$TMP/marked/models/mobilenet_v2.onnx"
echo junk >"$TMP/marked/models/resnet50.onnx"
if up_in marked "$TMP/marked"; then
    ask mcat chelsea.png image/png
    check "test models left in models/ are passed over for the shipped pair (warned, cat answered)" \
        bash -c "grep -q 'holds random-weight test models' '$TMP/marked.log' &&
                 grep -q 'running the real int8 pair shipped' '$TMP/marked.log' &&
                 grep -qE '\"prediction\": ?$cats' '$TMP/mcat.job'"
else
    bad "tandem up with test models in models/ answers" "$(tail -5 "$TMP/marked.log")"
fi
down

check "no sanitizer report in any log" \
    bash -c "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$TMP'/*.log"
finish
