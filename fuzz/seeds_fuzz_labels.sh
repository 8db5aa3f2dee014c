#!/usr/bin/env bash
# Seeds for fuzz_labels: small label files of each kind (CRLF, no final
# newline, UTF-8, empty lines) and the head of the ImageNet list.
# The first byte also picks the background offset in the ranking.
set -euo pipefail
dir=$1
data=${TEST_DATA:-data}
mkdir -p "$dir"
printf 'cat\ndog\nbird\n' >"$dir/lf"
printf 'cat\r\ndog\r\n' >"$dir/crlf"
printf 'cat\ndog' >"$dir/no_final_newline"
printf 'caf\xc3\xa9\n\xe2\x82\xac\n\xf0\x9f\x90\x88\n' >"$dir/utf8"
printf '\n\n\n' >"$dir/empty_lines"
printf 'background\ntench, Tinca tinca\n' >"$dir/background"
f=$data/models/st-int8/labels_imagenet.txt
if [ -f "$f" ]; then head -c 4000 "$f" >"$dir/imagenet_head"; fi
exit 0
