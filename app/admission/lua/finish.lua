-- The end of one stream, in one round trip: give its in-flight place back (KEYS[1], member
-- ARGV[1]) and, when it answered, bind the response (KEYS[2]) to the visitor it answered
-- (ARGV[2]) for ARGV[3] seconds, so only they can continue the conversation.
redis.call('ZREM', KEYS[1], ARGV[1])
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return 0
