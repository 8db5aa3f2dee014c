-- REQUEUE: KEYS processing queue dead metrics; ARGV refund death why
-- max_deaths now dead_max dead_age ttl -> {requeued, given up}
return requeue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], a)
