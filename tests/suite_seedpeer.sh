#!/usr/bin/env bash
# The seed peer of bench/seed.sh (bench/seed/: the seed's own Python design,
# FastAPI + uvicorn + redis-py + a ProcessPoolExecutor, with ONNX Runtime
# through bench/seed/ort.py, a ctypes binding of its C library):
#   1. ort.py gives the same outputs as onnxruntime-node (tools/ort_run.js)
#      on the same f32 model and input (max |diff| <= 1e-4), and on the real
#      int8 MobileNetV2 (uint8 input);
#   2. ort.py raises ORT's own message on a bad model path and a bad input;
#   3. the peer service on a real redis-server answers POST /predict and
#      GET /job/{id} with the seed's JSON shapes and keys, and its labels on
#      data/images/dog.jpg equal `tandem classify` on the same files (the real
#      int8 MobileNetV2 as the fast model, ResNet50 f32 from build/test-models
#      as the slow one: both have a clear top-1);
#   4. bad requests get 4xx, an unknown job 404.
# Skips (with the reason) where python3-fastapi & co. or the models are missing.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
PY=/usr/bin/python3

skip() {
    echo "SKIP - suite_seedpeer: $1"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}
MODELS=$BUILD/test-models
[ -d "$MODELS" ] || MODELS=build/test-models
F32=$MODELS/mobilenetv2_op13.onnx
SLOW=$MODELS/resnet50_op13.onnx
FAST=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
IMG=$TEST_DATA/images/dog.jpg
$PY -c 'import fastapi, uvicorn, redis' 2>/dev/null ||
    skip "python3-fastapi, python3-uvicorn or python3-redis is missing (scripts/deps.sh --test)"
for f in "$TANDEM" "$F32" "$SLOW" "$FAST" "$IMG"; do
    [ -e "$f" ] || skip "missing $f (make; make test-models)"
done
command -v node >/dev/null || skip "node is missing (scripts/deps.sh --test)"
[ -d node_modules/onnxruntime-node ] || skip "node_modules/onnxruntime-node is missing (scripts/deps.sh --test)"

echo "== 1. ort.py against onnxruntime-node"
# One random input per model, both runtimes on one intra-op thread.
cmp_ort() { # model dtype
    $PY - "$1" "$2" "$TMP" <<'PY'
import subprocess, sys
import numpy as np
sys.path.insert(0, "bench/seed")
import ort
model, dtype, tmp = sys.argv[1:]
sess = ort.InferenceSession(model, intra_op_num_threads=1)
inp = sess.get_inputs()[0]
shape = [d or 1 for d in inp.shape]
rng = np.random.default_rng(7)
x = rng.standard_normal(shape).astype(np.float32) if dtype == "f32" else rng.integers(0, 256, shape, dtype=np.uint8)
x.tofile(tmp + "/in.bin")
subprocess.run(["node", "tools/ort_run.js", model, tmp + "/in.bin", tmp + "/out.bin"], check=True)
ref = np.fromfile(tmp + "/out.bin", np.float32)
got = sess.run(None, {inp.name: x})[0].reshape(-1)
d = float(np.max(np.abs(got.astype(np.float32) - ref))) if got.size == ref.size else float("inf")
print("ORT %s, %s: %d outputs, max |ctypes - node| = %.3g" % (ort.get_version_string(), model, got.size, d))
sys.exit(0 if d <= 1e-4 else 1)
PY
}
check "ort.py = onnxruntime-node within 1e-4, f32 $(basename "$F32")" cmp_ort "$F32" f32
check "ort.py = onnxruntime-node within 1e-4, int8 $(basename "$FAST")" cmp_ort "$FAST" u8

# The random-weight test models answer the same label for every image, so
# the f32 preprocessing is checked on the scores: the peer's top-5 softmax
# on dog.jpg against the probabilities `tandem classify` prints.
cmp_scores() { # model
    "$TANDEM" classify --model "$1" --threads 1 --top 5 "$IMG" >"$TMP/tandem_top5.txt" || return 1
    $PY - "$1" "$IMG" "$TMP/tandem_top5.txt" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "bench/seed")
import common
model, img, ref = sys.argv[1:]
c = common.Classifier(model, 1)
out = c.session.run(None, {c.input.name: c.preprocess(open(img, "rb").read())})[0].reshape(-1).astype(np.float64)
p = np.exp(out - out.max())
p /= p.sum()
want = [(float(l.split(None, 1)[0]), l.split(None, 1)[1].strip()) for l in open(ref).read().splitlines()[1:]]
got = [(p[k], c.labels[k]) for k in np.argsort(-p)[:len(want)]]
worst = max(abs(a[0] - b[0]) for a, b in zip(got, want))
print("peer top-5 %s | tandem %s | max |diff| %.4f" % (["%.4f %s" % g for g in got], ["%.4f %s" % w for w in want], worst))
sys.exit(0 if [g[1] for g in got] == [w[1] for w in want] and worst <= 2e-3 else 1)
PY
}
check "peer preprocessing + ORT = tandem classify's top-5 (labels, scores within 2e-3), $(basename "$SLOW")" cmp_scores "$SLOW"

