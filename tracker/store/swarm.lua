#!lua flags=allow-cross-slot-keys
-- A swarm in Redis, kept as the swarm index in memory keeps one (tracker/core/swarms.py), and
-- its operations: an announce, its share of the periodic sweep, and a completion counted for
-- a peer kept elsewhere. One script call each, on the primary that holds the swarm
-- (tracker/store/redis.py).
--
-- Keys, all under the swarm's hash tag {hex}, so in one slot; the script is given the first
-- and names the others after it:
-- KEYS[1]  {hex}:h  the first bucket of a hash from peer id to the peer's place: its group
--                   (1 byte), its position in the group (4 bytes), its key (4 bytes, 0: none),
--                   its flags (1 byte: PEER_COMPLETED), its compact address (6 or 18 bytes),
--                   and in private mode its last report: its passkey's account (4 bytes) and
--                   the uploaded and downloaded totals it reported (8-byte doubles). And the
--                   swarm's own field "s" (one byte long, so that no peer id is it): the size
--                   of each group, the period (now // PERIOD) in which the keys' expiry was
--                   last pushed back, a copy of the completions (-1: none yet) and the number
--                   of buckets, packed as SWARM_FIELDS.
-- {hex}:h1 ...      the other buckets. The hash is split into buckets by linear hashing (one
--                   bucket more per LOAD peers, split or merged one at a time), so that each
--                   stays a small hash, which Redis packs into a list at a third of a hash
--                   table's memory.
-- {hex}:aG, :rG   group G, as swarms.py's slots: 0 to 3, leechers IPv4, IPv6, seeders IPv4,
--                   IPv6. Two strings of fixed-size records, one per peer, at its position:
--                   the compact addresses (6 or 18 bytes), and the peer ids with the times last
--                   seen (20 + 4 bytes). A removed peer's place is filled by the group's last;
--                   the strings are not shortened (Redis has no way to) but deleted once empty.
--                   The addresses alone are what a compact answer hands out, read as they are.
-- {hex}:d  completions, which outlive the peers: no expiry.
-- The hash and the groups expire together, a peer timeout (ARGV ttl) plus up to one PERIOD
-- after the last announce: a swarm nobody announces to disappears by itself.
--
-- So an announce is a few commands whatever the swarm's size, each O(1) but the reads of the
-- chosen peers, which are one or two ranges of a group's addresses: choosing numwant peers
-- costs the same in a swarm of ten or of a million, and no peer is handed from Redis to the
-- script one by one. Every string a script makes costs Redis's Lua collector in proportion to
-- its length, so the peers chosen are passed on as read, never cut or joined here.
--
-- ARGV[1] "a": an announce. ARGV: "a", the peer id then its address, and the numbers packed
--   big-endian (>i8i8I4I4I4I4I4I4dd): now, cutoff, flags (below), key, numwant, ttl
--   (milliseconds), random seed (1 to 2^31 - 2: scripts are given their randomness), the
--   passkey's account, the uploaded and downloaded totals. Reply: {-1} if the key check
--   refuses it; otherwise {complete, incomplete, downloaded, credited upload, credited
--   download}, and if peers were asked for: the group of the requester's own record among
--   those read and that record's number in its run (-1, -1: none), then each group's run of
--   addresses (0 to 3), and with WITH_IDS each run's peer ids.
-- ARGV[1] "s": a sweep. ARGV: "s", cutoff, most records looked at, "d" or "", then where each
--   group's walk goes on (-1: from its end). With "d" (the sweep found the swarm by its
--   completions key) a swarm that has peers is left to be counted by its hash. Reply: {} if
--   not counted; otherwise {dropped, complete, incomplete, downloaded, where each walk goes
--   on (0: done)}.
-- ARGV[1] "c": a completion by a peer kept elsewhere. ARGV: "c". Reply: the torrent's count.
-- ARGV[1] "b": a batch of announces (at the end of this file).

local call = redis.call
local band, bxor = bit.band, bit.bxor

