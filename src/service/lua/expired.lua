-- EXPIRED: KEYS job processing metrics done; ARGV id now ttl
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'expired', 'finished', ARGV[2],
  'error', 'the image expired before a worker took the job')
keep_ttl(KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'expired', 1)
notify(KEYS[4])
hook(KEYS[1], ARGV[1])
return 1
