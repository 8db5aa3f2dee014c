-- GET: KEYS job result image -> {hgetall, result or false, image exists}
return {redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2]),
        redis.call('EXISTS', KEYS[3])}
