-- wrk load script for BitTorrent HTTP trackers.
--
-- Usage: wrk ... -s tracker.lua URL -- MODE ARG... [close]
--   swarms HASHFILE POPULATION  announces into random swarms from HASHFILE by random peers
--                               of a POPULATION, with a mix of events and left values
--   one HASHHEX POPULATION      regular announces (no event) by existing peers of one swarm
--   scrape HASHFILE COUNT       scrapes of COUNT distinct random hashes from HASHFILE
-- A trailing "close" argument sends "Connection: close" on every request.
--
-- Peer identities must match benchlib.py: peer i has port 10000 + i and the 20-byte
-- peer_id "-BM0001-" .. uint32_be(i) .. PEER_ID_TAIL. Trackers key peers on ip:port or on
-- peer_id, so both must be unique per peer for the swarm sizes to be what they claim.

local PORT_BASE = 10000
local PEER_ID_TAIL = "\254\0\129\127\195\16\170\85"
local NUMWANT = 50

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_id", counter)
   table.insert(threads, thread)
end

local mode, population, scrape_count, close
local hashes = {}
local peer_cache = {}
-- Globals (not locals) so that done() can read them through thread:get().
ok_responses, failure_responses, bad_status, peers_returned = 0, 0, 0, 0

local function pct_encode(raw)
   return (raw:gsub(".", function(c) return string.format("%%%02X", c:byte()) end))
end

local function hex_to_raw(hex)
   return (hex:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end))
end

local function load_hashes(path)
   local list = {}
   for line in io.lines(path) do
      local hex = line:match("^%s*(%x+)%s*$")
      if hex and #hex == 40 then table.insert(list, pct_encode(hex_to_raw(hex))) end
   end
   assert(#list > 0, "no info hashes in " .. path)
   return list
end

local function uint32_be(n)
   return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                      math.floor(n / 256) % 256, n % 256)
end

-- Encoded "peer_id=...&port=...&key=..." for peer i, cached because most peers announce repeatedly.
local function peer_params(i)
   local cached = peer_cache[i]
   if cached == nil then
      local peer_id = "-BM0001-" .. uint32_be(i) .. PEER_ID_TAIL
      -- The key as libtorrent sends it, 8 hex digits; the same for all of the peer's announces.
      cached = "&peer_id=" .. pct_encode(peer_id) .. "&port=" .. (PORT_BASE + i) ..
         "&key=" .. string.format("%08X", i + 1)
      peer_cache[i] = cached
   end
   return cached
end

-- 30% of the population are seeders; the others have a stable amount left.
local function peer_left(i)
   if i % 10 < 3 then return 0 end
   return 1000000 + (i % 1000) * 4096
end

function init(args)
   mode = args[1]
   close = args[#args] == "close"
   math.randomseed(os.time() * 1000 + (thread_id or 0))
   if mode == "swarms" then
      hashes = load_hashes(args[2])
      population = tonumber(args[3])
   elseif mode == "one" then
      hashes = { pct_encode(hex_to_raw(args[2])) }
      population = tonumber(args[3])
   elseif mode == "scrape" then
      hashes = load_hashes(args[2])
      scrape_count = tonumber(args[3])
      assert(scrape_count <= #hashes, "scrape count larger than the hash set")
   else
      error("unknown mode: " .. tostring(mode))
   end
   if close then wrk.headers["Connection"] = "close" end
end

local function announce_path(hash, i, event, left)
   local path = "/announce?info_hash=" .. hash .. peer_params(i) ..
      "&uploaded=0&downloaded=0&left=" .. left .. "&compact=1&numwant=" .. NUMWANT
   if event then path = path .. "&event=" .. event end
   return path
end

-- Event mix of a live population: mostly periodic re-announces, some joins, completions
-- and leaves.
local function swarms_path()
   local hash = hashes[math.random(#hashes)]
   local i = math.random(population) - 1
   local r = math.random()
   if r < 0.05 then return announce_path(hash, i, "started", peer_left(i)) end
   if r < 0.07 then return announce_path(hash, i, "completed", 0) end
   if r < 0.10 then return announce_path(hash, i, "stopped", peer_left(i)) end
   return announce_path(hash, i, nil, peer_left(i))
end

local function scrape_path()
   local picked, parts = {}, {}
   while #parts < scrape_count do
      local k = math.random(#hashes)
      if not picked[k] then
         picked[k] = true
         table.insert(parts, "info_hash=" .. hashes[k])
      end
   end
   return "/scrape?" .. table.concat(parts, "&")
end

function request()
   local path
   if mode == "swarms" then
      path = swarms_path()
   elseif mode == "one" then
      local i = math.random(population) - 1
      path = announce_path(hashes[1], i, nil, peer_left(i))
   else
      path = scrape_path()
   end
   return wrk.format("GET", path)
end

function response(status, headers, body)
   if status ~= 200 then
      bad_status = bad_status + 1
   elseif body:find("failure reason", 1, true) then
      failure_responses = failure_responses + 1
   else
      ok_responses = ok_responses + 1
      local n = body:match("5:peers(%d+):")
      if n then peers_returned = peers_returned + math.floor(tonumber(n) / 6) end
   end
end

-- Per-thread counters are fetched by done(), which runs in the main Lua state.
function done(summary, latency, requests)
   local totals = { ok = 0, failure = 0, bad_status = 0, peers = 0 }
   for _, t in ipairs(threads) do
      totals.ok = totals.ok + (t:get("ok_responses") or 0)
      totals.failure = totals.failure + (t:get("failure_responses") or 0)
      totals.bad_status = totals.bad_status + (t:get("bad_status") or 0)
      totals.peers = totals.peers + (t:get("peers_returned") or 0)
   end
   local e = summary.errors
   local fields = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"err_connect":%d', e.connect),
      string.format('"err_read":%d', e.read),
      string.format('"err_write":%d', e.write),
      string.format('"err_status":%d', e.status),
      string.format('"err_timeout":%d', e.timeout),
      string.format('"ok":%d', totals.ok),
      string.format('"failure":%d', totals.failure),
      string.format('"bad_status":%d', totals.bad_status),
      string.format('"peers_returned":%d', totals.peers),
      string.format('"lat_mean_us":%.1f', latency.mean),
      string.format('"lat_max_us":%d', latency.max),
   }
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      table.insert(fields, string.format('"lat_p%s_us":%d', tostring(p), latency:percentile(p)))
   end
   io.write("BENCH_JSON {" .. table.concat(fields, ",") .. "}\n")
end
