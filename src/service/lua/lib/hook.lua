-- A job with a callback_url that reaches a final state gets its webhook
-- scheduled, once (webhook.c delivers it): due at once, deliverers woken.
local function hook(jk, id)
  if redis.call('HEXISTS', jk, 'callback_url') == 1 and
     redis.call('HEXISTS', jk, 'webhook') == 0 then
    redis.call('HSET', jk, 'webhook', 'pending')
    redis.call('ZADD', 'webhooks:due', 0, id)
    redis.call('LPUSH', 'webhooks:wake', '1')
    redis.call('LTRIM', 'webhooks:wake', 0, 0)
  end
end
