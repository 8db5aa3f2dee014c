-- HEARTBEAT: KEYS worker:{w} workers; ARGV w info ttl
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
