-- Records a new job as queued and pushes its id: k holds its keys (job
-- queue), a the rest (id ttl now sync_label sync_model sync_top5
-- callback_url). Returns 1, the create scripts' "created".
local function enqueue(k, a)
  redis.call('HSET', k.job, 'status', 'queued', 'attempts', 0, 'created', a.now,
    'sync_label', a.sync_label, 'sync_model', a.sync_model, 'sync_top5', a.sync_top5)
  if a.callback_url ~= '' then redis.call('HSET', k.job, 'callback_url', a.callback_url) end
  redis.call('EXPIRE', k.job, a.ttl)
  redis.call('LPUSH', k.queue, a.id)
  return 1
end
