-- The end of one stream, in one round trip: give its in-flight place back (KEYS[1], member
-- ARGV[1]); when it answered, bind the response (KEYS[2]) to the visitor it answered (record
-- ARGV[2], '' for none) for ARGV[3] seconds, so only they can continue the conversation; and
-- settle its token reservation: ARGV[4] (tokens spent less tokens reserved, a refund when
-- negative) goes into each token window it was reserved in (KEYS[3..n]) while that window
-- lasts, told by the instant it ends (ARGV[5..n], PEXPIRETIME): into a window that rolled
-- over, nothing. Returns how many windows were settled.
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
local delta, settled = tonumber(ARGV[4]), 0
if delta ~= 0 then
  for index = 3, #KEYS do
    if redis.call('PEXPIRETIME', KEYS[index]) == tonumber(ARGV[index + 2]) then
      redis.call('INCRBY', KEYS[index], delta)
      settled = settled + 1
    end
  end
end
return settled
