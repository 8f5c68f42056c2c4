-- Lifetime paths: clients dropped without close, errors raised mid-call,
-- coroutines that die holding a client, double close, <close> on Lua 5.4.
-- The assertions here are about behaviour and the Lua heap; leaks of C memory
-- (libcurl handles, buffers, header lists) are what `make check-memory` finds
-- when it runs this file under valgrind and AddressSanitizer.

local h = require("helpers")
local ghl = require("ghl")

-- Rounds are small so that the file stays quick under valgrind.
local ROUNDS = 8

local function lua_kib()
  collectgarbage("collect")
  collectgarbage("collect") -- a second cycle for what the first one's finalizers released
  return collectgarbage("count")
end

-- Runs round() once to warm caches, then `rounds` times, and fails if the
-- Lua heap grew by more than slack_kib.
local function assert_bounded(round, rounds, slack_kib, what)
  round()
  local before = lua_kib()
  for i = 1, rounds do round(i) end
  local after = lua_kib()
  assert(after - before < slack_kib,
    string.format("%s: the Lua heap grew by %.1f KiB over %d rounds (limit %d KiB)",
                  what, after - before, rounds, slack_kib))
end

local function is_closed(c)
  return tostring(c):find("(closed)", 1, true) ~= nil
end

local function closed_port_url()
  return "http://127.0.0.1:1"
end

