-- One swarm's share of the periodic sweep (tracker/store/redis.py): drop its silent peers, at
-- most ARGV[2] from each set, and count it. The keys are those of announce.lua.
--
-- ARGV: cutoff, most peers dropped per set, and "d" when the sweep found the swarm by its
-- completions key: then the swarm is counted only if it has no peers, since one with peers
-- is counted when the sweep finds its peers' key.
--
-- Reply: {} when not counted; otherwise {dropped, complete, incomplete, downloaded}.

local peers, leechers, seeders, completions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local bound = tonumber(ARGV[1]) + 1
local most = tonumber(ARGV[2])
local call = redis.call

if ARGV[3] == 'd' and call('EXISTS', peers) == 1 then
  return {}
end

local dropped = 0
for _, set in ipairs({leechers, seeders}) do
  local silent = call('ZRANGEBYSCORE', set, '(' .. -bound, '(' .. bound, 'LIMIT', 0, most)
  if #silent > 0 then
    call('ZREM', set, unpack(silent))
    local ids = {}
    for i, member in ipairs(silent) do
      ids[i] = string.sub(member, -20)
    end
    call('HDEL', peers, unpack(ids))
    dropped = dropped + #silent
  end
end
return {
  dropped,
  call('ZCARD', seeders),
  call('ZCARD', leechers),
  tonumber(call('GET', completions)) or 0,
}
