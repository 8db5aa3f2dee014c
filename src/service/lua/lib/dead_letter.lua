-- Pushes id onto the dead-letter list k, then bounds it: entries at the old
-- end whose job record is gone or finished more than age seconds before
-- now (ms) go (a few per push, so the cost stays small), the list is trimmed
-- to max entries, and it expires age seconds after the last push. Job keys
-- are read with pcall here and in requeue(): another producer's job:{id} of
-- another type must not make the script fail half-way.
local function dead_letter(k, id, max, age, now)
  redis.call('LPUSH', k, id)
  local oldest = tonumber(now) - tonumber(age) * 1000
  for _ = 1, 64 do
    local last = redis.call('LINDEX', k, -1)
    if not last or last == id then break end
    local f = tonumber(redis.pcall('HGET', 'job:' .. last, 'finished')) or 0
    if f >= oldest then break end
    redis.call('RPOP', k)
  end
  redis.call('LTRIM', k, 0, tonumber(max) - 1)
  redis.call('EXPIRE', k, age)
end
