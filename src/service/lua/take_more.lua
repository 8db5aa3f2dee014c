-- TAKE_MORE: KEYS queue processing dead metrics; ARGV first more id_min
-- id_max worker now max ttl dead_max dead_age -> {} when first is to run
-- alone, else {id, start_job's answer, id, answer, ...}, first's first; the
-- worker then GETs the images of the jobs to run, all in one write.
-- A batch: first is already in the processing list (BLMOVE); up to `more`
-- further ids move there from the consuming end, as BLMOVE moves them,
-- and every job of the batch is started, in one atomic step, so a worker
-- that dies at any point leaves each job either queued or in its list.
-- The batch stops before an entry that is no job id or whose keys have
-- another type (the single path dead-letters those) and before a job whose
-- worker died while running it: such a job runs alone, so that one that
-- kills its worker cannot count deaths against jobs batched with it.
local function batchable(id)
  if #id < tonumber(ARGV[3]) or #id > tonumber(ARGV[4]) or string.find(id, '[^a-z0-9]') then
    return false
  end
  local jt = redis.call('TYPE', 'job:' .. id).ok
  if jt ~= 'none' and jt ~= 'hash' then return false end
  for _, p in ipairs({'result:', 'image:', 'done:'}) do
    local t = redis.call('TYPE', p .. id).ok
    if t ~= 'none' and t ~= (p == 'done:' and 'list' or 'string') then return false end
  end
  return (tonumber(redis.call('HGET', 'job:' .. id, 'deaths')) or 0) == 0
end
if not batchable(ARGV[1]) then return {} end
local ids = {ARGV[1]}
for _ = 1, tonumber(ARGV[2]) do
  local id = redis.call('LINDEX', KEYS[1], -1)
  if not id or not batchable(id) then break end
  redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  ids[#ids + 1] = id
end
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = start_job({job = 'job:' .. id, result = 'result:' .. id, processing = KEYS[2],
    dead = KEYS[3], metrics = KEYS[4], done = 'done:' .. id},
    {id = id, worker = ARGV[5], now = ARGV[6], max = ARGV[7], ttl = ARGV[8], dmax = ARGV[9],
    dage = ARGV[10]})
end
return out
