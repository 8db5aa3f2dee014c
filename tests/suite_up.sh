#!/usr/bin/env bash
# `tandem models`, `tandem up` and the container files.
#  - docker-compose.yml and Dockerfile parsed and checked (no Docker engine
#    here: the container path itself is not run);
#  - models: the st-int8 pair from a mirror folder (size + sha256), kept when
#    in place, a corrupt mirror refused, offline without a mirror refused with
#    a clear message, test models exported only when asked;
#  - up: the whole system (private redis-server, proxy, workers) answering
#    POST /predict and GET /job/{id}; SIGTERM stops everything (exit 0, no
#    process or temp dir left); a dying child stops the rest (exit 1);
#    REDIS_HOST set means no private Redis.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
ST=$TEST_DATA/models/st-int8
CAT=$TEST_DATA/images/chelsea.png
unset REDIS_HOST REDIS_PORT MODEL_MIRROR MODEL_SET TANDEM_ALLOW_TEST_MODELS SYNC_MODEL_PATH \
    ASYNC_MODEL_PATH MODEL_DIR LABELS_PATH PORT

# ---- container files ------------------------------------------------------
compose_check=$(/usr/bin/python3 - <<'PY' 2>&1
import yaml
c = yaml.safe_load(open("docker-compose.yml"))
s = c["services"]
errs = []
def need(cond, msg):
    if not cond: errs.append(msg)
need({"proxy", "worker", "redis"} <= set(s), "services proxy, worker, redis")
need(str(s["redis"].get("image", "")).startswith("redis:7"), "redis uses redis:7")
need("8000:8000" in [str(p) for p in s["proxy"].get("ports", [])], "proxy publishes 8000")
pe, we = s["proxy"].get("environment", {}), s["worker"].get("environment", {})
for k in ("REDIS_HOST", "REDIS_PORT", "SYNC_MODEL_PATH", "QUEUE_NAME"):
    need(k in pe, "proxy env " + k)
for k in ("REDIS_HOST", "REDIS_PORT", "ASYNC_MODEL_PATH", "NUM_WORKERS", "QUEUE_NAME"):
    need(k in we, "worker env " + k)
need(str(we.get("NUM_WORKERS")) == "2", "worker NUM_WORKERS=2")
need(pe.get("REDIS_HOST") == "redis" and we.get("REDIS_HOST") == "redis", "REDIS_HOST=redis")
need(any(str(v).startswith("models:") for v in s["worker"].get("volumes", [])), "models volume")
need("models" in (c.get("volumes") or {}), "named volume models")
print("; ".join(errs) if errs else "fine")
PY
)
check "docker-compose.yml parses: services, ports, env, volume ($compose_check)" \
    test "$compose_check" = fine
stages=$(grep -c '^FROM debian:12' Dockerfile)
sed -n '/AS runtime/,$p' Dockerfile | grep -v '^#' >"$TMP/runtime.dockerfile"
check "Dockerfile: two Debian 12 stages, runtime copies the binary from the build stage" \
    bash -c "[ $stages -eq 2 ] && grep -q 'COPY --from=build' '$TMP/runtime.dockerfile'"
check "Dockerfile: no -dev package in the runtime stage" \
    bash -c "! grep -q -- '-dev' '$TMP/runtime.dockerfile'"

# ---- tandem models --------------------------------------------------------
require "$TANDEM"
M=$TMP/models
MODEL_MIRROR=$ST timeout 60 "$TANDEM" models --dir "$M" --set st-int8 >"$TMP/m1.log" 2>&1
rc=$?
check "models --set st-int8 from a mirror (exit $rc)" \
    bash -c "[ $rc -eq 0 ] && cmp -s '$ST/mobilenet_v1_0.5_128_quant.onnx' '$M/mobilenet_v2.onnx' &&
             cmp -s '$ST/mobilenet_v2_1.0_224_int8_per_tensor.onnx' '$M/resnet50.onnx'"
timeout 60 "$TANDEM" models --dir "$M" --set st-int8 >"$TMP/m2.log" 2>&1
rc=$?
check "models: files in place are verified and kept, no mirror needed" \
    bash -c "[ $rc -eq 0 ] && [ \$(grep -c 'in place' '$TMP/m2.log') -eq 2 ]"

mkdir -p "$TMP/badmirror"
head -c 100000 "$ST/mobilenet_v1_0.5_128_quant.onnx" >"$TMP/badmirror/mobilenet_v1_0.5_128_quant.onnx"
cp "$ST/mobilenet_v2_1.0_224_int8_per_tensor.onnx" "$TMP/badmirror/"
MODEL_MIRROR=$TMP/badmirror timeout 90 "$TANDEM" models --dir "$TMP/m3" --set st-int8 \
    </dev/null >"$TMP/m3.log" 2>&1
rc=$?
check "models: a truncated mirror file is refused (size), not installed" \
    bash -c "[ $rc -ne 0 ] && grep -q 'expected 1394525' '$TMP/m3.log' && [ ! -e '$TMP/m3/mobilenet_v2.onnx' ]"
printf 'x' >>"$TMP/m3/resnet50.onnx"
MODEL_MIRROR=$ST timeout 90 "$TANDEM" models --dir "$TMP/m3" --set st-int8 >"$TMP/m3b.log" 2>&1
rc=$?
check "models: a damaged file in place is replaced from the mirror" \
    bash -c "[ $rc -eq 0 ] && cmp -s '$ST/mobilenet_v2_1.0_224_int8_per_tensor.onnx' '$TMP/m3/resnet50.onnx'"

