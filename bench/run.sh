#!/usr/bin/env bash
# All benchmarks: the engine against ONNX Runtime, then the service under load,
# then the worker pool draining a backlog, then micro-batching in the workers
# (bench/batch.sh), then tandem against the seed's own Python stack
# (bench/seed.sh; skipped with a note where python3-fastapi & co. are
# missing), then one table of every figure of issue #10 beside its target.
# Figures only; nothing fails on timing.
set -uo pipefail
cd "$(dirname "$0")/.."
BENCH_TABLE=$(mktemp)
export BENCH_TABLE
trap 'rm -f "$BENCH_TABLE"' EXIT
status=0
bench/engine.sh || status=1
bench/service.sh || status=1
bench/worker.sh || status=1
bench/batch.sh || status=1
if /usr/bin/python3 -c 'import fastapi, uvicorn, redis' 2>/dev/null; then
    bench/seed.sh || status=1
else
    echo "bench/run.sh: no seed peer figures (python3-fastapi, python3-uvicorn, python3-redis: scripts/deps.sh --test)"
fi
echo
echo "== issue #10: each figure beside its target (one run; $(nproc) CPUs, shared: figures are noisy)"
bench/table.py "$BENCH_TABLE"
exit $status
