-- STATS: KEYS queue dead metrics workers -> {llen, dead, metrics, alive, processing}
local alive, proc = 0, 0
for _, w in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if redis.call('EXISTS', 'worker:' .. w) == 1 then
    alive = alive + 1
    proc = proc + redis.call('LLEN', 'processing:' .. w)
  end
end
return {redis.call('LLEN', KEYS[1]), redis.call('LLEN', KEYS[2]),
        redis.call('HGETALL', KEYS[3]), alive, proc}
