-- Misuse raises: bad ids, bad tokens, options of the wrong type or range,
-- unknown keys; for every entry point, and before anything is sent.

local h = require("helpers")
local ghl = require("ghl")

local TOKEN = h.TOKEN

-- Calls fn(...) and returns the error message it raised (fails if it did not raise).
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error to be raised")
  assert.is_string(err, "the error is a string")
  return err
end

-- The error names `name` as the module quotes it: 'name'. (Raised errors carry
-- the caller's position first, as luaL_error gives it.)
local function assert_names(name, err)
  assert.is_truthy(err:find("'" .. name .. "'", 1, true), "error should name '" .. name .. "': " .. err)
  assert.matches("ghl: ", err)
  h.assert_no_token(err, nil, "the error")
end

-- Runs fn and checks that the server saw nothing meanwhile.
local function assert_nothing_sent(fn)
  local before = #h.requests()
  fn()
  assert.equal(before, #h.requests(), "a request reached the server")
end

local BAD_IDS = {
  "..", "a/b", "/", "a%2Fb", "%2F", "a?b", "a#b", "a b", " ", "a\nb", "a\0b", "\0",
  "a\rb", "a.b", "é", string.rep("a", 129), "",
  42, true, false, {}, function() end,
}

-- Each entry point, called with an id (or a list of ids) and its opts.
local function new_client()
  return ghl.new(h.opts { retries = 0, max_retry_delay = 0 })
end

local ID_CALLS = {
  ["ghl.get_message"] = function(id) return ghl.get_message(id, h.opts { retries = 0 }) end,
  ["ghl.get_message_request"] = function(id) return ghl.get_message_request(id, h.opts()) end,
  ["client:get_message"] = function(id)
    local c = new_client()
    local ok, err = pcall(c.get_message, c, id)
    c:close()
    if not ok then error(err, 0) end
  end,
  ["client:get_messages"] = function(id)
    local c = new_client()
    -- the bad id sits between good ones: none of them may be sent
    local ok, err = pcall(c.get_messages, c, { h.fresh_id("sms"), id, h.fresh_id("sms") })
    c:close()
    if not ok then error(err, 0) end
  end,
}

describe("misuse", function()
  describe("a bad id", function()
    for name, call in pairs(ID_CALLS) do
      it("raises naming 'id' in " .. name .. ", sending nothing", function()
        for _, id in ipairs(BAD_IDS) do
          assert_nothing_sent(function()
            local err = raised(call, id)
            assert_names("id", err)
          end)
        end
        -- nil, the missing id
        assert_nothing_sent(function()
          assert_names("id", raised(call, nil))
        end)
      end)
    end

    it("of 128 bytes from the allowed set is accepted", function()
      local id = string.rep("a", 64) .. string.rep("Z", 32) .. string.rep("0", 30) .. "_-"
      assert.equal(128, #id)
      local req = ghl.get_message_request(id, h.opts())
      assert.equal(h.http_url .. "/conversations/messages/" .. id, req.url)
    end)

    it("in get_messages: a non-table list raises", function()
      local c = new_client()
      assert_nothing_sent(function()
        for _, v in ipairs { "sms", 42, true } do
          raised(c.get_messages, c, v)
        end
        raised(c.get_messages, c, nil)
      end)
      c:close()
    end)
  end)

  describe("a bad token", function()
    local SECRET = "pit-misuse-secret-0c9d8e"
    local BAD_TOKENS = {
      SECRET .. "\r", SECRET .. "\n", "\r\n" .. SECRET, SECRET .. "\r\nX-Evil: 1", SECRET .. " tail",
      "Bearer " .. SECRET, SECRET .. "\ttab", SECRET .. "\0nul", SECRET .. "\127", "",
    }
    local TOKEN_CALLS = {
      ["ghl.get_message"] = function(o) return ghl.get_message("abc", o) end,
      ["ghl.new"] = function(o) return ghl.new(o) end,
      ["ghl.get_message_request"] = function(o) return ghl.get_message_request("abc", o) end,
    }
    for name, call in pairs(TOKEN_CALLS) do
      it("raises naming 'token' in " .. name .. ", without the token's text", function()
        for i, tok in ipairs(BAD_TOKENS) do
          assert_nothing_sent(function()
            local err = raised(call, { token = tok, base_url = h.http_url, retries = 0 })
            assert_names("token", err)
            h.assert_no_token(err, SECRET, "the error for bad token " .. i)
            assert.is_nil(err:find("misuse-secret", 1, true))
          end)
        end
      end)
    end

    -- an empty token counts as missing, so GHL_TOKEN fills it in
    it("reads GHL_TOKEN for an empty token", function()
      local ok, out = h.run_lua([[
        local ghl = require("ghl")
        local ok, err = pcall(ghl.get_message_request, "abc", { token = "" })
        io.write(ok and err.headers.Authorization == "Bearer " .. os.getenv("GHL_TOKEN")
          and "env token" or tostring(err))
      ]], { GHL_TOKEN = SECRET })
      assert.is_true(ok, out)
      assert.equal("env token", out)
    end)

    it("raises for a bad GHL_TOKEN, without its text", function()
      local ok, out = h.run_lua([[
        local ghl = require("ghl")
        local ok, err = pcall(ghl.new, {})
        io.write(ok and "no error" or err)
      ]], { GHL_TOKEN = SECRET .. " x" })
      assert.is_true(ok, out)
      assert.is_truthy(out:find("'token'", 1, true), out)
      assert.is_nil(out:find("misuse-secret", 1, true))
    end)

    it("a token per call on a client raises naming it", function()
      local c = new_client()
      assert_nothing_sent(function()
        assert_names("token", raised(c.get_message, c, h.fresh_id("sms"), { token = TOKEN }))
        assert_names("token", raised(c.get_message, c, h.fresh_id("sms"), { token = SECRET .. "\n" }))
      end)
      c:close()
    end)
  end)

  describe("options", function()
    local function f() end
    local WRONG = {
      string = "x", number = 1, boolean = true, table = {}, ["function"] = f,
    }
    -- key -> the type it takes (or a list of them), and values of that type out of range
    local OPTIONS = {
      token = { { "string", "function" } }, -- a function is a token provider (section 3)
      base_url = { "string", { "ftp://example.invalid", "example.invalid", "", "http:/x", "http\n://x" } },
      version = { "string", { "2021-04-15\r\nX-Evil: 1", "v\0" } },
      timeout = { "number", { 0, -1, 0 / 0 } },
      connect_timeout = { "number", { 0, -0.5, 0 / 0 } },
      retries = { "number", { -1, 11, 1.5, 0 / 0, math.huge } },
      max_retry_delay = { "number", { -0.001, -math.huge, 0 / 0 } },
      ssl_verify = { "boolean" },
      cainfo = { "string", { "ca\nfile" } },
      proxy = { "string", { "http://proxy\r\n" } },
      user_agent = { "string", { "ua\r\nX-Evil: 1", "ua\tx" } },
      max_body_size = { "number", { 0, -1, 1.5, 0 / 0, math.huge } },
      convert_enums = { "boolean" },
    }
    local PER_CALL = { timeout = true, connect_timeout = true, retries = true }

    -- opts -> raises or returns; each entry point with a good token and a reachable server
    local OPTS_CALLS = {
      ["ghl.get_message"] = function(o) return ghl.get_message(h.fresh_id("sms"), o) end,
      ["ghl.new"] = function(o)
        local c = ghl.new(o)
        c:close()
      end,
      ["ghl.get_message_request"] = function(o) return ghl.get_message_request("abc", o) end,
    }

    local function base(key, value)
      local o = { token = TOKEN, base_url = h.http_url, retries = 0 }
      o[key] = value
      return o
    end

    local function copy(t)
      local out = {}
      for k, v in pairs(t) do out[k] = v end
      return out
    end

    for name, call in pairs(OPTS_CALLS) do
      describe("in " .. name, function()
        for key, spec in pairs(OPTIONS) do
          it("a wrong type or range for " .. key .. " raises naming it", function()
            local takes = type(spec[1]) == "table" and spec[1] or { spec[1] }
            local function accepted(tname)
              for _, t in ipairs(takes) do if t == tname then return true end end
              return false
            end
            for tname, v in pairs(WRONG) do
              if not accepted(tname) then
                assert_nothing_sent(function()
                  local o = base(key, v)
                  local before = copy(o)
                  assert_names(key, raised(call, o))
                  assert.same(before, o, "the options table was changed")
                end)
              end
            end
            for _, v in ipairs(spec[2] or {}) do
              assert_nothing_sent(function()
                assert_names(key, raised(call, base(key, v)))
              end)
            end
          end)
        end

        it("an unknown key raises naming it", function()
          for _, key in ipairs { "tokne", "timout", "retry", "concurrency", "TOKEN", "Timeout", "x" } do
            assert_nothing_sent(function()
              assert_names(key, raised(call, base(key, 1)))
            end)
          end
        end)

        it("a non-string key raises", function()
          assert_nothing_sent(function()
            local o = base("retries", 0)
            o[1] = "x"
            assert.matches("ghl: ", raised(call, o))
          end)
        end)

        it("opts that is not a table raises", function()
          for _, v in ipairs { "token", 42, true, f } do
            assert.matches("ghl: ", raised(call, v))
          end
        end)
      end)
    end

    describe("in client:get_message", function()
      it("a wrong type or range for a per-call key raises naming it", function()
        local c = new_client()
        for key in pairs(PER_CALL) do
          local spec = OPTIONS[key]
          for tname, v in pairs(WRONG) do
            if tname ~= spec[1] then
              assert_nothing_sent(function()
                assert_names(key, raised(c.get_message, c, h.fresh_id("sms"), { [key] = v }))
              end)
            end
          end
          for _, v in ipairs(spec[2]) do
            assert_nothing_sent(function()
              assert_names(key, raised(c.get_message, c, h.fresh_id("sms"), { [key] = v }))
            end)
          end
        end
        c:close()
      end)

      it("every other option raises naming it, whatever its value", function()
        local c = new_client()
        for key in pairs(OPTIONS) do
          if not PER_CALL[key] then
            for _, v in pairs(WRONG) do
              assert_nothing_sent(function()
                assert_names(key, raised(c.get_message, c, h.fresh_id("sms"), { [key] = v }))
              end)
            end
          end
        end
        for _, key in ipairs { "concurrency", "timout", "x" } do
          assert_names(key, raised(c.get_message, c, h.fresh_id("sms"), { [key] = 1 }))
        end
        c:close()
      end)
    end)

    describe("in client:get_messages", function()
      it("a wrong type or range for a per-call key or concurrency raises naming it", function()
        local c = new_client()
        local keys = { timeout = OPTIONS.timeout, connect_timeout = OPTIONS.connect_timeout,
                       retries = OPTIONS.retries,
                       concurrency = { "number", { 0, 65, -1, 1.5, 0 / 0 } } }
        for key, spec in pairs(keys) do
          for tname, v in pairs(WRONG) do
            if tname ~= spec[1] then
              assert_nothing_sent(function()
                assert_names(key, raised(c.get_messages, c, { h.fresh_id("sms") }, { [key] = v }))
              end)
            end
          end
          for _, v in ipairs(spec[2]) do
            assert_nothing_sent(function()
              assert_names(key, raised(c.get_messages, c, { h.fresh_id("sms") }, { [key] = v }))
            end)
          end
        end
        c:close()
      end)

      it("every client-wide option and an unknown key raise naming them", function()
        local c = new_client()
        for key in pairs(OPTIONS) do
          if not PER_CALL[key] then
            assert_nothing_sent(function()
              assert_names(key, raised(c.get_messages, c, { h.fresh_id("sms") }, { [key] = "x" }))
            end)
          end
        end
        assert_names("timout", raised(c.get_messages, c, { h.fresh_id("sms") }, { timout = 1 }))
        c:close()
      end)
    end)

    it("good values at the edges of the ranges are accepted", function()
      for _, o in ipairs {
        { retries = 0 }, { retries = 10 }, { max_retry_delay = 0 }, { max_body_size = 1 },
        { timeout = 0.001 }, { connect_timeout = 1e9 }, { ssl_verify = false },
      } do
        o.token = TOKEN
        assert.is_table(ghl.get_message_request("abc", o))
      end
    end)
  end)

  describe("a closed client", function()
    it("raises on every call and sends nothing", function()
      local c = new_client()
      c:close()
      assert_nothing_sent(function()
        assert.matches("ghl: ", raised(c.get_message, c, h.fresh_id("sms")))
        assert.matches("ghl: ", raised(c.get_messages, c, { h.fresh_id("sms") }))
        assert.matches("ghl: ", raised(c.rate_limit, c))
      end)
    end)
  end)
end)
