-- Fixed-window admission for one chat request, atomic and in one round trip.
-- KEYS[1]: the global window; KEYS[2..n]: the visitor's windows (client IP, thumbmark).
-- ARGV[1]: window length in ms; ARGV[2]: global limit; ARGV[3]: visitor limit.
-- Checks every window first and writes only when all pass, so a request turned away
-- by its visitor limit spends no global budget. Times come from Redis's clock (PTTL).
-- Returns {status, ttl_ms, remaining, binding}: status 0 admitted, 1 visitor limit, 2 global
-- limit; binding is the index of the window that decided (the tightest one when admitted),
-- ttl_ms is when it resets and remaining is what it has left.
local window = tonumber(ARGV[1])
local function limit_of(index)
  if index == 1 then return tonumber(ARGV[2]) end
  return tonumber(ARGV[3])
end

local used = redis.call('MGET', unpack(KEYS))
local status, retry, binding = 0, 0, 0
-- Visitor windows first: a visitor over their own limit is told so even when all are full.
for index = #KEYS, 1, -1 do
  if tonumber(used[index] or 0) >= limit_of(index) then
    local ttl = redis.call('PTTL', KEYS[index])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[index], window)
      ttl = window
    end
    if status == 0 then
      status = (index == 1) and 2 or 1
      binding = index
    end
    if ttl > retry then retry = ttl end
  end
end
if status ~= 0 then return {status, retry, 0, binding} end

local remaining = -1
for index = 1, #KEYS do
  local count = redis.call('INCR', KEYS[index])
  -- NX: set only a missing expiry, so a key that lost its TTL heals instead of living forever.
  redis.call('PEXPIRE', KEYS[index], window, 'NX')
  local left = limit_of(index) - count
  if remaining < 0 or left < remaining then
    remaining = left
    binding = index
  end
end
return {0, redis.call('PTTL', KEYS[binding]), remaining, binding}
