# Helpers shared by the benchmarks that add rows to issue #10's final table
# (bench/service.sh, bench/seed.sh). Source after tests/lib.sh (for $TMP).
#   num KEY        a number of the JSON object on stdin, as %.2f (or its
#                  string; nan when absent)
#   calc EXPR      a Python arithmetic expression, as %.2f (nan on error)
#   met A B        yes when A <= B, no when not, n/a when either is nan
#   med X...       the median of its arguments
#   fig FIGURE MEASURED TARGET MET   one row of the final table
#   table_end      prints the table when the script runs alone
#   bench_require NAME FILE...   exits 1, naming what is missing, unless
#                  every FILE exists and wrk and $PACE are there
# BENCH_TABLE names the table's file; run alone, a script gets its own.

own_table=0
if [ -z "${BENCH_TABLE:-}" ]; then
    BENCH_TABLE=$TMP/table.tsv
    own_table=1
fi

num() {
    /usr/bin/python3 -c "import json,sys; v=json.load(sys.stdin).get('$1'); print('%.2f' % v if isinstance(v, (int, float)) else v if v is not None else 'nan')"
}
calc() { /usr/bin/python3 -c "print('%.2f' % ($1))" 2>/dev/null || echo nan; }
met() {
    /usr/bin/python3 -c "import math,sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('n/a' if math.isnan(a) or math.isnan(b) else 'yes' if a <= b else 'no')" "$1" "$2" 2>/dev/null || echo n/a
}
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "nan")}'; }
fig() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$BENCH_TABLE"; }
table_end() {
    if [ "$own_table" -eq 1 ]; then
        echo
        bench/table.py "$BENCH_TABLE"
    fi
}

bench_require() {
    local name=$1 f
    shift
    for f in "$@"; do
        if [ ! -e "$f" ]; then
            echo "$name: missing $f (run 'make' and 'make test-models')" >&2
            exit 1
        fi
    done
    command -v wrk >/dev/null || { echo "$name: wrk not installed (scripts/deps.sh --test)" >&2; exit 1; }
    [ -x "$PACE" ] || { echo "$name: $PACE missing (make $PACE)" >&2; exit 1; }
}
