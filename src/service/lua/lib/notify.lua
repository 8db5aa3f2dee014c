-- Leaves one element in list k (done:{id}, a wake key): what waiters block
-- on (queue_wait_any). Kept 60 s.
local function notify(k)
  redis.call('LPUSH', k, '1')
  redis.call('LTRIM', k, 0, 0)
  redis.call('EXPIRE', k, 60)
end
