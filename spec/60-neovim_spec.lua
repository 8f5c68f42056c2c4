-- require("ghl.nvim") inside a real headless Neovim: results on the main
-- loop, the loop free while a fetch is in flight, errors through the callback.
--
-- Neovim runs LuaJIT and loads build/luajit/ghl.so whatever runtime busted
-- runs on, so this file runs once, under GHL_RUNTIME=luajit, and is pending
-- on the others.

local h = require("helpers")

if os.getenv("GHL_RUNTIME") ~= "luajit" then
  describe("ghl.nvim in Neovim", function()
    pending("runs once, under GHL_RUNTIME=luajit (Neovim loads build/luajit/ghl.so)")
  end)
  return
end

local q, capture = h.quote, h.capture

local ROOT = h.SPEC_DIR:gsub("/spec$", "")

-- The script Neovim runs. Each check prints "ok <name> (<time>)" or
-- "FAIL <name> (<time>): <error and traceback>"; then "ALL OK" and status 0,
-- or status 1 if any check failed.
local SCRIPT = [==[
local ROOT, BASE, TOKEN = os.getenv("GHL_SPEC_ROOT"), os.getenv("GHL_SPEC_BASE"), os.getenv("GHL_SPEC_TOKEN")
local LOG = os.getenv("GHL_SPEC_LOG") -- the test server's request log, one line a request, written as it arrives
package.path = ROOT .. "/src/?.lua;" .. package.path
package.cpath = ROOT .. "/build/luajit/?.so;" .. package.cpath

local function out(s) io.stdout:write(s, "\n") io.stdout:flush() end

local function check(cond, msg)
  if not cond then error(msg, 2) end
end

local ghl = require("ghl")
local gn = require("ghl.nvim")
local opts = { token = TOKEN, base_url = BASE }
local uv = vim.loop

local n = 0
local function fresh(scenario)
  n = n + 1
  return scenario .. "--nvim" .. os.time() .. "n" .. n
end

-- Calls get_message, waits (bounded) for the callback; returns what the
-- callback got and where it ran.
local function fetch(id, o, seconds)
  local got
  gn.get_message(id, o or opts, function(msg, err, info)
    got = { msg = msg, err = err, info = info, fast = vim.in_fast_event(),
            buf = vim.api.nvim_get_current_buf() }
  end)
  check(vim.wait((seconds or 10) * 1000, function() return got ~= nil end, 10),
    "no callback for " .. id)
  return got
end

local tests = {}

tests[#tests + 1] = { "a message arrives through the callback on the main loop", function()
  local r = fetch(fresh("sms"))
  check(r.err == nil, "errmsg: " .. tostring(r.err))
  check(type(r.msg) == "table", "no message")
  check(r.msg.type == "TYPE_SMS", "type " .. tostring(r.msg.type))
  check(r.msg.id == "Xq1sMs0000aaaa000001", "id " .. tostring(r.msg.id))
  check(r.msg.body == "Hi there, your appointment is confirmed for Friday at 10:00.", "body")
  check(r.msg.status == "delivered" and r.msg.direction == "outbound", "status/direction")
  check(type(r.msg.meta) == "table" and next(r.msg.meta) == nil, "meta")
  check(r.info.status == 200 and r.info.attempts == 1, "info")
  check(r.info.trace_id == "7c1d2e3f-0a1b-4c5d-8e9f-000000000001", "trace_id")
  check(r.fast == false, "the callback ran in a fast event")
  check(type(r.buf) == "number", "the API was not usable in the callback")
end }

tests[#tests + 1] = { "null array elements are ghl.null", function()
  local r = fetch(fresh("nulls"))
  check(r.err == nil, tostring(r.err))
  local a = r.msg.attachments
  check(a[1] == ghl.null and a[3] == ghl.null and a[2] == "https://example.invalid/a.png", "attachments")
  check(#r.msg.meta.list == 3 and r.msg.meta.list[2] == ghl.null, "meta.list")
  check(r.msg.meta.nested.deeper[1][1] == ghl.null, "nested")
end }

tests[#tests + 1] = { "numbers come through exactly", function()
  local r = fetch(fresh("numbers"))
  check(r.err == nil, tostring(r.err))
  local m = r.msg.meta
  check(m.maxSafe == 9007199254740991, string.format("maxSafe %.17g", m.maxSafe))
  check(m.minSafe == -9007199254740991, "minSafe")
  check(m.half == 1.5 and m.negExp == -0.0025 and m.callDuration == 120, "small numbers")
end }

tests[#tests + 1] = { "type uses this state's MESSAGE_TYPES; convert_enums = false keeps the number", function()
  ghl.MESSAGE_TYPES[99] = "TYPE_SPEC_NINETY_NINE"
  local r = fetch(fresh("unknown_type"))
  ghl.MESSAGE_TYPES[99] = nil
  check(r.msg.type == "TYPE_SPEC_NINETY_NINE", "type " .. tostring(r.msg.type))
  r = fetch(fresh("sms"), { token = TOKEN, base_url = BASE, convert_enums = false })
  check(r.msg.type == 2, "type " .. tostring(r.msg.type))
end }

tests[#tests + 1] = { "an HTTP error arrives through the callback", function()
  local r = fetch(fresh("err_404"))
  check(r.msg == nil, "a message for a 404")
  check(type(r.err) == "string" and r.err:find("^ghl: HTTP 404 Not Found: Message not found"), tostring(r.err))
  check(r.info.kind == "http" and r.info.status == 404, "info")
  check(r.info.message == "Message not found", "info.message")
  check(not r.err:find(TOKEN, 1, true) and not (r.info.body or ""):find(TOKEN, 1, true), "token leaked")
  check(r.fast == false, "the callback ran in a fast event")
end }

tests[#tests + 1] = { "a network failure arrives through the callback", function()
  local r = fetch("sms", { token = TOKEN, base_url = "http://127.0.0.1:9", retries = 0 })
  check(r.msg == nil and type(r.err) == "string" and r.err:find("^ghl: "), tostring(r.err))
  check(r.info.kind == "network", "kind " .. tostring(r.info.kind))
end }

tests[#tests + 1] = { "misuse raises in the caller", function()
  local called = false
  local cb = function() called = true end
  local ok, err = pcall(gn.get_message, "bad id", opts, cb)
  check(not ok and tostring(err):find("^ghl: .*'id'"), tostring(err))
  ok, err = pcall(gn.get_message, "abc", { token = TOKEN, bogus = 1 }, cb)
  check(not ok and tostring(err):find("bogus"), tostring(err))
  ok, err = pcall(gn.get_message, "abc", opts)
  check(not ok and tostring(err):find("callback"), tostring(err))
  vim.wait(200)
  check(not called, "the callback ran after misuse")
end }

tests[#tests + 1] = { "the main loop keeps running while a fetch is in flight", function()
  local ticks, done = 0, nil
  local timer = uv.new_timer()
  timer:start(50, 50, function() ticks = ticks + 1 end)
  local t0 = uv.hrtime()
  gn.get_message(fresh("slow_ok_2000"), opts, function(msg, err)
    done = { msg = msg, err = err, ticks = ticks, secs = (uv.hrtime() - t0) / 1e9 }
  end)
  local call_secs = (uv.hrtime() - t0) / 1e9
  local ticks_at_return = ticks
  local finished = vim.wait(10000, function() return done ~= nil end, 10)
  timer:stop()
  timer:close()
  check(finished, "no callback within 10 s")
  check(call_secs < 1.0, "get_message took " .. call_secs .. " s to return")
  check(done.err == nil and done.msg.type == "TYPE_SMS", tostring(done.err))
  check(done.secs >= 1.9, "the slow fetch took only " .. done.secs .. " s")
  -- ~40 ticks in 2 s; a blocked loop would give almost none after the call
  check(done.ticks - ticks_at_return >= 10,
    "only " .. (done.ticks - ticks_at_return) .. " timer ticks during a 2 s fetch")
end }

tests[#tests + 1] = { "fetches run side by side", function()
  local got, errs, ids, arrived_first = 0, {}, {}, nil
  -- how many of the ids the server has seen (one after the other: only the first)
  local function arrived()
    local f, seen = assert(io.open(LOG, "rb")), 0
    local text = f:read("*a")
    f:close()
    for _, id in ipairs(ids) do
      if text:find(id:gsub("%p", "%%%0") .. "[^%w_%-]") then seen = seen + 1 end
    end
    return seen
  end
  for i = 1, 3 do
    ids[i] = fresh("slow_ok_2000")
    gn.get_message(ids[i], opts, function(msg, err)
      if got + #errs == 0 then arrived_first = arrived() end -- as the first answer is in
      if msg then got = got + 1 else errs[#errs + 1] = tostring(err) end
    end)
  end
  check(vim.wait(15000, function() return got + #errs == 3 end, 10), "got " .. got .. " of 3")
  check(#errs == 0, table.concat(errs, "; "))
  check(arrived_first == 3, "as the first 2 s answer came, the server had seen " .. tostring(arrived_first)
    .. " of the 3 requests")
end }

tests[#tests + 1] = { "a retry waits on the main loop and the answer says so", function()
  local ticks = 0
  local timer = uv.new_timer()
  timer:start(20, 20, function() ticks = ticks + 1 end)
  -- a 429 with Retry-After: 1, then the message: the wait is a whole second
  local r = fetch(fresh("flaky_429ra_1_1"), { token = TOKEN, base_url = BASE })
  timer:stop()
  timer:close()
  check(r.err == nil and r.msg.type == "TYPE_SMS", tostring(r.err))
  check(r.info.attempts == 2 and r.info.status == 200, "attempts " .. tostring(r.info.attempts))
  check(ticks >= 10, "only " .. ticks .. " timer ticks during a 1 s retry wait")
end }

tests[#tests + 1] = { "forty fetches at once, more than the concurrency: each gets its own answer", function()
  local want, got, errs = {}, 0, {}
  for i = 1, 40 do
    local id = fresh("echo") .. "x" .. i
    want[#want + 1] = id
    gn.get_message(id, opts, function(msg, err)
      if msg and msg.id == id and msg.body == id then got = got + 1
      else errs[#errs + 1] = id .. ": " .. tostring(err or (msg and msg.id)) end
    end)
  end
  check(vim.wait(20000, function() return got + #errs == 40 end, 10), "got " .. got .. " of 40")
  check(#errs == 0, table.concat(errs, "; "))
end }

tests[#tests + 1] = { "a timeout arrives through the callback, with the loop free meanwhile", function()
  local ticks = 0
  local timer = uv.new_timer()
  timer:start(20, 20, function() ticks = ticks + 1 end)
  local r = fetch(fresh("never_answer"), { token = TOKEN, base_url = BASE, timeout = 0.5, retries = 0 })
  timer:stop()
  timer:close()
  check(r.msg == nil and r.info.kind == "timeout", "kind " .. tostring(r.info.kind))
  check(r.info.attempts == 1 and r.info.curl_code == 28, "info")
  check(ticks >= 10, "only " .. ticks .. " timer ticks during a 0.5 s timeout")
end }

tests[#tests + 1] = { "per-call settings share the connection of their option set", function()
  local a = ghl._looped_client({ token = TOKEN, base_url = BASE, timeout = 1 })
  local b = ghl._looped_client({ token = TOKEN, base_url = BASE, timeout = 2, retries = 0 })
  local c = ghl._looped_client({ token = TOKEN, base_url = BASE, version = "2021-07-28" })
  check(rawequal(a, b), "a per-call setting made a client of its own")
  check(not rawequal(a, c), "another version shares a client")
  local ok, err = pcall(a.get_message, a, "abc")
  check(not ok and tostring(err):find("event loop", 1, true), tostring(err))
end }

-- Calls method on client with args and a callback, waits (bounded).
local function call(client, method, ...)
  local got
  local args = { ... }
  args[#args + 1] = function(result, err, info)
    got = { result = result, err = err, info = info, fast = vim.in_fast_event() }
  end
  client[method](client, unpack(args))
  check(vim.wait(10000, function() return got ~= nil end, 10), "no callback for " .. method)
  return got
end

local function walk(client, method, ...)
  local items, done = {}, nil
  local n = select("#", ...)
  local args = { ... }
  args[n + 1] = function(item, info) items[#items + 1] = { item = item, trace = info.trace_id } end
  args[n + 2] = function(ok, err, info) done = { ok = ok, err = err, info = info } end
  client[method](client, unpack(args, 1, n + 2))
  check(vim.wait(10000, function() return done ~= nil end, 10), "no on_done for " .. method)
  return items, done
end

tests[#tests + 1] = { "a client has every method: each answers through its callback on the main loop", function()
  local c = gn.new(opts)
  local r = call(c, "get_conversation", fresh("ok"), nil)
  check(r.err == nil and r.result.type == 1 and r.result.traceId == nil, tostring(r.err))
  check(r.info.trace_id == "conv-trace-0001" and r.fast == false, "info")
  r = call(c, "list_messages", fresh("pages"), { limit = 2 }, nil)
  check(#r.result.messages == 2 and r.result.next_page == true, "page")
  check(r.result.messages[1].type == "TYPE_SMS" or type(r.result.messages[1].type) == "string", "type rule")
  r = call(c, "get_recording", fresh("ok"), "LoC1", nil)
  check(r.info.content_type == "audio/x-wav" and #r.result == 556 and r.result:sub(1, 4) == "RIFF", "wav")
  r = call(c, "request", "GET", "/spec/array", nil, nil)
  check(r.result[1] == 1 and r.result[2] == ghl.null and r.result[3] == "two", "array")
  r = call(c, "send_message", { type = "SMS", contactId = fresh("ok"), message = "hi" }, nil)
  check(r.result.messageId == "MsG00000000000sent01" and r.info.trace_id == "send-ok", tostring(r.err))
  r = call(c, "get_email", fresh("ok")) -- the callback right after the last given argument
  check(r.err == nil and type(r.result.id) == "string", tostring(r.err))
  c:close()
end }

tests[#tests + 1] = { "get_messages on a client: every id once, answers and failures by id", function()
  local c = gn.new(opts)
  local ids = {}
  for i = 1, 12 do ids[i] = fresh("echo") .. "g" .. i end
  ids[13] = ids[1]
  local bad = fresh("err_404")
  ids[14] = bad
  local got
  c:get_messages(ids, { concurrency = 3 }, function(messages, failures) got = { m = messages, f = failures } end)
  check(vim.wait(15000, function() return got ~= nil end, 10), "no callback")
  local n = 0
  for id, msg in pairs(got.m) do n = n + 1 check(msg.id == id, "id " .. id) end
  check(n == 12, "messages " .. n)
  check(got.f[bad] and got.f[bad].status == 404 and got.f[bad].errmsg:find("^ghl: HTTP 404"), "failure")
  local rl = c:rate_limit()
  check(type(rl) == "table" and rl.max == 100, "rate_limit")
  local ok, err = pcall(c.get_messages, c, { "ok", "bad id" }, nil, function() end)
  check(not ok and tostring(err):find("'id'", 1, true), tostring(err))
  ok, err = pcall(c.get_messages, c, { "ok" }, { concurrency = 0 }, function() end)
  check(not ok and tostring(err):find("concurrency", 1, true), tostring(err))
  c:close()
end }

tests[#tests + 1] = { "a send that failed once it was sent is not repeated", function()
  local c = gn.new(opts)
  local r = call(c, "send_message", { type = "SMS", contactId = fresh("flaky_503_1") }, { retries = 2 })
  check(r.result == nil and r.info.status == 503 and r.info.attempts == 1, "attempts " .. tostring(r.info.attempts))
  c:close()
end }

tests[#tests + 1] = { "each_message walks every page, one after the other, and ends once", function()
  local c = gn.new(opts)
  local items, done = walk(c, "each_message", fresh("pages"), { limit = 2 }, nil)
  check(#items == 5, "items " .. #items)
  check(items[1].trace == "list-pages-1" and items[3].trace == "list-pages-2" and items[5].trace == "list-pages-3",
    "pages " .. tostring(items[5].trace))
  check(done.ok == true and done.err == nil, tostring(done.err))
  items, done = walk(c, "each_message", fresh("failpage"), nil, nil)
  check(#items == 2 and done.ok == nil and done.info.status == 422, "failpage " .. tostring(done.err))
  items, done = walk(c, "each_conversation", { locationId = fresh("pages"), limit = 2 }, nil)
  check(#items == 5 and done.ok == true, "conversations " .. #items)
  c:close()
end }

tests[#tests + 1] = { "on_item returning false stops the walk", function()
  local c = gn.new(opts)
  local id = fresh("pages")
  local n, done = 0, nil
  c:each_message(id, { limit = 2 }, nil, function() n = n + 1 return false end,
    function(ok) done = ok end)
  check(vim.wait(10000, function() return done ~= nil end, 10), "no on_done")
  check(n == 1 and done == true, "n " .. n)
  c:close()
end }

tests[#tests + 1] = { "client misuse raises at the call; close drops what is in flight", function()
  local c = gn.new(opts)
  local ok, err = pcall(c.get_conversation, c, "bad id", nil, function() end)
  check(not ok and tostring(err):find("conversation_id", 1, true), tostring(err))
  ok, err = pcall(c.get_conversation, c, "abc")
  check(not ok and tostring(err):find("callback", 1, true), tostring(err))
  ok, err = pcall(c.get_conversation, c, "abc", { token = "x" }, function() end)
  check(not ok and tostring(err):find("token", 1, true), tostring(err))
  local called = false
  c:get_conversation(fresh("never_answer"), { timeout = 5 }, function() called = true end)
  vim.wait(200)
  c:close()
  vim.wait(300)
  check(not called, "a callback after close")
  ok, err = pcall(c.get_conversation, c, "abc", nil, function() end)
  check(not ok and tostring(err):find("closed", 1, true), tostring(err))
end }

-- Every check runs, each reported on its own line, so the spec can name
-- the one that failed.
local failed = 0
for _, t in ipairs(tests) do
  local t0 = uv.hrtime()
  local ok1, e = xpcall(t[2], debug.traceback)
  local secs = string.format("%.2f s", (uv.hrtime() - t0) / 1e9)
  if ok1 then
    out("ok " .. t[1] .. " (" .. secs .. ")")
  else
    failed = failed + 1
    out("FAIL " .. t[1] .. " (" .. secs .. "): " .. tostring(e):gsub("\n", "\n    "))
  end
end
if failed > 0 then
  out(failed .. " FAILED")
  vim.cmd("cquit 1")
end
out("ALL OK")
vim.cmd("qall!")
]==]

-- The checks' names, in order, as the script reports them.
local CHECKS = {}
for name in SCRIPT:gmatch('tests%[#tests %+ 1%] = { "([^"]+)"') do CHECKS[#CHECKS + 1] = name end

describe("ghl.nvim in Neovim", function()
  local dir, output, finished, rc

  -- One headless Neovim runs every check; each check is a test of its own here.
  setup(function()
    h.start()
    dir = h.temp_dir("ghl-nvim")
    h.write_file(dir .. "/check.lua", SCRIPT)
    assert(capture("command -v nvim"):match("nvim"), "nvim not found: run scripts/install-deps hosts")
    local env = "env GHL_SPEC_ROOT=" .. q(ROOT) .. " GHL_SPEC_BASE=" .. q(h.http_url) .. " GHL_SPEC_LOG=" .. q(h.log)
      .. " GHL_SPEC_TOKEN=" .. q(h.TOKEN) .. " HOME=" .. q(dir) .. " XDG_STATE_HOME=" .. q(dir)
      .. " XDG_DATA_HOME=" .. q(dir)
    -- Neovim 0.7 has no -l: the script runs as an Ex command after startup.
    local nvim = env .. " nvim --headless --clean -n -i NONE -c " .. q("luafile " .. dir .. "/check.lua")
    local proc = h.spawn(dir, "nvim", "exec " .. nvim)
    finished = h.wait_for(function() return h.read_file(proc.rc_file) end, 90)
    h.stop_process(proc)
    output = h.read_file(proc.out) or ""
    rc = (h.read_file(proc.rc_file) or ""):gsub("%s+", "")
  end)

  teardown(function()
    h.remove_dir(dir)
  end)

  it("finds the checks in the script", function()
    assert.equal(19, #CHECKS)
  end)

  local function starts(s, prefix) return s:sub(1, #prefix) == prefix end

  -- The script's report on one check: "ok", or "FAIL" and that line with its
  -- indented traceback, or nil if the check printed nothing.
  local function report(name)
    local lines
    for line in (output .. "\n"):gmatch("([^\n]*)\n") do
      if lines then
        if not starts(line, "    ") then break end
        lines[#lines + 1] = line
      elseif starts(line, "ok " .. name .. " (") then
        return "ok"
      elseif starts(line, "FAIL " .. name .. " (") then
        lines = { line }
      end
    end
    if not lines then return nil end
    return "FAIL", table.concat(lines, "\n")
  end

  for _, name in ipairs(CHECKS) do
    it(name, function()
      assert.truthy(finished, "nvim did not finish within 90 s:\n" .. output)
      local result, text = report(name)
      assert.equal("ok", result, text or ("no result for this check; Neovim printed:\n" .. output))
    end)
  end

  it("exits 0 after printing ALL OK", function()
    assert.truthy(finished, "nvim did not finish within 90 s:\n" .. output)
    assert.equal("0", rc, output)
    assert.truthy(output:find("ALL OK", 1, true), output)
  end)
end)

-- :qa! with fetches in flight against a server that never answers: Neovim
-- quits at once, it waits for none of them (a request has no thread to wait
-- for: it runs on the main loop).
local QUIT_SCRIPT = [==[
local ROOT, BASE, TOKEN = os.getenv("GHL_SPEC_ROOT"), os.getenv("GHL_SPEC_BASE"), os.getenv("GHL_SPEC_TOKEN")
package.path = ROOT .. "/src/?.lua;" .. package.path
package.cpath = ROOT .. "/build/luajit/?.so;" .. package.cpath
local gn = require("ghl.nvim")
local n = tonumber(os.getenv("GHL_SPEC_N"))
for i = 1, n do
  gn.get_message("never_answer--quit" .. os.time() .. "n" .. i,
    { token = TOKEN, base_url = BASE, timeout = 30, retries = 0 }, function() end)
end
vim.wait(1000) -- the requests reach the server
io.stdout:write("quitting\n")
io.stdout:flush()
vim.cmd("qa!")
]==]

describe("ghl.nvim when Neovim quits", function()
  it(":qa! with 8 fetches in flight quits without waiting for them", function()
    h.start()
    local dir = h.temp_dir("ghl-nvim-quit")
    h.write_file(dir .. "/quit.lua", QUIT_SCRIPT)
    local env = "env GHL_SPEC_ROOT=" .. q(ROOT) .. " GHL_SPEC_BASE=" .. q(h.http_url)
      .. " GHL_SPEC_TOKEN=" .. q(h.TOKEN) .. " GHL_SPEC_N=8 HOME=" .. q(dir) .. " XDG_STATE_HOME=" .. q(dir)
      .. " XDG_DATA_HOME=" .. q(dir)
    local proc = h.spawn(dir, "nvim", "exec " .. env
      .. " nvim --headless --clean -n -i NONE -c " .. q("luafile " .. dir .. "/quit.lua"))
    -- 8 fetches of 30 s each: waiting for them would take 30 s or more
    local finished = h.wait_for(function() return h.read_file(proc.rc_file) end, 15)
    h.stop_process(proc)
    local output = h.read_file(proc.out) or ""
    local rc = (h.read_file(proc.rc_file) or ""):gsub("%s+", "")
    local seen = 0
    for _, req in ipairs(h.requests()) do
      if tostring(req.id or ""):find("^never_answer%-%-quit") then seen = seen + 1 end
    end
    h.remove_dir(dir)
    assert.truthy(output:find("quitting", 1, true), output)
    assert.truthy(finished, "Neovim still ran 15 s after :qa!")
    assert.equal("0", rc, output)
    assert.equal(8, seen) -- all of them were in flight
  end)
end)
