#!/usr/bin/env bash
# The layering of src/ (tools/layers.py): no include or call cycles between
# files, and every include and call points to the same or a lower layer
# (common < engine < image < service < cli), and no layer includes the
# engine's or the image library's private headers. The checker is first shown to
# catch a cycle and an upward edge in a small tree of its own.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh
CHECK="/usr/bin/python3 tools/layers.py"
# The layers held to the rule here; service and cli join when their
# upward includes (cli.h) are gone.
CHECKED="common engine image service cli"

# A tree with a.c <-> b.c (engine) and common/c.c including engine's a.h.
t=$TMP/tree
mkdir -p "$t/src/engine" "$t/src/common" "$t/include/tandem"
printf '#include "b.h"\n' >"$t/src/engine/a.c"
printf '#include "a.h"\n' >"$t/src/engine/b.c"
: >"$t/src/engine/a.h"
: >"$t/src/engine/b.h"
printf '#include "a.h"\n' >"$t/src/common/c.c"
out=$($CHECK --root "$t" --no-calls 2>&1)
rc=$?
check "checker exits 1 on a bad tree" test "$rc" -eq 1
check "checker names the cycle" grep -q '^cycle: engine/a engine/b$' <<<"$out"
check "checker names the upward include" grep -q '^upward: common/c (common) -> engine/a (engine)' <<<"$out"
mkdir -p "$t/src/service"
printf '#include "a.h"\n' >"$t/src/service/d.c"
out=$($CHECK --root "$t" --no-calls 2>&1)
check "checker names an include of the engine's private header" \
    grep -q '^private: src/service/d.c includes src/engine/a.h' <<<"$out"
rm "$t/src/common/c.c" "$t/src/service/d.c"
printf '#include "b.h"\n' >"$t/src/engine/b.c"
check "checker passes a clean tree" $CHECK --root "$t" --no-calls >/dev/null

[ -d "$BUILD/obj/engine" ] || bad "objects in $BUILD/obj (build first)"
for layer in $CHECKED; do
    if out=$($CHECK --build "$BUILD" --layers "$layer" 2>&1); then
        ok "$layer: no cycles, every include and call points down"
    else
        bad "$layer: layering" "$(printf '\n%s' "$out")"
    fi
done
finish
