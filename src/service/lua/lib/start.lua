-- Starts one job: {0 run | 1 has a result | 2 given up, attempt}. k holds
-- the job's keys (job result processing dead metrics done), a the rest (id
-- worker now max ttl dmax dage). The image is not read here: the worker
-- GETs it in the same write as the script, because a 220 kB string
-- returned through Lua costs Redis 0.45 ms more than a plain GET. Needs
-- notify, hook, keep_ttl, dead_letter.
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
  return {0, n}
end
