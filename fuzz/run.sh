#!/usr/bin/env bash
# Builds every libFuzzer target fuzz/fuzz_*.c against the library compiled
# with clang (ASan + UBSan + fuzzer instrumentation) in build/fuzz, then runs
# each for FUZZ_SECONDS (default 60) from a seed corpus, with the dictionary
# fuzz/NAME.dict when there is one. A crash makes the script fail and leaves
# the reproducer in build/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
out=build/fuzz
mkdir -p "$out"

make -s CC=clang BUILD=$out OPTFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined" \
    CFLAGS="-Wno-unused-command-line-argument" $out/libtandem.a $out/libtandem-service.a

cflags=$(make -s --no-print-directory print-cflags BUILD=$out)
libs=$(make -s --no-print-directory print-libs BUILD=$out)

status=0
for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    bin=$out/$name
    # shellcheck disable=SC2086
    clang $cflags -Wno-unused-command-line-argument -O1 -g -fsanitize=fuzzer,address,undefined \
        -o "$bin" "$src" $out/libtandem-service.a $out/libtandem.a $libs
    corpus=$out/corpus-$name
    mkdir -p "$corpus"
    if [ -x "fuzz/seeds_$name.sh" ]; then "fuzz/seeds_$name.sh" "$corpus"; fi
    dict=()
    if [ -f "fuzz/$name.dict" ]; then dict=(-dict="$PWD/fuzz/$name.dict"); fi
    echo "=== $name: ${seconds}s"
    # stdin from /dev/null: a target that opens a file the input names
    # (a sidecar's labels) must not wait on the terminal.
    if ! (cd "$out" && "./$name" -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=2048 \
            -timeout=10 -print_final_stats=1 "${dict[@]}" "corpus-$name" </dev/null 2>&1 |
            tail -n 15); then
        echo "FAIL - $name found a crash (see $out/crash-*)"
        status=1
    else
        echo "ok - $name ran ${seconds}s without a crash"
    fi
done
exit $status
