-- HOOK_RECORD: KEYS job due metrics; ARGV id outcome attempts error due.
-- A job that expired meanwhile is not recreated.
local o = ARGV[2]
if o == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if o == 'dropped' then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local st = o == 'retry' and 'pending' or o
  redis.call('HSET', KEYS[1], 'webhook', st, 'webhook_attempts', ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'webhook_error', ARGV[4]) end
  if o == 'delivered' then redis.call('HDEL', KEYS[1], 'webhook_error') end
end
redis.call('HINCRBY', KEYS[3], o == 'retry' and 'webhook_retried' or 'webhook_' .. o, 1)
return 1
