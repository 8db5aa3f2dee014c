#!/usr/bin/env bash
# Bench tooling suite (no timing is checked): `tandem bench` names the ISA
# oneDNN dispatches to, as oneDNN itself reports it (the CPU's best, or the
# cap ONEDNN_MAX_CPU_ISA sets); bench/table.py prints the final table of
# `make bench`; bench/soak.sh documents itself.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

MODEL=$TEST_DATA/models/st-int8/mobilenet_v1_0.5_128_quant.onnx
isa_of() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['isa'])"; }
bench_isa() { "$TANDEM" bench --model "$MODEL" --iterations 3 --threads 1 2>"$TMP/bench.err" | isa_of; }

# What oneDNN 2.x picks, from the CPU's flags (best first).
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }
# AMX also needs the kernel's leave to use its registers; without it oneDNN
# stays at avx512_core_bf16.
if has amx_tile && has amx_bf16 && has amx_int8; then want="avx512_core_amx avx512_core_bf16"
elif has avx512_bf16; then want=avx512_core_bf16
elif has avx512_vnni; then want=avx512_core_vnni
elif has avx512f && has avx512bw && has avx512vl && has avx512dq; then want=avx512_core
elif has avx2 && has avx_vnni; then want=avx2_vnni
elif has avx2; then want=avx2
elif has avx; then want=avx
else want=sse41
fi
got=$(unset ONEDNN_MAX_CPU_ISA DNNL_MAX_CPU_ISA; bench_isa)
check "tandem bench reports isa '$got', the CPU's best ($want)" bash -c "[[ ' $want ' == *' $got '* ]]"
if has avx2; then
    got=$(ONEDNN_MAX_CPU_ISA=AVX2 bench_isa)
    check "with ONEDNN_MAX_CPU_ISA=AVX2 it reports '$got' (avx2): read from oneDNN" test "$got" = avx2
fi
check "tandem bench --help documents isa" bash -c "'$TANDEM' bench --help | grep -q isa"

printf 'a figure\t1.00\t<= 2\tyes\nanother\t3.00\t<= 2\tno\nrss\t40 MB\treport\t-\n' >"$TMP/t.tsv"
bench/table.py "$TMP/t.tsv" >"$TMP/table.txt"
check "bench/table.py: header, one line per figure, met/missed counted" \
    bash -c "head -1 '$TMP/table.txt' | grep -q '^figure *| measured *| target *| met' &&
             grep -q '^another *| 3.00 *| <= 2 *| no' '$TMP/table.txt' &&
             grep -q '^1 targets met, 1 missed' '$TMP/table.txt'"

# The load generator of bench/service.sh, against a server that counts bodies.
PACE=${PACE:-$BUILD/pace}
SPORT=$(free_port)
cat >"$TMP/sink.py" <<'PY'
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = body == open(sys.argv[2], "rb").read() and self.headers["Content-Type"] == "image/jpeg"
        answer = b'{"job_id": "abc123", "inference_ms": 5.5}'
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
start_bg sink /usr/bin/python3 "$TMP/sink.py" "$SPORT" "$TEST_DATA/images/dog.jpg"
wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SPORT" 2>/dev/null
"$PACE" "http://127.0.0.1:$SPORT/x" "$TEST_DATA/images/dog.jpg" image/jpeg 40 20 >"$TMP/pace.json"
check "pace: 20 requests at 40/s, each body and type received whole, the answers' inference_ms read ($(cat "$TMP/pace.json"))" \
    /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); \
        sys.exit(not (r['ok'] == 20 and r['codes'] == {'200': 20} and 0 < r['p50_ms'] <= r['p99_ms'] \
                      and 30 <= r['rate'] <= 45 and r['server_p50_ms'] == 5.5))" "$TMP/pace.json"
kill "$BG_PID" 2>/dev/null
wait_until 10 bash -c "! exec 3<>/dev/tcp/127.0.0.1/$SPORT" 2>/dev/null
"$PACE" "http://127.0.0.1:$SPORT/x" "$TEST_DATA/images/dog.jpg" image/jpeg 100 5 >"$TMP/pace.json"
check "pace: a refused connection counts as an error, not a latency" \
    /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); \
        sys.exit(not (r['ok'] == 0 and r['errors'] == 5 and r['p50_ms'] is None))" "$TMP/pace.json"
"$PACE" x y z 0 1 2>/dev/null
check "pace: a bad rate exits 2" test $? -eq 2

check "bench/soak.sh --help documents DURATION, RATE, KILL_EVERY" \
    bash -c "bench/soak.sh --help | grep -q DURATION && bench/soak.sh --help | grep -q KILL_EVERY &&
             bench/soak.sh --help | grep -q RATE"
bench/soak.sh --bogus >/dev/null 2>&1
rc=$?
check "bench/soak.sh with an unknown argument exits 2" test $rc -eq 2
finish
