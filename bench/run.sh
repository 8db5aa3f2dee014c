#!/usr/bin/env bash
# All benchmarks: the engine against ONNX Runtime, then the service under load
# (when its script exists), then the worker pool draining a backlog. Figures
# only; nothing fails on timing.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
bench/engine.sh || status=1
if [ -x bench/service.sh ]; then bench/service.sh || status=1; fi
bench/worker.sh || status=1
exit $status
