#!/usr/bin/env bash
# Several hosts and a Redis failover, on this machine: Linux network
# namespaces joined by veth links to a bridge that lives in a namespace of its
# own (nothing routes between them and the machine's network). Addresses are
# from 198.18.0.0/24 (RFC 2544's range for test networks), assigned here only.
#
#   r1: redis master + sentinel     r2: redis replica + sentinel
#   s3: a third sentinel            px: tandem proxy (REDIS_SENTINELS,
#   w1, w2: tandem worker, NUM_WORKERS=1 each     REDIS_MIN_REPLICAS=1)
#
# A steady stream of POST /predict runs throughout (inside px). Then:
#  1. w1's link goes down while it holds a job: w2 finishes that job once
#     w1's heartbeat expires;
#  2. the master is killed: the sentinels promote r2, proxy and workers
#     follow; 503s during the failover are counted and timed;
#  3. the old master comes back and becomes a replica; w1's link comes back.
# Every job id the proxy returned must end done, with one result (0 lost).
# Needs root and `ip netns`; says so and skips where namespaces are impossible.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

FAST=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
IMG=$TEST_DATA/images/dog.jpg
TANDEM=$(realpath "$TANDEM")
NS="tnd$$"
HOSTS=(r1 r2 s3 px w1 w2)
declare -A ADDR=([r1]=198.18.0.1 [r2]=198.18.0.2 [s3]=198.18.0.3 [px]=198.18.0.10
    [w1]=198.18.0.21 [w2]=198.18.0.22)
SENTINELS=198.18.0.1:26379,198.18.0.2:26379,198.18.0.3:26379
HB=3            # HEARTBEAT_TTL of the workers, seconds
STREAM_S=40     # length of the request stream
RATE=8          # requests per second

if [ "$(id -u)" -ne 0 ] || ! ip netns add "$NS-probe" 2>/dev/null; then
    echo "SKIP - suite_ha: network namespaces are impossible here (needs root and ip netns)"
    finish
    exit 0
fi
ip netns del "$NS-probe"
require "$TANDEM" "$FAST" "$SLOW" "$IMG"

in_ns() { local h=$1; shift; ip netns exec "$NS-$h" "$@"; }
# bg HOST NAME command...: a daemon in HOST with its own hostname (worker ids
# carry it), in its own process group, logging to $TMP/NAME.log.
bg() {
    local h=$1 name=$2
    shift 2
    setsid ip netns exec "$NS-$h" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$h" "$@" \
        >"$TMP/$name.log" 2>&1 &
    PGIDS+=($!)
    eval "PID_$name=$!"
    disown $!
}
net_cleanup() {
    local h
    for h in "${HOSTS[@]}" sw; do ip netns pids "$NS-$h" 2>/dev/null | xargs -r kill -KILL; done
    for h in "${HOSTS[@]}" sw; do ip netns del "$NS-$h" 2>/dev/null; done
}
trap 'net_cleanup; cleanup' EXIT

# ---- the network -----------------------------------------------------------
ip netns add "$NS-sw"
in_ns sw ip link add br0 type bridge
in_ns sw ip link set br0 up
for h in "${HOSTS[@]}"; do
    ip netns add "$NS-$h"
    in_ns "$h" ip link set lo up
    ip link add "$NS$h" type veth peer name "p$NS$h"
    ip link set "$NS$h" netns "$NS-$h"
    ip link set "p$NS$h" netns "$NS-sw"
    in_ns "$h" ip link set "$NS$h" name eth0
    in_ns "$h" ip addr add "${ADDR[$h]}/24" dev eth0
    in_ns "$h" ip link set eth0 up
    in_ns sw ip link set "p$NS$h" master br0
    in_ns sw ip link set "p$NS$h" up
done

# ---- redis, replica, sentinels --------------------------------------------
redis_on() { # host [extra args]: a redis-server on HOST's address, port 6379
    local h=$1
    shift
    mkdir -p "$TMP/$h"
    bg "$h" "redis_$h" /usr/bin/redis-server --port 6379 --bind "${ADDR[$h]}" --save "" \
        --appendonly no --dir "$TMP/$h" --protected-mode no --repl-diskless-sync-delay 0 "$@"
}
sentinel_on() {
    local h=$1
    cat >"$TMP/sentinel-$h.conf" <<CONF
port 26379
bind ${ADDR[$h]}
protected-mode no
dir $TMP
sentinel monitor mymaster ${ADDR[r1]} 6379 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 4000
sentinel parallel-syncs mymaster 1
CONF
    bg "$h" "sentinel_$h" /usr/bin/redis-server "$TMP/sentinel-$h.conf" --sentinel
}
rc_at() { local h=$1; shift; in_ns "$h" redis-cli -h "${ADDR[$h]}" -p 6379 "$@"; }
master_addr() { in_ns s3 redis-cli -h "${ADDR[s3]}" -p 26379 SENTINEL get-master-addr-by-name mymaster | head -n1; }