echo "== 2. ORT errors become exceptions with ORT's message"
errs=$($PY - "$F32" <<'PY' 2>&1
import sys
import numpy as np
sys.path.insert(0, "bench/seed")
import ort
try:
    ort.InferenceSession("/nonexistent/model.onnx")
    print("no error on a missing file")
except ort.OrtError as e:
    print("missing:", e)
s = ort.InferenceSession(sys.argv[1], intra_op_num_threads=1)
try:
    s.run(None, {s.get_inputs()[0].name: np.zeros((1, 2, 224, 224), np.float32)})
    print("no error on a bad shape")
except ort.OrtError as e:
    print("shape:", e)
PY
)
check "missing model file raises OrtError naming it" grep -q "missing:.*nonexistent/model.onnx" <<<"$errs"
check "wrong input shape raises OrtError" grep -qi "shape:.*dimensions" <<<"$errs"

echo "== 3. the peer service"
start_redis || { bad "redis-server did not start"; finish; exit 1; }
PORT=$(free_port)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT PORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    NUM_WORKERS=2 ENGINE_THREADS=1
URL=http://127.0.0.1:$PORT
start_bg proxy $PY bench/seed/proxy.py
start_bg worker $PY bench/seed/worker.py
WORKER=$BG_PID
wait_until 60 health || { bad "peer proxy did not start" "$(tail -5 "$TMP/proxy.log")"; finish; exit 1; }
ready() { grep -q '^ready' "$TMP/worker.log"; }
check "peer worker pool started" wait_until 60 ready
check "the pool holds NUM_WORKERS=2 processes" test "$(ps -o pid= --ppid "$WORKER" | wc -l)" -ge 2

want_fast=$("$TANDEM" classify --model "$FAST" --threads 1 --top 1 "$IMG" | head -1 | sed 's/^[^:]*: //')
want_slow=$("$TANDEM" classify --model "$SLOW" --threads 1 --top 1 "$IMG" | head -1 | sed 's/^[^:]*: //')
printf '{"image_data": "%s"}' "$(base64 -w0 "$IMG")" >"$TMP/body.json"
r=$(curl -s -m 30 -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/body.json" "$URL/predict")
field() { $PY -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2" 2>/dev/null; }
id=$(field "$r" "d['job_id']")
check "POST /predict returns exactly job_id and result_sync ($r)" \
    test "$(field "$r" "sorted(d)")" = "['job_id', 'result_sync']"
check "job_id is 6 characters" test "${#id}" -eq 6
check "result_sync = tandem classify's top-1 ($want_fast)" test "$(field "$r" "d['result_sync']")" = "$want_fast"
check "image:{id} stored with a TTL" test "$(rcli TTL "image:$id")" -gt 3000
done_job() { [ -n "$(field "$(curl -s -m 5 "$URL/job/$id")" "d['$id']['prediction']")" ]; }
check "the job completes" wait_until 60 done_job
j=$(curl -s -m 5 "$URL/job/$id")
check "GET /job/{id} is {id: {prediction}} ($j)" test "$(field "$j" "list(d) == ['$id'] and list(d['$id']) == ['prediction']")" = True
check "prediction = tandem classify's top-1 of ResNet50 ($want_slow)" test "$(field "$j" "d['$id']['prediction']")" = "$want_slow"
check "result:{id} holds the label with a TTL" test "$(rcli GET "result:$id")" = "$want_slow" -a "$(rcli TTL "result:$id")" -gt 3000
check "queue:jobs is drained" test "$(rcli LLEN queue:jobs)" -eq 0

echo "== 4. bad requests"
code() { curl -s -o /dev/null -w '%{http_code}' -m 10 "$@"; }
check "unknown job -> 404" test "$(code "$URL/job/zzzzzz")" = 404
check "bad base64 -> 400" test "$(code -X POST -H 'Content-Type: application/json' -d '{"image_data": "!!"}' "$URL/predict")" = 400
check "not an image -> 400" test "$(code -X POST -H 'Content-Type: application/json' -d '{"image_data": "aGVsbG8="}' "$URL/predict")" = 400
check "no image_data -> 4xx" grep -q '^4' <<<"$(code -X POST -H 'Content-Type: application/json' -d '{}' "$URL/predict")"
check "the proxy still answers" health
finish
