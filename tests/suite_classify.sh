#!/usr/bin/env bash
# `tandem classify` end to end with the real int8 models in $TEST_DATA/models:
# MobileNetV2 (1000 classes, float probabilities) and MobileNetV1 0.5/128
# (1001 classes with "background" first, a quantised uint8 softmax) must name a cat for
# chelsea.png and espresso for coffee.png (what ONNX Runtime answers on the
# same inputs); then labels files, sidecars, --top, and every failure mode
# with its exit status (1 for a bad image, naming the file, while the other
# images are still classified; 2 for usage errors).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
models=$TEST_DATA/models/st-int8
images=$TEST_DATA/images
v2=$models/mobilenet_v2_1.0_224_int8_per_tensor.onnx
v1=$models/mobilenet_v1_0.5_128_quant.onnx
cats='^(tabby|tiger cat|Egyptian cat|Persian cat|Siamese cat)$'

tmp=$TMP

# run NAME ARGS...: runs tandem classify, leaving stdout, stderr and status in
# $tmp/NAME.out, $tmp/NAME.err, $rc.
run() {
    local name=$1
    shift
    "$TANDEM" classify "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
}

# best NAME IMAGE: the best label printed for IMAGE (the header line).
best() { sed -n "s|^$(printf '%s' "$2" | sed 's/[.[\*^$/]/\\&/g'): ||p" "$tmp/$1.out" | head -n 1; }

if [ ! -x "$TANDEM" ]; then
    bad "setup" "$TANDEM is not built"
    finish
    exit 1
fi
for f in "$v2" "$v1" "$images/chelsea.png" "$images/coffee.png"; do
    [ -r "$f" ] || bad "setup" "$f is missing (TEST_DATA=$TEST_DATA)"
done

# --- the real models --------------------------------------------------------
for m in v2 v1; do
    model=${!m}
    run "$m" --model "$model" "$images/chelsea.png" "$images/coffee.png"
    if [ "$rc" -ne 0 ]; then
        bad "$m: classify chelsea.png coffee.png" "exit $rc: $(head -c 300 "$tmp/$m.err")"
        continue
    fi
    label=$(best "$m" "$images/chelsea.png")
    if [[ "$label" =~ $cats ]]; then ok "$m: chelsea.png is a cat ($label)"; else bad "$m: chelsea.png" "got '$label', want a cat"; fi
    label=$(best "$m" "$images/coffee.png")
    if [ "$label" = espresso ]; then ok "$m: coffee.png is espresso"; else bad "$m: coffee.png" "got '$label', want espresso"; fi
    lines=$(grep -c '^  ' "$tmp/$m.out")
    if [ "$lines" -eq 10 ]; then ok "$m: five score lines per image"; else bad "$m: default --top" "$lines score lines for 2 images, want 10"; fi
done

# Scores: probabilities for both, best first, in 0..1, summing to at most 1
# per image: v2 ends in a Softmax, v1's uint8 softmax output is dequantised
# (its scale is 1/256).
for m in v2 v1; do
    if awk '/^  /{ if ($1 < 0 || $1 > 1 || (n % 5 && $1 > prev + 1e-6)) bad = 1; sum[int(n / 5)] += $1; prev = $1; n++ }
            END { for (i in sum) if (sum[i] > 1.0001) bad = 1; exit bad || n != 10 }' "$tmp/$m.out"; then
        ok "$m: scores are probabilities, best first, top-5 sum <= 1"
    else
        bad "$m: scores" "$(head -n 6 "$tmp/$m.out" | tr '\n' '|')"
    fi
done

# The reference kernels must agree (slow, so one model and two images).
run ref --model "$v2" --backend ref --top 1 "$images/chelsea.png" "$images/coffee.png"
if [ "$rc" -eq 0 ] && [[ "$(best ref "$images/chelsea.png")" =~ $cats ]] &&
    [ "$(best ref "$images/coffee.png")" = espresso ]; then
    ok "v2 --backend ref: cat and espresso"
else
    bad "v2 --backend ref" "exit $rc: $(cat "$tmp/ref.out" "$tmp/ref.err" | head -c 300)"
fi

