-- get_message and the client against the local stand-in server.

local h = require("helpers")
local ghl = require("ghl")

local TOKEN = h.TOKEN

local path_of, suffix = h.message_path, h.request_suffix
local logged_rl, gaps = h.logged_rate_limit, h.gaps

local REASON = {
  [301] = "Moved Permanently", [302] = "Found", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

-- The exact errmsg for an HTTP failure; 422's reason phrase has two spellings
-- (RFC 4918 and RFC 9110), 524's has no standard one.
local function assert_http_errmsg(err, status, api_message, id)
  local tail = (api_message and (": " .. api_message) or "") .. suffix(id)
  if status == 422 then
    local ok = err == "ghl: HTTP 422 Unprocessable Entity" .. tail
      or err == "ghl: HTTP 422 Unprocessable Content" .. tail
    assert.is_true(ok, "errmsg: " .. err)
  elseif status == 524 then
    assert.matches("^ghl: HTTP 524[%w ]*" .. h.literal(tail) .. "$", err)
  else
    assert.equal("ghl: HTTP " .. status .. " " .. REASON[status] .. tail, err)
  end
end

local function assert_rl_integers(rl)
  for _, k in ipairs(h.RATE_LIMIT_FIELDS) do
    assert.is_true(h.is_integer(rl[k]), "rate_limit." .. k .. " is an integer")
  end
end

local function get(scenario, extra)
  local id = h.fresh_id(scenario)
  local msg, err, info = ghl.get_message(id, h.opts(extra))
  if err then h.assert_no_token(err, nil, "errmsg") end
  if info then h.assert_no_token(info, nil, "info") end
  return id, msg, err, info
end

local function nonce_of(id)
  return id:match("%-%-(.*)$")
end

describe("ghl.get_message", function()
  describe("success", function()
    it("sends GET with the documented headers over HTTP and returns the message", function()
      local id, msg, err, info = get("sms", { retries = 0 })
      assert.is_nil(err)
      assert.same(h.expected_message(ghl, "sms.json"), msg)
      local reqs = h.requests_for(id)
      assert.equal(1, #reqs)
      local r = reqs[1]
      assert.equal("http", r.listener)
      assert.equal("GET", r.method)
      assert.equal(path_of(id), r.path)
      assert.equal("Bearer " .. TOKEN, r.headers.authorization)
      assert.equal("2021-04-15", r.headers.version)
      assert.equal("application/json", r.headers.accept)
      assert.equal("lua-ghl/" .. ghl.VERSION, r.headers["user-agent"])
      assert.is_string(r.headers["accept-encoding"])
      assert.matches("gzip", r.headers["accept-encoding"])
      assert.is_table(info)
      assert.is_nil(info.kind)
      assert.equal(200, info.status)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000001", info.trace_id)
      assert.equal(1, info.attempts)
      assert.is_true(h.is_integer(info.attempts))
      assert.same(logged_rl(r), info.rate_limit)
      assert_rl_integers(info.rate_limit)
      h.assert_no_token(msg, nil, "message")
    end)

    it("sends what get_message_request describes", function()
      local id = h.fresh_id("sms")
      local o = h.opts { retries = 0, version = "2021-07-28", user_agent = "spec-agent/2" }
      local req = ghl.get_message_request(id, o)
      local msg, err = ghl.get_message(id, o)
      assert.is_nil(err)
      assert.is_table(msg)
      local r = h.requests_for(id)[1]
      assert.equal(req.method, r.method)
      assert.equal(req.url, h.http_url .. r.path)
      local described = {}
      for name, value in pairs(req.headers) do
        described[name:lower()] = true
        assert.equal(value, r.headers[name:lower()], "header " .. name)
      end
      for name in pairs(r.headers) do
        if name ~= "host" then
          assert.is_true(described[name], "header sent but not described: " .. name)
        end
      end
      assert.equal("2021-07-28", r.headers.version)
      assert.equal("spec-agent/2", r.headers["user-agent"])
    end)

    it("works over HTTPS with cainfo", function()
      local id = h.fresh_id("call")
      local msg, err, info = ghl.get_message(id, h.tls_opts { retries = 0 })
      assert.is_nil(err)
      assert.same(h.expected_message(ghl, "call.json"), msg)
      assert.equal("TYPE_CALL", msg.type)
      assert.equal(42, msg.meta.callDuration)
      assert.is_true(h.is_integer(msg.meta.callDuration))
      local reqs = h.requests_for(id)
      assert.equal(1, #reqs)
      assert.equal("https", reqs[1].listener)
      assert.equal("Bearer " .. TOKEN, reqs[1].headers.authorization)
      assert.equal(200, info.status)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000002", info.trace_id)
      assert.same(logged_rl(reqs[1]), info.rate_limit)
      h.assert_no_token(info, nil, "info")
    end)

    it("verifies the host name over HTTPS (localhost is in the certificate)", function()
      local id = h.fresh_id("email")
      local msg, err = ghl.get_message(id, h.tls_opts { retries = 0, base_url = h.https_localhost_url })
      assert.is_nil(err)
      assert.same(h.expected_message(ghl, "email.json"), msg)
    end)

    it("fails with kind tls when the CA is not trusted, sending nothing", function()
      local id = h.fresh_id("sms")
      local msg, err, info = ghl.get_message(id, {
        token = TOKEN, base_url = h.https_url, retries = 0, cainfo = "/etc/ssl/certs/ca-certificates.crt",
      })
      assert.is_nil(msg)
      assert.matches("^ghl: ", err)
      assert.equal("tls", info.kind)
      assert.is_number(info.curl_code)
      assert.is_nil(info.status)
      assert.equal(0, #h.requests_for(id))
      h.assert_no_token(err)
      h.assert_no_token(info)
    end)

    it("skips verification with ssl_verify = false", function()
      local id = h.fresh_id("sms")
      local msg, err = ghl.get_message(id, {
        token = TOKEN, base_url = h.https_url, retries = 0, ssl_verify = false,
        cainfo = "/etc/ssl/certs/ca-certificates.crt",
      })
      assert.is_nil(err)
      assert.equal("Xq1sMs0000aaaa000001", msg.id)
    end)

    it("puts base_url's path before /conversations", function()
      local id = h.fresh_id("sms")
      local msg, err = ghl.get_message(id, h.opts { retries = 0, base_url = h.http_url .. "/v2/" })
      assert.is_nil(err)
      assert.is_table(msg)
      assert.equal("/v2" .. path_of(id), h.requests_for(id)[1].path)
    end)

    for _, case in ipairs {
      { "call", "call.json", "TYPE_CALL" }, { "email", "email.json", "TYPE_EMAIL" },
      { "top_level", "top_level.json", "TYPE_SMS" }, { "whatsapp_no_mt", "whatsapp_no_mt.json", "TYPE_WHATSAPP" },
      { "sms_mt_plain", "sms_mt_plain.json", "TYPE_SMS" }, { "unknown_type", "unknown_type.json", 99 },
      { "type_string", "type_string.json", "7" }, { "rcs", "rcs.json", "TYPE_RCS" },
      { "nulls", "nulls.json", "TYPE_SMS" }, { "numbers", "numbers.json", "TYPE_CALL" },
      { "unicode", "unicode.json", "TYPE_SMS" },
    } do
      it("decodes the " .. case[1] .. " body", function()
        local _, msg, err, info = get(case[1], { retries = 0 })
        assert.is_nil(err)
        assert.same(h.expected_message(ghl, case[2]), msg)
        assert.equal(case[3], msg.type)
        assert.equal(h.fixture_json(case[2]).traceId, info.trace_id)
      end)
    end

    it("leaves type as the number with convert_enums = false", function()
      local _, msg, err = get("call", { retries = 0, convert_enums = false })
      assert.is_nil(err)
      assert.equal(1, msg.type)
      assert.is_true(h.is_integer(msg.type))
      assert.equal("TYPE_CALL", msg.messageType)
      assert.same(h.expected_message(ghl, "call.json", false), msg)
      _, msg = get("whatsapp_no_mt", { retries = 0, convert_enums = false })
      assert.equal(19, msg.type)
    end)

    it("asks for gzip and decodes a gzip body", function()
      local id, msg, err = get("gzip_sms", { retries = 0 })
      assert.is_nil(err)
      assert.same(h.expected_message(ghl, "sms.json"), msg)
      assert.matches("gzip", h.requests_for(id)[1].headers["accept-encoding"])
    end)

    it("asks for deflate and decodes a deflate body", function()
      local id, msg, err = get("deflate_sms", { retries = 0 })
      assert.is_nil(err)
      assert.same(h.expected_message(ghl, "sms.json"), msg)
      assert.matches("deflate", h.requests_for(id)[1].headers["accept-encoding"])
    end)

    it("has no rate_limit in info when the response lacks the headers", function()
      local _, msg, err, info = get("no_ratelimit", { retries = 0 })
      assert.is_nil(err)
      assert.is_table(msg)
      assert.is_nil(info.rate_limit)
    end)
  end)

  describe("HTTP errors", function()
    local CASES = {
      { "err_400", 400, "Bad Request", "err_400.json" },
      { "err_401_jwt", 401, "Invalid JWT", "err_401_jwt.json" },
      { "err_403_json", 403, "The token does not have access to this location.", "err_403_json.json" },
      { "err_403_html", 403, nil, "err_403.html" },
      { "err_404", 404, "Message not found", "err_404.json" },
      { "err_422", 422, "id must be a string; id must be longer than or equal to 20 characters", "err_422.json" },
      { "err_500", 500, "Internal server error", "err_500.json" },
      { "err_500_empty", 500, nil, nil },
      { "err_502_html", 502, nil, "err_502.html" },
      { "err_503", 503, "Service temporarily unavailable", "err_503.json" },
      { "err_504", 504, "Upstream request timed out", "err_504.json" },
      { "err_524_html", 524, nil, "err_524.html" },
      { "err_401_cto", 401, "Command timed out", "err_401_cto.json" },
      { "ra_secs_3", 429, "Too Many Requests", "err_429.json" },
    }
    for _, case in ipairs(CASES) do
      local scenario, status, api_message, fixture = case[1], case[2], case[3], case[4]
      it(scenario .. " gives nil, the exact errmsg and info", function()
        local id, msg, err, info = get(scenario, { retries = 0 })
        assert.is_nil(msg)
        assert_http_errmsg(err, status, api_message, id)
        assert.equal("http", info.kind)
        assert.equal(status, info.status)
        assert.equal(api_message, info.message)
        assert.equal(1, info.attempts)
        if fixture then
          assert.equal(h.fixture(fixture), info.body)
          if fixture:match("%.json$") then
            assert.equal(h.fixture_json(fixture).traceId, info.trace_id)
          else
            assert.is_nil(info.trace_id)
          end
        else
          assert.is_true(info.body == nil or info.body == "")
        end
        local reqs = h.requests_for(id)
        assert.equal(1, #reqs)
        assert.same(logged_rl(reqs[1]), info.rate_limit)
        assert.is_nil(info.curl_code)
      end)
    end

    it("gives retry_after in seconds from Retry-After", function()
      local _, _, _, info = get("ra_secs_3", { retries = 0 })
      assert.equal(3, info.retry_after)
    end)

    it("gives retry_after from an HTTP-date Retry-After", function()
      local _, _, _, info = get("ra_date_2", { retries = 0 })
      assert.is_number(info.retry_after)
      assert.is_true(info.retry_after >= 0 and info.retry_after <= 2.5, "retry_after " .. tostring(info.retry_after))
    end)

    it("reports the rate-limit figures of a 429 with Remaining 0", function()
      local id, _, err, info = get("rl_zero_1500", { retries = 0 })
      assert_http_errmsg(err, 429, "Too Many Requests", id)
      assert.same({ max = 100, remaining = 0, interval_ms = 1500, daily_limit = 200000,
                    daily_remaining = logged_rl(h.requests_for(id)[1]).daily_remaining }, info.rate_limit)
      assert.is_nil(info.retry_after)
    end)
  end)

  describe("non-2xx that are not retried", function()
    for _, scenario in ipairs { "err_400", "err_401_jwt", "err_403_json", "err_403_html", "err_404", "err_422",
                                "redirect_302_other", "redirect_301_same" } do
      it(scenario .. " is tried once even with retries = 3", function()
        local id, msg, _, info = get(scenario, { retries = 3, max_retry_delay = 0 })
        assert.is_nil(msg)
        assert.equal(1, info.attempts)
        assert.equal(1, #h.requests_for(id))
      end)
    end
  end)

  describe("2xx bodies that are not a message", function()
    for _, scenario in ipairs { "not_json", "empty_200", "message_string", "no_message", "json_array", "json_string" } do
      it(scenario .. " fails with kind decode, not retried", function()
        local id, msg, err, info = get(scenario, { retries = 2, max_retry_delay = 0 })
        assert.is_nil(msg)
        assert.matches("^ghl: ", err)
        assert.is_nil(err:find("\n", 1, true))
        assert.equal("decode", info.kind)
        assert.equal(200, info.status)
        assert.equal(1, info.attempts)
        assert.equal(1, #h.requests_for(id))
      end)
    end
  end)

  describe("redirects", function()
    it("a 302 to another origin is kind http and is not followed", function()
      local other_before = 0
      for _, r in ipairs(h.requests()) do
        if r.listener == "other" then other_before = other_before + 1 end
      end
      local id, msg, err, info = get("redirect_302_other", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("http", info.kind)
      assert.equal(302, info.status)
      assert.matches("^ghl: HTTP 302 Found", err)
      assert.equal(suffix(id), err:sub(-#suffix(id)))
      assert.equal(0, #h.requests_for("sms--" .. nonce_of(id) .. "-moved"))
      local other_after = 0
      for _, r in ipairs(h.requests()) do
        if r.listener == "other" then other_after = other_after + 1 end
      end
      assert.equal(other_before, other_after)
    end)

    it("a 301 to the same origin is kind http and is not followed", function()
      local id, msg, err, info = get("redirect_301_same", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("http", info.kind)
      assert.equal(301, info.status)
      assert.matches("^ghl: HTTP 301 Moved Permanently", err)
      assert.equal(0, #h.requests_for("sms--" .. nonce_of(id) .. "-moved"))
      assert.equal(1, #h.requests_for(id))
    end)
  end)

  describe("retries", function()
    for _, s in ipairs { "429", "500", "502", "503", "504", "524", "cto" } do
      it("retry " .. s .. " and succeed on the third attempt", function()
        local id, msg, err, info = get("flaky_" .. s .. "_2", { retries = 2, max_retry_delay = 0.05 })
        assert.is_nil(err)
        assert.same(h.expected_message(ghl, "sms.json"), msg)
        assert.equal(3, info.attempts)
        assert.equal(200, info.status)
        local reqs = h.requests_for(id)
        assert.equal(3, #reqs)
        assert.same(logged_rl(reqs[3]), info.rate_limit)
      end)
    end

    for _, case in ipairs {
      { "err_500", 500 }, { "err_502_html", 502 }, { "err_503", 503 }, { "err_504", 504 },
      { "err_524_html", 524 }, { "err_401_cto", 401 }, { "ra_secs_1", 429 }, { "rl_zero_100", 429 },
    } do
      it("give up on " .. case[1] .. " after retries + 1 attempts", function()
        local id, msg, err, info = get(case[1], { retries = 2, max_retry_delay = 0 })
        assert.is_nil(msg)
        assert.equal("http", info.kind)
        assert.equal(case[2], info.status)
        assert.equal(3, info.attempts)
        assert.equal(3, #h.requests_for(id))
        assert.matches("^ghl: HTTP " .. case[2], err)
      end)
    end

    it("stop when retries run out before success", function()
      local id, msg, err, info = get("flaky_503_2", { retries = 1, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert_http_errmsg(err, 503, "Service temporarily unavailable", id)
      assert.equal(2, info.attempts)
      assert.equal(2, #h.requests_for(id))
    end)

    it("are off with retries = 0", function()
      local id, msg, _, info = get("flaky_503_1", { retries = 0 })
      assert.is_nil(msg)
      assert.equal(503, info.status)
      assert.equal(1, info.attempts)
      assert.equal(1, #h.requests_for(id))
    end)

    it("default to 2", function()
      local id, msg, _, info = get("err_503", { max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.equal(3, info.attempts)
      assert.equal(3, #h.requests_for(id))
    end)

    it("honour Retry-After in seconds", function()
      local id, msg, err, info = get("flaky_429ra_1_1", { retries = 2, max_retry_delay = 5 })
      assert.is_nil(err)
      assert.is_table(msg)
      assert.equal(2, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.equal(1, #g)
      assert.is_true(g[1] >= 0.95, "waited " .. g[1])
      assert.is_true(g[1] <= 1.8, "waited " .. g[1])
    end)

    it("cap Retry-After at max_retry_delay", function()
      local id, msg, _, info = get("flaky_429ra_5_1", { retries = 2, max_retry_delay = 0.3 })
      assert.is_table(msg)
      assert.equal(2, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.is_true(g[1] >= 0.28, "waited " .. g[1])
      assert.is_true(g[1] <= 1.2, "waited " .. g[1])
    end)

    it("honour an HTTP-date Retry-After", function()
      local id, msg, _, info = get("ra_date_2", { retries = 1, max_retry_delay = 5 })
      assert.is_nil(msg)
      assert.equal(2, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.is_true(g[1] >= 0.9, "waited " .. g[1])
      assert.is_true(g[1] <= 2.9, "waited " .. g[1])
    end)

    it("wait the interval after a 429 with X-RateLimit-Remaining 0", function()
      local id, msg, _, info = get("flaky_429rl_700_1", { retries = 1, max_retry_delay = 5 })
      assert.is_table(msg)
      assert.equal(2, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.is_true(g[1] >= 0.65, "waited " .. g[1])
      assert.is_true(g[1] <= 1.5, "waited " .. g[1])
    end)

    it("cap the rate-limit interval at max_retry_delay", function()
      local id, msg, _, info = get("flaky_429rl_60000_1", { retries = 1, max_retry_delay = 0.3 })
      assert.is_table(msg)
      assert.equal(2, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.is_true(g[1] >= 0.28, "waited " .. g[1])
      assert.is_true(g[1] <= 1.2, "waited " .. g[1])
    end)

    it("back off within [0, 0.5 * 2^(n-1)] s without Retry-After", function()
      local id, msg, _, info = get("flaky_503_2", { retries = 2, max_retry_delay = 30 })
      assert.is_table(msg)
      assert.equal(3, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.is_true(g[1] <= 0.5 + 0.25, "first wait " .. g[1])
      assert.is_true(g[2] <= 1.0 + 0.25, "second wait " .. g[2])
    end)

    it("back off on a 429 without Retry-After whose Remaining is not 0", function()
      local id, msg = get("flaky_429_1", { retries = 1, max_retry_delay = 30 })
      assert.is_table(msg)
      local g = gaps(h.requests_for(id))
      assert.is_true(g[1] <= 0.5 + 0.25, "wait " .. g[1])
    end)

    it("do not wait with max_retry_delay = 0", function()
      local id, msg = get("flaky_503_2", { retries = 2, max_retry_delay = 0 })
      assert.is_table(msg)
      for i, g in ipairs(gaps(h.requests_for(id))) do
        assert.is_true(g < 0.25, "wait " .. i .. ": " .. g)
      end
    end)

    it("retry a refused connection: kind network", function()
      local id = h.fresh_id("sms")
      local t0 = h.now()
      local msg, err, info = ghl.get_message(id, { token = TOKEN, base_url = "http://127.0.0.1:1",
                                                    retries = 2, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.matches("^ghl: ", err)
      assert.is_nil(err:find("\n", 1, true))
      assert.equal("network", info.kind)
      assert.equal(3, info.attempts)
      assert.equal(7, info.curl_code) -- CURLE_COULDNT_CONNECT
      assert.is_nil(info.status)
      assert.is_true(h.now() - t0 < 5)
      h.assert_no_token(err)
      h.assert_no_token(info)
    end)

    it("retry a timeout: kind timeout", function()
      local id = h.fresh_id("slow_ok_1500")
      local t0 = h.now()
      local msg, err, info = ghl.get_message(id, h.opts { timeout = 0.3, retries = 1, max_retry_delay = 0 })
      local elapsed = h.now() - t0
      assert.is_nil(msg)
      assert.matches("^ghl: ", err)
      assert.equal("timeout", info.kind)
      assert.equal(28, info.curl_code) -- CURLE_OPERATION_TIMEDOUT
      assert.equal(2, info.attempts)
      assert.equal(2, #h.requests_for(id))
      assert.is_true(elapsed >= 0.55 and elapsed < 2.0, "elapsed " .. elapsed)
    end)

    it("time out once with retries = 0", function()
      local id = h.fresh_id("slow_ok_1500")
      local t0 = h.now()
      local msg, _, info = ghl.get_message(id, h.opts { timeout = 0.3, retries = 0 })
      local elapsed = h.now() - t0
      assert.is_nil(msg)
      assert.equal("timeout", info.kind)
      assert.equal(1, info.attempts)
      assert.equal(1, #h.requests_for(id))
      assert.is_true(elapsed >= 0.25 and elapsed < 1.2, "elapsed " .. elapsed)
    end)
  end)
end)

describe("client", function()
  it("reuses one connection for calls in a row", function()
    local c = ghl.new(h.opts { retries = 0 })
    local a, b = h.fresh_id("sms"), h.fresh_id("call")
    local m1, e1 = c:get_message(a)
    local m2, e2 = c:get_message(b)
    c:close()
    assert.is_nil(e1)
    assert.is_nil(e2)
    assert.equal("TYPE_SMS", m1.type)
    assert.equal("TYPE_CALL", m2.type)
    local ra, rb = h.requests_for(a)[1], h.requests_for(b)[1]
    assert.equal(ra.conn, rb.conn)
  end)

  it("reuses one TLS connection for calls in a row", function()
    local c = ghl.new(h.tls_opts { retries = 0 })
    local a, b = h.fresh_id("sms"), h.fresh_id("sms")
    assert.is_table((c:get_message(a)))
    assert.is_table((c:get_message(b)))
    c:close()
    assert.equal(h.requests_for(a)[1].conn, h.requests_for(b)[1].conn)
    assert.equal("https", h.requests_for(b)[1].listener)
  end)

  it("keeps the connection after an HTTP error response", function()
    local c = ghl.new(h.opts { retries = 0 })
    local a, b = h.fresh_id("err_404"), h.fresh_id("sms")
    assert.is_nil((c:get_message(a)))
    assert.is_table((c:get_message(b)))
    c:close()
    assert.equal(h.requests_for(a)[1].conn, h.requests_for(b)[1].conn)
  end)

  it("returns the same shapes as ghl.get_message", function()
    local c = ghl.new(h.opts { retries = 0 })
    local id = h.fresh_id("err_404")
    local msg, err, info = c:get_message(id)
    c:close()
    assert.is_nil(msg)
    assert.equal("ghl: HTTP 404 Not Found: Message not found" .. suffix(id), err)
    assert.equal("http", info.kind)
    assert.equal(404, info.status)
    assert.equal("Message not found", info.message)
    assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000404", info.trace_id)
    assert.equal(1, info.attempts)
    h.assert_no_token(err)
    h.assert_no_token(info)
  end)

  it("applies its options to every call (convert_enums, version)", function()
    local c = ghl.new(h.opts { retries = 0, convert_enums = false, version = "2099-12-31" })
    local id = h.fresh_id("call")
    local msg = c:get_message(id)
    c:close()
    assert.equal(1, msg.type)
    assert.equal("2099-12-31", h.requests_for(id)[1].headers.version)
  end)

  it("uses its retries, which a call may override", function()
    local c = ghl.new(h.opts { retries = 1, max_retry_delay = 0 })
    local a, b = h.fresh_id("err_503"), h.fresh_id("err_503")
    local _, _, ia = c:get_message(a)
    local _, _, ib = c:get_message(b, { retries = 0 })
    local _, _, ic = c:get_message(h.fresh_id("err_503"))
    c:close()
    assert.equal(2, ia.attempts)
    assert.equal(1, ib.attempts)
    assert.equal(2, ic.attempts, "the override lasts one call")
    assert.equal(2, #h.requests_for(a))
    assert.equal(1, #h.requests_for(b))
  end)

  it("lets a call override timeout", function()
    local c = ghl.new(h.opts { retries = 0, timeout = 30 })
    local t0 = h.now()
    local msg, _, info = c:get_message(h.fresh_id("slow_ok_1500"), { timeout = 0.3 })
    assert.is_nil(msg)
    assert.equal("timeout", info.kind)
    assert.is_true(h.now() - t0 < 1.2)
    local ok = c:get_message(h.fresh_id("slow_ok_100"))
    assert.is_table(ok)
    c:close()
  end)

  describe("rate_limit()", function()
    it("is nil before any response", function()
      local c = ghl.new(h.opts { retries = 0 })
      assert.is_nil(c:rate_limit())
      c:close()
    end)

    it("gives the last response's figures, error responses included", function()
      local c = ghl.new(h.opts { retries = 0 })
      local a = h.fresh_id("sms")
      local _, _, info = c:get_message(a)
      local rl = c:rate_limit()
      assert.same(logged_rl(h.requests_for(a)[1]), rl)
      assert.same(info.rate_limit, rl)
      assert_rl_integers(rl)
      assert.equal(100, rl.max)
      assert.equal(10000, rl.interval_ms)
      assert.equal(200000, rl.daily_limit)

      local b = h.fresh_id("rl_zero_2500")
      c:get_message(b)
      rl = c:rate_limit()
      assert.same(logged_rl(h.requests_for(b)[1]), rl)
      assert.equal(0, rl.remaining)
      assert.equal(2500, rl.interval_ms)

      local d = h.fresh_id("err_404")
      c:get_message(d)
      assert.same(logged_rl(h.requests_for(d)[1]), c:rate_limit())
      c:close()
    end)

    it("is nil after a response without the headers", function()
      local c = ghl.new(h.opts { retries = 0 })
      c:get_message(h.fresh_id("sms"))
      assert.is_table(c:rate_limit())
      local msg = c:get_message(h.fresh_id("no_ratelimit"))
      assert.is_table(msg)
      assert.is_nil(c:rate_limit())
      c:close()
    end)

    it("follows the remaining count down", function()
      local c = ghl.new(h.opts { retries = 0 })
      local a, b = h.fresh_id("sms"), h.fresh_id("sms")
      c:get_message(a)
      local first = c:rate_limit()
      c:get_message(b)
      local second = c:rate_limit()
      c:close()
      assert.equal(logged_rl(h.requests_for(a)[1]).remaining, first.remaining)
      assert.equal(logged_rl(h.requests_for(b)[1]).remaining, second.remaining)
    end)
  end)

  describe("close()", function()
    it("is idempotent and later calls raise", function()
      local c = ghl.new(h.opts { retries = 0 })
      assert.is_table((c:get_message(h.fresh_id("sms"))))
      c:close()
      c:close()
      local before = #h.requests()
      assert.has_error(function() c:get_message(h.fresh_id("sms")) end)
      assert.has_error(function() c:rate_limit() end)
      assert.has_error(function() c:get_messages({ h.fresh_id("sms") }) end)
      assert.equal(before, #h.requests())
    end)

    it("works on a client that never sent anything", function()
      local c = ghl.new(h.opts())
      c:close()
      c:close()
    end)

    it("is not needed: a dropped client is collected", function()
      for _ = 1, 5 do
        local c = ghl.new(h.opts { retries = 0 })
        c:get_message(h.fresh_id("sms"))
      end
      collectgarbage()
      collectgarbage()
      local msg = ghl.get_message(h.fresh_id("sms"), h.opts { retries = 0 })
      assert.is_table(msg)
    end)

    if h.IS_54 then
      it("runs from __close when a <close> variable leaves scope (Lua 5.4)", function()
        local chunk = assert(load([[
          local ghl, opts, id = ...
          local kept, msg
          do
            local c <close> = ghl.new(opts)
            kept = c
            msg = c:get_message(id)
          end
          return kept, msg
        ]], "=close_scope"))
        local c, msg = chunk(ghl, h.opts { retries = 0 }, h.fresh_id("sms"))
        assert.is_table(msg)
        assert.has_error(function() c:get_message(h.fresh_id("sms")) end)
        c:close()
      end)

      it("runs from __close when the scope is left by an error (Lua 5.4)", function()
        local chunk = assert(load([[
          local ghl, opts = ...
          local kept
          local ok = pcall(function()
            local c <close> = ghl.new(opts)
            kept = c
            error("leaving")
          end)
          return ok, kept
        ]], "=close_error"))
        local ok, c = chunk(ghl, h.opts { retries = 0 })
        assert.is_false(ok)
        assert.has_error(function() c:get_message(h.fresh_id("sms")) end)
      end)
    end
  end)
end)
