#!/usr/bin/env bash
# Seeds for fuzz_job: RESP replies of queue_job.c's GET script (lua/get.lua), {HGETALL job:{id},
# GET result:{id}, EXISTS image:{id}}: a done job, a queued one, a seed-style
# job with only a result, an unknown one, and replies of the wrong shape.
set -euo pipefail
dir=$1
mkdir -p "$dir"
printf '*3\r\n*6\r\n$6\r\nstatus\r\n$4\r\ndone\r\n$8\r\nattempts\r\n$1\r\n1\r\n$5\r\nlabel\r\n$5\r\ntabby\r\n$5\r\ntabby\r\n:0\r\n' >"$dir/done"
printf '*3\r\n*4\r\n$6\r\nstatus\r\n$6\r\nqueued\r\n$7\r\ncreated\r\n$13\r\n1700000000000\r\n$-1\r\n:1\r\n' >"$dir/queued"
printf '*3\r\n*0\r\n$9\r\ntiger cat\r\n:0\r\n' >"$dir/seed_result"
printf '*3\r\n*0\r\n$-1\r\n:0\r\n' >"$dir/unknown"
printf '*3\r\n*2\r\n$12\r\ninference_ms\r\n$5\r\n42.5x\r\n$-1\r\n:1\r\n' >"$dir/odd_number"
printf '*2\r\n:1\r\n:2\r\n' >"$dir/wrong_shape"
printf -- '-ERR no\r\n' >"$dir/error"
