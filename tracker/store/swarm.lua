-- A swarm in Redis, kept as the swarm index in memory keeps one (tracker/core/swarms.py), and
-- its two operations: an announce, and its share of the periodic sweep. One script call each,
-- on the primary that holds the swarm (tracker/store/redis.py).
--
-- Keys, all under the swarm's hash tag {hex}, so in one slot; the script is given the first
-- and names the others after it:
-- KEYS[1]     {hex}:p  hash: peer id -> its place: slot (1 byte), position in its group
--                      (4 bytes), key (4 bytes, 0: none), flags (1 byte: PEER_COMPLETED), and
--                      in private mode its last report: its passkey's account (4 bytes) and
--                      the uploaded and downloaded totals it reported (8-byte doubles); and
--                      the swarm's own field "s" (one byte long, so that no peer id is it):
--                      the size of each group, the period (now // PERIOD) in which the keys'
--                      expiry was last pushed back, and a copy of the completions (-1: none
--                      yet), packed as SWARM_FIELDS.
-- {hex}:0 to {hex}:3  the groups, as swarms.py's slots: leechers IPv4, IPv6,
--                      seeders IPv4, IPv6. A string of fixed-size records, one per peer, at its
--                      position: compact address, peer id, last seen (4 bytes): 30 bytes for
--                      IPv4, 42 for IPv6. A removed peer's place is filled by the group's last;
--                      the string is not shortened (Redis has no way to) but deleted once empty.
-- {hex}:d  completions, which outlive the peers: no expiry.
-- The hash and the groups expire together, a peer timeout (ARGV ttl) plus up to one PERIOD
-- after the last announce: a swarm nobody announces to disappears by itself.
--
-- So an announce is a few commands whatever the swarm's size, each O(1) but the reads of the
-- chosen peers, which are one or two ranges of a string: choosing numwant peers costs the
-- same in a swarm of ten or of a million, and no peer is handed from Redis to the script one
-- by one.
--
-- ARGV[1] "a": an announce. ARGV: "a", the peer id then its address, and the numbers packed
--   big-endian (>i8i8I4I4I4I4I4): now, cutoff, flags (below), key, numwant, ttl
--   (milliseconds), random seed (1 to 2^31 - 2: scripts are given their randomness). Reply: {-1} if the key check refuses it; otherwise {complete, incomplete,
--   downloaded, IPv4 records, IPv6 records}, the chosen peers' records of each family joined.
-- ARGV[1] "s": a sweep. ARGV: "s", cutoff, most records looked at, "d" or "", then where each
--   group's walk goes on (-1: from its end). With "d" (the sweep found the swarm by its
--   completions key) a swarm that has peers is left to be counted by its hash. Reply: {} if
--   not counted; otherwise {dropped, complete, incomplete, downloaded, where each walk goes
--   on (0: done)}.
-- ARGV[1] "c": a completion by a peer kept elsewhere. ARGV: "c". Reply: the torrent's count.

local peers = KEYS[1]
local tag = string.sub(peers, 1, -3)
local completions = tag .. ':d'
local groups = {[0] = tag .. ':0', tag .. ':1', tag .. ':2', tag .. ':3'}
local call = redis.call
local band = bit.band

-- The announce's flags.
local SEEDER, COMPLETES, STOPPED, LEECHERS_ONLY, OWN_FAMILY = 1, 2, 4, 8, 16
local STARTED, ACCOUNT = 32, 64
-- A stored peer's flags.
local PEER_COMPLETED = 1
-- Seconds between two pushes of the keys' expiry.
local PERIOD = 300
local ID = 20
local SEEN = 4

-- The swarm's own field, and for an announce the peer's place: one command, which in a
-- small swarm's packed hash looks for two fields, not seven.
local SWARM_FIELDS = '>I4I4I4I4i4d'
local fields
if ARGV[1] == 'a' then
  fields = call('HMGET', peers, 's', string.sub(ARGV[2], 1, 20))
else
  fields = call('HMGET', peers, 's')
end
local saved = fields[1]
local sizes = {[0] = 0, 0, 0, 0}
local pushed_period, downloaded_copy = -1, -1
if saved then
  local n0, n1, n2, n3
  n0, n1, n2, n3, pushed_period, downloaded_copy = struct.unpack(SWARM_FIELDS, saved)
  sizes = {[0] = n0, n1, n2, n3}
