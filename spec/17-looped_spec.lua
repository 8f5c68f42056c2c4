-- Looped clients: the C side of ghl.nvim, driven here by a plain loop, so
-- that every runtime (and valgrind, ASan) runs it. ghl._looped_client(opts)
-- gives the state's client for an option set; client:_add(method, ...)
-- queues a call of that method (its own arguments follow) and returns its tag; client:_step() never blocks and returns
-- the finished fetches as {tag, message, errmsg, info} and the most ms to
-- wait before the next step (nil when none is left); client:_fd() is the one
-- descriptor a host watches (an epoll set of libcurl's sockets).

local h = require("helpers")
local mc = require("support.midcall")
local ghl = require("ghl")

-- Steps c until no fetch is left (bounded); returns tag -> {msg, err, info}
-- and how many steps it took.
local function drive(c, seconds)
  local got, steps = {}, 0
  local deadline = h.now() + (seconds or 10)
  repeat
    local results, wait = c:_step()
    steps = steps + 1
    for _, r in ipairs(results) do
      assert.is_nil(got[r[1]], "tag " .. r[1] .. " finished twice")
      got[r[1]] = { msg = r[2], err = r[3], info = r[4] }
    end
    if wait == nil then return got, steps end
    h.sleep(math.min(wait, 20) / 1000)
  until h.now() > deadline
  error("fetches still running after " .. (seconds or 10) .. " s", 2)
end

-- The descriptors in the epoll set fd, read from /proc (Linux).
local function epoll_members(fd)
  local s = h.read_file("/proc/self/fdinfo/" .. fd) or ""
  local n = 0
  for _ in s:gmatch("tfd:") do n = n + 1 end
  return n, s ~= ""
end

describe("looped clients", function()
  setup(h.start)

  it("are one per option set; per-call settings share it", function()
    local a = ghl._looped_client(h.opts({ timeout = 1 }))
    local b = ghl._looped_client(h.opts({ timeout = 2, retries = 0 }))
    local c = ghl._looped_client(h.opts({ version = "2021-07-28" }))
    assert.is_true(rawequal(a, b))
    assert.is_false(rawequal(a, c))
    c:close()
    local d = ghl._looped_client(h.opts({ version = "2021-07-28" }))
    assert.is_false(rawequal(c, d)) -- a closed one is replaced
    d:close()
  end)

  it("answer each fetch under its own tag", function()
    local c = ghl._looped_client(h.opts())
    local ids, tags = {}, {}
    for i = 1, 3 do
      ids[i] = h.fresh_id("echo")
      tags[i] = c:_add("get_message", ids[i])
    end
    assert.same({ tags[1], tags[1] + 1, tags[1] + 2 }, tags)
    local got = drive(c)
    assert.equal(3, h.count_keys(got))
    for i = 1, 3 do
      local r = got[tags[i]]
      assert.is_nil(r.err)
      assert.equal(ids[i], r.msg.id)
      assert.equal("TYPE_SMS", r.msg.type)
      assert.same({ 200, 1, "echo-" .. ids[i] }, { r.info.status, r.info.attempts, r.info.trace_id })
    end
    local results, wait = c:_step()
    assert.same({}, results)
    assert.is_nil(wait)
  end)

  it("put libcurl's socket into the set a host watches while a fetch is in flight", function()
    local c = ghl._looped_client(h.opts({ user_agent = "looped-epoll" }))
    local fd = c:_fd()
    assert.equal("number", type(fd))
    local _, readable = epoll_members(fd)
    if not readable then pending("/proc/self/fdinfo is not readable here") return end
    local tag = c:_add("get_message", h.fresh_id("slow_ok_300"))
    local most = 0
    local deadline = h.now() + 10
    local done
    repeat
      local results, wait = c:_step()
      most = math.max(most, (epoll_members(fd)))
      if results[1] then done = results[1] end
      if wait then h.sleep(math.min(wait, 20) / 1000) end
    until done or h.now() > deadline
    assert.equal(tag, done[1])
    assert.equal(1, most)
    c:close()
  end)

  it("take jobs while others run, past the first room for them, each with its own limits", function()
    local c = ghl._looped_client(h.opts({ user_agent = "looped-grow" }))
    local want, got = {}, {}
    local function add(n, extra)
      for _ = 1, n do
        local id = h.fresh_id("echo")
        want[c:_add("get_message", id, extra)] = id
      end
    end
    add(10)
    -- some finish, some still run, then many more come
    local deadline = h.now() + 10
    local finished = 0
    while finished < 3 and h.now() < deadline do
      local results, wait = c:_step()
      for _, r in ipairs(results) do got[r[1]] = r finished = finished + 1 end
      if wait then h.sleep(math.min(wait, 5) / 1000) end
    end
    add(30, { timeout = 5 })
    local flaky_off = h.fresh_id("flaky_503_1")
    local flaky_on = h.fresh_id("flaky_503_1")
    local off = c:_add("get_message", flaky_off, { retries = 0 })
    local on = c:_add("get_message", flaky_on, { retries = 1 })
    for tag, r in pairs(drive(c, 20)) do got[tag] = { tag, r.msg, r.err, r.info } end
    for tag, id in pairs(want) do
      assert.is_table(got[tag], "no answer for " .. id)
      assert.equal(id, got[tag][2] and got[tag][2].id, tostring(got[tag][3]))
    end
    assert.same({ 503, 1 }, { got[off][4].status, got[off][4].attempts })
    assert.same({ 200, 2 }, { got[on][4].status, got[on][4].attempts })
    assert.equal(42, h.count_keys(got))
    c:close()
  end)

  -- Lua code runs inside a step only as a finalizer (the decoder calls no
  -- Lua function), and only where a finalizer's error propagates (not 5.4)
  -- can it raise there; 5.2 runs finalizers only as a collection cycle
  -- ends, which seldom falls inside a step. Swept over the k-th finalizer
  -- run inside the step.
  local step_raise = (mc.finalizer_errors_propagate() and _VERSION ~= "Lua 5.2") and it or pending
  step_raise("keep the results a step made before Lua code raised in it, for the next step", function()
    -- one try at the k-th finalizer run: "fired", "past" (the step made both
    -- results with fewer runs in it) or "early" (the answers were not all in)
    local function try(k)
      local c = ghl._looped_client(h.opts({ user_agent = "looped-keep" }))
      local ida, idb = h.fresh_id("slow_ok_100"), h.fresh_id("slow_ok_100")
      local a = c:_add("get_message", ida)
      local b = c:_add("get_message", idb)
      local sent = h.wait_for(function() -- both start and reach the server
        assert.same({}, (c:_step()))
        return #h.requests_for(ida) == 1 and #h.requests_for(idb) == 1
      end, 10)
      assert.truthy(sent, "the two requests did not reach the server")
      h.sleep(0.3) -- both answered: one step finishes both
      -- this process holds the whole spec's heap: steps big enough that a
      -- collection cycle (and so a finalizer) ends within one step
      mc.STEPMUL = 1000000
      local ran, r = mc.run("finalizer", c._step, k, function() return c:_step() end,
        function() error("boom in a step", 0) end)
      mc.STEPMUL = nil
      if not ran then
        assert.is_true(r[1], tostring(r[2]))
        local n = #r[2]
        c:close()
        return n == 2 and "past" or "early"
      end
      assert.is_false(r[1])
      assert.truthy(tostring(r[2]):find("boom in a step", 1, true), tostring(r[2])) -- 5.3 wraps it
      -- the one being made when the error came is lost (named once); the
      -- other comes, whether it was made before the error or after it
      local lost = c:_interrupted()
      assert.is_nil(c:_interrupted())
      local got = drive(c)
      for _, tag in ipairs({ a, b }) do
        if tag == lost then
          assert.is_nil(got[tag], "k=" .. k .. ": the interrupted fetch came too")
        else
          assert.is_table(got[tag], "k=" .. k .. ": a result was lost")
          assert.equal("TYPE_SMS", got[tag].msg.type)
        end
      end
      c:close()
      return "fired"
    end
    local fired = 0
    for k = 1, 25 do
      local outcome
      for _ = 1, 5 do -- a slow machine (valgrind) may not have both answers in yet
        outcome = try(k)
        if outcome ~= "early" then break end
      end
      if outcome ~= "fired" then break end
      fired = fired + 1
    end
    assert.is_true(fired >= 2, "a finalizer ran inside " .. fired .. " steps")
    if os.getenv("GHL_SPEC_VERBOSE") then print("finalizer inside a step: " .. fired .. " points") end
  end)

  it("keep their own copy of everything a call carries", function()
    local c = ghl._looped_client(h.opts({ user_agent = "looped-copy" }))
    local nonce = h.fresh_id("x")
    local query = { b = "x y", a = 1, n = nonce }
    local tag = c:_add("request", "GET", "/spec/looped/" .. nonce, { query = query, version = "2099-01-01" })
    query.a, query.b = nil, nil
    collectgarbage()
    collectgarbage()
    local got = drive(c)
    assert.equal(404, got[tag].info.status)
    assert.equal("ghl: HTTP 404 Not Found: Cannot GET /spec/looped/" .. nonce .. "?a=1&b=x%20y&n=" .. nonce
      .. " (GET /spec/looped/" .. nonce .. ")", got[tag].err)
    local seen
    for _, req in ipairs(h.requests()) do
      if req.path:find(nonce, 1, true) then seen = req end
    end
    assert.equal("/spec/looped/" .. nonce .. "?a=1&b=x%20y&n=" .. nonce, seen.path)
    assert.equal("2099-01-01", seen.headers.version)
    c:close()
  end)

  it("refuse the blocking calls, and a blocking client refuses the looped ones", function()
    local c = ghl._looped_client(h.opts())
    assert.has_error(function() c:get_message("abc") end,
      "ghl: this client is driven by an event loop: use its adapter")
    assert.has_error(function() c:get_messages({ "abc" }) end,
      "ghl: this client is driven by an event loop: use its adapter")
    local plain = ghl.new(h.opts())
    assert.has_error(function() plain:_add("get_message", "abc") end, "ghl: not a looped client")
    assert.has_error(function() plain:_step() end, "ghl: not a looped client")
    plain:close()
    assert.has_error(function() c:_add("get_message", "bad id") end)
    assert.has_error(function() c:_add("get_message", "abc", { bogus = 1 }) end)
  end)

  it("drop what is in flight on close, and raise after it", function()
    local c = ghl._looped_client(h.opts({ user_agent = "looped-close" }))
    c:_add("get_message", h.fresh_id("slow_ok_2000"))
    c:_step()
    c:close()
    assert.has_error(function() c:_step() end, "ghl: the client is closed")
    assert.has_error(function() c:_add("get_message", "abc") end, "ghl: the client is closed")
  end)

  it("are busy during a step: Lua code run inside it cannot add, and its error reaches the caller", function()
    local c = ghl._looped_client(h.opts({ user_agent = "looped-busy" }))
    local tag = c:_add("get_message", h.fresh_id("sms"))
    local inner
    -- a hook at every call: the step runs its body through lua_pcall, with
    -- the client already busy (a frame below _step: not _step's own entry)
    debug.sethook(function()
      if inner == nil and debug.getinfo(2, "f").func ~= c._step and mc.on_stack(c._step, 3) then
        inner = { pcall(c._add, c, "get_message", "abc") }
        error("boom from a hook")
      end
    end, "c")
    local ok, err = pcall(c._step, c)
    debug.sethook()
    assert.is_false(ok)
    assert.truthy(tostring(err):find("boom from a hook", 1, true), tostring(err))
    assert.is_false(inner[1])
    assert.equal("ghl: the client is busy", inner[2])
    assert.is_nil(c:_interrupted()) -- nothing was being made
    -- the client goes on: the fetch added before comes, and a new one too
    local again = c:_add("get_message", h.fresh_id("sms"))
    local got = drive(c)
    assert.equal("TYPE_SMS", got[tag].msg.type)
    assert.equal("TYPE_SMS", got[again].msg.type)
    c:close()
  end)
end)
