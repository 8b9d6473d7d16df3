-- Admission for one chat request, atomic and in one round trip: each scope's fixed windows
-- (requests, and tokens reserved), the conversation, and the host that answers it: each host's
-- in-flight lease set and its wake, and the hosted fallback's daily budget.
-- KEYS[1]: the record of the conversation being continued ("owner tokens host"); then two per
-- host (ARGV[10] of them, the fallback last when there is one): its in-flight leases (sorted
-- set, score = expiry in ms; a lease id ends with its lane and key, '|o|laptop'), then its
-- wake (a home host's model asleep) or, for the fallback, today's token budget; then two per
-- scope, broadest first (global, then the visitor's ids: address, thumbmark; or a key's own):
-- its request window, then its token window; last, the visitor's own share of the
-- fallback's day (one per visitor id, ARGV[13] of them; none unless the fallback may answer).
-- ARGV: 1 window ms, 2 lease id, 3 lease ms, 4 shed retry ms, 5 the visitor id that must own
-- the conversation ('' when none is continued), 6 how long a wake may take (ms), 7 the tokens
-- to reserve (the input's estimate and the answer's cap; the conversation's size on record is
-- added here), 8 the end of the lease ids of this request's key ('' for none), 9 that key's
-- streams at once (0: no limit), 10 the number of hosts, 11 when the fallback may answer ('1':
-- no home host is up; '2': also when every home host that is up is full), 12 how long the
-- fallback's budget lasts (ms, to the end of its day), 13 how many visitor shares of it follow
-- the scopes' keys and 14 each one's tokens for the day; then four per host: its name, the
-- lane's in-flight cap on it, the weight its free places are scaled by (its own weight times
-- its governor's factor), and its flags ('u' up: its breaker gave a permit; 'r' recovering:
-- its breaker is half-open, 'u' or not; 'a' its model
-- asleep, as this gateway sees it; 'f' the fallback, whose cap field is its daily tokens and
-- weight field its in-flight cap); then three per scope: its request limit and its token
-- limit per window, 0 turning that window off, and its window's length in ms (0: ARGV[1]).
-- Every check runs before any write, so a request refused by its visitor limit spends no
-- global budget and a shed request spends no window. Times come from Redis's clock.
-- The host: a follow-up goes to the host that answered its conversation while that host is
-- up (full: shed, to wait for a place there); when it is not, the conversation moves (the
-- gateway sends its transcript instead of the response id). A new conversation goes to the up
-- host with the most free places times its weight; a host whose model is asleep gets the one
-- request that wakes it (across replicas) only when no awake host has a place, and none while
-- it loads. The fallback answers only when no home host is up (or, with '2', when all are
-- full), within its daily tokens. Leases are per host: no host ever holds more than its cap.
-- Returns {status, ttl_ms, remaining, binding, conversation_tokens, waker, reserved, host,
-- moved, ends...}: status 0 admitted, 1 a request window full, 2 a token window the
-- reservation does not fit, 3 shed (every host that may take it is full), 4 not this
-- visitor's conversation, 5 waiting for a model to wake, 6 the key's streams at once are all
-- taken, 7 no host is up (and no fallback), 8 the fallback's day budget is spent;
-- binding is the scope that decided (the tightest request window when admitted), ttl_ms when
-- its window resets and remaining what it has left; conversation_tokens is the continued
-- conversation's size; waker 1 for the one request that loads a model asleep; reserved the
-- tokens reserved (or asked for, when refused by tokens); host the index of the host chosen;
-- moved 1 when a conversation leaves the host that answered it; and ends, once admitted, the
-- instant each token window on ends (PEXPIRETIME), in scope order, then the fallback's
-- budget's and the visitor's shares of it when it answers: the stream's end refunds into a window only while it lasts
-- (app/admission/lua/finish.lua).
local window = tonumber(ARGV[1])
-- Past the fallback's budget, come back when a home host may be back, not tomorrow.
local FALLBACK_RETRY_MS = 30000
local hosts = tonumber(ARGV[10])
local host_args, scope_keys = 14, 1 + 2 * hosts
local shares = tonumber(ARGV[13])