end

-- Write the swarm's own field if the script changed it (never for a swarm it did not make).
local function save()
  if not saved and sizes[0] + sizes[1] + sizes[2] + sizes[3] == 0 then
    return
  end
  local packed = struct.pack(
    SWARM_FIELDS, sizes[0], sizes[1], sizes[2], sizes[3], pushed_period, downloaded_copy)
  if packed ~= saved then
    call('HSET', peers, 's', packed)
    saved = packed
  end
end

local function address_length(slot)
  if slot % 2 == 1 then
    return 18
  end
  return 6
end

local function width(slot)
  return address_length(slot) + ID + SEEN
end

local function group(slot)
  return groups[slot]
end

local function place(slot, position, key, flags)
  return struct.pack('>BI4I4B', slot, position, key, flags)
end

-- Take the peer at `position` out of its group: the group's last peer moves into its place.
local function remove(slot, position)
  local last = sizes[slot] - 1
  local w = width(slot)
  if position ~= last then
    local moved = call('GETRANGE', group(slot), last * w, last * w + w - 1)
    call('SETRANGE', group(slot), position * w, moved)
    local a = address_length(slot)
    local moved_id = string.sub(moved, a + 1, a + ID)
    local state = call('HGET', peers, moved_id)
    if state then
      call('HSET', peers, moved_id, struct.pack('>BI4', slot, position) .. string.sub(state, 6))
    end
  end
  sizes[slot] = last
  if last == 0 then
    call('DEL', group(slot))
  end
end

local function seen_at(records, index, slot)
  local at = index * width(slot) + address_length(slot) + ID + 1
  return (struct.unpack('>I4', records, at))
end

if ARGV[1] == 's' then
  -- The sweep.
  local cutoff = tonumber(ARGV[2])
  local budget = tonumber(ARGV[3])
  if ARGV[4] == 'd' and call('EXISTS', peers) == 1 then
    return {}
  end
  local dropped = 0
  local walks = {}
  for slot = 0, 3 do
    local walk = tonumber(ARGV[5 + slot])
    if walk < 0 or walk > sizes[slot] then
      walk = sizes[slot]
    end
    local w = width(slot)
    while walk > 0 and budget > 0 do
      local first = math.max(walk - budget, 0)
      local records = call('GETRANGE', group(slot), first * w, walk * w - 1)
      budget = budget - (walk - first)
      -- Backwards: the peer moved into a dropped one's place comes from the end, looked at.
      for position = walk - 1, first, -1 do
        if seen_at(records, position - first, slot) < cutoff then
          local a = address_length(slot)
          local at = (position - first) * w
          call('HDEL', peers, string.sub(records, at + a + 1, at + a + ID))
          remove(slot, position)
          dropped = dropped + 1
        end
      end
      walk = first
    end
    walks[slot + 1] = walk
  end
  local downloaded = tonumber(call('GET', completions)) or 0
  save()
  return {
    dropped, sizes[2] + sizes[3], sizes[0] + sizes[1], downloaded,
    walks[1], walks[2], walks[3], walks[4],
  }
end

