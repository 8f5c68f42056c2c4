-- One timed measurement, run under lua5.4 or luajit by bench/run.
--
--   fetch.lua MODE BASE_URL CAINFO|- N WARMUP
--
-- MODE:
--   client   client:get_message in a loop on one client
--   module   ghl.get_message(id, opts) in a loop, the same opts table each time
--   popen    io.popen("curl -s ...") per fetch, then cjson.decode
--   socket   socket.http / ssl.https request per fetch, then cjson.decode
--   batch    client:get_messages of N ids at concurrency WARMUP (after a warm-up batch)
--   rss      client or module loop (WARMUP names which): RSS after 2,000 and after N fetches
--   retry    client:get_messages of N ids at concurrency WARMUP with retries = 1 and
--            max_retry_delay = 0, against a server that answers each path 503 once
--
-- Prints one line: "us=<wall microseconds per fetch> cpu=<this process's CPU
-- microseconds per fetch>" (no cpu for popen: curl's own time is not counted
-- there), or for rss "rss2k=<bytes> rssN=<bytes> per_fetch=<bytes>". Loops of
-- single fetches run in 10 blocks and "us" is the median block's, so a burst of
-- outside load moves it less than a plain mean. Exits non-zero on any failed fetch.
-- With BENCH_GC_STOP=1 in the environment, the garbage collector is stopped
-- (bench/run's callgrind breakdown, to tell the collector's instructions apart).
-- The state is then not closed at the end either (os.exit below): freeing
-- everything there would count as the fetches' cost.
local gc_stopped = os.getenv("BENCH_GC_STOP") == "1"
if gc_stopped then collectgarbage("stop") end
local mode, base, cainfo, n, warmup = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
assert(mode and base and cainfo and n and warmup, "usage: fetch.lua MODE BASE_URL CAINFO|- N WARMUP")
if cainfo == "-" then cainfo = nil end

local socket = require("socket") -- socket.gettime(): wall clock in microseconds
local now = socket.gettime
local TOKEN = "bench-token"
local PATH = "/conversations/messages/"

-- Ids prepared before timing: building them is not part of a fetch.
local ids = {}
for i = 0, 63 do ids[i + 1] = string.format("benchmsg%012d", i) end

local function fail(what, err)
  io.stderr:write("fetch.lua ", mode, ": ", what, ": ", tostring(err), "\n")
  os.exit(1)
end

local function opts()
  return { token = TOKEN, base_url = base, cainfo = cainfo, retries = 0 }
end

local BLOCKS = 10

-- Runs fetch(i) for warmup then count iterations in BLOCKS blocks; returns the
-- "us=... cpu=..." line.
local function timed(fetch, count, warm, no_cpu)
  local per = math.floor(count / BLOCKS)
  if per < 1 then fail("N", "must be at least " .. BLOCKS) end
  for i = 1, warm do fetch(i) end
  local blocks, i = {}, 0
  local c0 = os.clock()
  for b = 1, BLOCKS do
    local t0 = now()
    for _ = 1, per do
      i = i + 1
      fetch(i)
    end
    blocks[b] = now() - t0
  end
  local cpu = (os.clock() - c0) * 1e6 / (per * BLOCKS)
  table.sort(blocks)
  local us = (blocks[BLOCKS / 2] + blocks[BLOCKS / 2 + 1]) / 2 * 1e6 / per
  if no_cpu then return string.format("us=%.3f", us) end
  return string.format("us=%.3f cpu=%.3f", us, cpu)
end

local function rss_bytes()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)%s*kB")) * 1024
end

local function client_fetcher()
  local ghl = require("ghl")
  local client = ghl.new(opts())
  return function(i)
    local m, err = client:get_message(ids[(i - 1) % 64 + 1])
    if not m then fail("get_message", err) end
  end
end

local function module_fetcher()
  local ghl = require("ghl")
  local o = opts()
  return function(i)
    local m, err = ghl.get_message(ids[(i - 1) % 64 + 1], o)
    if not m then fail("ghl.get_message", err) end
  end
end

if mode == "client" or mode == "module" then
  local fetch = mode == "client" and client_fetcher() or module_fetcher()
  print(timed(fetch, n, tonumber(warmup)))