redis_on r1
redis_on r2 --replicaof "${ADDR[r1]}" 6379
for h in r1 r2 s3; do sentinel_on "$h"; done
# The servers were just started in the background: give them time to listen.
check "hosts reach each other (px -> r1, w2 -> r2)" wait_until 10 bash -c \
    "ip netns exec $NS-px redis-cli -h ${ADDR[r1]} PING | grep -q PONG && ip netns exec $NS-w2 redis-cli -h ${ADDR[r2]} PING | grep -q PONG"
check "replica r2 follows r1" wait_until 10 bash -c \
    "ip netns exec $NS-r2 redis-cli -h ${ADDR[r2]} INFO replication | tr -d '\r' | grep -qx 'master_link_status:up'"
check "three sentinels agree on r1" wait_until 10 bash -c \
    "[ \"\$(ip netns exec $NS-s3 redis-cli -h ${ADDR[s3]} -p 26379 SENTINEL get-master-addr-by-name mymaster | head -n1)\" = ${ADDR[r1]} ] && ip netns exec $NS-s3 redis-cli -h ${ADDR[s3]} -p 26379 SENTINEL sentinels mymaster | grep -c '^name$' | grep -qx 2"

# ---- tandem ------------------------------------------------------------------
export REDIS_SENTINELS=$SENTINELS REDIS_MASTER_NAME=mymaster REDIS_MIN_REPLICAS=1 \
    REDIS_WAIT_TIMEOUT_MS=1000 REDIS_TIMEOUT_MS=500 SYNC_MODEL_PATH=$(realpath "$FAST") \
    ASYNC_MODEL_PATH=$(realpath "$SLOW") HEARTBEAT_TTL=$HB NUM_WORKERS=1 SYNC_THREADS=1 \
    PORT=8000 LOG_LEVEL=info JOB_TTL=600 MAX_QUEUE=0
unset REDIS_HOST REDIS_PORT LABELS_PATH
bg px proxy "$TANDEM" proxy
bg w1 worker_w1 "$TANDEM" worker
bg w2 worker_w2 "$TANDEM" worker
URL=http://127.0.0.1:8000
check "proxy answers through the sentinels' master" wait_until 20 \
    ip netns exec "$NS-px" curl -sf -m 2 "$URL/health" -o /dev/null
check "both worker hosts beat" wait_until 20 bash -c \
    "[ \"\$(ip netns exec $NS-r1 redis-cli -h ${ADDR[r1]} --raw KEYS 'worker:*' | grep -c 'worker:w[12]-')\" = 2 ]"

# ---- the stream and the faults ----------------------------------------------
in_ns px tests/ha/stream.py "$URL" "$IMG" "$RATE" "$STREAM_S" "$TMP/stream.txt" &
STREAM=$!
now_s() { date +%s.%N; }
T0=$(now_s)
sleep 4

# 1. Cut w1 off while it holds a job: a job in its processing list that is
# still there once w1 can no longer reach Redis (else it finished just before
# the cut: link up, try again).
w1_job() {
    rc_at r1 --raw EVAL "for _, k in ipairs(redis.call('KEYS', 'processing:w1-*')) do local v = redis.call('LINDEX', k, 0); if v then return v end end return ''" 0 2>/dev/null
}
held=""
for _ in $(seq 20); do
    for _ in $(seq 200); do
        held=$(w1_job)
        [ -n "$held" ] && break
        sleep 0.01
    done
    in_ns w1 ip link set eth0 down
    T_CUT=$(now_s)
    sleep 0.5
    [ -n "$held" ] && [ "$(w1_job)" = "$held" ] && break
    held=""
    in_ns w1 ip link set eth0 up
    sleep 0.5
done
check "w1 held a job when its link went down (job '$held')" test -n "$held"
if check "w1's job is finished by w2 after w1's heartbeat expires" \
    wait_until $((HB * 4 + 10)) bash -c "[ \"\$(ip netns exec $NS-r1 redis-cli -h ${ADDR[r1]} --raw HGET job:$held status)\" = done ]"; then
    T_RESCUED=$(now_s)
    W=$(rc_at r1 --raw HGET "job:$held" worker)
    check "the rescued job was run by w2 (worker $W)" test "${W#w2-}" != "$W"
    echo "# cut-off worker's job finished elsewhere after $(echo "$T_RESCUED - $T_CUT" | bc) s (HEARTBEAT_TTL=$HB)"
fi

