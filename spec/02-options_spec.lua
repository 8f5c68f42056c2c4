-- Options and misuse: what get_message_request returns, what raises.

local h = require("helpers")
local ghl = require("ghl")

local TOKEN = h.TOKEN

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[deep_copy(k)] = deep_copy(x) end
  return out
end

-- Calls fn(...) and returns the error message it raised (fails if it did not raise).
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error to be raised")
  return tostring(err)
end

local function assert_raises_naming(key, fn, ...)
  local err = raised(fn, ...)
  assert.is_truthy(err:find(key, 1, true), "error should name '" .. key .. "': " .. err)
  h.assert_no_token(err)
  return err
end

local function with(extra)
  local o = { token = TOKEN }
  for k, v in pairs(extra) do o[k] = v end
  return o
end

-- get_message sends Accept-Encoding (compressed bodies are accepted), so the
-- request that describes it carries the header too.
local function expected_request(url, extra_headers)
  local headers = {
    Authorization = "Bearer " .. TOKEN,
    Version = "2021-04-15",
    Accept = "application/json",
    ["User-Agent"] = "lua-ghl/" .. ghl.VERSION,
    ["Accept-Encoding"] = "gzip, deflate",
  }
  for k, v in pairs(extra_headers or {}) do headers[k] = v end
  return { method = "GET", url = url, headers = headers }
end

describe("ghl.get_message_request", function()
  it("returns exactly the request get_message sends, with the defaults", function()
    local req = ghl.get_message_request("abc", { token = TOKEN })
    assert.same(expected_request("https://services.leadconnectorhq.com/conversations/messages/abc"), req)
  end)

  it("uses base_url, ignoring one trailing slash", function()
    local a = ghl.get_message_request("abc", with { base_url = "http://127.0.0.1:9" })
    local b = ghl.get_message_request("abc", with { base_url = "http://127.0.0.1:9/" })
    assert.equal("http://127.0.0.1:9/conversations/messages/abc", a.url)
    assert.equal("http://127.0.0.1:9/conversations/messages/abc", b.url)
  end)

  it("keeps a path prefix in base_url", function()
    local r = ghl.get_message_request("Id_1-x", with { base_url = "https://example.invalid/v2/" })
    assert.equal("https://example.invalid/v2/conversations/messages/Id_1-x", r.url)
  end)

  it("sends the version option as the Version header", function()
    local r = ghl.get_message_request("abc", with { version = "2099-01-01" })
    assert.same(expected_request("https://services.leadconnectorhq.com/conversations/messages/abc",
      { Version = "2099-01-01" }), r)
  end)

  it("sends the user_agent option as User-Agent", function()
    local r = ghl.get_message_request("abc", with { user_agent = "my-app/1.0 (+https://example.invalid)" })
    assert.equal("my-app/1.0 (+https://example.invalid)", r.headers["User-Agent"])
  end)

  it("accepts every documented option with valid values", function()
    local o = {
      token = TOKEN, base_url = "http://127.0.0.1:9/", version = "2021-04-15",
      timeout = 5, connect_timeout = 2.5, retries = 0, max_retry_delay = 0,
      ssl_verify = false, cainfo = "/nonexistent/ca.pem", proxy = "http://127.0.0.1:3128",
      user_agent = "ua/1", max_body_size = 1024, convert_enums = false,
    }
    local r = ghl.get_message_request("abc", o)
    assert.equal("http://127.0.0.1:9/conversations/messages/abc", r.url)
    assert.equal("ua/1", r.headers["User-Agent"])
  end)

  it("accepts the range limits: retries 0 and 10, max_retry_delay 0, tiny timeouts", function()
    for _, o in ipairs {
      { retries = 0 }, { retries = 10 }, { max_retry_delay = 0 }, { timeout = 0.001 },
      { connect_timeout = 0.001 }, { max_body_size = 1 }, { ssl_verify = true },
    } do
      assert.is_table(ghl.get_message_request("abc", with(o)))
    end
  end)

  it("returns a new table each time", function()
    local a = ghl.get_message_request("abc", { token = TOKEN })
    a.headers.Accept = "changed"
    a.url = "changed"
    local b = ghl.get_message_request("abc", { token = TOKEN })
    assert.equal("application/json", b.headers.Accept)
    assert.equal("https://services.leadconnectorhq.com/conversations/messages/abc", b.url)
  end)
end)