# Every test image classifies with both models (JPEGs via DCT scaling).
run all --model "$v2" --top 1 "$images"/*.png "$images"/*.jpg
n=$(grep -c '^[^ ]' "$tmp/all.out")
total=$(ls "$images"/*.png "$images"/*.jpg | wc -l)
if [ "$rc" -eq 0 ] && [ "$n" -eq "$total" ]; then ok "v2: all $total test images classified"; else bad "v2: all images" "exit $rc, $n of $total: $(head -c 300 "$tmp/all.err")"; fi

# --- options -------------------------------------------------------------------
run top3 --model "$v2" --top 3 --threads 1 "$images/coffee.png"
lines=$(grep -c '^  ' "$tmp/top3.out")
if [ "$rc" -eq 0 ] && [ "$lines" -eq 3 ]; then ok "--top 3 --threads 1"; else bad "--top 3" "exit $rc, $lines lines"; fi

# The 1001-line labels file (background first) on the 1001-class model, and
# the 1000-line file on it too: both must give the same names.
run lab1001 --model "$v1" --labels "$models/labels_imagenet.txt" "$images/coffee.png"
run lab1000 --model "$v1" --labels "$models/labels_imagenet_2012.txt" "$images/coffee.png"
if [ "$rc" -eq 0 ] && [ "$(best lab1001 "$images/coffee.png")" = espresso ] &&
    cmp -s "$tmp/lab1001.out" "$tmp/lab1000.out"; then
    ok "--labels with and without a background line"
else
    bad "--labels" "exit $rc: $(cat "$tmp/lab1001.out" "$tmp/lab1000.err" | head -c 300)"
fi

printf 'a\nb\nc\n' >"$tmp/three.txt"
run labbad --model "$v2" --labels "$tmp/three.txt" "$images/coffee.png"
if [ "$rc" -eq 1 ] && grep -q '3 labels' "$tmp/labbad.err"; then ok "--labels of the wrong length is refused"; else bad "--labels mismatch" "exit $rc: $(cat "$tmp/labbad.err")"; fi

# A sidecar beside the model: custom labels (relative to the sidecar).
mkdir -p "$tmp/side"
ln -s "$(cd "$(dirname "$v2")" && pwd)/$(basename "$v2")" "$tmp/side/m.onnx"
awk '{ print "custom " NR - 1 }' "$models/labels_imagenet_2012.txt" >"$tmp/side/custom.txt"
printf '{"labels": "custom.txt", "layout": "nhwc_uint8"}\n' >"$tmp/side/m.onnx.json"
run side --model "$tmp/side/m.onnx" "$images/coffee.png"
if [ "$rc" -eq 0 ] && [ "$(best side "$images/coffee.png")" = "custom 967" ]; then ok "sidecar labels"; else bad "sidecar labels" "exit $rc: $(cat "$tmp/side.out" "$tmp/side.err" | head -c 300)"; fi

for doc in '{"width": 300}' '{"layout": "nchw_float"}' '{"colour": 1}' '{"std": [1, 0, 1]}' 'not json'; do
    printf '%s\n' "$doc" >"$tmp/side/m.onnx.json"
    run sidebad --model "$tmp/side/m.onnx" "$images/coffee.png"
    if [ "$rc" -eq 1 ] && grep -q 'sidecar' "$tmp/sidebad.err"; then
        ok "bad sidecar refused: $doc"
    else
        bad "bad sidecar $doc" "exit $rc: $(cat "$tmp/sidebad.err")"
    fi
done

# --- failures ------------------------------------------------------------------
printf 'this is not an image\n' >"$tmp/notes.txt"
head -c 60000 "$images/dog.jpg" >"$tmp/cut.jpg"
run broken --model "$v2" "$tmp/notes.txt" "$images/coffee.png" "$tmp/cut.jpg" "$tmp/missing.png"
if [ "$rc" -eq 1 ]; then ok "bad images: exit 1"; else bad "bad images" "exit $rc, want 1"; fi
if grep -q "notes.txt: not a JPEG or PNG" "$tmp/broken.err"; then ok "non-image named in the message"; else bad "non-image message" "$(cat "$tmp/broken.err")"; fi
if grep -q "cut.jpg: .*truncated" "$tmp/broken.err"; then ok "truncated JPEG named in the message"; else bad "truncated message" "$(cat "$tmp/broken.err")"; fi
if grep -q "missing.png: " "$tmp/broken.err"; then ok "missing file named in the message"; else bad "missing file message" "$(cat "$tmp/broken.err")"; fi
if [ "$(best broken "$images/coffee.png")" = espresso ]; then ok "the good image among bad ones is still classified"; else bad "good among bad" "$(cat "$tmp/broken.out")"; fi

run nomodel --model "$tmp/notes.txt" "$images/coffee.png"
if [ "$rc" -eq 1 ] && [ -s "$tmp/nomodel.err" ]; then ok "a non-model file: exit 1 with a message"; else bad "non-model" "exit $rc"; fi

for args in "" "--model $v2" "$images/coffee.png" "--model $v2 --top 0 $images/coffee.png" \
    "--model $v2 --top x $images/coffee.png" "--model $v2 --bogus $images/coffee.png" \
    "--model $v2 --backend gpu $images/coffee.png"; do
    # shellcheck disable=SC2086
    run usage $args
    if [ "$rc" -eq 2 ] && [ -s "$tmp/usage.err" ]; then ok "usage error exits 2: '${args//$TEST_DATA/\$TEST_DATA}'"; else bad "usage '$args'" "exit $rc"; fi
done
run help --help
if [ "$rc" -eq 0 ] && grep -q -- '--labels' "$tmp/help.out"; then ok "--help"; else bad "--help" "exit $rc"; fi

finish
