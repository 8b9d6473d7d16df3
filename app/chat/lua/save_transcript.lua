-- Save a conversation's transcript in one round trip (app/chat/transcripts.py): the transcript
-- of the previous response (KEYS[2], when there is one and it is still stored) and this turn
-- (ARGV[1], one JSON line of ARGV[2] characters), under this response (KEYS[1]) for ARGV[3]
-- seconds. A transcript is JSON lines, one turn a line, each beginning {"chars":N: turns are
-- dropped oldest first until the characters are at most ARGV[4] and the bytes at most ARGV[5]
-- (the newest turn, already cut to fit, stays). Returns how many turns were kept.
local turns, chars = {}, {}
local previous = KEYS[2] and redis.call('GET', KEYS[2])
if previous then
  for line in string.gmatch(previous, '[^\n]+') do
    turns[#turns + 1] = line
    chars[#chars + 1] = tonumber(string.match(line, '^{"chars":(%d+)')) or 0
  end
end
turns[#turns + 1] = ARGV[1]
chars[#chars + 1] = tonumber(ARGV[2])
local total_chars, total_bytes = 0, #turns - 1 -- the newlines between turns
for index = 1, #turns do
  total_chars = total_chars + chars[index]
  total_bytes = total_bytes + #turns[index]
end
local first = 1
while first < #turns and
    (total_chars > tonumber(ARGV[4]) or total_bytes > tonumber(ARGV[5])) do
  total_chars = total_chars - chars[first]
  total_bytes = total_bytes - #turns[first] - 1
  first = first + 1
end
redis.call('SET', KEYS[1], table.concat(turns, '\n', first), 'EX', ARGV[3])
return #turns - first + 1