describe("options", function()
  local entry_points = {
    get_message_request = function(o) return ghl.get_message_request("abc", o) end,
    new = function(o)
      local c = ghl.new(o)
      c:close()
      return c
    end,
    get_message = function(o) return ghl.get_message("abc", o) end,
  }

  -- key -> list of bad values (type or range); names in the error are checked.
  local BAD = {
    token = { 42, true, {}, "with space", "ctl\1char", "new\nline" },
    base_url = { 42, true, {}, "ftp://example.invalid", "example.invalid", "" },
    version = { 42, {}, "2021-04-15\r\nX-Evil: 1" },
    timeout = { "5x", {}, true, 0, -1, 0 / 0 },
    connect_timeout = { "x", {}, 0, -0.5, 0 / 0 },
    retries = { "two", {}, -1, 11, 1.5, 0 / 0 },
    max_retry_delay = { "x", {}, -0.001, 0 / 0 },
    ssl_verify = { "yes", 1, {} },
    cainfo = { true, {}, "ca\nfile" },
    proxy = { true, {}, "http://proxy\r\n" },
    user_agent = { true, {}, "ua\r\nX-Evil: 1" },
    max_body_size = { "big", {}, 0, -1, 1.5, 0 / 0 },
    convert_enums = { "no", 0, {} },
  }

  for name, call in pairs(entry_points) do
    describe("for " .. name, function()
      it("raise on an unknown key, naming it", function()
        assert_raises_naming("tokne", call, { token = TOKEN, tokne = "x" })
        assert_raises_naming("retry", call, { token = TOKEN, retry = 1 })
      end)

      for key, values in pairs(BAD) do
        it("raise on a bad " .. key .. ", naming it", function()
          for _, v in ipairs(values) do
            local o = { token = TOKEN }
            o[key] = v
            assert_raises_naming(key, call, o)
          end
        end)
      end

      it("raise when opts is not a table", function()
        raised(call, "token")
        raised(call, 42)
      end)

      it("leave the caller's table unchanged", function()
        local o = {
          token = TOKEN, base_url = h.http_url .. "/", version = "2021-04-15",
          timeout = 5, connect_timeout = 2, retries = 0, max_retry_delay = 0.1,
          ssl_verify = true, user_agent = "ua/1", max_body_size = 4096, convert_enums = false,
        }
        local before = deep_copy(o)
        if name == "get_message" then
          ghl.get_message(h.fresh_id("sms"), o)
        else
          call(o)
        end
        assert.same(before, o)
        assert.is_nil(getmetatable(o))
      end)

      it("leave the caller's table unchanged when raising", function()
        local o = { token = TOKEN, retries = 99 }
        pcall(call, o)
        assert.same({ token = TOKEN, retries = 99 }, o)
      end)
    end)
  end

  describe("token", function()
    local env_token = os.getenv("GHL_TOKEN")

    it("is required: missing or empty raises naming it", function()
      if env_token == nil or env_token == "" then
        assert_raises_naming("token", ghl.get_message_request, "abc", {})
        assert_raises_naming("token", ghl.get_message_request, "abc")
        assert_raises_naming("token", ghl.new, {})
        assert_raises_naming("token", ghl.get_message, "abc", { base_url = h.http_url })
        -- an empty string counts as missing: with GHL_TOKEN set it is read instead (12-misuse)
        assert_raises_naming("token", ghl.get_message_request, "abc", { token = "" })
        assert_raises_naming("token", ghl.new, { token = "" })
      end
    end)

    local cpath = "package.cpath = " .. string.format("%q", package.cpath) .. ";"

    it("comes from GHL_TOKEN when absent", function()
      local ok, out = h.run_lua(cpath .. [[
        local ghl = require("ghl")
        local r = ghl.get_message_request("abc")
        io.write(r.headers.Authorization == "Bearer pit-env-0000" and "same" or "different")
      ]], { GHL_TOKEN = "pit-env-0000" })
      assert.is_true(ok, out)
      assert.equal("same", out)
    end)

    it("from opts wins over GHL_TOKEN", function()
      local ok, out = h.run_lua(cpath .. [[
        local ghl = require("ghl")
        local r = ghl.get_message_request("abc", { token = "pit-opts-0000" })
        io.write(r.headers.Authorization)
      ]], { GHL_TOKEN = "pit-env-0000" })
      assert.is_true(ok, out)
      assert.equal("Bearer pit-opts-0000", out)
    end)

    it("counts an empty GHL_TOKEN as missing", function()
      local ok, out = h.run_lua(cpath .. [[
        local ghl = require("ghl")
        local ok, err = pcall(ghl.get_message_request, "abc")
        io.write(ok and "no error" or (tostring(err):find("token", 1, true) and "named" or "unnamed"))
      ]], { GHL_TOKEN = "" })
      assert.is_true(ok, out)
      assert.equal("named", out)
    end)

    it("raises without GHL_TOKEN and without opts.token", function()
      local ok, out = h.run_lua(cpath .. [[
        local ghl = require("ghl")
        local ok, err = pcall(ghl.get_message_request, "abc", {})
        io.write(ok and "no error" or (tostring(err):find("token", 1, true) and "named" or "unnamed"))
      ]], { GHL_TOKEN = false })
      assert.is_true(ok, out)
      assert.equal("named", out)
    end)
  end)

  describe("client:get_message overrides", function()
    local c
    before_each(function() c = ghl.new(h.opts { retries = 0 }) end)
    after_each(function() c:close() end)

    it("accepts timeout, connect_timeout and retries", function()
      local msg, err = c:get_message(h.fresh_id("sms"), { timeout = 5, connect_timeout = 2, retries = 1 })
      assert.is_nil(err)
      assert.is_table(msg)
    end)

    it("raises on any other key, naming it", function()
      for _, key in ipairs { "token", "base_url", "version", "max_retry_delay", "ssl_verify",
                             "user_agent", "max_body_size", "convert_enums", "bogus" } do
        assert_raises_naming(key, c.get_message, c, "abc", { [key] = ({ bogus = 1, max_retry_delay = 1,
          max_body_size = 10, ssl_verify = true, convert_enums = true })[key] or "x" })
      end
    end)

    it("raises on bad values of the allowed keys, naming them", function()
      assert_raises_naming("timeout", c.get_message, c, "abc", { timeout = 0 })
      assert_raises_naming("connect_timeout", c.get_message, c, "abc", { connect_timeout = -1 })
      assert_raises_naming("retries", c.get_message, c, "abc", { retries = 11 })
      assert_raises_naming("retries", c.get_message, c, "abc", { retries = 0.5 })
    end)

    it("leaves the caller's table unchanged", function()
      local o = { timeout = 5, retries = 0 }
      c:get_message(h.fresh_id("sms"), o)
      assert.same({ timeout = 5, retries = 0 }, o)
    end)
  end)
end)

