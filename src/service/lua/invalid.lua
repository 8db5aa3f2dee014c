-- INVALID: KEYS processing dead metrics; ARGV entry kept why now dead_max
-- dead_age ttl. A queue entry that is no job id: off the processing list,
-- onto the dead-letter list (its first bytes), with a job record saying why
-- unless one exists under that name, and counted.
redis.call('LREM', KEYS[1], 1, ARGV[1])
local jk = 'job:' .. ARGV[2]
if redis.call('EXISTS', jk) == 0 then
  redis.call('HSET', jk, 'status', 'failed', 'error', ARGV[3], 'finished', ARGV[4])
  redis.call('EXPIRE', jk, ARGV[7])
end
dead_letter(KEYS[2], ARGV[2], ARGV[5], ARGV[6], ARGV[4])
redis.call('HINCRBY', KEYS[3], 'invalid', 1)
return 1
