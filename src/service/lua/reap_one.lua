-- REAP_ONE: KEYS processing queue dead metrics worker:{w} workers; ARGV as
-- REQUEUE, then w -> {-1, 0} alive, else {requeued, given up}
if redis.call('EXISTS', KEYS[5]) == 1 then return {-1, 0} end
local r = requeue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], a)
redis.call('SREM', KEYS[6], ARGV[9])
return r
