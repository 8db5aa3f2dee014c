#!/usr/bin/env bash
# Model conformance: `tandem run-model` against ONNX Runtime on every test
# model and the real int8 models, with random inputs and real images, at 1 and
# 2 threads, in bf16, and on the reference backend when tandem offers it.
# The rules and the details live in tests/models/compare.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export TANDEM=${TANDEM:-$BUILD/tandem}
export TEST_DATA=${TEST_DATA:-data}
exec /usr/bin/python3 tests/models/compare.py
