-- Starts one job: {0 run | 1 has a result | 2 given up, attempt}, and for a
-- run, when k.image is given, the image: {0, attempt, image or false
-- (gone)}, or {0, attempt, false, error} when image:{id} cannot be read
-- (another type). k holds the job's keys (job result processing dead
-- metrics done, image optional), a the rest (id worker now max ttl dmax
-- dage). Needs notify, hook, keep_ttl, dead_letter.
local function start_job(k, a)
  if redis.call('EXISTS', k.result) == 1 then
    redis.call('LREM', k.processing, 1, a.id)
    return {1, tonumber(redis.call('HGET', k.job, 'attempts') or '0')}
  end
  local n = redis.call('HINCRBY', k.job, 'attempts', 1)
  keep_ttl(k.job, a.ttl)
  if n > tonumber(a.max) then
    local why = redis.call('HGET', k.job, 'error')
    if not why or why == '' then why = 'a worker died or lost it while running it' end
    redis.call('HSET', k.job, 'status', 'failed', 'finished', a.now, 'attempts', n - 1,
      'error', 'gave up after ' .. (n - 1) .. ' attempts: ' .. why)
    redis.call('LREM', k.processing, 1, a.id)
    dead_letter(k.dead, a.id, a.dmax, a.dage, a.now)
    redis.call('HINCRBY', k.metrics, 'failed', 1)
    notify(k.done)
    hook(k.job, a.id)
    return {2, n - 1}
  end
  redis.call('HSET', k.job, 'status', 'running', 'started', a.now, 'worker', a.worker)
  if not k.image then return {0, n} end
  local img = redis.pcall('GET', k.image)
  if type(img) == 'table' and img.err then return {0, n, false, img.err} end
  return {0, n, img}
end
