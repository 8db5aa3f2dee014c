-- HOOK_CLAIM: KEYS due wake; ARGV now lease max -> {ids, next due score or
-- false}. When more are due, another deliverer is woken to share them.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], until_ms, id) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] and tonumber(nxt[2]) <= tonumber(ARGV[1]) then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, 0)
end
return {ids, nxt[2] or false}
