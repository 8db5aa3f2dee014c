-- ARGV layout shared by requeue.lua and reap_one.lua, read into the table
-- requeue() takes.
local a = {refund = ARGV[1] == '1', death = ARGV[2] == '1', why = ARGV[3],
  maxd = tonumber(ARGV[4]), now = ARGV[5], dmax = ARGV[6], dage = ARGV[7], ttl = ARGV[8]}
