-- Hardening: what the contract's "Hosts" section promises beyond the happy
-- path. Lua code running in the middle of a call (finalizers, debug hooks,
-- SIGINT), batch waits bounded by the options, sockets kept and closed,
-- base_url checked, secrets cut out of what comes back, bodies that are not
-- messages. Whatever may crash or hang runs in a child interpreter under a
-- 60-second `timeout` (h.run_lua's hang guard); the assertions are about the
-- child's answers and the server's log, never about timings.

local h = require("helpers")
local ghl = require("ghl")
local mc = require("support.midcall")

local TOKEN = h.TOKEN
local GUARD = 60 -- seconds: a hang guard, far above what any of these takes

local suffix = h.request_suffix
local count_keys = h.count_keys

-- Distinct values of `field` over the logged requests for ids: a set and its size.
local function distinct_conns(ids)
  local set, n = {}, 0
  for _, id in ipairs(ids) do
    for _, r in ipairs(h.requests_for(id)) do
      if not set[r.conn] then
        set[r.conn] = true
        n = n + 1
      end
    end
  end
  return set, n
end

local function fresh_ids(scenario, n)
  local out = {}
  for i = 1, n do out[i] = h.fresh_id(scenario) end
  return out
end

---------------------------------------------------------------------------
-- Children

-- The start of every child's code: ghl, spec/support/midcall.lua, the server
-- and token from the environment, fresh ids under the test's own nonce.
local PRELUDE = string.format("local SPEC_DIR = %q\n", h.SPEC_DIR) .. [==[
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local mc = require("support.midcall")
local ghl = require("ghl")
local BASE, TOKEN, NONCE = os.getenv("GHL_SPEC_URL"), os.getenv("GHL_SPEC_TOKEN"), os.getenv("GHL_SPEC_NONCE")
local seq = 0
local function fresh(scenario)
  seq = seq + 1
  return scenario .. "--" .. NONCE .. "c" .. seq
end
local function opts(extra)
  local o = { token = TOKEN, base_url = BASE, retries = 0 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end
local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end
local function is_echo(m, id) return type(m) == "table" and m.id == id end
local function busy(e) return tostring(e):find("ghl: the client is busy", 1, true) ~= nil end
-- nil, or what is wrong with a batch's results for ids of the echo scenario
local function batch_problem(messages, failures, ids)
  if type(messages) ~= "table" or type(failures) ~= "table" then
    return "results " .. type(messages) .. ", " .. type(failures)
  end
  for _, id in ipairs(ids) do
    if not is_echo(messages[id], id) then
      local f = failures[id]
      return "no message for " .. id .. (f and (": " .. tostring(f.errmsg)) or "")
    end
  end
  if count(messages) ~= #ids or count(failures) ~= 0 then
    return count(messages) .. " messages, " .. count(failures) .. " failures for " .. #ids .. " ids"
  end
end
-- nil, or why a later call on c does not raise "the client is closed"
local function closed_problem(c)
  local ok, err = pcall(c.get_message, c, fresh("echo"))
  if ok then return "a call after the close did not raise" end
  if not tostring(err):find("ghl: the client is closed", 1, true) then return "after the close: " .. tostring(err) end
end
-- nil, or why c does not answer a next call right
local function usable_problem(c)
  local id = fresh("echo")
  local ok, m, e = pcall(c.get_message, c, id)
  if not ok then return "the next call raised: " .. tostring(m) end
  if not is_echo(m, id) then return "the next call returned " .. tostring(m) .. ", " .. tostring(e) end
end
local probe = ghl.new(opts())
local GET, GETS = probe.get_message, probe.get_messages
probe:close()
]==]

local function child_env()
  return {
    GHL_SPEC_URL = h.http_url,
    GHL_SPEC_TOKEN = TOKEN,
    GHL_SPEC_NONCE = h.fresh_id("n"):gsub("^n%-%-", ""),
  }
end

-- Runs code (after PRELUDE) in a child under the hang guard and checks its
-- reports: exactly the names in `expect` (name -> whether the Lua code must
-- have run mid-call at least once), none with anything wrong.
local function run_midcall(code, expect)
  local ok, out, rc = h.run_lua(PRELUDE .. code .. "\nprint('END')\n", child_env(), GUARD)
  out = h.hide_token(out)
  assert.is_true(ok, "the child " .. ((rc == 124 or rc == 137) and "hung (killed by the hang guard)"
    or ("exited " .. tostring(rc))) .. ":\n" .. out)
  assert.is_truthy(out:find("\nEND\n", 1, true) or out:find("^END\n"), "the child did not finish:\n" .. out)
  local got, wrong_lines = {}, {}
  for line in out:gmatch("[^\n]+") do
    local name, fired, wrong = line:match("^(.-) fired=(%d+) wrong=(%d+)$")
    if name then got[name] = { fired = tonumber(fired), wrong = tonumber(wrong) } end
    if line:match("^WRONG ") then wrong_lines[#wrong_lines + 1] = line end
  end
  local want_names, got_names = {}, {}
  for name in pairs(expect) do want_names[#want_names + 1] = name end
  for name in pairs(got) do got_names[#got_names + 1] = name end
  table.sort(want_names)
  table.sort(got_names)
  assert.same(want_names, got_names)
  assert.equal("", table.concat(wrong_lines, "\n"))
  for name, must_fire in pairs(expect) do
    assert.equal(0, got[name].wrong, name)
    if must_fire then
      assert.is_true(got[name].fired >= 1, name .. ": the Lua code never ran in the middle of the call")
    end
  end
  return got
end

-- The reports of one case over both modes: a hook must always have fired;
-- a finalizer too, except on 5.2: there finalizers run only as a collection
-- cycle ends, which seldom falls inside one call. What a finalizer does when
-- it does run is still checked.
local function modes(name, finalizer_must_fire)
  local out = {}
  out[name .. " hook"] = true
  out[name .. " finalizer"] = finalizer_must_fire ~= false and _VERSION ~= "Lua 5.2"
  return out
end

local function merge(...)
  local out = {}
  for _, t in ipairs { ... } do
    for k, v in pairs(t) do out[k] = v end
  end
  return out
end

---------------------------------------------------------------------------

describe("Lua code in the middle of a call", function()
  -- guards: close() from a finalizer or hook frees the handle a running client:get_message still uses (crash, wrong answer, or the close lost)
  it("client:close() during client:get_message: the call returns its own message, then the client is closed", function()
    run_midcall([==[
      for _, mode in ipairs(mc.MODES) do
        local n, wrong = mc.sweep(mode, GET, 60, function()
          local c = ghl.new(opts())
          local id = fresh("echo")
          return function() local m, e, i = c:get_message(id); return m, e, i end,
            function() c:close() end,
            function(fired, r)
              local problem
              if not r[1] then problem = "raised: " .. tostring(r[2])
              elseif not is_echo(r[2], id) then problem = "returned " .. mc.show(r)
              elseif fired then problem = closed_problem(c) end
              pcall(c.close, c)
              return problem
            end
        end)
        mc.report("close " .. mode, n, wrong)
      end
    ]==], modes("close"))
  end)

  -- guards: a nested ghl.get_message with the same options shares the cached client's URL and body buffers with the outer call (wrong message, wrong path in errmsg, "busy")
  it("ghl.get_message during ghl.get_message with the same options: each returns its own id's answer", function()
    run_midcall([==[
      local o = opts()
      -- nil, or what is wrong with get_message's packed pcall results for id
      local function problem_of(r, id, scenario)
        if not r[1] then return "raised: " .. tostring(r[2]) end
        if scenario == "echo" then
          if is_echo(r[2], id) and r[3] == nil then return nil end
          return "returned " .. mc.show(r)
        end
        local want = "ghl: HTTP 404 Not Found: Message not found (GET /conversations/messages/" .. id .. ")"
        local info = r[4]
        if r[2] == nil and r[3] == want and type(info) == "table" and info.kind == "http" and info.status == 404 then
          return nil
        end
        return "returned " .. mc.show(r) .. " instead of " .. want
      end
      for _, pair in ipairs { { "echo", "echo" }, { "err_404", "echo" }, { "echo", "err_404" } } do
        for _, mode in ipairs(mc.MODES) do
          local n, wrong = mc.sweep(mode, ghl.get_message, 60, function()
            local outer_id, inner_id = fresh(pair[1]), fresh(pair[2])
            local inner
            return function() local m, e, i = ghl.get_message(outer_id, o); return m, e, i end,
              function() inner = mc.pack(pcall(ghl.get_message, inner_id, o)) end,
              function(fired, r)
                local p = problem_of(r, outer_id, pair[1])
                if p then return "outer " .. p end
                if fired then
                  p = problem_of(inner, inner_id, pair[2])
                  if p then return "inner " .. p end
                end
              end
          end)
          mc.report("nested " .. pair[1] .. "/" .. pair[2] .. " " .. mode, n, wrong)
        end
      end
    ]==], merge(modes("nested echo/echo"), modes("nested err_404/echo"), modes("nested echo/err_404")))
  end)

  -- guards: a call on a client that is already in a call runs on the same handle and buffers instead of raising "busy" (crash, wrong answers)
  it("a call on the client that is in a call raises 'ghl: the client is busy', which propagates; the client still works", function()
    run_midcall([==[
      local function call_of(c, which, ids)
        if which == "get_message" then
          return function() local m, e, i = c:get_message(ids[1]); return m, e, i end
        end
        return function() local m, f = c:get_messages(ids, { concurrency = 2 }); return m, f end
      end
      local function ids_for(which)
        if which == "get_message" then return { fresh("echo") } end
        return { fresh("echo"), fresh("echo"), fresh("echo") }
      end
      -- nil, or what is wrong with an outer call's packed pcall results
      local function right(which, r, ids)
        if not r[1] then return "raised: " .. tostring(r[2]) end
        if which == "get_message" then
          if is_echo(r[2], ids[1]) then return nil end
          return "returned " .. mc.show(r)
        end
        return batch_problem(r[2], r[3], ids)
      end
      for _, outer in ipairs { "get_message", "get_messages" } do
        for _, inner in ipairs { "get_message", "get_messages" } do
          for _, mode in ipairs(mc.MODES) do
            local n, wrong = mc.sweep(mode, outer == "get_message" and GET or GETS, 60, function()
              local c = ghl.new(opts())
              local outer_ids, inner_ids = ids_for(outer), ids_for(inner)
              local inner_call = call_of(c, inner, inner_ids)
              local recorded
              local action
              if mode == "hook" then
                action = inner_call -- an error raised in a hook propagates
              else
                -- a finalizer's error does not propagate on 5.4 (it becomes a
                -- warning): on every runtime, record it instead
                action = function() recorded = mc.pack(pcall(inner_call)) end
              end
              return call_of(c, outer, outer_ids), action, function(fired, r)
                local problem
                if fired and mode == "hook" then
                  if r[1] or not busy(r[2]) then problem = "the outer call did not raise busy: " .. mc.show(r) end
                else
                  problem = right(outer, r, outer_ids)
                  if not problem and fired and (recorded[1] or not busy(recorded[2])) then
                    problem = "the inner call did not raise busy: " .. mc.show(recorded)
                  end
                end
                problem = problem or usable_problem(c)
                pcall(c.close, c)
                return problem
              end
            end)
            mc.report("busy " .. outer .. "/" .. inner .. " " .. mode, n, wrong)
          end
        end
      end
    ]==], merge(modes("busy get_message/get_message"), modes("busy get_message/get_messages"),
      modes("busy get_messages/get_message"), modes("busy get_messages/get_messages")))
  end)

  -- guards: close() from a hook during get_messages frees the multi handle and its transfers under the running batch (crash, endless loop, lost results)
  it("client:close() during client:get_messages: the batch returns every id's message, then the client is closed", function()
    run_midcall([==[
      for _, mode in ipairs(mc.MODES) do
        local n, wrong = mc.sweep(mode, GETS, 80, function()
          local c = ghl.new(opts())
          local ids = {}
          for i = 1, 6 do ids[i] = fresh("echo") end
          return function() local m, f = c:get_messages(ids, { concurrency = 2 }); return m, f end,
            function() c:close() end,
            function(fired, r)
              local problem
              if not r[1] then problem = "raised: " .. tostring(r[2])
              else problem = batch_problem(r[2], r[3], ids) end
              if not problem and fired then problem = closed_problem(c) end
              pcall(c.close, c)
              return problem
            end
        end)
        mc.report("close-batch " .. mode, n, wrong)
      end
    ]==], modes("close-batch"))
  end)

  describe("an error raised by a hook", function()
    -- Finalizer errors reach the allocating code on 5.1, 5.2, 5.3 and LuaJIT;
    -- 5.4 turns them into warnings, so there only the hook can raise.
    local with_finalizer = mc.finalizer_errors_propagate()
    local function expect(name, finalizer_must_fire, hook_must_fire)
      local out = { [name .. " hook"] = hook_must_fire ~= false }
      if with_finalizer then
        out[name .. " finalizer"] = finalizer_must_fire ~= false and _VERSION ~= "Lua 5.2" -- see modes()
      end
      return out
    end

    -- guards: an error raised while ghl decodes (by a finalizer an allocation ran, or a hook) is taken for a bad body and returned as kind "decode"
    it("propagates as that error, never as kind decode" .. (with_finalizer and "" or
      " (a hook only: this runtime does not propagate finalizer errors)"), function()
      local code = string.format("local WITH_FINALIZER = %s\n", tostring(with_finalizer)) .. [==[
        local modes = WITH_FINALIZER and { "hook", "finalizer" } or { "hook" }
        local function boom() error("boom from hook") end
        local function raised_boom(fired, r, right)
          if fired then
            if r[1] then return "returned " .. mc.show(r) end
            if not tostring(r[2]):find("boom from hook", 1, true) then return "raised " .. tostring(r[2]) end
            return nil
          end
          return right(r)
        end
        local BODY = '{"message":{"id":"dm1","type":2,"messageType":"TYPE_SMS","body":"x"},"traceId":"t"}'
        local cases = {
          { "ghl.get_message", ghl.get_message, function()
              local id = fresh("echo")
              return function() local m, e, i = ghl.get_message(id, opts()); return m, e, i end,
                function(r) if not (r[1] and is_echo(r[2], id)) then return "returned " .. mc.show(r) end end
            end },
          { "client:get_message", GET, function(c)
              local id = fresh("echo")
              return function() local m, e, i = c:get_message(id); return m, e, i end,
                function(r) if not (r[1] and is_echo(r[2], id)) then return "returned " .. mc.show(r) end end
            end },
          { "client:get_messages", GETS, function(c)
              local ids = { fresh("echo"), fresh("echo"), fresh("echo") }
              return function() local m, f = c:get_messages(ids, { concurrency = 2 }); return m, f end,
                function(r)
                  if not r[1] then return "raised: " .. tostring(r[2]) end
                  return batch_problem(r[2], r[3], ids)
                end
            end },
          { "ghl.decode_message", ghl.decode_message, function()
              return function() local m, e, i = ghl.decode_message(BODY); return m, e, i end,
                function(r) if not (r[1] and type(r[2]) == "table" and r[2].id == "dm1") then return "returned " .. mc.show(r) end end
            end },
        }
        for _, case in ipairs(cases) do
          for _, mode in ipairs(modes) do
            local n, wrong = mc.sweep(mode, case[2], 60, function()
              local c = ghl.new(opts())
              local call, right = case[3](c)
              return call, boom, function(fired, r)
                local problem = raised_boom(fired, r, right) or usable_problem(c)
                pcall(c.close, c)
                return problem
              end
            end)
            mc.report("boom " .. case[1] .. " " .. mode, n, wrong)
          end
        end
      ]==]
      run_midcall(code, merge(expect("boom ghl.get_message"), expect("boom client:get_message"),
        expect("boom client:get_messages"), -- ghl.decode_message calls no function a "c" hook could see
        expect("boom ghl.decode_message", false, false)))
    end)
  end)

  describe("SIGINT", function()
    local dir
    local proc

    before_each(function() dir = h.temp_dir("ghl-sigint") end)
    after_each(function()
      h.stop_process(proc)
      proc = nil
      h.remove_dir(dir)
    end)

    -- Starts the standalone interpreter on one fetch of id, waits until the
    -- server has the request (`after` more seconds: into the retry wait), sends
    -- SIGINT and returns the exit status and stderr.
    local function interrupt(id, extra, after)
      local code = [[
        local ghl = require("ghl")
        local msg, err, info = ghl.get_message(os.getenv("GHL_SPEC_ID"), {
          token = os.getenv("GHL_SPEC_TOKEN"), base_url = os.getenv("GHL_SPEC_URL"),
          retries = tonumber(os.getenv("GHL_SPEC_RETRIES")), max_retry_delay = 10,
        })
        print("returned", msg and msg.id, err, info and info.kind)
      ]]
      proc = h.spawn_lua(dir, "child", code, {
        GHL_SPEC_ID = id, GHL_SPEC_TOKEN = TOKEN, GHL_SPEC_URL = h.http_url,
        GHL_SPEC_RETRIES = tostring(extra.retries),
      })
      local arrived = h.wait_for(function() return #h.requests_for(id) >= 1 end, 20)
      assert.is_true(arrived, "the child's request never reached the server")
      if after then h.sleep(after) end
      assert.is_true(h.alive(proc.pid), "the child ended before the signal")
      os.execute("kill -INT " .. proc.pid)
      local rc = h.wait_for(function() return h.read_file(proc.rc_file) end, 30)
      assert.is_truthy(rc, "the child did not end within 30 s of SIGINT")
      return tonumber(rc), h.hide_token(h.read_file(proc.err) or ""), h.hide_token(h.read_file(proc.out) or "")
    end

    -- guards: the interpreter's SIGINT hook fires inside a protected call of ghl's, is caught there, and the program goes on (exit 0)
    it("while a fetch runs ends the standalone interpreter with 'interrupted!'", function()
      local id = h.fresh_id("slow_ok_3000")
      local rc, err, out = interrupt(id, { retries = 0 })
      assert.is_true(rc ~= 0, "exit status 0; stdout: " .. out .. " stderr: " .. err)
      assert.is_truthy(err:find("interrupted!", 1, true), "stderr: " .. err .. " stdout: " .. out)
      assert.equal(1, #h.requests_for(id))
    end)

    -- guards: SIGINT during a retry wait is lost the same way: the wait, the next attempt and the program all go on
    it("during a retry wait ends the standalone interpreter with 'interrupted!'", function()
      local id = h.fresh_id("flaky_429ra_3_1")
      local rc, err, out = interrupt(id, { retries = 1 }, 0.5)
      assert.is_true(rc ~= 0, "exit status 0; stdout: " .. out .. " stderr: " .. err)
      assert.is_truthy(err:find("interrupted!", 1, true), "stderr: " .. err .. " stdout: " .. out)
      assert.equal(429, h.requests_for(id)[1].status)
    end)
  end)
end)

---------------------------------------------------------------------------

describe("batch waits are bounded by max_retry_delay", function()
  -- Runs, in a child under the hang guard, a client with max_retry_delay 0.2
  -- that may first fetch `first` on its own, then get_messages(ids); returns
  -- the child's lines, one per id, plus the first fetch's.
  local function run_batch(ids, first, retries)
    local code = [==[
      local ghl = require("ghl")
      local c = ghl.new { token = os.getenv("GHL_SPEC_TOKEN"), base_url = os.getenv("GHL_SPEC_URL"),
                          max_retry_delay = 0.2, retries = tonumber(os.getenv("GHL_SPEC_RETRIES")) }
      local first = os.getenv("GHL_SPEC_FIRST")
      if first ~= "" then
        local m, e, i = c:get_message(first, { retries = 0 })
        print("first " .. (m and "message" or ("failure " .. tostring(i.status))))
      end
      local ids = {}
      for id in os.getenv("GHL_SPEC_IDS"):gmatch("[^,]+") do ids[#ids + 1] = id end
      local messages, failures = c:get_messages(ids, { concurrency = 2 })
      for _, id in ipairs(ids) do
        local m, f = messages[id], failures[id]
        if m then print(id .. " message " .. tostring(m.id))
        elseif f then print(id .. " failure " .. tostring(f.kind) .. " " .. tostring(f.status) .. " " .. tostring(f.attempts))
        else print(id .. " nothing") end
      end
      c:close()
      print("END")
    ]==]
    local ok, out, rc = h.run_lua(code, {
      GHL_SPEC_TOKEN = TOKEN, GHL_SPEC_URL = h.http_url, GHL_SPEC_FIRST = first or "",
      GHL_SPEC_IDS = table.concat(ids, ","), GHL_SPEC_RETRIES = tostring(retries or 0),
    }, GUARD)
    out = h.hide_token(out)
    assert.is_true(ok, "the child " .. ((rc == 124 or rc == 137) and "hung (killed by the hang guard)"
      or ("exited " .. tostring(rc))) .. ":\n" .. out)
    return out
  end

  local SMS_ID = "Xq1sMs0000aaaa000001"

  local function lines(first, ids, answer)
    local out = {}
    if first then out[1] = first end
    for _, id in ipairs(ids) do out[#out + 1] = id .. " " .. answer end
    out[#out + 1] = "END"
    return table.concat(out, "\n") .. "\n"
  end

  local function assert_requests(ids, n)
    for _, id in ipairs(ids) do assert.equal(n, #h.requests_for(id), id) end
  end

  -- guards: X-RateLimit-Max 0 makes the window hold nothing after the pause: the batch loops for ever
  it("answers X-RateLimit-Max: 0 with Remaining 0: every id gets its message", function()
    local ids = fresh_ids("rlmax0_300", 5)
    assert.equal(lines(nil, ids, "message " .. SMS_ID), run_batch(ids))
    assert_requests(ids, 1)
  end)

  -- guards: the batch pauses for the whole X-RateLimit-Interval-Milliseconds (an hour) after Remaining 0 on a 200
  it("answers a one-hour interval after Remaining 0 (200s): every id gets its message", function()
    local ids = fresh_ids("rlzero_ok_3600000", 5)
    assert.equal(lines(nil, ids, "message " .. SMS_ID), run_batch(ids))
    assert_requests(ids, 1)
  end)

  -- guards: the same hour-long pause after 429s with Remaining 0 (the retry waits are capped, the window's pause is not)
  it("answers a one-hour interval after Remaining 0 (429s, retries 1): every id gets its failure", function()
    local ids = fresh_ids("rl_zero_3600000", 4)
    assert.equal(lines(nil, ids, "failure http 429 2"), run_batch(ids, nil, 1))
    assert_requests(ids, 2)
  end)

  -- guards: figures from an earlier client:get_message (Max 0) stall the next batch for ever
  it("after a single fetch said Max 0, Remaining 0: the next batch gets every message", function()
    local first = h.fresh_id("rlmax0_300")
    local ids = fresh_ids("sms", 4)
    assert.equal(lines("first message", ids, "message " .. SMS_ID), run_batch(ids, first))
    assert_requests(ids, 1)
  end)

  -- guards: figures from an earlier client:get_message (Remaining 0, an hour) stall the next batch for an hour
  it("after a single fetch said Remaining 0 for an hour (200): the next batch gets every message", function()
    local first = h.fresh_id("rlzero_ok_3600000")
    local ids = fresh_ids("sms", 4)
    assert.equal(lines("first message", ids, "message " .. SMS_ID), run_batch(ids, first))
    assert_requests(ids, 1)
  end)

  -- guards: the same after a 429 single fetch
  it("after a single fetch got 429 with Remaining 0 for an hour: the next batch gets every message", function()
    local first = h.fresh_id("rl_zero_3600000")
    local ids = fresh_ids("sms", 4)
    assert.equal(lines("first failure 429", ids, "message " .. SMS_ID), run_batch(ids, first))
    assert_requests(ids, 1)
  end)
end)

---------------------------------------------------------------------------

describe("sockets", function()
  -- guards: per-call timeout / connect_timeout / retries are part of the cached client's key, so each value opens a connection of its own
  it("300 ghl.get_message calls differing only in timeout, connect_timeout and retries use at most 2 connections", function()
    local ids = fresh_ids("echo", 300)
    local right = 0
    for i, id in ipairs(ids) do
      local msg = ghl.get_message(id, h.opts {
        timeout = 5 + i / 1000, connect_timeout = 2 + (i % 7) / 10, retries = i % 3,
      })
      if type(msg) == "table" and msg.id == id then right = right + 1 end
    end
    assert.equal(300, right)
    local _, conns = distinct_conns(ids)
    assert.is_true(conns <= 2, conns .. " connections")
  end)

  -- guards: a client evicted from ghl.get_message's cache keeps its connection (and libcurl's descriptors) until the collector gets to it
  it("ghl.get_message with 40 tokens, then 40 user agents, in turn (collector stopped) keeps at most 16 clients' descriptors open", function()
    local code = [==[
      local ghl = require("ghl")
      local BASE, TOKEN, NONCE = os.getenv("GHL_SPEC_URL"), os.getenv("GHL_SPEC_TOKEN"), os.getenv("GHL_SPEC_NONCE")
      local pipe = io.popen("echo $PPID")
      local pid = pipe:read("*l")
      pipe:close()
      local function fds()
        local p = io.popen("ls /proc/" .. pid .. "/fd")
        local n = 0
        for _ in p:lines() do n = n + 1 end
        p:close()
        return n
      end
      local base = fds()
      -- what one cached client with its connection holds (a socket, and with
      -- this libcurl the wakeup pair of its multi handle): the most any of
      -- three fresh clients added, since one may find a descriptor already
      -- closed or not yet opened when it is counted
      local per, last = 0, base
      for w = 1, 3 do
        assert(ghl.get_message("echo--" .. NONCE .. "w" .. w, { token = TOKEN .. "-w" .. w, base_url = BASE, retries = 0 }))
        local n = fds()
        if n - last > per then per = n - last end
        last = n
      end
      collectgarbage("stop")
      local function loop(key)
        local max, right = 0, 0
        for i = 1, 40 do
          local id = "echo--" .. NONCE .. key .. i
          local o = { token = TOKEN, base_url = BASE, retries = 0 }
          if key == "t" then o.token = TOKEN .. "-t" .. i else o.user_agent = "ghl-spec/" .. i end
          local m = ghl.get_message(id, o)
          if type(m) == "table" and m.id == id then right = right + 1 end
          local n = fds()
          if n > max then max = n end
        end
        return max, right
      end
      local tmax, tright = loop("t")
      local umax, uright = loop("u")
      collectgarbage("restart")
      print(string.format("base=%d per=%d tokens_max=%d tokens_right=%d ua_max=%d ua_right=%d",
        base, per, tmax, tright, umax, uright))
    ]==]
    local ok, out, rc = h.run_lua(code, child_env(), GUARD)
    out = h.hide_token(out)
    assert.is_true(ok, "the child exited " .. tostring(rc) .. ":\n" .. out)
    local base, per, tmax, tright, umax, uright = out:match(
      "base=(%d+) per=(%d+) tokens_max=(%d+) tokens_right=(%d+) ua_max=(%d+) ua_right=(%d+)")
    assert.is_truthy(base, out)
    base, per = tonumber(base), tonumber(per)
    assert.equal(40, tonumber(tright))
    assert.equal(40, tonumber(uright))
    assert.is_true(per >= 1, "one cached client holds " .. per .. " descriptors")
    -- 16 cached clients, 2 for slack (the measuring pipe is open in both)
    local limit = base + 16 * per + 2
    assert.is_true(tonumber(tmax) <= limit, string.format("tokens: %s descriptors open, limit %d (base %d, %d per client)",
      tmax, limit, base, per))
    assert.is_true(tonumber(umax) <= limit, string.format("user agents: %s descriptors open, limit %d (base %d, %d per client)",
      umax, limit, base, per))
  end)

  -- guards: get_messages runs on a pool of its own handles, so a client's batch never reuses the connection its get_message opened
  it("client:get_message then client:get_messages({b}, {concurrency = 1}) share one connection", function()
    local c = ghl.new(h.opts { retries = 0 })
    local a, b = h.fresh_id("echo"), h.fresh_id("echo")
    local msg = c:get_message(a)
    assert.equal(a, msg.id)
    local messages, failures = c:get_messages({ b }, { concurrency = 1 })
    c:close()
    assert.equal(b, messages[b].id)
    assert.equal(0, count_keys(failures))
    assert.equal(1, #h.requests_for(a))
    assert.equal(1, #h.requests_for(b))
    assert.equal(h.requests_for(a)[1].conn, h.requests_for(b)[1].conn)
  end)
end)

---------------------------------------------------------------------------

describe("base_url", function()
  local BAD = {
    "http://", "http:///x", "https://", "http://host?x=1", "http://host#frag", "http://user:pw@host",
    "ftp://host", "http://host:notaport", "http://host:99999", "http:/host", "",
  }
  for _, bad in ipairs(BAD) do
    -- guards: base_url checked only for its http:// or https:// prefix, so user info, queries, fragments and bad ports reach libcurl
    it(string.format("%q raises an error naming 'base_url', and sends nothing", bad), function()
      local before = #h.requests()
      for _, f in ipairs {
        function() return ghl.get_message_request("abc", { token = TOKEN, base_url = bad }) end,
        function() return ghl.new { token = TOKEN, base_url = bad } end,
        function() return ghl.get_message("abc", { token = TOKEN, base_url = bad, retries = 0 }) end,
      } do
        local ok, err = pcall(f)
        assert.is_false(ok)
        h.assert_no_token(err)
        assert.is_truthy(tostring(err):find("'base_url'", 1, true), tostring(err))
      end
      assert.equal(before, #h.requests())
    end)
  end

  local GOOD = {
    { "http://127.0.0.1:8080", "http://127.0.0.1:8080/conversations/messages/" },
    { "http://127.0.0.1:8080/", "http://127.0.0.1:8080/conversations/messages/" },
    { "https://example.com/prefix/", "https://example.com/prefix/conversations/messages/" },
    { "http://[::1]:8080", "http://[::1]:8080/conversations/messages/" },
  }
  for _, case in ipairs(GOOD) do
    -- guards: a valid base_url refused by a stricter check, or its trailing slash kept
    it(string.format("%q is accepted and gives the URL %s<id>", case[1], case[2]), function()
      local req = ghl.get_message_request("abc_1-Z", { token = TOKEN, base_url = case[1] })
      assert.equal(case[2] .. "abc_1-Z", req.url)
      local c = ghl.new { token = TOKEN, base_url = case[1] }
      c:close()
    end)
  end
end)

---------------------------------------------------------------------------

describe("secrets", function()
  local PASSWORD = "s3cretPW"

  local function assert_no_secrets(what, ...)
    local n = select("#", ...)
    local values = { ... }
    for i = 1, n do
      h.assert_no_token(values[i], PASSWORD, what .. " #" .. i .. " (the proxy's password)")
      h.assert_no_token(values[i], TOKEN, what .. " #" .. i)
    end
  end

  describe("a proxy's password", function()
    local function proxies()
      local port = h.proxy_port
      return {
        { "refused", "http://user:" .. PASSWORD .. "@127.0.0.1:1" },
        { "unresolvable", "http://user:" .. PASSWORD .. "@no-such-host.invalid:3128" },
        { "answers 407, echoing the request and the credentials", "http://p407:" .. PASSWORD .. "@127.0.0.1:" .. port },
        { "resets the connection", "http://reset:" .. PASSWORD .. "@127.0.0.1:" .. port },
      }
    end

    for _, i in ipairs { 1, 2, 3, 4 } do
      for _, scheme in ipairs { "http", "https" } do
        -- guards: libcurl's error text or the proxy's own page (which quotes the credentials) handed back in errmsg / info
        it("is in nothing get_message returns when the proxy (" .. scheme .. " target) " .. ({
          "refuses", "is unresolvable", "answers 407, echoing the request and the credentials", "resets the connection" })[i],
          function()
          local name, proxy = proxies()[i][1], proxies()[i][2]
          local id = h.fresh_id("sms")
          local o = scheme == "http" and h.opts { proxy = proxy, retries = 0 } or h.tls_opts { proxy = proxy, retries = 0 }
          local before = #h.events()
          local msg, err, info = ghl.get_message(id, o)
          assert_no_secrets(name, msg, err, info)
          local c = ghl.new(o)
          local messages, failures = c:get_messages({ id })
          c:close()
          assert_no_secrets(name .. " (get_messages)", messages, failures)
          assert.is_nil(msg)
          assert.matches("^ghl: ", err)
          assert.is_table(failures[id])
          assert.matches("^ghl: ", failures[id].errmsg)
          if name:match("^answers 407") or name == "resets the connection" then
            -- the proxy did get the credentials, so their absence above means something
            local users = 0
            for idx, e in ipairs(h.events()) do
              if idx > before and e.event == "proxy" and e.user == proxy:match("//(%w+):") then users = users + 1 end
            end
            assert.equal(2, users)
          end
          if name:match("^answers 407") and scheme == "http" then
            assert.equal("http", info.kind)
            assert.equal(407, info.status)
            assert.is_string(info.body)
            assert.is_truthy(info.body:find("<h1>407 Proxy Authentication Required</h1>", 1, true))
          end
        end)
      end
    end
  end)

  describe("the token in an error response that echoes the request", function()
    -- What the server sends for id, with the token where it stood.
    local function body_400(token)
      return '{"statusCode":400,"message":"Invalid request headers: Authorization: Bearer ' .. token
        .. '; Version: 2021-04-15","error":"Bad Request","traceId":"echo-auth-400"}'
    end
    local function page_502(id, token)
      return "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<h1>502 Bad Gateway</h1>\r\n"
        .. "<pre>GET " .. h.message_path(id) .. " HTTP/1.1\r\nAuthorization: Bearer " .. token
        .. "\r\nVersion: 2021-04-15\r\n</pre>\r\n</body>\r\n</html>\r\n"
    end

    -- guards: the API's error text and the raw body returned as received, token included
    it("is cut out of errmsg, info.message and info.body of a 400 JSON, leaving '<redacted>'", function()
      local id = h.fresh_id("echo_auth_400")
      local msg, err, info = ghl.get_message(id, h.opts { retries = 0 })
      assert_no_secrets("400", msg, err, info)
      local message = "Invalid request headers: Authorization: Bearer <redacted>; Version: 2021-04-15"
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 400 Bad Request: " .. message .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(400, info.status)
      assert.equal(message, info.message)
      assert.equal(body_400("<redacted>"), info.body)
      assert.equal("echo-auth-400", info.trace_id)
      -- the server did get and echo the token
      assert.equal("Bearer " .. TOKEN, h.requests_for(id)[1].headers.authorization)
    end)

    -- guards: the raw body of an HTML error page returned as received, token included
    it("is cut out of info.body of an HTML 502 page, leaving '<redacted>'", function()
      local id = h.fresh_id("echo_auth_502_html")
      local msg, err, info = ghl.get_message(id, h.opts { retries = 0 })
      assert_no_secrets("502", msg, err, info)
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 502 Bad Gateway" .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(502, info.status)
      assert.is_nil(info.message)
      assert.equal(page_502(id, "<redacted>"), info.body)
      assert.is_truthy(info.body:find("Bearer <redacted>", 1, true))
    end)

    -- guards: the same leak through get_messages' failures
    it("is cut out of get_messages' failures for both", function()
      local c = ghl.new(h.opts { retries = 0 })
      local a, b = h.fresh_id("echo_auth_400"), h.fresh_id("echo_auth_502_html")
      local messages, failures = c:get_messages({ a, b }, { concurrency = 2 })
      c:close()
      assert_no_secrets("get_messages", messages, failures)
      assert.equal(0, count_keys(messages))
      assert.equal(body_400("<redacted>"), failures[a].body)
      assert.equal("ghl: HTTP 400 Bad Request: Invalid request headers: Authorization: Bearer <redacted>; "
        .. "Version: 2021-04-15" .. suffix(a), failures[a].errmsg)
      assert.equal(page_502(b, "<redacted>"), failures[b].body)
      assert.equal("ghl: HTTP 502 Bad Gateway" .. suffix(b), failures[b].errmsg)
    end)
  end)

  -- guards: option names compared with strcmp, so "token\0x" is taken for "token"
  it("an option key holding a NUL byte raises 'unknown option'", function()
    local before = #h.requests()
    for _, f in ipairs {
      function() return ghl.new { token = TOKEN, base_url = h.http_url, ["token\0x"] = "abc" } end,
      function() return ghl.get_message_request("abc", { token = TOKEN, ["token\0x"] = "abc" }) end,
      function() return ghl.get_message(h.fresh_id("sms"), { base_url = h.http_url, ["token\0x"] = TOKEN }) end,
      function() return ghl.new { ["base_url\0"] = h.http_url, token = TOKEN } end,
      function()
        local c = ghl.new(h.opts { retries = 0 })
        local ok, err = pcall(c.get_message, c, h.fresh_id("sms"), { ["timeout\0x"] = 1 })
        c:close()
        if not ok then error(err, 0) end
      end,
    } do
      local ok, err = pcall(f)
      assert.is_false(ok)
      h.assert_no_token(err)
      assert.is_truthy(tostring(err):find("unknown option", 1, true), tostring(err))
    end
    assert.equal(before, #h.requests())
  end)
end)

---------------------------------------------------------------------------

describe("bodies that are not messages", function()
  local sms = h.fixture("sms.json")
  local CASES = {
    { "body_msg_array", '{"message":[1,2,3]}' },
    { "body_array_of_msg", '[{"id":"x"}]' },
    { "body_empty_array", "[]" },
    { "body_null_id", '{"id":null,"body":"x"}' },
    { "body_msg_null_id", '{"message":{"id":null}}' },
    { "body_nul_garbage", sms .. "\0garbage" },
  }
  local PREFIX = "ghl: cannot decode the response: "
  for _, case in ipairs(CASES) do
    local shown = case[2]:sub(1, 24):gsub("%c", function(c) return string.format("\\%d", c:byte()) end)
      .. (#case[2] > 24 and "... \\0garbage" or "")
    -- guards: a body is taken for a message although it holds none (an array, a null id, text after a NUL byte)
    it(string.format("%s (%s) is kind decode from ghl.decode_message", case[1], shown), function()
      local msg, err, info = ghl.decode_message(case[2])
      assert.is_nil(msg)
      assert.is_string(err)
      assert.equal(PREFIX, err:sub(1, #PREFIX))
      assert.equal("decode", info.kind)
      assert.equal(200, info.status)
      assert.equal(case[2], info.body)
    end)

    -- guards: the same from the server
    it(string.format("%s (%s) is kind decode from ghl.get_message", case[1], shown), function()
      local id = h.fresh_id(case[1])
      local msg, err, info = ghl.get_message(id, h.opts { retries = 2, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.is_string(err)
      assert.equal(PREFIX, err:sub(1, #PREFIX))
      assert.equal(suffix(id), err:sub(-#suffix(id)))
      assert.equal("decode", info.kind)
      assert.equal(200, info.status)
      assert.equal(1, info.attempts)
      assert.equal(case[2], info.body)
      assert.equal(1, #h.requests_for(id))
    end)
  end
end)
