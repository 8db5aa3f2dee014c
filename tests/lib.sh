# The helpers every shell suite shares: the BUILD, TANDEM and TEST_DATA
# defaults, check counting (ok, bad, check and the closing "N passed, M
# failed" line of finish), prerequisites (require), a scratch directory $TMP,
# a private redis-server on a free port, bounded waits, and cleanup of every
# process we started. Sourced by tests/suite_*.sh and bench/service.sh.

# Where the build and the test data are (run_all.sh exports them; a suite
# run on its own from the repository root gets the same defaults).
BUILD=${BUILD:-build}
TANDEM=${TANDEM:-$BUILD/tandem}
TEST_DATA=${TEST_DATA:-data}

PASS=0
FAIL=0
TMP=$(mktemp -d /tmp/tandem-suite-XXXXXX)
PGIDS=()       # process groups we started (setsid), killed on exit
REDIS_PID=""

ok() { echo "ok - $1"; PASS=$((PASS + 1)); }
bad() { echo "FAIL - $1${2:+: ${2//$'\n'/ | }}"; FAIL=$((FAIL + 1)); } # detail on one line
check() { # description, command...: ok if the command succeeds
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}

# require FILE...: what the suite cannot run without. Anything missing is
# one failed check naming it, and the end of the suite.
require() {
    local f missing=()
    for f in "$@"; do [ -e "$f" ] || missing+=("$f"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    bad "prerequisites" "missing ${missing[*]}${REQUIRE_HINT:+ ($REQUIRE_HINT)}"
    finish
    exit 1
}

cleanup() {
    exec 2>/dev/null # no job-control notices for what we kill
    local g
    for g in "${PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
    [ -n "$REDIS_PID" ] && kill -KILL "$REDIS_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port, from a pid-dependent start. It is tested on 0.0.0.0,
# where the proxy listens (a port free on 127.0.0.1 can be held on
# 127.0.0.2, as suite_hostile's slow clients do), and taken below the
# kernel's ephemeral range, which outgoing connections draw their source
# ports from between this test and the server's bind.
free_port() {
    /usr/bin/python3 - <<'PY'
import os, socket
low = 32768
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    pass
base = 10000 if low > 12000 else 1024
span = max(low - base, 1000)
for i in range(200):
    p = base + (os.getpid() * 13 + i * 97) % span
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", p)); s.close(); print(p); break
    except OSError:
        s.close()
PY
}

# start_redis [port]: sets RPORT and REDIS_PID; waits until it answers.
start_redis() {
    RPORT=${1:-${RPORT:-$(free_port)}}
    mkdir -p "$TMP/redis"
    /usr/bin/redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$TMP/redis" --loglevel warning >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    local i
    for i in $(seq 100); do
        rcli PING 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    return 1
}
stop_redis() {
    [ -n "$REDIS_PID" ] || return 0
    kill -TERM "$REDIS_PID" 2>/dev/null
    local i
    for i in $(seq 100); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
}
rcli() { redis-cli -h 127.0.0.1 -p "$RPORT" "$@"; }

# gone PID: that process has exited.
gone() { ! kill -0 "$1" 2>/dev/null; }
# health: the service at $URL answers its health check.
health() { curl -s -m 2 "$URL/health" 2>/dev/null | grep -q '"health"'; }

# wait_until SECONDS command...: polls every 0.1 s; 0 when it held in time.
wait_until() {
    local t=$1 end
    shift
    end=$(($(date +%s%N) + t * 1000000000))
    while [ "$(date +%s%N)" -lt "$end" ]; do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

# start_bg NAME command...: runs in its own session (process group), output in
# $TMP/NAME.log; the pid (= pgid) is in $BG_PID.
start_bg() {
    local name=$1
    shift
    setsid "$@" >>"$TMP/$name.log" 2>&1 &
    BG_PID=$!
    PGIDS+=("$BG_PID")
}

# enqueue_seed ID FILE: the seed's way (image:{id} EX 3600 + LPUSH), no proxy.
enqueue_seed() {
    # -x appends stdin as the last argument: SET first, then the TTL.
    base64 -w0 "$2" | rcli -x SET "image:$1" >/dev/null && rcli EXPIRE "image:$1" 3600 >/dev/null &&
        rcli LPUSH queue:jobs "$1" >/dev/null
}

# enqueue_many N FILE PREFIX: N jobs of one image in one redis-cli --pipe.
enqueue_many() {
    /usr/bin/python3 - "$1" "$2" "$3" <<'PY' | rcli --pipe >/dev/null
import base64, sys
n, path, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
b64 = base64.b64encode(open(path, "rb").read())
out = sys.stdout.buffer
def cmd(*args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
for i in range(n):
    jid = "%s%04d" % (prefix, i)
    cmd("SET", "image:" + jid, b64, "EX", 3600)
    cmd("LPUSH", "queue:jobs", jid)
PY
}