start=$(date +%s)
timeout 120 "$TANDEM" models --dir "$TMP/m4" </dev/null >"$TMP/m4.log" 2>&1
rc=$?
took=$(($(date +%s) - start))
check "models: zoo set offline, no mirror: fails in ${took}s with a clear message" \
    bash -c "[ $rc -eq 1 ] && grep -q 'no real models could be had' '$TMP/m4.log' &&
             [ ! -e '$TMP/m4/resnet50.onnx' ]"
"$TANDEM" models --set nonsense >/dev/null 2>&1
check "models: an unknown set is a usage error" test $? -eq 2

# Export: reuse the generated cache when there is one (the generator skips
# files that exist), so this costs a Python start rather than an export.
if [ -d build/test-models ]; then
    mkdir -p "$TMP/m5/test-models"
    for f in build/test-models/*.onnx; do ln -s "$(realpath "$f")" "$TMP/m5/test-models/"; done
fi
timeout 600 "$TANDEM" models --dir "$TMP/m5" --export-test-models </dev/null >"$TMP/m5.log" 2>&1
rc=$?
check "models --export-test-models: architecture-identical files and a loud warning" \
    bash -c "[ $rc -eq 0 ] && [ -s '$TMP/m5/mobilenet_v2.onnx' ] && [ -s '$TMP/m5/resnet50.onnx' ] &&
             [ -e '$TMP/m5/TEST-MODELS' ] && grep -q 'RANDOM WEIGHTS' '$TMP/m5.log'"

# ---- tandem up ----------------------------------------------------------
PORT=$(free_port)
U=$TMP/upmodels
start_bg up env MODEL_DIR="$U" SYNC_MODEL_PATH="$U/mobilenet_v2.onnx" \
    ASYNC_MODEL_PATH="$U/resnet50.onnx" MODEL_SET=st-int8 MODEL_MIRROR="$ST" PORT="$PORT" \
    NUM_WORKERS=2 "$TANDEM" up
UP=$BG_PID
health() { curl -sf "http://127.0.0.1:$PORT/health" | grep -q '"ok"'; }
if wait_until 60 health; then
    ok "tandem up: GET /health answers on port $PORT"
    check "tandem up says where it listens" \
        wait_until 5 grep -q "http://127.0.0.1:$PORT" "$TMP/up.log"
    ans=$(curl -s -m 20 -H 'Content-Type: image/png' --data-binary "@$CAT" "http://127.0.0.1:$PORT/predict")
    id=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])' <<<"$ans" 2>/dev/null)
    sync=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["result_sync"])' <<<"$ans" 2>/dev/null)
    check "tandem up: POST /predict -> job id and a cat label at once ($sync)" \
        bash -c "[ -n '$id' ] && grep -qiE 'cat|tabby|lynx' <<<'$sync'"
    job=$(curl -s -m 30 "http://127.0.0.1:$PORT/job/$id?wait=20")
    pred=$(/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]]["prediction"])' "$id" <<<"$job" 2>/dev/null)
    check "tandem up: GET /job/{id} -> a cat label from the slow model ($pred)" \
        grep -qiE 'cat|tabby|lynx' <<<"$pred"
else
    bad "tandem up: GET /health answers within 60 s" "$(tail -5 "$TMP/up.log")"
fi
redis_dir=$(grep -o '/tmp/tandem-redis-[A-Za-z0-9]*' "$TMP/up.log" | head -1)
kill -TERM "$UP"
wait_until 40 gone "$UP"
wait "$UP"
rc=$?
check "tandem up: SIGTERM stops everything, exit 0" test "$rc" -eq 0
check "tandem up: no process of the group is left" bash -c "! pgrep -g $UP >/dev/null"
check "tandem up: its redis directory is removed" bash -c "[ -n '$redis_dir' ] && [ ! -e '$redis_dir' ]"

# A child that dies stops the rest.
start_bg up2 env MODEL_DIR="$U" SYNC_MODEL_PATH="$U/mobilenet_v2.onnx" \
    ASYNC_MODEL_PATH="$U/resnet50.onnx" PORT="$PORT" NUM_WORKERS=1 "$TANDEM" up
UP2=$BG_PID
if wait_until 60 health; then
    proxy_pid=$(pgrep -g "$UP2" -f 'tandem proxy' | head -1)
    kill -KILL "$proxy_pid"
    wait_until 40 gone "$UP2"
    wait "$UP2"
    rc=$?
    check "tandem up: a child killed -> the rest stopped, exit 1, with a message" \
        bash -c "[ $rc -eq 1 ] && grep -q 'proxy was killed by signal 9' '$TMP/up2.log' &&
                 ! pgrep -g $UP2 >/dev/null"
else
    bad "tandem up (second run) answers" "$(tail -5 "$TMP/up2.log")"
fi

# REDIS_HOST set: no private redis-server.
start_redis
start_bg up3 env MODEL_DIR="$U" SYNC_MODEL_PATH="$U/mobilenet_v2.onnx" \
    ASYNC_MODEL_PATH="$U/resnet50.onnx" PORT="$PORT" NUM_WORKERS=1 REDIS_HOST=127.0.0.1 \
    REDIS_PORT="$RPORT" "$TANDEM" up
UP3=$BG_PID
if wait_until 60 health; then
    check "tandem up with REDIS_HOST: uses it, starts no redis-server" \
        bash -c "grep -q 'using the redis at 127.0.0.1:$RPORT' '$TMP/up3.log' &&
                 ! pgrep -g $UP3 redis-server >/dev/null"
else
    bad "tandem up with REDIS_HOST answers" "$(tail -5 "$TMP/up3.log")"
fi
kill -TERM "$UP3"
wait_until 40 gone "$UP3"

check "no sanitizer report in any log" \
    bash -c "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$TMP'/*.log"

finish