describe("message id misuse", function()
  local BAD_IDS = {
    { "nil", nil }, { "number", 42 }, { "table", {} }, { "boolean", true },
    { "empty", "" }, { "129 bytes", string.rep("a", 129) },
    { "slash", "a/b" }, { "space", "a b" }, { "dot", "a.b" }, { "dot-dot", ".." },
    { "question mark", "a?b" }, { "percent", "a%2Fb" }, { "hash", "a#b" },
    { "newline", "abc\n" }, { "NUL", "ab\0c" }, { "non-ASCII", "caf\195\169" },
  }

  for _, case in ipairs(BAD_IDS) do
    local label, id = case[1], case[2]
    it("raises for an id that is " .. label, function()
      local before = #h.requests()
      raised(ghl.get_message_request, id, { token = TOKEN })
      raised(ghl.get_message, id, h.opts { retries = 0 })
      local c = ghl.new(h.opts { retries = 0 })
      raised(c.get_message, c, id)
      c:close()
      assert.equal(before, #h.requests(), "nothing was sent")
    end)
  end

  it("accepts 128 bytes of [A-Za-z0-9_-]", function()
    local id = string.rep("aZ0_-", 25) .. "xyz"
    assert.equal(128, #id)
    local r = ghl.get_message_request(id, { token = TOKEN })
    assert.equal("https://services.leadconnectorhq.com/conversations/messages/" .. id, r.url)
  end)

  it("accepts every allowed character", function()
    local id = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    local r = ghl.get_message_request(id, { token = TOKEN })
    assert.equal("https://services.leadconnectorhq.com/conversations/messages/" .. id, r.url)
  end)
end)