-- Another visitor's conversation (or none at all) is not to be continued: nothing is spent.
local size, bound = 0, ''
if ARGV[5] ~= '' then
  local owner, recorded, host = string.match(redis.call('GET', KEYS[1]) or '', '^(%S+) ?(%d*) ?(%S*)$')
  if owner ~= ARGV[5] then return {4, 0, 0, 0, 0, 0, 0, 0, 0} end
  size, bound = tonumber(recorded) or 0, host
end
local reserve = tonumber(ARGV[7]) + size

-- Each host's wake (or the fallback's budget), then the windows that are on, with their
-- scope, limit and what this request takes from each (a request with nothing to reserve
-- leaves the token windows alone). One MGET reads them all.
local names, scopes, limits, costs, tokens, spans = {}, {}, {}, {}, {}, {}
for host = 1, hosts do names[host] = KEYS[1 + 2 * host] end
for scope = 1, (#KEYS - scope_keys - shares) / 2 do
  local first = host_args + 4 * hosts + 3 * (scope - 1)
  -- A scope's own window length (a visitor pass's chats last as long as the pass), or 0.
  local span = tonumber(ARGV[first + 3])
  for kind = 0, 1 do
    local limit = tonumber(ARGV[first + 1 + kind])
    if limit > 0 and (kind == 0 or reserve > 0) then
      local index = #names + 1
      names[index], scopes[index], limits[index] = KEYS[scope_keys + 2 * scope - 1 + kind], scope, limit
      costs[index], tokens[index] = (kind == 0) and 1 or reserve, kind == 1
      spans[index] = span > 0 and span or window
    end
  end
end
local used = redis.call('MGET', unpack(names))

local status, retry, binding = 0, 0, 0
-- The narrowest scope first: a visitor over their own limit is told so even when all are full.
for index = #names, hosts + 1, -1 do
  if tonumber(used[index] or 0) + costs[index] > limits[index] then
    local ttl = redis.call('PTTL', names[index])
    if ttl < 0 then
      redis.call('PEXPIRE', names[index], spans[index])
      ttl = spans[index]
    end
    if status == 0 then
      status = tokens[index] and 2 or 1
      binding = scopes[index]
    end
    if ttl > retry then retry = ttl end
  end
