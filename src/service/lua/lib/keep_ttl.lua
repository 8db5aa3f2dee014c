-- Gives k the TTL ttl unless it has one (a record must never outlive its job).
local function keep_ttl(k, ttl)
  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ttl) end
end
