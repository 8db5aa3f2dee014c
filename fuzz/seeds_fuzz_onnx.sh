#!/usr/bin/env bash
# Seeds for fuzz_onnx: the small per-op test models that `make test-models`
# generates. The big models are left out: libFuzzer would only see their
# first max_len bytes.
set -euo pipefail
corpus=$1
for f in build/test-models/ops_*.onnx; do
    [ -e "$f" ] && cp -f "$f" "$corpus/"
done
exit 0
