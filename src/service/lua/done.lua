-- DONE: KEYS job result processing metrics done image; ARGV id label top5
-- model ms now ttl bucket image_keep -> 1 stored, 0 a result existed already.
-- The image is not needed once there is a result: it goes (or is kept
-- image_keep more seconds, never longer than it would have been). That
-- comes first: at maxmemory Redis refuses a script whose first write
-- may grow memory, but lets one finish that has begun by freeing some,
-- so jobs in hand still complete and free their images.
local keep = tonumber(ARGV[9])
redis.call('LREM', KEYS[3], 1, ARGV[1])
if keep > 0 then
  local t = redis.call('TTL', KEYS[6])
  if t == -1 or t > keep then redis.call('EXPIRE', KEYS[6], keep) end
else
  redis.call('DEL', KEYS[6])
end
local fresh = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[7])
if not fresh then return 0 end
redis.call('HSET', KEYS[1], 'status', 'done', 'label', ARGV[2], 'top5', ARGV[3],
  'model', ARGV[4], 'inference_ms', ARGV[5], 'finished', ARGV[6])
redis.call('HDEL', KEYS[1], 'error')
local fast = redis.call('HGET', KEYS[1], 'sync_label')
if fast and fast ~= '' then
  local agree = fast == ARGV[2]
  redis.call('HSET', KEYS[1], 'agrees_with_fast', agree and '1' or '0')
  redis.call('HINCRBY', KEYS[4], agree and 'agree' or 'upgrade', 1)
end
keep_ttl(KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[4], 'processed', 1)
redis.call('HINCRBYFLOAT', KEYS[4], 'inference_ms_sum', ARGV[5])
redis.call('HINCRBY', KEYS[4], 'inference_count', 1)
redis.call('HINCRBY', KEYS[4], ARGV[8], 1)
notify(KEYS[5])
hook(KEYS[1], ARGV[1])
return 1