-- The announce's flags.
local SEEDER, COMPLETES, STOPPED, LEECHERS_ONLY, OWN_FAMILY = 1, 2, 4, 8, 16
local STARTED, ACCOUNT, WITH_IDS = 32, 64, 128
-- A stored peer's flags.
local PEER_COMPLETED = 1
-- Seconds between two pushes of the keys' expiry.
local PERIOD = 300
local ID = 20
local SEEN = 4
-- A record of the second string: the peer id, then the time last seen.
local RECORD = ID + SEEN
-- One announce in this many looks at a random other peer and drops it if it is silent.
local LOOK_EVERY = 4
-- Peers per bucket, on average: with linear hashing a bucket not yet split holds up to twice
-- as many, and Redis packs a hash of up to 128 fields (hash-max-listpack-entries).
local LOAD = 50
-- A place: group, position, key, flags; then the address.
local PLACE = '>BI4I4B'
local PLACE_LENGTH = 10

local SWARM_FIELDS = '>I4I4I4I4i4dI4'

-- One call on one swarm, whose first bucket is `first_bucket`: ARGV as above.
local function swarm(first_bucket, ARGV)
  local tag = string.sub(first_bucket, 1, -3)
  local completions = tag .. ':d'
  local saved = nil
  local sizes = {[0] = 0, 0, 0, 0}
  local pushed_period, downloaded_copy, buckets = -1, -1, 1

  local function read_swarm(field)
    if field then
      local n0, n1, n2, n3
      n0, n1, n2, n3, pushed_period, downloaded_copy, buckets = struct.unpack(SWARM_FIELDS, field)
      sizes = {[0] = n0, n1, n2, n3}
    end
  end

  -- Write the swarm's own field if the script changed it (never for a swarm it did not make).
  local function save()
    if not saved and sizes[0] + sizes[1] + sizes[2] + sizes[3] == 0 then
      return
    end
    local packed = struct.pack(
      SWARM_FIELDS, sizes[0], sizes[1], sizes[2], sizes[3], pushed_period, downloaded_copy,
      buckets)
    if packed ~= saved then
      call('HSET', first_bucket, 's', packed)
      saved = packed
    end
  end

  local function address_length(slot)
    if slot % 2 == 1 then
      return 18
    end
    return 6
  end

  local function addresses(slot)
    return tag .. ':a' .. slot
  end

  local function records(slot)
    return tag .. ':r' .. slot
  end

  -- The buckets: linear hashing on 32 bits of the peer id.

  local function bucket_key(index)
    if index == 0 then
      return first_bucket
    end
    return first_bucket .. index
  end

  local function low_power(count)
    local low = 1
    while low * 2 <= count do
      low = low * 2
    end
    return low
  end

  -- 32 bits of the peer id: its last 12 bytes are random in every client's ids.
  local function hash_of(id)
    return bxor(
      (struct.unpack('>i4', id, 9)), (struct.unpack('>i4', id, 13)), (struct.unpack('>i4', id, 17)))
  end

  local function bucket_of(id)
    local h = hash_of(id)
    local low = low_power(buckets)
    local index = band(h, low - 1)
    if index < buckets - low then
      index = band(h, low * 2 - 1)
    end
    return bucket_key(index)
  end

  -- One bucket more: the one that linear hashing splits next gives the new one its peers.
  local function split()
    local low = low_power(buckets)
    local from = buckets - low
    local source, target = bucket_key(from), bucket_key(buckets)
    local fields = call('HGETALL', source)
    local mask = low * 2 - 1
    -- The new bucket is made even if no peer moves, with a field no peer id can be, so that
    -- the expiry given to it now holds.
    local moving, moved = {'-', ''}, {}
    for at = 1, #fields, 2 do
      local id = fields[at]
      if #id == ID and band(hash_of(id), mask) == buckets then
        moving[#moving + 1] = id
        moving[#moving + 1] = fields[at + 1]
        moved[#moved + 1] = id
      end
    end
    call('HSET', target, unpack(moving))
    if #moved > 0 then
      call('HDEL', source, unpack(moved))
    end
    buckets = buckets + 1
    return target
  end

  -- One bucket fewer: the last goes back into the one it was split from.
  local function merge()
    local last = buckets - 1
    local into = bucket_key(last - low_power(last))
    local source = bucket_key(last)
    local fields = call('HGETALL', source)
    local moving = {}
    for at = 1, #fields, 2 do
      if #fields[at] == ID then
        moving[#moving + 1] = fields[at]
        moving[#moving + 1] = fields[at + 1]
      end
    end
    if #moving > 0 then
      call('HSET', into, unpack(moving))
    end
    call('DEL', source)
    buckets = last
  end

  local function peer_count()
    return sizes[0] + sizes[1] + sizes[2] + sizes[3]
  end

  -- Take the peer out of its bucket; one bucket fewer once the swarm is a third below the size
  -- that made the last one, so that a swarm at the edge does not split and merge in turn.
  local function forget(id)
    call('HDEL', bucket_of(id), id)
    if buckets > 1 and peer_count() * 3 < (buckets - 1) * LOAD * 2 then
      merge()
    end
  end

  -- Take the peer at `position` out of its group: the group's last peer moves into its place.
  local function remove(slot, position)
    local last = sizes[slot] - 1
    if position ~= last then
      local a = address_length(slot)
      local moved = call('GETRANGE', addresses(slot), last * a, last * a + a - 1)
      call('SETRANGE', addresses(slot), position * a, moved)
      local record = call('GETRANGE', records(slot), last * RECORD, last * RECORD + RECORD - 1)
      call('SETRANGE', records(slot), position * RECORD, record)
      local moved_id = string.sub(record, 1, ID)
      local bucket = bucket_of(moved_id)
      local state = call('HGET', bucket, moved_id)
      if state then
        call('HSET', bucket, moved_id, struct.pack('>BI4', slot, position) .. string.sub(state, 6))
      end
    end
    sizes[slot] = last
    if last == 0 then
      call('DEL', addresses(slot), records(slot))
    end
  end

  local function seen_at(read, index)
    return (struct.unpack('>I4', read, index * RECORD + ID + 1))
  end

  if ARGV[1] ~= 'a' then
    saved = call('HGET', first_bucket, 's')
    read_swarm(saved)
  end

  if ARGV[1] == 's' then
    -- The sweep.
    local cutoff = tonumber(ARGV[2])
    local budget = tonumber(ARGV[3])
    if ARGV[4] == 'd' and call('EXISTS', first_bucket) == 1 then
      return {}
    end
    local dropped = 0
    local walks = {}
    for slot = 0, 3 do
      local walk = tonumber(ARGV[5 + slot])
      if walk < 0 or walk > sizes[slot] then
        walk = sizes[slot]
      end
      while walk > 0 and budget > 0 do
        local first = math.max(walk - budget, 0)
        local read = call('GETRANGE', records(slot), first * RECORD, walk * RECORD - 1)
        budget = budget - (walk - first)
        -- Backwards: the peer moved into a dropped one's place comes from the end, looked at.
        for position = walk - 1, first, -1 do
          if seen_at(read, position - first) < cutoff then
            local at = (position - first) * RECORD
            local id = string.sub(read, at + 1, at + ID)
            remove(slot, position)
            forget(id)
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
  -- The swarm's own field and the peer's place, in one command while the hash is one bucket.
  local bucket = first_bucket
  local fields = call('HMGET', first_bucket, 's', id)
  saved = fields[1]
  local state = fields[2]
  read_swarm(saved)
  if buckets > 1 then
    bucket = bucket_of(id)
    if bucket ~= first_bucket then
      state = call('HGET', bucket, id)
    end
  end
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

  -- Records `start` to `start + length - 1` of a string of records `width` bytes long of a
  -- group of `size`, numbered round from its end to its start.
  local function wrapped(key, width, size, start, length)
    local stop = start + length
    if stop <= size then
      return call('GETRANGE', key, start * width, stop * width - 1)
    end
    return call('GETRANGE', key, start * width, size * width - 1)
      .. call('GETRANGE', key, 0, (stop - size) * width - 1)
  end

  -- The addresses (and with WITH_IDS the ids) of records `start` to `start + length - 1` of a
  -- group.
  local function run(slot, start, length)
    if length == 0 then
      return '', ''
    end
    local size = sizes[slot]
    local read = wrapped(addresses(slot), address_length(slot), size, start, length)
    local read_ids
    if band(flags, WITH_IDS) ~= 0 then
      read_ids = wrapped(records(slot), RECORD, size, start, length)
    end
    return read, read_ids
  end

  -- One peer of the chosen groups other than the requester, picked at random, dropped if it is
  -- silent: so a live swarm sheds its dead peers even if no sweep runs. Returns the requester's
  -- position, which changes if it was its group's last.
  local function drop_one_silent(chosen, others, own_slot, own_position)
    local pick = math.floor(random() * others)
    for _, slot in ipairs(chosen) do
      local size = sizes[slot]
      local own = slot == own_slot
      if own then
        size = size - 1
      end
      if pick < size then
        if own and pick >= own_position then
          pick = pick + 1
        end
        local read = call('GETRANGE', records(slot), pick * RECORD, pick * RECORD + RECORD - 1)
        if #read == RECORD and seen_at(read, 0) < cutoff then
          local silent = string.sub(read, 1, ID)
          local last = sizes[slot] - 1
          remove(slot, pick)
          forget(silent)
          if own and own_position == last then
            return pick
          end
        end
        return own_position
      end
      pick = pick - size
    end
    return own_position
  end

  -- Up to `wanted` other peers: each group's share is wanted * its size / the total, rounded up
  -- or down at random so that the shares add up to `wanted`, as the index in memory does. Each
  -- share is one run of consecutive positions from a random one (so every peer is chosen
  -- equally often), one longer if the requester's own record falls in it, which the node
  -- leaves out.
  local function answer(own_slot, own_position, wanted, downloaded)
    if not downloaded then
      downloaded = tonumber(call('GET', completions)) or 0
    end
    if wanted == 0 then
      save()
      return {sizes[2] + sizes[3], sizes[0] + sizes[1], downloaded, credit_up, credit_down}
    end
    local slots
    if band(flags, LEECHERS_ONLY) ~= 0 then
      slots = {0, 1}
    else
      slots = {0, 1, 2, 3}
    end
    local chosen = {}
    -- The other peers of the groups chosen, and those groups.
    local function count()
      local total = 0
      chosen = {}
      for _, slot in ipairs(slots) do
        if sizes[slot] > 0 and (band(flags, OWN_FAMILY) == 0 or slot % 2 == family) then
          chosen[#chosen + 1] = slot
          total = total + sizes[slot]
          if slot == own_slot then
            total = total - 1
          end
        end
      end
      return total
    end
    local total = count()
    if total > 0 and random() * LOOK_EVERY < 1 then
      own_position = drop_one_silent(chosen, total, own_slot, own_position)
      total = count()
    end
    local runs = {'', '', '', ''}
    local id_runs = {'', '', '', ''}
    local skip_slot, skip = -1, -1
    local function take(slot, start, length)
      local size = sizes[slot]
      if slot == own_slot and (own_position - start) % size < length then
        length = length + 1
        skip_slot, skip = slot, (own_position - start) % size
      end
      runs[slot + 1], id_runs[slot + 1] = run(slot, start, length)
    end
    if total <= wanted then
      for _, slot in ipairs(chosen) do
        local size = sizes[slot]
        if slot == own_slot then
          size = size - 1
        end
        take(slot, 0, size)
      end
    else
      local offset = math.floor(random() * total)
      local before, taken = 0, 0
      for _, slot in ipairs(chosen) do
        local size = sizes[slot]
        if slot == own_slot then
          size = size - 1
        end
        before = before + size
        local upto = math.floor((wanted * before + offset) / total)
        if upto > taken then
          take(slot, math.floor(random() * sizes[slot]), upto - taken)
          taken = upto
        end
      end
    end
    save()
    local reply = {
      sizes[2] + sizes[3], sizes[0] + sizes[1], downloaded, credit_up, credit_down,
      skip_slot, skip, runs[1], runs[2], runs[3], runs[4],
    }
    if band(flags, WITH_IDS) ~= 0 then
      for slot = 1, 4 do
        reply[11 + slot] = id_runs[slot]
      end
    end
    return reply
  end

  local slot = family
  if band(flags, SEEDER) ~= 0 then
    slot = slot + 2
  end
  local completed = false
  local position = -1
  local placed = false
  if state then
    local old_slot, old_position, registered, peer_flags = struct.unpack(PLACE, state)
    local other_family = old_slot % 2 ~= family
    local listed = string.sub(state, PLACE_LENGTH + 1, PLACE_LENGTH + address_length(old_slot))
    if registered ~= key then
      -- Whether the announce comes from the address the peer is listed at, IP and port.
      local in_place = registered ~= 0 and not other_family and listed == address
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
    local kept = string.sub(state, PLACE_LENGTH + address_length(old_slot) + 1)
    if band(flags, ACCOUNT) ~= 0 and #kept >= 20 then
      -- What the peer moved since its last report, if that was under the same passkey and this
      -- is not a new start; smaller totals (a client restarted) count from zero again.
      local before, up_before, down_before = struct.unpack('>I4dd', kept)
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
      remove(old_slot, old_position)
      forget(id)
      return answer(-1, -1, 0, cached)
    end
    if band(flags, ACCOUNT) == 0 and old_slot == slot and listed == address then
      -- A public announce for a peer with a report (from a private one): the report stays
      -- only if the peer does not move, as the index in memory keeps it.
      report = kept
    end
    if old_slot == slot then
      -- Stays in its group, at its place: the time written again, and its address if the
      -- announce gives another.
      position = old_position
      placed = true
      call('SETRANGE', records(slot), position * RECORD + ID, struct.pack('>I4', now))
      if listed ~= address then
        call('SETRANGE', addresses(slot), position * address_length(slot), address)
      end
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
  if not placed then
    position = sizes[slot]
    sizes[slot] = position + 1
    call('SETRANGE', addresses(slot), position * address_length(slot), address)
    call('SETRANGE', records(slot), position * RECORD, id .. struct.pack('>I4', now))
    if position == 0 and not pushing then
      -- A group made by this announce, within a period whose push is done.
      call('PEXPIRE', addresses(slot), ttl)
      call('PEXPIRE', records(slot), ttl)
    end
  end
  local new_state = struct.pack(PLACE, slot, position, key, peer_flags) .. address .. report
  if new_state ~= state then
    call('HSET', bucket, id, new_state)
    if not state and peer_count() > buckets * LOAD then
      local made = split()
      if not pushing then
        call('PEXPIRE', made, ttl)
      end
    end
  end
  downloaded_copy = downloaded
  if pushing then
    pushed_period = period
    for index = 0, buckets - 1 do
      call('PEXPIRE', bucket_key(index), ttl)
    end
    for s = 0, 3 do
      if sizes[s] > 0 then
        call('PEXPIRE', addresses(s), ttl)
        call('PEXPIRE', records(s), ttl)
      end
    end
  end
  return answer(slot, position, numwant, downloaded)
end

-- A batch of announces, into swarms of any slots this primary holds (hence the flag on the
-- first line): ARGV "b", then for each announce its swarm's first bucket and the ARGV of its
-- own call ("a", the peer, the numbers), as its own call sends them; KEYS[1] is the first of
-- them, which routes the batch. Reply: each announce's reply. One call for a pipeline's
-- announces spares Redis a script call each.
if ARGV[1] == 'b' then
  local replies = {}
  for at = 2, #ARGV, 4 do
    replies[#replies + 1] = swarm(ARGV[at], {ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]})
  end
  return replies
end
return swarm(KEYS[1], ARGV)
