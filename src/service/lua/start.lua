-- START: KEYS job result processing dead metrics done image; ARGV id worker
-- now max ttl dead_max dead_age -> start_job's answer (lib/start.lua).
-- Marking the job running and reading its image is one round trip.
return start_job({job = KEYS[1], result = KEYS[2], processing = KEYS[3], dead = KEYS[4],
  metrics = KEYS[5], done = KEYS[6], image = KEYS[7]},
  {id = ARGV[1], worker = ARGV[2], now = ARGV[3], max = ARGV[4], ttl = ARGV[5],
  dmax = ARGV[6], dage = ARGV[7]})