-- A completion by a peer the swarm does not hold (a browser's, over WebSocket): counted, and
-- the announces' copy of the count kept up with it.
if ARGV[1] == 'c' then
  local downloaded = call('INCR', completions)
  if saved then
    downloaded_copy = downloaded
    save()
  end
  return downloaded
end

-- An announce.
local id, address = string.sub(ARGV[2], 1, 20), string.sub(ARGV[2], 21)
local now, cutoff, flags, key, numwant, ttl, seed, account, uploaded, downloaded_total =
  struct.unpack('>i8i8I4I4I4I4I4I4dd', ARGV[3])
-- Private mode's credit to the passkey, and the report kept beside the peer for the next.
local credit_up, credit_down = 0, 0
local report = ''
if band(flags, ACCOUNT) ~= 0 then
  report = struct.pack('>I4dd', account, uploaded, downloaded_total)
end
ttl = ttl + PERIOD * 1000
local family = 0
if #address == 18 then
  family = 1
end
local period = math.floor(now / PERIOD)
local pushing = pushed_period ~= period
local cached = nil
if downloaded_copy >= 0 then
  cached = downloaded_copy
end

-- Park and Miller's generator: exact in Lua's doubles (the product stays below 2^46).
local function random()
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647
end

-- Records `start` to `start + length - 1` of a group, numbered round from its end to its start.
local function run(slot, start, length)
  local size, w = sizes[slot], width(slot)
  local stop = start + length
  if stop <= size then
    return call('GETRANGE', group(slot), start * w, stop * w - 1)
  end
  return call('GETRANGE', group(slot), start * w, size * w - 1)
    .. call('GETRANGE', group(slot), 0, (stop - size) * w - 1)
end

local silent = nil

-- `records` (`length` of them) less the first or the last if that one is silent: the first
-- silent peer an announce comes across is dropped once the answer is made.
local function without_silent(records, length, slot)
  if silent ~= nil or length == 0 then
    return records
  end
  local w = width(slot)
  if seen_at(records, 0, slot) < cutoff then
    silent = {slot, string.sub(records, 1, w)}
    return string.sub(records, w + 1)
  end
  if seen_at(records, length - 1, slot) < cutoff then
    silent = {slot, string.sub(records, -w)}
    return string.sub(records, 1, -w - 1)
  end
  return records
end

-- m peers of a group, in one run of consecutive positions from a random one (every peer is
-- chosen equally often), leaving out the requester's own (at `skip`, -1: not in this group)
-- and a silent peer found at either end of the run, which is dropped afterwards.
local function take(out, slot, m, skip)
  local size, w = sizes[slot], width(slot)
  local start = math.floor(random() * size)
  local length = m
  if skip >= 0 and (skip - start) % size < m then
    length = m + 1
  end
  local records = run(slot, start, length)
  if skip >= 0 and (skip - start) % size < length then
    local at = (skip - start) % size
    records = string.sub(records, 1, at * w) .. string.sub(records, (at + 1) * w + 1)
    length = length - 1
  end
  out[#out + 1] = without_silent(records, length, slot)
end

local function whole(out, slot, skip)
  local size, w = sizes[slot], width(slot)
  local records = call('GETRANGE', group(slot), 0, size * w - 1)
  if skip >= 0 then
    records = string.sub(records, 1, skip * w) .. string.sub(records, (skip + 1) * w + 1)
    size = size - 1
  end
  out[#out + 1] = without_silent(records, size, slot)
end

-- Up to `wanted` other peers: each group's share is wanted * its size / the total, rounded up
-- or down at random so that the shares add up to `wanted`, as the index in memory does.
local function answer(own_slot, own_position, wanted, downloaded)
  local complete = sizes[2] + sizes[3]
  local incomplete = sizes[0] + sizes[1]
  if not downloaded then
    downloaded = tonumber(call('GET', completions)) or 0
  end
  if wanted == 0 then
    save()
    if band(flags, ACCOUNT) ~= 0 then
      return {complete, incomplete, downloaded, '', '', credit_up, credit_down}
    end
    return {complete, incomplete, downloaded}
  end
  local slots
  if band(flags, LEECHERS_ONLY) ~= 0 then
    slots = {0, 1}
  else
    slots = {0, 1, 2, 3}
  end
  local total = 0
  local chosen = {}
  for _, slot in ipairs(slots) do
    if sizes[slot] > 0 and (band(flags, OWN_FAMILY) == 0 or slot % 2 == family) then
      chosen[#chosen + 1] = slot
      total = total + sizes[slot]
      if slot == own_slot then
        total = total - 1
      end
    end
  end
  local out = {[0] = {}, [1] = {}}
  if total <= wanted then
    for _, slot in ipairs(chosen) do
      local skip = -1
      if slot == own_slot then
        skip = own_position
      end
      whole(out[slot % 2], slot, skip)
    end
  else
    local offset = math.floor(random() * total)
    local before, taken = 0, 0
    for _, slot in ipairs(chosen) do
      local skip = -1
      local size = sizes[slot]
      if slot == own_slot then
        skip = own_position
        size = size - 1
      end
      before = before + size
      local upto = math.floor((wanted * before + offset) / total)
      if upto > taken then
        take(out[slot % 2], slot, upto - taken, skip)
        taken = upto
      end
    end
  end
  local reply = {
    complete, incomplete, downloaded, table.concat(out[0]), table.concat(out[1]),
    credit_up, credit_down,
  }
  if silent ~= nil then
    -- Dropped now that the answer is made (which positions it read no longer matters).
    local slot, record = silent[1], silent[2]
    local a = address_length(slot)
    local silent_id = string.sub(record, a + 1, a + ID)
    local state = call('HGET', peers, silent_id)
    if state then
      local _, position = struct.unpack('>BI4', state)
      call('HDEL', peers, silent_id)
      remove(slot, position)
      reply[1] = sizes[2] + sizes[3]
      reply[2] = sizes[0] + sizes[1]
    end
  end
  save()
  return reply
end

local slot = family
if band(flags, SEEDER) ~= 0 then
  slot = slot + 2
end
local state = fields[2]
local completed = false
local position = -1
if state then
  local old_slot, old_position, registered, peer_flags = struct.unpack('>BI4I4B', state)
  local other_family = old_slot % 2 ~= family
  if registered ~= key then
    -- Whether the announce comes from the address the peer is listed at, IP and port: read
    -- from its record only here, since an announce with the peer's own key needs not know.
    local in_place = false
    if registered ~= 0 and not other_family then
      local at = old_position * width(old_slot)
      local listed = call('GETRANGE', group(old_slot), at, at + #address - 1)
      in_place = listed == address
    end
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
        return answer(-1, -1, 0, cached)
      end
      return answer(old_slot, old_position, numwant, cached)
    else
      return {-1}
    end
  end
  completed = band(peer_flags, PEER_COMPLETED) ~= 0
  if band(flags, ACCOUNT) ~= 0 and #state >= 30 then
    -- What the peer moved since its last report, if that was under the same passkey and this
    -- is not a new start; smaller totals (a client restarted) count from zero again.
    local before, up_before, down_before = struct.unpack('>I4dd', state, 11)
    if before == account and band(flags, STARTED) == 0 then
      credit_up = uploaded - up_before
      credit_down = downloaded_total - down_before
      if credit_up < 0 then
        credit_up = uploaded
      end
      if credit_down < 0 then
        credit_down = downloaded_total
      end
    end
  end
  if band(flags, STOPPED) ~= 0 then
    call('HDEL', peers, id)
    remove(old_slot, old_position)
    return answer(-1, -1, 0, cached)
  end
  if band(flags, ACCOUNT) == 0 and #state > 10 and old_slot == slot then
    -- A public announce for a peer with a report (from a private one): the report stays
    -- only if the peer does not move, as the index in memory keeps it.
    local at = old_position * width(old_slot)
    if call('GETRANGE', group(old_slot), at, at + #address - 1) == address then
      report = string.sub(state, 11)
    end
  end
  if old_slot == slot then
    -- Stays in its group, at its place: its record written again, with its address as the
    -- announce gives it and the time.
    position = old_position
    local record = address .. id .. struct.pack('>I4', now)
    call('SETRANGE', group(slot), position * width(slot), record)
  else
    remove(old_slot, old_position)
  end
elseif band(flags, STOPPED) ~= 0 then
  return answer(-1, -1, 0, cached)
end
local downloaded = cached
if band(flags, SEEDER) ~= 0 and not completed and band(flags, COMPLETES) ~= 0 then
  completed = true
  downloaded = call('INCR', completions)
end
if not downloaded then
  downloaded = tonumber(call('GET', completions)) or 0
end
local peer_flags = 0
if completed then
  peer_flags = PEER_COMPLETED
end
if position < 0 then
  position = sizes[slot]
  sizes[slot] = position + 1
  call('SETRANGE', group(slot), position * width(slot),
    address .. id .. struct.pack('>I4', now))
  if position == 0 and not pushing then
    -- A group made by this announce, within a period whose push is done.
    call('PEXPIRE', group(slot), ttl)
  end
end
local new_state = place(slot, position, key, peer_flags) .. report
if new_state ~= state then
  call('HSET', peers, id, new_state)
end
downloaded_copy = downloaded
if pushing then
  pushed_period = period
  call('PEXPIRE', peers, ttl)
  for s = 0, 3 do
    if sizes[s] > 0 then
      call('PEXPIRE', group(s), ttl)
    end
  end
end
return answer(slot, position, numwant, downloaded)
