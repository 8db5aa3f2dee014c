#!/usr/bin/env bash
# All benchmarks: the engine against ONNX Runtime, then the service under load
# (when its script exists). Figures only; nothing fails on timing.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
bench/engine.sh || status=1
if [ -x bench/service.sh ]; then bench/service.sh || status=1; fi
exit $status