# 2. Kill the master mid-stream.
sleep 2
T_KILL=$(now_s)
kill -KILL -- "-$PID_redis_r1" 2>/dev/null
check "sentinels promote r2" wait_until 20 bash -c \
    "[ \"\$(ip netns exec $NS-s3 redis-cli -h ${ADDR[s3]} -p 26379 SENTINEL get-master-addr-by-name mymaster | head -n1)\" = ${ADDR[r2]} ]"
T_PROMOTED=$(now_s)
echo "# master killed -> r2 promoted in $(echo "$T_PROMOTED - $T_KILL" | bc) s"
check "proxy and worker log that they follow the new master" wait_until 15 bash -c \
    "grep -q 'master \"mymaster\" is ${ADDR[r2]}:6379' $TMP/proxy.log && grep -q 'master \"mymaster\" is ${ADDR[r2]}:6379' $TMP/worker_w2.log"

# 3. The old master comes back (as a replica), and so does w1's link.
sleep 3
T_BACK=$(now_s)
redis_on r1
check "the old master rejoins as a replica of r2" wait_until 20 bash -c \
    "ip netns exec $NS-r1 redis-cli -h ${ADDR[r1]} INFO replication | tr -d '\r' | grep -qx 'master_host:${ADDR[r2]}'"
in_ns w1 ip link set eth0 up

wait "$STREAM"
T_END=$(now_s)
# ---- the books ---------------------------------------------------------------
ids=$(awk '$2 == 200 && $3 != "-" {print $3}' "$TMP/stream.txt" | sort -u)
n_ok=$(echo "$ids" | grep -c .)
n_all=$(wc -l <"$TMP/stream.txt")
n_503=$(awk '$2 == 503' "$TMP/stream.txt" | wc -l)
n_other=$(awk '$2 != 200 && $2 != 503' "$TMP/stream.txt" | wc -l)
k=$(echo "$T_KILL - $T0" | bc)
p=$(echo "$T_PROMOTED - $T0" | bc)
b=$(echo "$T_BACK - $T0" | bc)
phase() { # from to: "N 503s over S s" among requests sent in [from, to)
    awk -v a="$1" -v z="$2" '$1 >= a && $1 < z && $2 == 503 {n++; if (!f) f = $1; l = $1}
        END {printf "%d 503s over %.1f s", n, n ? l - f : 0}' "$TMP/stream.txt"
}
echo "# stream: $n_all requests, $n_ok job ids returned, $n_503 answered 503, $n_other other"
echo "#   master down until promotion: $(phase "$k" "$p")"
echo "#   promoted, no replica yet (REDIS_MIN_REPLICAS=1 refuses): $(phase "$p" 1e9)"
echo "#   (old master restarted at +$(printf %.1f "$(echo "$b - $k" | bc)") s after the kill)"
check "the stream got job ids before and after the failover" test "$n_ok" -gt $((RATE * STREAM_S / 2))
check "every refused request was a 503 with JSON, none failed otherwise ($n_other)" test "$n_other" -eq 0

lost() { # ids not done on the current master
    local m h id
    m=$(master_addr)
    for h in r1 r2; do [ "${ADDR[$h]}" = "$m" ] && break; done
    for id in $ids; do
        [ "$(rc_at "$h" --raw HGET "job:$id" status)" = done ] || echo "$id"
    done
}
wait_until 30 bash -c "[ -z \"\$($(declare -f lost rc_at in_ns master_addr); NS=$NS; declare -A ADDR=([r1]=${ADDR[r1]} [r2]=${ADDR[r2]} [s3]=${ADDR[s3]}); ids='$(echo $ids)'; lost)\" ]"
missing=$(lost | tr '\n' ' ')
check "every job id the proxy returned ends done ($n_ok jobs, lost: ${missing:-none})" test -z "$missing"
m=$(master_addr)
for h in r1 r2; do [ "${ADDR[$h]}" = "$m" ] && M=$h; done
dups=0
for id in $ids; do
    [ "$(rc_at "$M" --raw LLEN "done:$id")" -le 1 ] 2>/dev/null || dups=$((dups + 1))
    [ -n "$(rc_at "$M" --raw GET "result:$id")" ] || dups=$((dups + 1))
done
check "each job has one result and one done marker" test "$dups" -eq 0
check "no job is left in a processing list or the queue" bash -c \
    "[ -z \"\$(ip netns exec $NS-$M redis-cli -h ${ADDR[$M]} --raw EVAL \"local n = redis.call('LLEN', 'queue:jobs') for _, k in ipairs(redis.call('KEYS', 'processing:*')) do n = n + redis.call('LLEN', k) end if n > 0 then return n end return ''\" 0)\" ]"
check "proxy and workers still run" bash -c "kill -0 $PID_proxy && kill -0 $PID_worker_w1 && kill -0 $PID_worker_w2"
finish
