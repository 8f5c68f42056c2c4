-- Tokens that renew themselves (CONTRACT.md section 3): `token` as a
-- function, called lazily, again after a 401 with the token that failed, at
-- most once per client at a time; and ghl.oauth_token. The server's
-- authonly_<s> scenario accepts only a token ending in "-<s>".

local h = require("helpers")
local ghl = require("ghl")

-- A provider that hands out "<prefix>-v1", then "<prefix>-v2", ... and
-- records what it was called with.
local function provider(prefix, opts)
  opts = opts or {}
  local p = { calls = {}, n = 0 }
  p.fn = function(old)
    p.calls[#p.calls + 1] = old == nil and "(none)" or old
    if opts.raise then error(opts.raise, 0) end
    if old ~= nil and opts.on_renew ~= nil then return opts.on_renew(old) end
    p.n = p.n + 1
    return prefix .. "-v" .. p.n
  end
  return p
end

local function tokens_sent(id)
  local out = {}
  for _, req in ipairs(h.requests_for(id)) do
    out[#out + 1] = (req.headers.authorization or ""):gsub("^Bearer ", "")
  end
  return out
end

local function opts(extra)
  local o = { base_url = h.http_url, max_retry_delay = 0 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("a token function", function()
  setup(h.start)

  it("is called when the first token is needed, with no argument", function()
    local p = provider("tok-lazy")
    local c = ghl.new(opts({ token = p.fn }))
    assert.same({}, p.calls)
    local id = h.fresh_id("authonly_v1")
    local msg, err, info = c:get_message(id)
    assert.is_nil(err)
    assert.equal(id, msg.id)
    assert.same({ "(none)" }, p.calls)
    assert.equal(1, info.attempts)
    assert.same({ "tok-lazy-v1" }, tokens_sent(id))
    c:get_message(h.fresh_id("authonly_v1"))
    assert.same({ "(none)" }, p.calls) -- kept for the next call
    c:close()
  end)

  it("is called again after a 401 with the token that failed; the request goes once more with the new one", function()
    local p = provider("tok-renew")
    local c = ghl.new(opts({ token = p.fn, retries = 0 }))
    local id = h.fresh_id("authonly_v2")
    local msg, err, info = c:get_message(id)
    assert.is_nil(err)
    assert.equal(id, msg.id)
    assert.same({ "(none)", "tok-renew-v1" }, p.calls)
    assert.equal(2, info.attempts) -- the repeat is outside retries = 0
    assert.same({ "tok-renew-v1", "tok-renew-v2" }, tokens_sent(id))
    c:close()
  end)

  it("returning the same token or nil leaves the 401 as it is", function()
    for _, answer in ipairs({ "same", "nil" }) do
      local p = provider("tok-" .. answer, {
        on_renew = function(old) if answer == "same" then return old end return nil end,
      })
      local c = ghl.new(opts({ token = p.fn }))
      local id = h.fresh_id("authonly_v9")
      local msg, err, info = c:get_message(id)
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 401 Unauthorized: Invalid JWT (GET /conversations/messages/" .. id .. ")", err)
      assert.same({ "http", 401, 1 }, { info.kind, info.status, info.attempts })
      assert.same({ "(none)", "tok-" .. answer .. "-v1" }, p.calls)
      c:close()
    end
  end)

  it("is not called for the gateway's 401 Command timed out, which is retried", function()
    local p = provider("tok-cto")
    local c = ghl.new(opts({ token = p.fn, retries = 1 }))
    local id = h.fresh_id("flaky_cto_1")
    local msg, err, info = c:get_message(id)
    assert.is_nil(err)
    assert.equal("Xq1sMs0000aaaa000001", msg.id)
    assert.equal(2, info.attempts)
    assert.same({ "(none)" }, p.calls)
    c:close()
  end)

  it("returning anything but a token is a failure of kind token", function()
    for _, bad in ipairs({ 42, "", "two words", {}, true }) do
      local c = ghl.new(opts({ token = function() return bad end }))
      local msg, err, info = c:get_message(h.fresh_id("sms"))
      assert.is_nil(msg)
      assert.truthy(err:find("^ghl: token provider failed: it returned "), err)
      assert.equal("token", info.kind)
      c:close()
    end
  end)

  it("that raises gives kind token, with any token cut out of its message", function()
    local c = ghl.new(opts({
      token = function(old)
        if old == nil then return "tok-raise-secret-v1" end
        error("cannot renew tok-raise-secret-v1 now", 0)
      end,
    }))
    local id = h.fresh_id("authonly_v2")
    local msg, err, info = c:get_message(id)
    assert.is_nil(msg)
    assert.equal("ghl: token provider failed: cannot renew <redacted> now", err)
    assert.same({ "token", 1 }, { info.kind, info.attempts })
    h.assert_no_token(info, "tok-raise-secret-v1", "info")
    local c2 = ghl.new(opts({ token = function() error({}) end }))
    local _, err2, info2 = c2:get_message("sms")
    assert.equal("ghl: token provider failed: (an error that is not a string)", err2)
    assert.equal("token", info2.kind)
    c:close()
    c2:close()
  end)

  it("that calls its own client gets 'busy', a failure of kind token", function()
    local c
    c = ghl.new(opts({ token = function() return c:get_message("sms") end }))
    local msg, err, info = c:get_message(h.fresh_id("sms"))
    assert.is_nil(msg)
    assert.truthy(err:find("ghl: the client is busy", 1, true), err)
    assert.equal("token", info.kind)
    c:close()
  end)

  it("is called once for a batch whose every request got a 401 with the same token", function()
    local p = provider("tok-batch")
    local c = ghl.new(opts({ token = p.fn }))
    local ids = {}
    for i = 1, 12 do ids[i] = h.fresh_id("authonly_v2") end
    local messages, failures = c:get_messages(ids, { concurrency = 4 })
    assert.same({}, failures)
    assert.equal(12, h.count_keys(messages))
    assert.same({ "(none)", "tok-batch-v1" }, p.calls)
    for _, id in ipairs(ids) do
      local sent = tokens_sent(id)
      assert.equal("tok-batch-v2", sent[#sent])
      assert.is_true(#sent <= 2)
    end
    c:close()
  end)

  it("is asked once for a batch also when it gives no new token, or raises", function()
    for _, how in ipairs({ "same", "nil", "raise" }) do
      local p = provider("tok-refuse-" .. how, {
        on_renew = function(old)
          if how == "raise" then error("refused " .. old, 0) end
          if how == "same" then return old end
          return nil
        end,
      })
      local c = ghl.new(opts({ token = p.fn }))
      local ids = {}
      for i = 1, 8 do ids[i] = h.fresh_id("authonly_v9") end
      local messages, failures = c:get_messages(ids, { concurrency = 4 })
      assert.same({}, messages)
      assert.same({ "(none)", "tok-refuse-" .. how .. "-v1" }, p.calls)
      for _, id in ipairs(ids) do
        local f = failures[id]
        if how == "raise" then
          assert.same({ "token", "ghl: token provider failed: refused <redacted>" }, { f.kind, f.errmsg })
        else
          assert.same({ "http", 401 }, { f.kind, f.status })
        end
      end
      -- the next call asks again
      c:get_message(h.fresh_id("authonly_v9"))
      assert.equal(3, #p.calls)
      c:close()
    end
  end)

  it("repeats a POST once after a 401: the API did not take it", function()
    local p = provider("tok-post")
    local c = ghl.new(opts({ token = p.fn }))
    local contact = h.fresh_id("authonly_v2")
    local sent, err, info = c:send_message({ type = "SMS", contactId = contact, message = "hi" })
    assert.is_nil(err)
    assert.is_table(sent)
    assert.equal(2, info.attempts)
    assert.same({ "(none)", "tok-post-v1" }, p.calls)
    c:close()
  end)

  it("fails every id of a batch when it cannot give the first token", function()
    local c = ghl.new(opts({ token = function() error("no vault", 0) end }))
    local messages, failures = c:get_messages({ "a1", "a2" })
    assert.same({}, messages)
    assert.same({ "token", "ghl: token provider failed: no vault" }, { failures.a1.kind, failures.a1.errmsg })
    assert.same({ "token", "ghl: token provider failed: no vault" }, { failures.a2.kind, failures.a2.errmsg })
    c:close()
  end)

  it("serves ghl.get_message's cached client: one call for two fetches", function()
    local p = provider("tok-module")
    local o = opts({ token = p.fn })
    local m1 = ghl.get_message(h.fresh_id("authonly_v1"), o)
    local m2 = ghl.get_message(h.fresh_id("authonly_v1"), o)
    assert.is_table(m1)
    assert.is_table(m2)
    assert.same({ "(none)" }, p.calls)
  end)

  it("gives ghl.get_message_request the token the first request would carry", function()
    local req = ghl.get_message_request("abc", { token = function() return "tok-shown-v1" end })
    assert.equal("Bearer tok-shown-v1", req.headers.Authorization)
    assert.has_error(function() ghl.get_message_request("abc", { token = function() return 1 end }) end,
      "ghl: option 'token': its function returned no valid token")
  end)
end)

describe("ghl.oauth_token", function()
  setup(h.start)

  local SECRET, REFRESH, CODE = "cs-very-secret-123", "rt-old-refresh-456", "code-789-secret"

  local function form(client_id, extra)
    local f = { client_id = client_id, client_secret = SECRET, grant_type = "refresh_token",
      refresh_token = REFRESH, user_type = "Location" }
    for k, v in pairs(extra or {}) do f[k] = v end
    return f
  end

  local function last_request(client_id)
    local found
    for _, req in ipairs(h.requests()) do
      if type(req.body) == "string" and req.body:find(client_id, 1, true) then found = req end
    end
    return found
  end

  it("POSTs the form without a token and returns the API's answer", function()
    local id = h.fresh_id("ok")
    local res, err, info = ghl.oauth_token(form(id), { base_url = h.http_url })
    assert.is_nil(err)
    assert.same({ "at-new-" .. REFRESH, "rt-next-" .. REFRESH, 86399, "Bearer" },
      { res.access_token, res.refresh_token, res.expires_in, res.token_type })
    assert.is_nil(res.traceId)
    assert.same({ 200, 1, "oauth-ok" }, { info.status, info.attempts, info.trace_id })
    local req = last_request(id)
    assert.equal("POST", req.method)
    assert.equal("/oauth/token", req.path)
    assert.equal("application/x-www-form-urlencoded", req.headers["content-type"])
    assert.is_nil(req.headers.authorization)
    assert.equal("client_id=" .. id .. "&client_secret=" .. SECRET .. "&grant_type=refresh_token&refresh_token="
      .. REFRESH .. "&user_type=Location", req.body)
  end)

  it("never repeats a request that may have reached the API; repeats after a 429", function()
    local id = h.fresh_id("flaky_503_1")
    local res, err, info = ghl.oauth_token(form(id), { base_url = h.http_url, retries = 2, max_retry_delay = 0 })
    assert.is_nil(res)
    assert.same({ "http", 503, 1 }, { info.kind, info.status, info.attempts })
    assert.truthy(err:find("^ghl: HTTP 503 Service Unavailable"), err)
    local n = 0
    for _, req in ipairs(h.requests()) do
      if type(req.body) == "string" and req.body:find(id, 1, true) then n = n + 1 end
    end
    assert.equal(1, n)
    local id2 = h.fresh_id("flaky_429_1")
    local res2, err2, info2 = ghl.oauth_token(form(id2), { base_url = h.http_url, max_retry_delay = 0 })
    assert.is_nil(err2)
    assert.is_table(res2)
    assert.equal(2, info2.attempts)
  end)

  it("keeps every secret out of errmsg and info, and gives no info.body", function()
    local id = h.fresh_id("echo_secrets")
    local res, err, info = ghl.oauth_token(form(id, { code = CODE }), { base_url = h.http_url })
    assert.is_nil(res)
    assert.equal("ghl: HTTP 400 Bad Request: refresh token <redacted> of client " .. id
      .. " (secret <redacted>, code <redacted>) is invalid (POST /oauth/token)", err)
    assert.is_nil(info.body)
    for _, secret in ipairs({ SECRET, REFRESH, CODE }) do
      h.assert_no_token(err, secret, "errmsg")
      h.assert_no_token(info, secret, "info")
    end
  end)

  it("takes only the options that make sense for it", function()
    for _, key in ipairs({ "token", "version", "convert_enums", "max_body_size", "bogus" }) do
      local o = { base_url = h.http_url }
      o[key] = key == "convert_enums" and false or (key == "max_body_size" and 10 or "x")
      assert.has_error(function() ghl.oauth_token(form("ok"), o) end,
        "ghl: option '" .. key .. "' cannot be given to oauth_token")
    end
    assert.has_error(function() ghl.oauth_token("client_id=x") end)
    assert.has_error(function() ghl.oauth_token({ client_id = { {} } }) end)
  end)
end)
