-- Admission for one chat request, atomic and in one round trip: each scope's fixed windows
-- (requests, and tokens reserved), the in-flight lease set, the conversation and the wake.
-- KEYS[1]: in-flight leases of every lane (sorted set, score = expiry in ms; a lease id ends
-- with its lane and key, '|o|laptop'); KEYS[2]: the record of the conversation being continued
-- ("owner tokens"); KEYS[3]: the wake of a model asleep; KEYS[4..n]: two per scope, broadest
-- first (global, then the visitor's ids: address, thumbmark; or a key's own): its request
-- window, then its token window.
-- ARGV: window ms, the lane's in-flight cap (over the streams of every lane), lease id, lease
-- ms, shed retry ms, the visitor id that must own the conversation ('' when none is
-- continued), whether this gateway sees the model asleep ('1'/'0'), how long a wake may take
-- (ms), the tokens to reserve (the input's estimate and the answer's cap; the conversation's
-- size on record is added here), the end of the lease ids of this request's key ('' for none)
-- and that key's streams at once (0: no limit); then two per scope: its request limit and its
-- token limit per window, 0 turning that window off.
-- Every check runs before any write, so a request refused by its visitor limit spends no
-- global budget and a shed request spends no window. Times come from Redis's clock.
-- Returns {status, ttl_ms, remaining, binding, conversation_tokens, waker, reserved, ends...}:
-- status 0 admitted, 1 a request window full, 2 a token window the reservation does not fit,
-- 3 shed (in-flight cap), 4 not this visitor's conversation, 5 waiting for the model to wake,
-- 6 the key's streams at once are all taken;
-- binding is the scope that decided (the tightest request window when admitted), ttl_ms when
-- its window resets and remaining what it has left; conversation_tokens is the continued
-- conversation's size; waker 1 for the one request that loads a model asleep; reserved the
-- tokens reserved (or asked for, when refused by tokens) and ends, once admitted, the instant
-- each token window on ends (PEXPIRETIME), in scope order: the stream's end refunds into a
-- window only while it lasts (app/admission/lua/finish.lua).
local window = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])

-- Another visitor's conversation (or none at all) is not to be continued: nothing is spent.
local size = 0
if ARGV[6] ~= '' then
  local owner, recorded = string.match(redis.call('GET', KEYS[2]) or '', '^(%S+) ?(%d*)$')
  if owner ~= ARGV[6] then return {4, 0, 0, 0, 0, 0, 0} end
  size = tonumber(recorded) or 0
end
local reserve = tonumber(ARGV[9]) + size

-- The windows that are on, with their scope, limit and what this request takes from each
-- (a request with nothing to reserve leaves the token windows alone).
local names, scopes, limits, costs, tokens = {KEYS[3]}, {}, {}, {}, {}
for scope = 1, (#KEYS - 3) / 2 do
  for kind = 0, 1 do
    local limit = tonumber(ARGV[10 + 2 * scope + kind])
    if limit > 0 and (kind == 0 or reserve > 0) then
      local index = #names + 1
      names[index], scopes[index], limits[index] = KEYS[2 + 2 * scope + kind], scope, limit
      costs[index], tokens[index] = (kind == 0) and 1 or reserve, kind == 1
    end
  end
end

-- A model asleep is woken by one request across all replicas: the wake is 'loading' until its
-- first output, then 'awake' for a moment, until every replica's health check has seen the
-- model loaded. Meanwhile the others wait, spending nothing; a replica that has not yet seen
-- the model asleep waits too. One MGET reads the wake and the windows.
local used = redis.call('MGET', unpack(names))
if used[1] == 'loading' then return {5, tonumber(ARGV[5]), 0, 0, 0, 0, 0} end
local waker = (ARGV[7] == '1' and used[1] ~= 'awake') and 1 or 0

local status, retry, binding = 0, 0, 0
-- The narrowest scope first: a visitor over their own limit is told so even when all are full.
for index = #names, 2, -1 do
  if tonumber(used[index] or 0) + costs[index] > limits[index] then
    local ttl = redis.call('PTTL', names[index])
    if ttl < 0 then
      redis.call('PEXPIRE', names[index], window)
      ttl = window
    end
    if status == 0 then
      status = tokens[index] and 2 or 1
      binding = scopes[index]
    end
    if ttl > retry then retry = ttl end
  end
end
if status ~= 0 then return {status, retry, 0, binding, 0, 0, reserve} end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Leases of crashed gateways expire here: nothing they held stays taken.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- The key's own streams: the set holds no more than the largest lane cap, so reading it is cheap.
local mark, most = ARGV[10], tonumber(ARGV[11])
if most > 0 then
  local streams = 0
  for _, lease in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(lease, -#mark) == mark then streams = streams + 1 end
  end
  if streams >= most then return {6, tonumber(ARGV[5]), 0, 0, 0, 0, 0} end
end
if redis.call('ZCARD', KEYS[1]) >= cap then return {3, tonumber(ARGV[5]), 0, 0, 0, 0, 0} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) * 2)

local remaining, tightest, reserved, ends = -1, nil, 0, {}
for index = 2, #names do
  local count = tokens[index] and redis.call('INCRBY', names[index], reserve)
    or redis.call('INCR', names[index])
  -- NX: set only a missing expiry, so a key that lost its TTL heals instead of living forever.
  redis.call('PEXPIRE', names[index], window, 'NX')
  if tokens[index] then
    reserved = reserve
    ends[#ends + 1] = redis.call('PEXPIRETIME', names[index])
  elseif remaining < 0 or limits[index] - count < remaining then
    remaining, tightest, binding = limits[index] - count, names[index], scopes[index]
  end
end
if waker == 1 then redis.call('SET', KEYS[3], 'loading', 'PX', tonumber(ARGV[8])) end
local ttl = tightest and redis.call('PTTL', tightest) or 0
return {0, ttl, math.max(remaining, 0), binding, size, waker, reserved, unpack(ends)}
