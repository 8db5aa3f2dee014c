#!/usr/bin/env bash
# Runs every test: the C unit tests in $BUILD/tests/, then each integration
# suite tests/suite_*.sh. Each prints its own "N passed, M failed" line (with
# ", K skipped" appended when some tests could not run here); this script adds
# them up and ends with the total. Exit status: non-zero if any
# test failed or any program exited non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export TANDEM=${TANDEM:-$BUILD/tandem}
export TEST_DATA=${TEST_DATA:-data}
only=${1:-}

# Test models are the same for every build flavour: generated once in build/.
if [ "$BUILD" != build ] && [ -d build/test-models ] && [ ! -e "$BUILD/test-models" ]; then
    ln -s "$(pwd)/build/test-models" "$BUILD/test-models"
fi

total_pass=0 total_fail=0 total_skip=0 broken=()

run_one() { # name, command...
    local name=$1 out rc
    shift
    echo "=== $name"
    out=$(mktemp)
    "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -n "$line" ]; then
        total_pass=$((total_pass + $(echo "$line" | awk '{print $1}')))
        total_fail=$((total_fail + $(echo "$line" | awk '{print $3}')))
        total_skip=$((total_skip + $(echo "$line" | sed -n 's/.*, \([0-9][0-9]*\) skipped.*/\1/p' | grep . || echo 0)))
    fi
    if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
        broken+=("$name (exit $rc)")
        [ -n "$line" ] || total_fail=$((total_fail + 1))
    fi
    rm -f "$out"
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    [ -z "$only" ] || [[ "$t" == *"$only"* ]] || continue
    run_one "unit $(basename "$t")" "$t"
done
for s in tests/suite_*.sh; do
    [ -x "$s" ] || continue
    [ -z "$only" ] || [[ "$s" == *"$only"* ]] || continue
    run_one "suite $(basename "$s" .sh)" "$s"
done

echo
if [ ${#broken[@]} -gt 0 ]; then
    printf 'failing: %s\n' "${broken[@]}"
fi
skipped=""
[ "$total_skip" -eq 0 ] || skipped=", $total_skip skipped"
echo "$total_pass passed, $total_fail failed$skipped"
[ ${#broken[@]} -eq 0 ] && [ "$total_fail" -eq 0 ]
