-- REGISTER: KEYS job image result queue done; ARGV id ttl max now sync_label
-- sync_model sync_top5 callback_url -> 1 created, 0 id taken, -1 full, -2 no image.
-- CREATE for an image:{id} this connection has just SET (NX, with a short TTL):
-- it becomes the job's image, or it is deleted with the answer that says why.
if redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
if redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[5]) > 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
local max = tonumber(ARGV[3])
if max > 0 and redis.call('LLEN', KEYS[4]) >= max then
  redis.call('DEL', KEYS[2])
  return -1
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return enqueue({job = KEYS[1], queue = KEYS[4]},
  {id = ARGV[1], ttl = ARGV[2], now = ARGV[4], sync_label = ARGV[5], sync_model = ARGV[6],
   sync_top5 = ARGV[7], callback_url = ARGV[8]})