end
if status ~= 0 then return {status, retry, 0, binding, 0, 0, reserve, 0, 0} end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local shed_ms = tonumber(ARGV[4])
-- Each host's streams now; leases of crashed gateways expire here: nothing they held stays
-- taken. The key's own streams are counted over every host (a set holds no more than its cap).
local mark, most, streams = ARGV[8], tonumber(ARGV[9]), 0
local counts = {}
for host = 1, hosts do
  local leases = KEYS[2 * host]
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  counts[host] = redis.call('ZCARD', leases)
  if most > 0 then
    for _, lease in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
      if string.sub(lease, -#mark) == mark then streams = streams + 1 end
    end
  end
end
if most > 0 and streams >= most then return {6, shed_ms, 0, 0, 0, 0, 0, 0, 0} end

local function arg(host, field) return ARGV[host_args + 4 * (host - 1) + field] end
local function has(host, flag) return string.find(arg(host, 4), flag, 1, true) ~= nil end

-- The host: the conversation's own while it is up, else the best one for a new conversation.
local chosen, moved, waker = 0, 0, 0
if bound ~= '' then
  for host = 1, hosts do
    if arg(host, 1) == bound and has(host, 'u') and not has(host, 'f') then
      if used[host] == 'loading' then return {5, shed_ms, 0, 0, 0, 0, 0, 0, 0} end
      if counts[host] >= tonumber(arg(host, 2)) then return {3, shed_ms, 0, 0, 0, 0, 0, 0, 0} end
      -- Its model asleep: this follow-up is the one request that wakes it.
      if has(host, 'a') and used[host] ~= 'awake' then waker = 1 end
      chosen = host
    elseif arg(host, 1) == bound and has(host, 'r') then
      -- Its host is recovering (its breaker lets trials through, none free just now): the
      -- conversation waits for it rather than moving away.
      return {3, shed_ms, 0, 0, 0, 0, 0, 0, 0}
    end
  end
  if chosen == 0 then moved = 1 end
end
local best, sleeper, fallback, any_up, full, loading = 0, 0, 0, false, false, false
if chosen == 0 then
  for host = 1, hosts do
    if has(host, 'f') then
      fallback = host
    elseif has(host, 'u') then
      any_up = true
      local cap = tonumber(arg(host, 2))
      if used[host] == 'loading' then
        loading = true
      elseif counts[host] >= cap then
        full = true
      elseif has(host, 'a') and used[host] ~= 'awake' then
        if sleeper == 0 then sleeper = host end
      else
        local score = (cap - counts[host]) * tonumber(arg(host, 3))
        if score > best then chosen, best = host, score end
      end
    end
  end
  if chosen == 0 and sleeper > 0 then chosen, waker = sleeper, 1 end
end
if chosen == 0 then
  local may = fallback > 0 and (not any_up or (ARGV[11] == '2' and full and not loading))
  if not may then
    if loading then return {5, shed_ms, 0, 0, 0, 0, 0, 0, 0} end
    if full then return {3, shed_ms, 0, 0, 0, 0, 0, 0, 0} end
    return {7, shed_ms, 0, 0, 0, 0, 0, 0, 0}
  end
  if tonumber(used[fallback] or 0) + reserve > tonumber(arg(fallback, 2)) then
    return {8, FALLBACK_RETRY_MS, 0, 0, 0, 0, reserve, 0, 0}
  end
  -- Each visitor id's share of the day: one visitor cannot spend everyone's backup.
  for share = 1, shares do
    local key = KEYS[#KEYS - shares + share]
    if tonumber(redis.call('GET', key) or 0) + reserve > tonumber(ARGV[14]) then
      return {8, FALLBACK_RETRY_MS, 0, 0, 0, 0, reserve, 0, 0}
    end
  end
  if counts[fallback] >= tonumber(arg(fallback, 3)) then return {3, shed_ms, 0, 0, 0, 0, 0, 0, 0} end
  chosen = fallback
end

local leases = KEYS[2 * chosen]
redis.call('ZADD', leases, now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', leases, tonumber(ARGV[3]) * 2)

local remaining, tightest, reserved, ends = -1, nil, 0, {}
for index = hosts + 1, #names do
  local count = tokens[index] and redis.call('INCRBY', names[index], reserve)
    or redis.call('INCR', names[index])
  -- NX: set only a missing expiry, so a key that lost its TTL heals instead of living forever.
  redis.call('PEXPIRE', names[index], spans[index], 'NX')
  if tokens[index] then
    reserved = reserve
    ends[#ends + 1] = redis.call('PEXPIRETIME', names[index])
  elseif remaining < 0 or limits[index] - count < remaining then
    remaining, tightest, binding = limits[index] - count, names[index], scopes[index]
  end
end
if chosen == fallback then
  redis.call('INCRBY', names[chosen], reserve)
  redis.call('PEXPIRE', names[chosen], tonumber(ARGV[12]), 'NX')
  reserved = reserve
  ends[#ends + 1] = redis.call('PEXPIRETIME', names[chosen])
  for share = 1, shares do
    local key = KEYS[#KEYS - shares + share]
    redis.call('INCRBY', key, reserve)
    redis.call('PEXPIRE', key, tonumber(ARGV[12]), 'NX')
    ends[#ends + 1] = redis.call('PEXPIRETIME', key)
  end
end
if waker == 1 then redis.call('SET', names[chosen], 'loading', 'PX', tonumber(ARGV[6])) end
local ttl = tightest and redis.call('PTTL', tightest) or 0
return {0, ttl, math.max(remaining, 0), binding, size, waker, reserved, chosen, moved, unpack(ends)}
