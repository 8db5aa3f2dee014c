-- START: KEYS job result processing dead metrics done image; ARGV id worker
-- now max ttl dead_max dead_age -> {0 run | 1 has a result | 2 given up,
-- attempt}, and for a run the image: {0, attempt, image or false (gone)}, or
-- {0, attempt, false, error} when image:{id} cannot be read (another type).
-- Marking the job running and reading its image is one round trip.
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('LREM', KEYS[3], 1, ARGV[1])
  return {1, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')}
end
local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
keep_ttl(KEYS[1], ARGV[5])
if a > tonumber(ARGV[4]) then
  local why = redis.call('HGET', KEYS[1], 'error')
  if not why or why == '' then why = 'a worker died or lost it while running it' end
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished', ARGV[3], 'attempts', a - 1,
    'error', 'gave up after ' .. (a - 1) .. ' attempts: ' .. why)
  redis.call('LREM', KEYS[3], 1, ARGV[1])
  dead_letter(KEYS[4], ARGV[1], ARGV[6], ARGV[7], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  notify(KEYS[6])
  hook(KEYS[1], ARGV[1])
  return {2, a - 1}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'started', ARGV[3], 'worker', ARGV[2])
local img = redis.pcall('GET', KEYS[7])
if type(img) == 'table' and img.err then return {0, a, false, img.err} end
return {0, a, img}
