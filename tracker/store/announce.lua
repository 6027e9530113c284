-- One announce, in one call on the Redis primary that holds the swarm (tracker/store/redis.py).
-- The rules are those of the swarm index in memory (tracker/core/swarms.py): the key check,
-- the requester left out of its own sample, seeders and paused peers given leechers only,
-- IPv4 and IPv6 apart, a completion counted once per peer.
--
-- KEYS[1]  {hex}:p  hash: peer id -> its state: a flags byte (PEER_*), its key (4 bytes,
--                   big-endian, 0 for none), then its compact address (6 or 18 bytes); and
--                   two fields of the swarm's own, one byte long so that no peer id is one:
--                   "e", the period (now // PERIOD) in which the keys' expiry was last pushed
--                   back, and "d", a copy of the completions
-- KEYS[2]  {hex}:l  sorted set of leechers, KEYS[3] {hex}:s of seeders: member = compact
--                   address then peer id; score = last seen + 1, negated for IPv6, so that
--                   IPv6 peers rank first and the silent peers of both families are one range
--                   of scores, -(cutoff + 1) to cutoff + 1, exclusive
-- KEYS[4]  {hex}:d  completions, which outlive the peers: no expiry
-- The three first expire together, PEXPIRE milliseconds (plus up to one PERIOD) after the last
-- announce that recorded a peer: a swarm nobody announces to disappears by itself. Their
-- expiry is pushed back once per PERIOD, not at every announce, and when a set is created.
--
-- ARGV: peer id, address, now, cutoff, flags (below), key, numwant, PEXPIRE, random seed
-- (1 to 2^31 - 2: scripts are given their randomness), silent peers dropped at most per set.
--
-- Reply: {-1} if the key check refuses the announce; otherwise {complete, incomplete,
-- downloaded, IPv4 peers, IPv6 peers}: the chosen peers' members (address then peer id), of
-- each family joined into one string, which costs Redis and the node far less than a string
-- a peer.

local peers, leechers, seeders, completions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, address = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
local bound = tonumber(ARGV[4]) + 1
local flags = tonumber(ARGV[5])
local key = tonumber(ARGV[6])
local numwant = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local seed = tonumber(ARGV[9])
local prune = tonumber(ARGV[10])

-- The announce's flags.
local SEEDER, COMPLETES, STOPPED, LEECHERS_ONLY, OWN_FAMILY = 1, 2, 4, 8, 16
-- A stored peer's flags.
local PEER_SEEDER, PEER_COMPLETED = 1, 2

-- Seconds between two pushes of the keys' expiry.
local PERIOD = 300

local band = bit.band
local call = redis.call
local v6 = #address == 18
local period = math.floor(now / PERIOD)
-- Pushed once a period: the keys outlive the period's last announce by ttl at least.
local pushed_ttl = ttl + PERIOD * 1000

-- Park and Miller's generator: exact in Lua's doubles (the product stays below 2^46).
local function random()
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647
end

local function drop_silent(set)
  if prune == 0 then
    return
  end
  local silent = call('ZRANGEBYSCORE', set, '(' .. -bound, '(' .. bound, 'LIMIT', 0, prune)
  if #silent > 0 then
    call('ZREM', set, unpack(silent))
    local ids = {}
    for i, member in ipairs(silent) do
      ids[i] = string.sub(member, -20)
    end
    call('HDEL', peers, unpack(ids))
  end
end

-- m peers of a group (the ranks first .. first + ranks - 1 of a set) in one run of consecutive
-- ranks from a random one, wrapping round; the requester's own member, if in the group, is
-- skipped. Every rank starts a run equally often, so every peer is chosen equally often.
local function take(reply, set, first, ranks, holds_self, m, own)
  local length = m
  if holds_self then
    length = m + 1
  end
  local start = math.floor(random() * ranks)
  local run = call('ZRANGE', set, first + start, first + math.min(start + length, ranks) - 1)
  if start + length > ranks then
    local more = call('ZRANGE', set, first, first + start + length - ranks - 1)
    for _, member in ipairs(more) do
      run[#run + 1] = member
    end
  end
  local added = 0
  for _, member in ipairs(run) do
    if added < m and member ~= own then
      reply[#reply + 1] = member
      added = added + 1
    end
  end
end

-- Up to `wanted` other peers: each group's share is wanted * its size / the total, rounded up
-- or down at random so that the shares add up to `wanted` (as the index in memory does).
local function sample(reply, own_set, own, wanted, complete, incomplete)
  local sets = {leechers, seeders}
  local sizes = {incomplete, complete}
  if band(flags, LEECHERS_ONLY) ~= 0 then
    sets = {leechers}
  end
  local own_v6 = own ~= nil and #own == 38
  local groups = {}
  local total = 0
  for i, set in ipairs(sets) do
    local first, ranks = 0, sizes[i]
    local holds_self = set == own_set
    if band(flags, OWN_FAMILY) ~= 0 and ranks > 0 then
      local count6 = call('ZCOUNT', set, '-inf', '(0')
      if v6 then
        ranks = count6
      else
        first, ranks = count6, ranks - count6
      end
      holds_self = holds_self and own_v6 == v6
    end
    local candidates = ranks
    if holds_self then
      candidates = ranks - 1
    end
    if candidates > 0 then
      groups[#groups + 1] = {set, first, ranks, holds_self, candidates}
      total = total + candidates
    end
  end
  if total <= wanted then
    for _, group in ipairs(groups) do
      local members = call('ZRANGE', group[1], group[2], group[2] + group[3] - 1)
      for _, member in ipairs(members) do
        if member ~= own then
          reply[#reply + 1] = member
        end
      end
    end
    return
  end
  local offset = math.floor(random() * total)
  local before, taken = 0, 0
  for _, group in ipairs(groups) do
    before = before + group[5]
    local upto = math.floor((wanted * before + offset) / total)
    if upto > taken then
      take(reply, group[1], group[2], group[3], group[4], upto - taken, own)
      taken = upto
    end
  end
end

local function answer(own_set, own, wanted, downloaded)
  local complete = call('ZCARD', seeders)
  local incomplete = call('ZCARD', leechers)
  if not downloaded then
    downloaded = tonumber(call('GET', completions)) or 0
  end
  if wanted == 0 then
    return {complete, incomplete, downloaded}
  end
  local chosen = {}
  sample(chosen, own_set, own, wanted, complete, incomplete)
  local v4, v6s = {}, {}
  for _, member in ipairs(chosen) do
    if #member == 26 then
      v4[#v4 + 1] = member
    else
      v6s[#v6s + 1] = member
    end
  end
  return {complete, incomplete, downloaded, table.concat(v4), table.concat(v6s)}
end

local seeder = band(flags, SEEDER) ~= 0
local set = leechers
if seeder then
  set = seeders
end
drop_silent(set)
local member = address .. id
local fields = call('HMGET', peers, id, 'e', 'd')
local state, pushed, cached = fields[1], tonumber(fields[2]), tonumber(fields[3])
local completed = false
if state then
  local old_flags = string.byte(state, 1)
  local registered = struct.unpack('>I4', state, 2)
  local old_address = string.sub(state, 6)
  local old_set = leechers
  if band(old_flags, PEER_SEEDER) ~= 0 then
    old_set = seeders
  end
  local old_member = old_address .. id
  local other_family = (#old_address == 18) ~= v6
  local in_place = not other_family and old_address == address
  if registered ~= key then
    if registered == 0 then
      -- A peer that registered without a key keeps none: taking the first key sent for it
      -- would let whoever sent it first lock the peer out of its own entry.
      key = 0
    elseif in_place then
      -- From the address the peer is listed at: the peer itself. It keeps its key when it
      -- sends none, and takes the new one when it sends one (aria2 sends a new key each time).
      if key == 0 then
        key = registered
      end
    elseif other_family then
      -- libtorrent keys its IPv4 and IPv6 sockets apart: answered, but nothing changes.
      if band(flags, STOPPED) ~= 0 then
        return answer(nil, nil, 0, cached)
      end
      return answer(old_set, old_member, numwant, cached)
    else
      return {-1}
    end
  end
  completed = band(old_flags, PEER_COMPLETED) ~= 0
  if band(flags, STOPPED) ~= 0 then
    call('ZREM', old_set, old_member)
    call('HDEL', peers, id)
    return answer(nil, nil, 0, cached)
  end
  if not in_place or old_set ~= set then
    call('ZREM', old_set, old_member)
  end
elseif band(flags, STOPPED) ~= 0 then
  return answer(nil, nil, 0, cached)
end
local downloaded = cached
if seeder and not completed and band(flags, COMPLETES) ~= 0 then
  completed = true
  downloaded = call('INCR', completions)
end
if not downloaded then
  downloaded = tonumber(call('GET', completions)) or 0
end
local peer_flags = 0
if seeder then
  peer_flags = PEER_SEEDER
end
if completed then
  peer_flags = peer_flags + PEER_COMPLETED
end
local new_state = struct.pack('>BI4', peer_flags, key) .. address
local pushing = pushed ~= period
if new_state ~= state then
  if pushing then
    call('HSET', peers, id, new_state, 'e', period, 'd', downloaded)
  elseif downloaded ~= cached then
    call('HSET', peers, id, new_state, 'd', downloaded)
  else
    call('HSET', peers, id, new_state)
  end
elseif pushing then
  call('HSET', peers, 'e', period, 'd', downloaded)
end
local score = now + 1
if v6 then
  score = -score
end
if call('ZADD', set, score, member) == 1 and not pushing and call('ZCARD', set) == 1 then
  -- A set made by this announce, within a period whose push is done.
  call('PEXPIRE', set, pushed_ttl)
end
if pushing then
  call('PEXPIRE', peers, pushed_ttl)
  call('PEXPIRE', leechers, pushed_ttl)
  call('PEXPIRE', seeders, pushed_ttl)
end
return answer(set, member, numwant, downloaded)
