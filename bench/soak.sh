#!/usr/bin/env bash
# Soak test (issue #7): a real stack for DURATION seconds under mixed traffic,
# with worker kills and a Redis restart; reports memory growth, answers by
# status, unexpected errors and lost jobs. Figures and a verdict; not part of
# `make test` (it takes 30 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: bench/soak.sh [--help]

Starts a private redis-server (appendonly yes, so a restart loses no
acknowledged job), `tandem proxy` and `tandem worker` (NUM_WORKERS=2) with
the shipped int8 models (data/models/st-int8), then for DURATION seconds:
  - mixed traffic at RATE req/s (bench/soak_traffic.py): valid POST /predict
    (raw bytes and JSON base64), invalid ones (not an image, truncated, too
    large, bad JSON), bad job ids, GET /health and GET /job/{id}?wait=5;
  - every KILL_EVERY seconds, SIGKILL of the newest worker process (so the
    oldest one lives through the whole run and its memory growth shows);
  - at half time, Redis stopped with SIGTERM and, REDIS_DOWN seconds later,
    started again on its port with the same data.
Then it waits for the queue to drain and reports:
  - VmRSS of the proxy, the worker supervisor and each worker process after
    warm-up and at the end (target growth < 5 %), and samples every 30 s;
  - answers by kind and status; unexpected answers (any 5xx or no answer,
    except 503 while Redis is down; a 4xx for a valid request; a 2xx for an
    invalid one);
  - jobs lost: every job id that got 200 must end `done`, or `failed` with an
    error (target 0).
Exit status 0 when there was no unexpected answer, no lost job and RSS grew
< 5 %; 1 otherwise.

Environment:
  DURATION     seconds of traffic (default 1800)
  RATE         requests per second (default 4)
  KILL_EVERY   seconds between worker kills (default 60; 0 = none)
  REDIS_DOWN   seconds Redis stays stopped at half time (default 5)
  SOAK_DIR     where the logs, request log and RSS samples are kept
               (default build/soak)
  BUILD, TANDEM, TEST_DATA  as in the test suites
EOF
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

. tests/lib.sh
DURATION=${DURATION:-1800}
RATE=${RATE:-4}
KILL_EVERY=${KILL_EVERY:-60}
REDIS_DOWN=${REDIS_DOWN:-5}
SOAK_DIR=${SOAK_DIR:-$BUILD/soak}
FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
for f in "$TANDEM" "$FAST" "$SLOW" "$TEST_DATA/images/dog.jpg"; do
    [ -e "$f" ] || { echo "bench/soak.sh: missing $f" >&2; exit 1; }
