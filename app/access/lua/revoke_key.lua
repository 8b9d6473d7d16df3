-- Forget the key named ARGV[1] (KEYS as in create_key.lua). 1 when it was there, 0 when not.
local digest = redis.call('HGET', KEYS[2], ARGV[1])
if not digest then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], digest)
return 1