elseif mode == "popen" then
  local cjson = require("cjson")
  local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local prefix = "curl -s -H 'Authorization: Bearer " .. TOKEN .. "' -H 'Version: 2021-04-15'"
    .. " -H 'Accept: application/json'" .. (cainfo and (" --cacert " .. q(cainfo)) or "") .. " "
  local cmds = {}
  for i, id in ipairs(ids) do cmds[i] = prefix .. q(base .. PATH .. id) end
  local function fetch(i)
    local p = assert(io.popen(cmds[(i - 1) % 64 + 1], "r"))
    local body = p:read("*a")
    p:close()
    local ok, t = pcall(cjson.decode, body)
    if not ok or type(t) ~= "table" or type(t.message) ~= "table" then fail("curl", body) end
  end
  print(timed(fetch, n, tonumber(warmup), true))
elseif mode == "socket" then
  local cjson = require("cjson")
  local ltn12 = require("ltn12")
  local https = base:match("^https:") and require("ssl.https")
  local http = require("socket.http")
  local headers = { authorization = "Bearer " .. TOKEN, version = "2021-04-15", accept = "application/json" }
  local function fetch(i)
    local out = {}
    local req = { url = base .. PATH .. ids[(i - 1) % 64 + 1], headers = headers, sink = ltn12.sink.table(out) }
    local ok, code
    if https then
      req.cafile, req.verify, req.protocol = cainfo, "peer", "any"
      ok, code = https.request(req)
    else
      ok, code = http.request(req)
    end
    if not ok or code ~= 200 then fail("request", code) end
    local dok, t = pcall(cjson.decode, table.concat(out))
    if not dok or type(t) ~= "table" or type(t.message) ~= "table" then fail("decode", t) end
  end
  print(timed(fetch, n, tonumber(warmup)))
elseif mode == "batch" then
  local ghl = require("ghl")
  local client = ghl.new(opts())
  local conc = tonumber(warmup)
  local function batch_ids(prefix, count)
    local t = {}
    for i = 0, count - 1 do t[#t + 1] = string.format("%s%08d", prefix, i) end
    return t
  end
  local warm, timed_ids = batch_ids("warm", conc), batch_ids("batch", n)
  local function run(list)
    local messages, failures = client:get_messages(list, { concurrency = conc })
    local id, info = next(failures)
    if id then fail("get_messages " .. id, info.errmsg) end
    for _, want in ipairs(list) do
      if not messages[want] then fail("get_messages", "no message for " .. want) end
    end
  end
  run(warm)
  local t0, c0 = now(), os.clock()
  run(timed_ids)
  print(string.format("us=%.3f cpu=%.3f", (now() - t0) * 1e6 / n, (os.clock() - c0) * 1e6 / n))
elseif mode == "retry" then
  local ghl = require("ghl")
  local o = opts()
  o.retries, o.max_retry_delay = 1, 0
  local client = ghl.new(o)
  local conc = tonumber(warmup)
  -- ids no earlier run has used, so each one's first answer is a 503
  local run_id = string.format("%08x", math.random(0, 0x7fffffff))
  local function batch_ids(prefix, count)
    local t = {}
    for i = 0, count - 1 do t[#t + 1] = string.format("%s%s%08d", prefix, run_id, i) end
    return t
  end
  local function run(list)
    local messages, failures = client:get_messages(list, { concurrency = conc })
    return function()
      local id, info = next(failures)
      if id then fail("get_messages " .. id, info.errmsg) end
      for _, want in ipairs(list) do
        if not messages[want] then fail("get_messages", "no message for " .. want) end
      end
    end
  end
  local warm, timed_ids = batch_ids("w", conc), batch_ids("r", n)
  run(warm)()
  local t0, c0 = now(), os.clock()
  local check = run(timed_ids)
  local us, cpu = (now() - t0) * 1e6 / n, (os.clock() - c0) * 1e6 / n
  check()
  print(string.format("us=%.3f cpu=%.3f", us, cpu))
elseif mode == "rss" then
  local fetch = warmup == "client" and client_fetcher() or module_fetcher()
  local function settle()
    collectgarbage("collect")
    collectgarbage("collect")
    return rss_bytes()
  end
  for i = 1, 2000 do fetch(i) end
  local r2k = settle()
  for i = 2001, n do fetch(i) end
  local rn = settle()
  print(string.format("rss2k=%d rssN=%d per_fetch=%.3f", r2k, rn, (rn - r2k) / (n - 2000)))
else
  fail("mode", "unknown")
end

if gc_stopped then os.exit(0, false) end
