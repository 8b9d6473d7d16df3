-- Admission for one chat request, atomic and in one round trip: the global fixed window,
-- the visitor's fixed windows and the in-flight lease set.
-- KEYS[1]: global window; KEYS[2]: in-flight leases (sorted set, score = expiry in ms);
-- KEYS[3]: the record of the conversation being continued ("owner tokens"); KEYS[4]: the wake
-- of a model asleep; KEYS[5..n]: the visitor's windows (client address, thumbmark).
-- ARGV: window ms, global limit, visitor limit, in-flight cap, lease id, lease ms, shed retry
-- ms, the visitor id that must own the conversation ('' when none is continued), whether this
-- gateway sees the model asleep ('1'/'0'), and how long a wake may take (ms).
-- Every check runs before any write, so a request refused by its visitor limit spends no
-- global budget and a shed request spends no window. Times come from Redis's clock.
-- Returns {status, ttl_ms, remaining, binding, conversation_tokens, waker}: status 0 admitted,
-- 1 visitor limit, 2 global limit, 3 shed (in-flight cap), 4 not this visitor's conversation,
-- 5 waiting for the model to wake; binding is the index of the window that decided (the
-- tightest one when admitted), ttl_ms is when it resets and remaining is what it has left;
-- conversation_tokens is the continued conversation's size; waker 1 for the one request that
-- loads a model asleep.
local window = tonumber(ARGV[1])
local cap = tonumber(ARGV[4])
local function limit_of(index)
  if index == 1 then return tonumber(ARGV[2]) end
  return tonumber(ARGV[3])
end

-- Another visitor's conversation (or none at all) is not to be continued: nothing is spent.
local size = 0
if ARGV[8] ~= '' then
  local owner, tokens = string.match(redis.call('GET', KEYS[3]) or '', '^(%S+) ?(%d*)$')
  if owner ~= ARGV[8] then return {4, 0, 0, 0, 0, 0} end
  size = tonumber(tokens) or 0
end

-- A model asleep is woken by one request across all replicas: the wake is 'loading' until its
-- first output, then 'awake' for a moment, until every replica's health check has seen the
-- model loaded. Meanwhile the others wait, spending nothing; a replica that has not yet seen
-- the model asleep waits too.
-- One MGET reads the windows and the wake.
local windows = {KEYS[1]}
for index = 5, #KEYS do windows[#windows + 1] = KEYS[index] end
local used = redis.call('MGET', KEYS[4], unpack(windows))
local wake = table.remove(used, 1)
if wake == 'loading' then return {5, tonumber(ARGV[7]), 0, 0, 0, 0} end
local waker = (ARGV[9] == '1' and wake ~= 'awake') and 1 or 0

local status, retry, binding = 0, 0, 0
-- Visitor windows first: a visitor over their own limit is told so even when all are full.
for index = #windows, 1, -1 do
  if tonumber(used[index] or 0) >= limit_of(index) then
    local ttl = redis.call('PTTL', windows[index])
    if ttl < 0 then
      redis.call('PEXPIRE', windows[index], window)
      ttl = window
    end
    if status == 0 then
      status = (index == 1) and 2 or 1
      binding = index
    end
    if ttl > retry then retry = ttl end
  end
end
if status ~= 0 then return {status, retry, 0, binding, 0, 0} end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Leases of crashed gateways expire here: nothing they held stays taken.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= cap then return {3, tonumber(ARGV[7]), 0, 0, 0, 0} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[5])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]) * 2)

local remaining = -1
for index = 1, #windows do
  local count = redis.call('INCR', windows[index])
  -- NX: set only a missing expiry, so a key that lost its TTL heals instead of living forever.
  redis.call('PEXPIRE', windows[index], window, 'NX')
  local left = limit_of(index) - count
  if remaining < 0 or left < remaining then
    remaining = left
    binding = index
  end
end
if waker == 1 then redis.call('SET', KEYS[4], 'loading', 'PX', tonumber(ARGV[10])) end
return {0, redis.call('PTTL', windows[binding]), remaining, binding, size, waker}
