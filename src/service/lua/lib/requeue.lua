-- Moves all of a processing list back to the consuming (right) end of the
-- queue, oldest first; jobs marked running go back to queued. a.refund: the
-- attempt the worker had started is given back (it was not the job's fault:
-- killed from outside, host gone, a Redis error). a.death: the worker died
-- while running the job; that counts in job:{id} deaths, and a job at
-- a.maxd deaths is failed and dead-lettered instead (it kills or stalls
-- every worker that takes it). a.why, if not empty, becomes the job's error.
-- Returns {requeued, given up}. Needs notify, hook, keep_ttl, dead_letter.
local function requeue(kp, kq, kd, km, a)
  local n, gone = 0, 0
  while true do
    local id = redis.call('RPOP', kp)
    if not id then break end
    local jk = 'job:' .. id
    local dead = false
    if redis.pcall('HGET', jk, 'status') == 'running' then
      if a.why ~= '' then redis.call('HSET', jk, 'error', a.why) end
      if a.refund and tonumber(redis.call('HGET', jk, 'attempts') or '0') > 0 then
        redis.call('HINCRBY', jk, 'attempts', -1)
      end
      if a.death then
        local d = redis.call('HINCRBY', jk, 'deaths', 1)
        if d >= a.maxd then
          dead = true
          redis.call('HSET', jk, 'status', 'failed', 'finished', a.now, 'error',
            'gave up: its worker died ' .. d .. ' times while running it (last: ' ..
            a.why .. ')')
          keep_ttl(jk, a.ttl)
          dead_letter(kd, id, a.dmax, a.dage, a.now)
          redis.call('HINCRBY', km, 'failed', 1)
          notify('done:' .. id)
          hook(jk, id)
          gone = gone + 1
        end
      end
      if not dead then redis.call('HSET', jk, 'status', 'queued') end
    end
    if not dead then
      redis.call('RPUSH', kq, id)
      n = n + 1
    end
  end
  return {n, gone}
end
