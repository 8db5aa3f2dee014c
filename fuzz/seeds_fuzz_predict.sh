#!/usr/bin/env bash
# Seeds for fuzz_predict: the small images of seeds_fuzz_image.sh as raw
# bodies and as JSON (plain base64, wrapped, data URL). The first byte picks
# the Content-Type (see fuzz_predict.c: 0 none, 1 JSON, 2 image/jpeg,
# 3 image/png, 4 octet-stream).
set -euo pipefail
corpus=$1
mkdir -p "$corpus"
images=$(mktemp -d)
trap 'rm -rf "$images"' EXIT
"$(dirname "$0")/seeds_fuzz_image.sh" "$images"
for f in "$images"/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    case $name in *.png) t='\x03' ;; *) t='\x02' ;; esac
    { printf "$t"; cat "$f"; } >"$corpus/raw_$name"
    { printf '\x00'; cat "$f"; } >"$corpus/sniffed_$name"
    b64=$(base64 -w0 "$f")
    printf '\x01{"image_data": "%s"}' "$b64" >"$corpus/json_$name"
    printf '\x05{"image_data": "data:image/png;base64,%s"}' "$b64" >"$corpus/dataurl_$name"
    printf '\x01{"image_data": "%s"}' "$(base64 -w 76 "$f" | sed 's/$/\\n/' | tr -d '\n')" \
        >"$corpus/wrapped_$name"
done
exit 0
