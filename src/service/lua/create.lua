-- CREATE: KEYS job image result queue done; ARGV id b64 ttl max now
-- sync_label sync_model sync_top5 callback_url -> 1 created, 0 id taken, -1 full.
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[5]) > 0 then return 0 end
local max = tonumber(ARGV[4])
if max > 0 and redis.call('LLEN', KEYS[4]) >= max then return -1 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return enqueue({job = KEYS[1], queue = KEYS[4]},
  {id = ARGV[1], ttl = ARGV[3], now = ARGV[5], sync_label = ARGV[6], sync_model = ARGV[7],
   sync_top5 = ARGV[8], callback_url = ARGV[9]})
