#!/usr/bin/env bash
# WORKER_NICE: the real `tandem worker` supervisor on a private redis-server
# with the real int8 MobileNetV2. The nice value is read from
# /proc/PID/task/TID/stat of the supervisor, of each worker and of each of
# their threads (OpenMP, heartbeat), and from /proc/PID/autogroup (the
# supervisor leads its session here): the default, a value of our own, a
# worker restarted after SIGKILL, and an out-of-range value refused.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

SLOW=$TEST_DATA/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx
require "$TANDEM" "$SLOW"
start_redis || { bad "redis-server starts"; finish; exit 1; }
export REDIS_HOST=127.0.0.1 REDIS_PORT=$RPORT ASYNC_MODEL_PATH=$SLOW NUM_WORKERS=2 \
    LOG_LEVEL=info QUEUE_NAME=queue:jobs
unset LABELS_PATH WORKER_NICE

# The distinct nice values of every thread of the processes given (field 19
# of stat; the command name in parentheses may hold spaces).
nices() {
    local p
    for p in "$@"; do
        cat /proc/"$p"/task/*/stat 2>/dev/null | sed 's/.*) //' | awk '{print $17}'
    done | sort -u | paste -sd' '
}
workers_up() { [ "$(rcli SCARD workers)" -ge 2 ]; }

# run_with NICE EXPECTED: starts the supervisor (WORKER_NICE=NICE, or the
# default when NICE is empty) and checks every thread runs at EXPECTED.
run_with() {
    local want=$2 label=${1:-default}
    rcli FLUSHALL >/dev/null
    if [ -n "$1" ]; then
        WORKER_NICE=$1 start_bg "sup$label" "$TANDEM" worker
    else
        start_bg "sup$label" "$TANDEM" worker
    fi
    SUP=$BG_PID
    if ! wait_until 30 workers_up; then
        bad "WORKER_NICE=$label: workers start" "$(tail -3 "$TMP/sup$label.log")"
        return
    fi
    local kids
    kids=$(pgrep -P "$SUP" | paste -sd' ')
    check "WORKER_NICE=$label: 2 workers" test "$(wc -w <<<"$kids")" -eq 2
    got=$(nices "$SUP")
    check "WORKER_NICE=$label: the supervisor runs at nice $want (got $got)" test "$got" = "$want"
    got=$(nices $kids)
    check "WORKER_NICE=$label: every thread of both workers at nice $want (got $got)" \
        test "$got" = "$want"
    # start_bg runs it with setsid: its session (and autogroup) is its own.
    got=$(sed 's/.*nice //' /proc/"$SUP"/autogroup 2>/dev/null || echo none)
    if [ -e /proc/self/autogroup ]; then
        check "WORKER_NICE=$label: the session's autogroup at nice $want too (got $got)" \
            test "$got" = "$want"
    fi
    check "WORKER_NICE=$label: the supervisor and the workers log it" \
        bash -c "grep -q 'supervisor: .*nice $want' '$TMP/sup$label.log' &&
                 [ \$(grep -c 'ready: .*nice $want' '$TMP/sup$label.log') -ge 2 ]"
}

out=$("$TANDEM" worker --help 2>&1)
check "worker --help documents WORKER_NICE" grep -q WORKER_NICE <<<"$out"
WORKER_NICE=20 "$TANDEM" worker --check-config >"$TMP/cc.log" 2>&1
rc=$?
check "WORKER_NICE=20 refused with exit 2 and a message" \
    bash -c "[ $rc -eq 2 ] && grep -q WORKER_NICE '$TMP/cc.log'"

# Lowering a nice value needs privilege: a suite started at a higher one
# expects that one instead.
base=$(nices $$)
max() { echo $(($1 > $2 ? $1 : $2)); }
run_with "" "$(max "$base" 10)"
kill -TERM "$SUP"
wait_until 30 gone "$SUP"

mine=$(max "$base" 3)
run_with "$mine" "$mine"
# A restarted worker inherits it too.
victim=$(pgrep -P "$SUP" | head -1)
kill -KILL "$victim"
restarted() { [ "$(pgrep -P "$SUP" | grep -vc "^$victim\$")" -ge 2 ] && [ "$(rcli SCARD workers)" -ge 2 ]; }
if wait_until 30 restarted; then
    got=$(nices $(pgrep -P "$SUP"))
    check "a worker restarted after SIGKILL runs at nice $mine too (got $got)" test "$got" = "$mine"
else
    bad "the killed worker is restarted"
fi
kill -TERM "$SUP"
wait_until 30 gone "$SUP"
check "the suite's own shell is untouched (nice $base)" test "$(nices $$)" = "$base"
finish
