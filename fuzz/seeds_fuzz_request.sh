#!/usr/bin/env bash
# Seeds for fuzz_request: JSON bodies (plain, wrapped, data URL, refusals) and
# raw JPEG/PNG heads. The first byte of each file picks the Content-Type (see
# fuzz_request.c: 0 none, 1 JSON, 2 image/jpeg, 3 image/png, 4 octet-stream).
set -euo pipefail
dir=$1
mkdir -p "$dir"
jpg=$(printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01' | base64 -w0)
png=$(printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' | base64 -w0)
printf '\x01{"image_data": "%s"}' "$jpg" >"$dir/json_jpeg"
printf '\x01{"image_data": "data:image/png;base64,%s"}' "$png" >"$dir/json_dataurl"
printf '\x00{"image_data": "%s\\n%s"}' "${jpg:0:8}" "${jpg:8}" >"$dir/json_wrapped"
printf '\x01{"image_data": 5}' >"$dir/json_number"
printf '\x01{}' >"$dir/json_empty"
printf '\x01[1,2,{"a":null}]' >"$dir/json_array"
printf '\x02\xff\xd8\xff\xe0\x00\x10JFIF' >"$dir/raw_jpeg"
printf '\x03\x89PNG\r\n\x1a\n\x00\x00' >"$dir/raw_png"
printf '\x07GIF89a' >"$dir/gif"
# A base64 string long enough (>= 1024 characters) to be set aside while
# jansson parses the rest, alone and beside others.
big=$( (printf '\xff\xd8\xff\xe0'; head -c 1200 /dev/zero) | base64 -w0)
printf '\x01{"image_data": "%s"}' "$big" >"$dir/json_big"
printf '\x01{"other": "%s", "image_data": "%s", "callback_url": "http://h/"}' "$big" "$jpg" \
    >"$dir/json_big_other"
printf '\x01{"x": "\\"%s\\"", "image_data": ["%s"]}' "$big" "$big" >"$dir/json_big_escaped"
