-- Allocation failure: ghl never silently changes where a request goes, and
-- never exits or crashes.
--
-- Once, a failed allocation inside libcurl made curl_easy_setopt(CURLOPT_PROXY)
-- fail unnoticed, and the request, Bearer token and all, went straight to the
-- origin. Every setopt is checked now: a request that cannot be set up fails
-- the call (nil, errmsg, info.kind "network", or an error saying "out of
-- memory"); it is never sent some other way.
--
-- How: spec/support/failmalloc.c, built here and preloaded into one child
-- interpreter per run, makes the N-th allocation after the child arms it
-- return NULL. The child makes a client with base_url = the "http" listener
-- and proxy = the "other" listener, arms the shim, calls
-- client:get_message(fresh id), disarms it and prints what came back. A first
-- run with no failure counts the allocations of that call; then one run per N
-- covers them all (at most MAX_RUNS runs, stepping over N beyond that).
-- For every run: the child ended normally (exit status 0), and the server
-- logged no request for its id on the "http" listener: whatever arrived came
-- through the proxy.
-- No exception: not an exit of any kind, not a signal (a crash).
--
-- GHL_SPEC_ALLOC_VERBOSE=1 prints every run's N and outcome. Pending when the
-- child interpreter is a wrapper script (scripts/check-memory's valgrind and
-- ASan runs, whose tools replace malloc themselves).

local h = require("helpers")

-- scripts/check-memory runs child interpreters through a wrapper script under
-- valgrind or ASan (GHL_LUA_EXE); both own malloc, so a shim cannot fail it.
do
  local f = io.open(h.lua_exe(), "rb")
  local magic = f and f:read(2) or ""
  if f then f:close() end
  if magic == "#!" then
    describe("allocation failure during client:get_message through a proxy", function()
      pending("the child interpreter is a wrapper (" .. h.lua_exe() .. "): valgrind or ASan own malloc there")
    end)
    return
  end
end

local MAX_RUNS = 400
local CHILD_SECONDS = 8     -- a child still running then is killed (by `timeout`, by its pid)
local BUDGET_SECONDS = 75   -- no new run starts after this; the test then fails

-- The child: args ctl_path token_file id base_url proxy.
local CHILD = [=[
local ctl_path, token_file, id, base_url, proxy = arg[1], arg[2], arg[3], arg[4], arg[5]
io.stdout:setvbuf("no")
io.stderr:setvbuf("no")
local tf = assert(io.open(token_file, "rb"))
local token = tf:read("*a")
tf:close()
local ghl = require("ghl")
local client = ghl.new({
  token = token, base_url = base_url, proxy = proxy,
  timeout = 3, connect_timeout = 3, retries = 1, max_retry_delay = 0.05,
})
token = nil
local get, pcall, tostring, type = client.get_message, pcall, tostring, type
local ctl = assert(io.open(ctl_path, "r+b"))
ctl:setvbuf("no") -- no stdio buffer to allocate: arming and disarming are one write() each
pcall(function() end)
io.stdout:write("armed\n")
ctl:seek("set", 0); ctl:write("A")
local ok, a, b, c = pcall(get, client, id)
ctl:seek("set", 0); ctl:write("D")
ctl:close()
if not ok then
  io.stdout:write("raise ", tostring(a), "\n")
elseif a ~= nil then
  io.stdout:write("ok ", tostring(type(a) == "table" and a.id), "\n")
else
  io.stdout:write("fail ", tostring(type(c) == "table" and c.kind), " ", tostring(b), "\n")
end
client:close()
io.stdout:write("done\n")
]=]

local CTL_SIZE = 4096

local function u32(s, off)
  local a, b, c, d = s:byte(off + 1, off + 4)
  return a + b * 256 + c * 65536 + d * 16777216
end

local function scrub(s)
  return (tostring(s):gsub(h.literal(h.TOKEN), "<token>"))
end

describe("allocation failure during client:get_message through a proxy", function()
  local dir

  setup(function()
    dir = h.temp_dir("ghl-alloc")
    local so = dir .. "/failmalloc.so"
    local out = h.capture("cc -shared -fPIC -O1 -o " .. h.quote(so) .. " "
                          .. h.quote(h.SPEC_DIR .. "/support/failmalloc.c") .. " -ldl 2>&1; echo rc=$?")
    assert(out:match("rc=0$"), "could not build failmalloc.so:\n" .. out)
    h.write_file(dir .. "/child.lua", CHILD)
    h.write_file(dir .. "/token", h.TOKEN)
  end)

  teardown(function()
    h.remove_dir(dir)
  end)

  -- One child run with the n-th armed allocation failing (0: none).
  -- Returns { n, id, rc, out, result, count, failed }.
  local function run_child(n)
    local id = h.fresh_id("sms")
    local ctl = dir .. "/ctl"
    h.write_file(ctl, string.rep("\0", CTL_SIZE))
    local cmd = "timeout -k 2 " .. CHILD_SECONDS .. " env"
      .. " LD_PRELOAD=" .. h.quote(dir .. "/failmalloc.so")
      .. " FAILMALLOC_CTL=" .. h.quote(ctl)
      .. " FAILMALLOC_N=" .. tostring(n)
      .. " " .. h.quote(h.lua_exe()) .. " " .. h.quote(dir .. "/child.lua")
      .. " " .. h.quote(ctl) .. " " .. h.quote(dir .. "/token") .. " " .. h.quote(id)
      .. " " .. h.quote(h.http_url) .. " " .. h.quote(h.other_url)
      .. " 2>&1; echo \"rc=$?\""
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    local rc = tonumber(out:match("rc=(%d+)%s*$"))
    out = out:gsub("rc=%d+%s*$", "")
    local state = h.read_file(ctl) or ""
    local r = { n = n, id = id, rc = rc, out = out, count = 0, failed = 0 }
    if #state >= 72 then
      r.count, r.failed = u32(state, 64), u32(state, 68)
    end
    local after = out:match("armed\n(.*)$")
    r.result = after and after:match("^([^\n]*)\n") or nil
    r.after = after or ""
    return r
  end

  -- The outcome's name, for the counts: "ok", "fail <kind>", "raise out of memory",
  -- "raise not enough memory", or "BAD ..." for anything else.
  local function classify(r)
    if r.rc == nil then return "BAD no exit status" end
    if r.rc == 124 then return "BAD hung (stopped after " .. CHILD_SECONDS .. " s)" end
    if r.rc > 128 and r.rc < 160 then return "BAD signal " .. (r.rc - 128) end
    if r.rc ~= 0 then return "BAD exit " .. r.rc end
    local res = r.result
    if res == nil then return "BAD no result line" end
    if not r.after:match("\ndone\n$") then return "BAD no done line" end
    if res:match("^ok ") then return "ok" end
    local kind = res:match("^fail (%S+) ghl: ")
    if kind then return "fail " .. kind end
    if res:match("^raise ghl: out of memory") then return "raise out of memory" end
    if res:match("^raise not enough memory") then return "raise not enough memory" end
    return "BAD result"
  end

  it("never sends a request to the origin directly, never exits or crashes", function()
    local started = h.now()

    -- calibration: no failure, count the allocations of one call
    local base = run_child(0)
    assert.are.equal(0, base.rc, "the calibration run failed:\n" .. scrub(base.out))
    assert.truthy(base.result and base.result:match("^ok "), "the calibration run: " .. scrub(base.out))
    assert.is_true(base.count > 0, "the shim counted no allocation: is it preloaded?")
    local total = base.count
    local step = math.ceil(total / MAX_RUNS)

    local runs = {}
    local n = 1
    while n <= total and #runs < MAX_RUNS do
      if h.now() - started > BUDGET_SECONDS then break end
      runs[#runs + 1] = run_child(n)
      n = n + step
    end
    local planned = math.floor((total - 1) / step) + 1

    -- a request cut short by the failure may be logged a little after the child ended
    h.sleep(0.3)
    local by_id = {}
    for _, req in ipairs(h.requests()) do
      if req.id ~= nil and req.id ~= h.json.null then
        local list = by_id[req.id] or {}
        by_id[req.id] = list
        list[#list + 1] = req
      end
    end

    local counts, order, bad = {}, {}, {}
    local injected = 0
    for _, r in ipairs(runs) do
      local what = classify(r)
      if r.failed ~= 0 then injected = injected + 1 end
      local direct, proxied = 0, 0
      for _, req in ipairs(by_id[r.id] or {}) do
        if req.listener == "other" then proxied = proxied + 1 else direct = direct + 1 end
      end
      if direct > 0 then
        what = "BAD sent to the origin directly"
      elseif what == "ok" and proxied == 0 then
        what = "BAD ok without a request through the proxy"
      elseif what:match("^fail ") and what ~= "fail network" then
        what = "BAD " .. what
      end
      if r.out:find(h.TOKEN, 1, true) then what = "BAD the token in the output" end
      if not counts[what] then
        counts[what] = 0
        order[#order + 1] = what
      end
      counts[what] = counts[what] + 1
      if os.getenv("GHL_SPEC_ALLOC_VERBOSE") then
        io.stdout:write(string.format("N=%d failed=%d count=%d proxied=%d direct=%d %s: %s\n", r.n, r.failed,
          r.count, proxied, direct, what, (scrub(r.after):gsub("\n", " | "))))
      end
      if what:match("^BAD") and #bad < 10 then
        bad[#bad + 1] = string.format("N=%d (%s, %d requests through the proxy, %d direct): %s",
          r.n, what, proxied, direct, scrub(r.out):gsub("\n", " | "))
      end
    end

    table.sort(order, function(x, y) return counts[x] > counts[y] end)
    local parts = {}
    for _, what in ipairs(order) do parts[#parts + 1] = counts[what] .. " " .. what end
    local summary = string.format("%s: %d allocations in one call, %d runs (N step %d), %d failures injected: %s",
      _VERSION .. (jit and (" " .. jit.version) or ""), total, #runs, step, injected, table.concat(parts, ", "))
    io.stdout:write("\n", summary, "\n")
    io.stdout:flush()

    assert.are.equal(planned, #runs, "ran out of time after " .. #runs .. " runs; " .. summary)
    assert.are.same({}, bad, summary)
    assert.is_true(injected > 0, "no run had a failure injected; " .. summary)
  end)
end)
