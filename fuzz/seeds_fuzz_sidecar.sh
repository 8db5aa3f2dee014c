#!/usr/bin/env bash
# Seeds for fuzz_sidecar: sidecars that fit the fuzzer's models and ones that
# do not. The first byte picks the model (fuzz_sidecar.c: even 32x32, odd 7x5).
set -euo pipefail
dir=$1
mkdir -p "$dir"
printf '\x00{}' >"$dir/empty"
printf '\x00{"labels": "labels3.txt"}' >"$dir/labels"
printf '\x00{"labels": "labels2.txt", "label_offset": 1}' >"$dir/background"
printf '\x01{"labels": "labels2.txt"}' >"$dir/background_guessed"
printf '\x00{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "layout": "nchw_float"}' >"$dir/norm"
printf '\x01{"width": 7, "height": 5}' >"$dir/size"
printf '\x00{"width": 224, "height": 224}' >"$dir/size_wrong"
printf '\x00{"layout": "nhwc_uint8"}' >"$dir/layout_wrong"
printf '\x00{"label_offset": 1}' >"$dir/offset"
printf '\x00{"std": [0, 1, 1]}' >"$dir/std_zero"
# Positive as a double, 0 once narrowed to a float: the crash fuzz_sidecar found in CI.
printf '\x00{"std": [0.25, 0.5, 2.5e-57]}' >"$dir/std_underflow"
printf '\x00{"labels": "missing.txt"}' >"$dir/labels_missing"
printf '\x00{"labels": "labels3.txt", "labels": "labels2.txt"}' >"$dir/duplicate"
printf '\x00{"colour": "rgb"}' >"$dir/unknown_key"
printf '\x00[1, 2, 3]' >"$dir/array"
