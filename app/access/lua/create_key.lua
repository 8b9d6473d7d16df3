-- Record a new key unless its name is taken: KEYS[1] digest -> record, KEYS[2] name -> digest;
-- ARGV[1] the name, ARGV[2] the key's HMAC, ARGV[3] its record. 1 when created, 0 when taken.
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
