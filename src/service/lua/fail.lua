-- FAIL: KEYS job processing queue dead metrics done; ARGV id reason max now
-- ttl dead_max dead_age -> 1 failed for good, 0 requeued, 2 not ours any
-- more (left alone)
local held = redis.call('LREM', KEYS[2], 1, ARGV[1])
local a = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
redis.call('HSET', KEYS[1], 'error', ARGV[2])
keep_ttl(KEYS[1], ARGV[5])
if a >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished', ARGV[4])
  dead_letter(KEYS[4], ARGV[1], ARGV[6], ARGV[7], ARGV[4])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  notify(KEYS[6])
  hook(KEYS[1], ARGV[1])
  return 1
end
if held == 0 then return 2 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'retried', 1)
return 0
