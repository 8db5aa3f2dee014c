-- START: KEYS job result processing dead metrics done; ARGV id worker now
-- max ttl dead_max dead_age -> start_job's answer (lib/start.lua); the
-- worker sends GET image:{id} in the same write, right after this script.
return start_job({job = KEYS[1], result = KEYS[2], processing = KEYS[3], dead = KEYS[4],
  metrics = KEYS[5], done = KEYS[6]},
  {id = ARGV[1], worker = ARGV[2], now = ARGV[3], max = ARGV[4], ttl = ARGV[5],
  dmax = ARGV[6], dage = ARGV[7]})
