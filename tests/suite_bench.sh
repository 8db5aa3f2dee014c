#!/usr/bin/env bash
# Bench tooling suite (no timing is checked): `tandem bench` names the ISA
# oneDNN dispatches to, as oneDNN itself reports it (the CPU's best, or the
# cap ONEDNN_MAX_CPU_ISA sets); bench/table.py prints the final table of
# `make bench`; bench/soak.sh documents itself.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TANDEM=${TANDEM:-$BUILD/tandem}
TEST_DATA=${TEST_DATA:-data}
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

check "bench/soak.sh --help documents DURATION, RATE, KILL_EVERY" \
    bash -c "bench/soak.sh --help | grep -q DURATION && bench/soak.sh --help | grep -q KILL_EVERY &&
             bench/soak.sh --help | grep -q RATE"
bench/soak.sh --bogus >/dev/null 2>&1
rc=$?
check "bench/soak.sh with an unknown argument exits 2" test $rc -eq 2
finish