describe("lifetimes", function()
  describe("clients dropped without close", function()
    it("are collected, many at a time, without growing the heap", function()
      assert_bounded(function()
        for _ = 1, 40 do
          local c = ghl.new(h.opts())
          assert.is_not_nil(c)
        end
      end, ROUNDS, 48, "new clients")
    end)

    it("are collected after a request left a connection open", function()
      assert_bounded(function()
        for _ = 1, 3 do
          local c = ghl.new(h.opts())
          local msg, err = c:get_message(h.fresh_id("sms"))
          assert.is_nil(err)
          assert.is_table(msg)
          -- no close: __gc frees the handle and its kept-alive connection
        end
      end, ROUNDS, 48, "clients with a connection")
    end)

    it("are collected after a TLS request", function()
      for _ = 1, 3 do
        local c = ghl.new(h.tls_opts())
        local msg, err = c:get_message(h.fresh_id("sms"))
        assert.is_nil(err)
        assert.is_table(msg)
      end
      lua_kib()
    end)

    it("are collected after every kind of failure", function()
      local cases = {
        { h.opts({ base_url = closed_port_url(), retries = 0 }), "sms", "network" },
        { h.opts({ retries = 0, timeout = 0.3 }), "never_answer", "timeout" },
        { h.opts({ retries = 0 }), "reset_mid_body", nil },
        { h.opts({ retries = 0, max_body_size = 1024 }), "huge_9mib", "too_large" },
        { h.opts({ retries = 0, max_body_size = 64 }), "slow_drip", "too_large" },
        { h.opts({ retries = 0 }), "err_401_jwt", "http" },
        { h.opts({ retries = 0 }), "err_502_html", "http" },
        { h.opts({ retries = 0 }), "not_json", "decode" },
        { h.opts({ retries = 0 }), "invalid_utf8", "decode" },
        { h.opts({ retries = 0 }), "gzip_corrupt", "decode" },
        { h.opts({ retries = 1, max_retry_delay = 0 }), "flaky_503_1", nil },
      }
      assert_bounded(function()
        for _, case in ipairs(cases) do
          local c = ghl.new(case[1])
          local msg, err, info = c:get_message(h.fresh_id(case[2]))
          assert.is_table(info)
          if case[3] ~= nil then
            assert.is_nil(msg)
            assert.is_string(err)
            assert.equal(case[3], info.kind, case[2])
          end
        end
      end, 2, 64, "failed requests")
    end)

  end)

  describe("close", function()
    it("is idempotent, and __gc after close does nothing more", function()
      local c = ghl.new(h.opts())
      local msg, err = c:get_message(h.fresh_id("sms"))
      assert.is_nil(err)
      assert.is_table(msg)
      c:close()
      c:close()
      assert.is_true(is_closed(c))
      c = nil -- luacheck: ignore 311
      lua_kib()
    end)

    it("makes every later call raise, and the client can still be printed", function()
      local c = ghl.new(h.opts())
      c:close()
      assert.has_error(function() c:get_message("abc") end)
      assert.has_error(function() c:rate_limit() end)
      if c.get_messages then
        assert.has_error(function() c:get_messages({ "abc" }) end)
      end
      assert.is_string(tostring(c))
      c:close()
    end)

    it("works from the metatable's __gc called by hand, then from close", function()
      local c = ghl.new(h.opts())
      local mt = getmetatable(c)
      if type(mt) ~= "table" or type(mt.__gc) ~= "function" then
        pending("the client's metatable is protected")
        return
      end
      mt.__gc(c)
      assert.is_true(is_closed(c))
      c:close()
    end)
  end)

  describe("errors raised mid-call", function()
    it("leave the client usable: bad per-call options, bad ids", function()
      local c = ghl.new(h.opts())
      local bad_calls = {
        function() c:get_message(h.fresh_id("sms"), { bogus = 1 }) end,
        function() c:get_message(h.fresh_id("sms"), { timeout = -1 }) end,
        function() c:get_message(h.fresh_id("sms"), { retries = 11 }) end,
        function() c:get_message(h.fresh_id("sms"), { token = "other" }) end,
        function() c:get_message(h.fresh_id("sms"), "not a table") end,
        function() c:get_message("bad id!") end,
        function() c:get_message(("x"):rep(129)) end,
        function() c:get_message(42) end,
        function() c.get_message(nil, "abc") end,
        function() c.get_message({}, "abc") end,
      }
      assert_bounded(function()
        for _, call in ipairs(bad_calls) do
          assert.has_error(call)
        end
      end, ROUNDS, 32, "raising calls")
      local msg, err = c:get_message(h.fresh_id("sms"))
      assert.is_nil(err)
      assert.is_table(msg)
      c:close()
    end)

    it("free what was made: bad options to ghl.new and ghl.get_message", function()
      local bad = {
        { token = "" },
        { token = "has space" },
        { token = "t", bogus = true },
        { token = "t", base_url = "ftp://example.com" },
        { token = "t", timeout = 0 },
        { token = "t", retries = 1.5 },
        { token = "t", max_body_size = 0 },
        { token = "t", user_agent = "a\nb" },
        { token = "t", ssl_verify = "yes" },
        { token = "t", [1] = "positional" },
      }
      assert_bounded(function()
        for _, opts in ipairs(bad) do
          assert.has_error(function() ghl.new(opts) end)
          assert.has_error(function() ghl.get_message("abc", opts) end)
          assert.has_error(function() ghl.get_message_request("abc", opts) end)
        end
      end, ROUNDS, 32, "bad options")
    end)

    it("in a coroutine that dies holding a client", function()
      assert_bounded(function()
        for _ = 1, 3 do
          local co = coroutine.create(function()
            local c = ghl.new(h.opts())
            local msg = c:get_message(h.fresh_id("sms"))
            coroutine.yield(msg)
            c:get_message(h.fresh_id("sms"), { bogus = true }) -- raises here
          end)
          local ok, msg = coroutine.resume(co)
          assert.is_true(ok)
          assert.is_table(msg)
          local ok2, err = coroutine.resume(co)
          assert.is_false(ok2)
          assert.matches("bogus", tostring(err))
          assert.equal("dead", coroutine.status(co))
        end
      end, 4, 64, "dead coroutines")
    end)

    it("in a coroutine suspended forever holding a client", function()
      assert_bounded(function()
        for _ = 1, 5 do
          local co = coroutine.wrap(function()
            local c = ghl.new(h.opts())
            coroutine.yield(c:get_message(h.fresh_id("sms")))
            c:close()
          end)
          assert.is_table(co())
          -- never resumed again: the coroutine and its client are garbage
        end
      end, 3, 64, "abandoned coroutines")
    end)

    it("with pcall around misuse inside a loop of requests", function()
      local c = ghl.new(h.opts())
      assert_bounded(function()
        local ok = pcall(c.get_message, c, "")
        assert.is_false(ok)
        local msg, err = c:get_message(h.fresh_id("call"))
        assert.is_nil(err)
        assert.is_table(msg)
        ok = pcall(c.get_message, c, h.fresh_id("sms"), { concurrency = 4 })
        assert.is_false(ok)
        local _, err2, info = c:get_message(h.fresh_id("err_404"))
        assert.is_string(err2)
        assert.equal("http", info.kind)
      end, ROUNDS, 48, "pcall misuse")
      c:close()
    end)

    it("from get_messages with an invalid id", function()
      local c = ghl.new(h.opts())
      assert_bounded(function()
        assert.has_error(function() c:get_messages({ h.fresh_id("sms"), "bad id!" }) end)
        assert.has_error(function() c:get_messages({ h.fresh_id("sms") }, { concurrency = 0 }) end)
        local got, failures = c:get_messages({ h.fresh_id("sms"), h.fresh_id("err_404") },
                                             { concurrency = 2 })
        assert.is_table(got)
        assert.is_table(failures)
      end, 3, 64, "get_messages")
      c:close()
      -- and dropped with no close after a batch
      local d = ghl.new(h.opts())
      d:get_messages({ h.fresh_id("sms"), h.fresh_id("call") }, { concurrency = 2 })
      d = nil -- luacheck: ignore 311
      lua_kib()
    end)

    it("from get_messages called without options", function()
      local c = ghl.new(h.opts())
      local got, failures = c:get_messages({ h.fresh_id("sms") })
      assert.is_table(got)
      assert.is_table(failures)
      c = nil -- luacheck: ignore 311
      lua_kib()
    end)
  end)

  describe("client:get_messages", function()
    local function ids(n, scenario)
      local out = {}
      for i = 1, n do out[i] = h.fresh_id(scenario or "sms") end
      return out
    end

    local count = h.count_keys

    it("keeps its transfers valid when a later batch needs more of them", function()
      local c = ghl.new(h.opts())
      -- each call may grow the client's pool of transfers; the ones made
      -- before must still work (libcurl holds pointers into them)
      for _, concurrency in ipairs({ 1, 2, 5, 3, 16, 64 }) do
        local got, failures = c:get_messages(ids(concurrency), { concurrency = concurrency })
        assert.equal(0, count(failures), "concurrency " .. concurrency)
        assert.equal(concurrency, count(got), "concurrency " .. concurrency)
      end
      -- and a client with a grown pool, dropped without close
      c = nil -- luacheck: ignore 311
      lua_kib()
    end)

    it("keeps the client usable after a batch with retries and failures", function()
      local c = ghl.new(h.opts({ max_retry_delay = 0 }))
      assert_bounded(function()
        local list = ids(3)
        list[#list + 1] = h.fresh_id("flaky_503_1")
        list[#list + 1] = h.fresh_id("err_404")
        list[#list + 1] = h.fresh_id("reset_mid_body")
        local got, failures = c:get_messages(list, { concurrency = 4, retries = 1 })
        assert.equal(4, count(got))
        assert.equal(2, count(failures))
        local msg, err = c:get_message(h.fresh_id("sms"))
        assert.is_nil(err)
        assert.is_table(msg)
      end, 3, 64, "batches")
      c:close()
    end)
  end)

  describe("the per-state clients behind ghl.get_message", function()
    it("are replaced and collected when many option sets are used", function()
      assert_bounded(function(round)
        for i = 1, 20 do
          local opts = h.opts({ user_agent = "gc-stress/" .. tostring(round or 0) .. "." .. i })
          local msg, err = ghl.get_message(h.fresh_id("sms"), opts)
          assert.is_nil(err)
          assert.is_table(msg)
        end
      end, 3, 96, "default clients")
    end)
  end)

  describe("ghl.decode_message", function()
    it("does not grow the heap over many bodies", function()
      local bodies = {}
      for _, name in ipairs({ "sms.json", "call.json", "email.json", "nulls.json", "numbers.json",
                              "unicode.json", "err_422.json", "err_403.html", "json_array.json" }) do
        bodies[#bodies + 1] = h.fixture(name)
      end
      bodies[#bodies + 1] = ""
      bodies[#bodies + 1] = "{\"message\":"
      bodies[#bodies + 1] = "\255\254"
      bodies[#bodies + 1] = ("["):rep(2000) .. ("]"):rep(2000)
      assert_bounded(function()
        for _, body in ipairs(bodies) do
          for _, status in ipairs({ 200, 401, 422, 500 }) do
            local msg, err, info = ghl.decode_message(body, status)
            assert.is_table(info)
            assert.is_true(msg ~= nil or type(err) == "string")
          end
        end
      end, ROUNDS * 4, 32, "decode_message")
    end)
  end)

  describe("<close> on Lua 5.4", function()
    local function chunk(src)
      local f = assert(load(src, "=close", "t"))
      return f
    end

    it("closes at the end of the block", function()
      if not h.IS_54 then
        pending("to-be-closed variables need Lua 5.4")
        return
      end
      local f = chunk([[
        local ghl, opts, id = ...
        local seen
        do
          local c <close> = ghl.new(opts)
          seen = c
          assert(c:get_message(id))
        end
        return seen
      ]])
      local c = f(ghl, h.opts(), h.fresh_id("sms"))
      assert.is_true(is_closed(c))
      assert.has_error(function() c:get_message("abc") end)
    end)

    it("closes when an error leaves the block", function()
      if not h.IS_54 then
        pending("to-be-closed variables need Lua 5.4")
        return
      end
      local f = chunk([[
        local ghl, opts, id, out = ...
        local c <close> = ghl.new(opts)
        out.client = c
        assert(c:get_message(id))
        c:get_message(id, { bogus = 1 })
      ]])
      local out = {}
      local ok, err = pcall(f, ghl, h.opts(), h.fresh_id("sms"), out)
      assert.is_false(ok)
      assert.matches("bogus", tostring(err))
      assert.is_true(is_closed(out.client))
    end)

    it("closes a client already closed by hand, and in a coroutine that errors", function()
      if not h.IS_54 then
        pending("to-be-closed variables need Lua 5.4")
        return
      end
      local f = chunk([[
        local ghl, opts, out = ...
        local c <close> = ghl.new(opts)
        out.client = c
        c:close()
        coroutine.yield()
        error("boom")
      ]])
      assert_bounded(function()
        local out = {}
        local co = coroutine.create(f)
        assert.is_true((coroutine.resume(co, ghl, h.opts(), out)))
        local ok, err = coroutine.resume(co)
        assert.is_false(ok)
        assert.matches("boom", tostring(err))
        assert.is_true(is_closed(out.client))
      end, ROUNDS, 32, "<close> in coroutines")
    end)

    it("runs __close on coroutine.close of a suspended coroutine", function()
      if not h.IS_54 then
        pending("to-be-closed variables need Lua 5.4")
        return
      end
      local f = chunk([[
        local ghl, opts, out = ...
        local c <close> = ghl.new(opts)
        out.client = c
        coroutine.yield()
      ]])
      local out = {}
      local co = coroutine.create(f)
      assert.is_true((coroutine.resume(co, ghl, h.opts(), out)))
      assert.is_false(is_closed(out.client))
      assert.is_true((coroutine.close(co)))
      assert.is_true(is_closed(out.client))
    end)
  end)
end)
