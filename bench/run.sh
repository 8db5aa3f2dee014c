#!/usr/bin/env bash
# All benchmarks: the engine against ONNX Runtime, then the service under load
# (when its script exists), then the worker pool draining a backlog, then
# micro-batching in the workers (bench/batch.sh), then one
# table of every figure of issue #10 beside its target. Figures only; nothing
# fails on timing.
set -uo pipefail
cd "$(dirname "$0")/.."
BENCH_TABLE=$(mktemp)
export BENCH_TABLE
trap 'rm -f "$BENCH_TABLE"' EXIT
status=0
bench/engine.sh || status=1
if [ -x bench/service.sh ]; then bench/service.sh || status=1; fi
bench/worker.sh || status=1
bench/batch.sh || status=1
echo
echo "== issue #10: each figure beside its target (one run; $(nproc) CPUs, shared: figures are noisy)"
bench/table.py "$BENCH_TABLE"
exit $status