done
rm -rf "$SOAK_DIR"
mkdir -p "$SOAK_DIR"
keep() { cp "$TMP"/*.log "$SOAK_DIR"/ 2>/dev/null; }
trap 'keep; cleanup' EXIT
now() { date +%s.%N | cut -c1-14; }
say() { echo "[$(date -u +%H:%M:%S)] $*"; }

# Redis with an append-only file in one directory kept across the restart.
redis_up() {
    /usr/bin/redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes \
        --dir "$TMP/redis" --loglevel warning >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_until 20 bash -c "redis-cli -h 127.0.0.1 -p $RPORT PING 2>/dev/null | grep -q PONG"
}
RPORT=$(free_port)
mkdir -p "$TMP/redis"
redis_up || { echo "redis-server did not start" >&2; exit 1; }
PORT=$(free_port)
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT PORT SYNC_MODEL_PATH=$FAST ASYNC_MODEL_PATH=$SLOW \
    NUM_WORKERS=2 JOB_TTL=7200 MAX_BODY_BYTES=2M MAX_QUEUE=10000 LOG_LEVEL=info
unset LABELS_PATH JOB_ID_LENGTH
URL=http://127.0.0.1:$PORT
start_bg proxy "$TANDEM" proxy
PROXY=$BG_PID
start_bg worker "$TANDEM" worker
SUP=$BG_PID
health() { curl -s -m 2 "$URL/health" 2>/dev/null | grep -q '"health"'; }
two() { [ "$(pgrep -P "$SUP" | wc -l)" -eq 2 ]; }
wait_until 60 health || { echo "proxy did not start: $(tail -3 "$TMP/proxy.log")" >&2; exit 1; }
wait_until 60 two || { echo "workers did not start: $(tail -3 "$TMP/worker.log")" >&2; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# sample LABEL: one line per process: label, time, role, pid, VmRSS kB.
sample() {
    local t p
    t=$(now)
    printf '%s\t%s\tproxy\t%s\t%s\n' "$1" "$t" "$PROXY" "$(rss "$PROXY")"
    printf '%s\t%s\tsupervisor\t%s\t%s\n' "$1" "$t" "$SUP" "$(rss "$SUP")"
    for p in $(pgrep -P "$SUP"); do printf '%s\t%s\tworker\t%s\t%s\n' "$1" "$t" "$p" "$(rss "$p")"; done
}

# Warm-up: every image through both models, twice, so that first-use
# allocations are behind the start figures.
say "warm-up"
for i in 1 2; do
    for f in "$TEST_DATA"/images/*.jpg "$TEST_DATA"/images/*.png; do
        id=$(curl -s -m 20 -H 'Content-Type: application/octet-stream' --data-binary @"$f" "$URL/predict" |
            /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin).get('job_id',''))" 2>/dev/null)
        [ -n "$id" ] && curl -s -m 20 -o /dev/null "$URL/job/$id?wait=10"
    done
done
sleep 2
sample start | tee "$SOAK_DIR/rss.tsv"

say "traffic: $RATE req/s for $DURATION s; worker kill every $KILL_EVERY s; Redis restart at $((DURATION / 2)) s"
/usr/bin/python3 bench/soak_traffic.py "$URL" "$TEST_DATA/images" "$RATE" "$DURATION" \
    "$SOAK_DIR/requests.tsv" &
TRAFFIC=$!
t0=$(date +%s)
next_kill=$((t0 + KILL_EVERY))
next_sample=$((t0 + 30))
restart_at=$((t0 + DURATION / 2))
kills=0 restarted=0
: >"$SOAK_DIR/events.tsv"
while kill -0 "$TRAFFIC" 2>/dev/null; do
    t=$(date +%s)
    if [ "$KILL_EVERY" -gt 0 ] && [ "$t" -ge "$next_kill" ]; then
        victim=$(pgrep -n -P "$SUP")
        if [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null; then
            kills=$((kills + 1))
            printf '%s\tkill\t%s\n' "$(now)" "$victim" >>"$SOAK_DIR/events.tsv"
        fi
        next_kill=$((t + KILL_EVERY))
    fi
    if [ $restarted -eq 0 ] && [ "$t" -ge "$restart_at" ]; then
        printf '%s\tredis_down\n' "$(now)" >>"$SOAK_DIR/events.tsv"
        say "Redis: SIGTERM"
        stop_redis
        sleep "$REDIS_DOWN"
        redis_up || say "Redis did not come back"
        printf '%s\tredis_up\n' "$(now)" >>"$SOAK_DIR/events.tsv"
        say "Redis: up again"
        restarted=1
    fi
    if [ "$t" -ge "$next_sample" ]; then
        sample "$((t - t0))" >>"$SOAK_DIR/rss.tsv"
        next_sample=$((t + 30))
    fi
    sleep 1
done
wait "$TRAFFIC"
say "traffic over after $kills worker kills; waiting for the queue to drain"
drained() { [ "$(rcli LLEN queue:jobs)" = 0 ] && [ -z "$(rcli --scan --pattern 'processing:*' | while read -r k; do rcli LRANGE "$k" 0 -1; done)" ]; }
wait_until 300 drained || say "queue not drained after 300 s"
sleep 5
sample end | tee -a "$SOAK_DIR/rss.tsv"

# Final state of every job that got 200: status and error, one HMGET each.
cut -f5 "$SOAK_DIR/requests.tsv" | grep . | sort -u >"$SOAK_DIR/ids.txt"
sed 's/^/HMGET job:/; s/$/ status error/' "$SOAK_DIR/ids.txt" | rcli >"$SOAK_DIR/final.txt"

/usr/bin/python3 - "$SOAK_DIR" "$DURATION" "$RATE" "$kills" <<'EOF'
import collections, sys
d, duration, rate, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
events = [l.rstrip("\n").split("\t") for l in open(d + "/events.tsv")]
down = [float(e[0]) for e in events if e[1] == "redis_down"]
up = [float(e[0]) for e in events if e[1] == "redis_up"]
# 503 is the answer while Redis is away and until the proxy's next reconnect.
window = (down[0] - 1, up[0] + 15) if down and up else None
valid = {"raw", "json", "wait", "health"}
counts = collections.Counter()
unexpected = collections.Counter()
examples = {}
n503 = 0
for line in open(d + "/requests.tsv"):
    t, kind, code, secs, jid = line.rstrip("\n").split("\t")
    t, code = float(t), int(code)
    counts[(kind, code)] += 1
    in_window = window is not None and window[0] <= t <= window[1]
    why = None
    if code == 503 and in_window:
        n503 += 1
    elif code == 0 or code >= 500:
        why = "no answer" if code == 0 else "%d" % code
    elif kind in valid and code != 200:
        why = "%d for a valid request" % code
    elif kind not in valid and code < 400:
        why = "%d for an invalid request" % code
    if why:
        unexpected[(kind, why)] += 1
        examples.setdefault((kind, why), "t=%.1f s after start, %s s" % (t, secs))
print("\n== answers by kind and status (%s s at %s req/s)" % (duration, rate))
kinds = sorted({k for k, _ in counts})
for k in kinds:
    print("  %-10s %s" % (k, ", ".join("%d: %d" % (c, n) for (kk, c), n in sorted(counts.items()) if kk == k)))
print("  total      %d requests" % sum(counts.values()))
if window:
    print("\n== Redis restart: down %.1f s; %d answers 503 within [down-1 s, up+15 s]" % (up[0] - down[0], n503))
print("\n== unexpected answers: %d" % sum(unexpected.values()))
for (k, why), n in sorted(unexpected.items()):
    print("  %-10s %-28s %d  (first %s)" % (k, why, n, examples[(k, why)]))
ids = [l.strip() for l in open(d + "/ids.txt")]
vals = open(d + "/final.txt").read().split("\n")
final = collections.Counter()
lost = []
for i, jid in enumerate(ids):
    st, err = vals[2 * i], vals[2 * i + 1]
    final[st or "(missing)"] += 1
    if not (st == "done" or (st == "failed" and err)):
        lost.append("%s:%s" % (jid, st or "missing"))
print("\n== jobs: %d got 200; final status %s" % (len(ids), dict(final)))
print("jobs lost: %d%s" % (len(lost), (" (" + " ".join(lost[:10]) + ")") if lost else ""))
rows = [l.rstrip("\n").split("\t") for l in open(d + "/rss.tsv")]
start = {(r[2], r[3]): int(r[4]) for r in rows if r[0] == "start"}
end = {(r[2], r[3]): int(r[4]) for r in rows if r[0] == "end"}
peak = collections.defaultdict(int)
for r in rows:
    peak[(r[2], r[3])] = max(peak[(r[2], r[3])], int(r[4]))
print("\n== VmRSS (MB) after warm-up and at the end (idle, queue drained); %d worker kills" % kills)
growth_ok = True
for key in sorted(set(start) | set(end)):
    s, e = start.get(key), end.get(key)
    if s and e:
        g = 100.0 * (e - s) / s
        growth_ok &= g < 5
        print("  %-10s pid %-8s start %7.1f  end %7.1f  peak %7.1f  growth %+5.1f %%" %
              (key[0], key[1], s / 1024, e / 1024, peak[key] / 1024, g))
    elif s:
        print("  %-10s pid %-8s start %7.1f  (killed during the run)" % (key[0], key[1], s / 1024))
    else:
        print("  %-10s pid %-8s                end %7.1f  (a replacement started during the run)" %
              (key[0], key[1], e / 1024))
ok = not unexpected and not lost and growth_ok
print("\nverdict: %s (targets: RSS growth < 5 %%, 0 unexpected answers, 0 jobs lost)" % ("met" if ok else "NOT met"))
sys.exit(0 if ok else 1)
EOF
