-- The token stays secret: nothing the module returns, raises or prints holds
-- it, across every scenario of the test server. And TLS: verification, cainfo,
-- ssl_verify = false, the host name.

local h = require("helpers")
local ghl = require("ghl")

local TOKEN = h.TOKEN

local suffix = h.request_suffix

-- The scenarios the server knows, one concrete name for each pattern. The
-- sweep below also takes whatever else the table in server.py lists.
local KNOWN = {
  "sms", "call", "email", "top_level", "whatsapp_no_mt", "sms_mt_plain", "unknown_type", "type_string",
  "rcs", "nulls", "numbers", "unicode", "gzip_sms", "deflate_sms", "message_string", "no_ratelimit",
  "open_sms",
  "err_400", "err_401_jwt", "err_401_cto", "err_403_json", "err_403_html", "err_404", "err_422",
  "err_500", "err_500_empty", "err_502_html", "err_503", "err_504", "err_524_html",
  "ra_secs_1", "ra_date_1", "rl_zero_100", "redirect_302_other", "redirect_301_same",
  "flaky_429_1", "flaky_500_1", "flaky_502_1", "flaky_503_1", "flaky_504_1", "flaky_524_1",
  "flaky_cto_1", "flaky_429ra_1_1", "flaky_429rl_100_1",
  "never_answer", "stall_half", "reset_mid_body", "short_body", "slow_drip", "huge_9mib",
  "empty_200", "not_json", "json_array", "json_string", "deep_nesting", "invalid_utf8",
  "big_numbers", "dup_keys", "no_message", "gzip_corrupt", "slow_ok_50",
  "no_such_scenario",
}

-- The names in the table at the top of server.py, placeholders made concrete
-- the way SCENARIOS has them.
local function documented_scenarios()
  local src = h.read_file(h.SPEC_DIR .. "/support/server.py")
  local tbl = assert(src:match("Scenario table.-\n(.-)\n  anything else"), "no scenario table in server.py")
  local out = {}
  for name in tbl:gmatch("\n    ([%w_<>]+)") do
    if name:find("<", 1, true) then
      if name == "flaky_<s>_<k>" then
        for _, s in ipairs { "429", "500", "502", "503", "504", "524", "cto" } do
          out[#out + 1] = "flaky_" .. s .. "_1"
        end
      else
        -- <ms> a short wait, any other placeholder (<n>, <k>, ...) 1
        out[#out + 1] = (name:gsub("<ms>", name:match("^slow") and "50" or "100"):gsub("<%w+>", "1"))
      end
    else
      out[#out + 1] = name
    end
  end
  return out
end

local SCENARIOS = {}
do
  local listed = {}
  for _, list in ipairs { KNOWN, documented_scenarios() } do
    for _, name in ipairs(list) do
      if not listed[name] then
        listed[name] = true
        SCENARIOS[#SCENARIOS + 1] = name
      end
    end
  end
end

describe("the token", function()
  it("the sweep reads the server's scenario table", function()
    local documented = {}
    for _, name in ipairs(documented_scenarios()) do documented[name] = true end
    for _, name in ipairs(KNOWN) do
      if name ~= "no_such_scenario" then
        assert.is_true(documented[name] == true, "not found in server.py's table: " .. name)
      end
    end
  end)

  -- Everything the module returned, by where it came from.
  local function check(where, ...)
    local n = select("#", ...)
    local values = { ... }
    for i = 1, n do
      h.assert_no_token(values[i], TOKEN, where .. " #" .. i)
    end
  end

  it("is in nothing ghl.get_message returns, over every scenario (HTTP)", function()
    local seen, sent = 0, 0
    for _, scenario in ipairs(SCENARIOS) do
      local id = h.fresh_id(scenario)
      local msg, err, info = ghl.get_message(id, h.opts {
        retries = 1, max_retry_delay = 0, timeout = 0.3,
      })
      assert.is_table(info, scenario)
      assert.is_true(msg ~= nil or type(err) == "string", scenario)
      check(scenario, msg, err, info)
      seen = seen + 1
      for _, r in ipairs(h.requests_for(id)) do
        if r.headers.authorization == "Bearer " .. TOKEN then sent = sent + 1 end
      end
    end
    assert.equal(#SCENARIOS, seen)
    -- the token did go out with every request, so its absence above means something
    assert.is_true(sent >= #SCENARIOS, "requests with the token: " .. sent)
  end)

  it("is in nothing a client returns over HTTPS, nor in tostring(client)", function()
    local c = ghl.new(h.tls_opts { retries = 0, max_retry_delay = 0, timeout = 0.3 })
    check("tostring(client)", tostring(c))
    for _, scenario in ipairs(SCENARIOS) do
      local id = h.fresh_id(scenario)
      check("https " .. scenario, c:get_message(id))
      check("rate_limit after " .. scenario, c:rate_limit())
    end
    local last = h.requests()[#h.requests()]
    assert.equal("https", last.listener)
    assert.equal("Bearer " .. TOKEN, last.headers.authorization)
    check("tostring(client)", tostring(c))
    c:close()
    check("tostring(closed client)", tostring(c))
    check("a call on a closed client", pcall(c.get_message, c, "abc"))
  end)

  it("is in nothing get_messages returns, failures included", function()
    local c = ghl.new(h.opts { retries = 0, max_retry_delay = 0, timeout = 0.3 })
    local ids, unknown = {}, nil
    for i, scenario in ipairs(SCENARIOS) do
      ids[i] = h.fresh_id(scenario)
      if scenario == "no_such_scenario" then unknown = ids[i] end
    end
    local messages, failures = c:get_messages(ids, { concurrency = 16 })
    local n = 0
    for _, id in ipairs(ids) do
      if messages[id] ~= nil or failures[id] ~= nil then n = n + 1 end
    end
    assert.equal(#ids, n)
    assert.equal("ghl: HTTP 404 Not Found: No such scenario: no_such_scenario" .. suffix(unknown),
      failures[unknown].errmsg)
    check("get_messages", messages, failures, c:rate_limit(), tostring(c))
    c:close()
  end)

  it("is in no error that misuse raises", function()
    local errs = {}
    local function collect(...) errs[#errs + 1] = select(2, pcall(...)) end
    local c = ghl.new(h.opts { retries = 0 })
    for _, id in ipairs { "a/b", "..", "a%2Fb", "a\nb", "a\0b", string.rep("a", 129), "", 42 } do
      collect(ghl.get_message, id, h.opts())
      collect(ghl.get_message_request, id, h.opts())
      collect(c.get_message, c, id)
      collect(c.get_messages, c, { "ok", id })
    end
    for _, tok in ipairs { TOKEN .. "\r\n", TOKEN .. " ", " " .. TOKEN, TOKEN .. "\t", TOKEN .. "\0" } do
      collect(ghl.get_message, "abc", { token = tok, base_url = h.http_url })
      collect(ghl.new, { token = tok })
      collect(ghl.get_message_request, "abc", { token = tok })
    end
    for _, o in ipairs {
      { timeout = "x" }, { retries = 11 }, { max_body_size = 0 }, { ssl_verify = "yes" },
      { base_url = "ftp://x" }, { version = "a\nb" }, { user_agent = {} }, { tokne = TOKEN },
      { cainfo = TOKEN .. "\n" }, { proxy = 1 },
    } do
      o.token = o.token or TOKEN
      collect(ghl.get_message, "abc", o)
      collect(ghl.new, o)
      collect(ghl.get_message_request, "abc", o)
    end
    collect(c.get_message, c, "abc", { token = TOKEN })
    collect(c.get_messages, c, { "abc" }, { token = TOKEN })
    c:close()
    collect(c.get_message, c, "abc")
    assert.is_true(#errs > 70)
    for i, e in ipairs(errs) do
      assert.is_string(e, "error " .. i)
      h.assert_no_token(e, TOKEN, "raised error " .. i)
    end
  end)

  it("is in nothing a failing or a succeeding run prints (subprocess)", function()
    local code = [[
      local ghl = require("ghl")
      local base = os.getenv("GHL_SPEC_URL")
      local function dump(v, seen)
        seen = seen or {}
        if type(v) ~= "table" then return tostring(v) end
        if seen[v] then return "<cycle>" end
        seen[v] = true
        local parts = {}
        for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. dump(x, seen) end
        table.sort(parts)
        return "{" .. table.concat(parts, ",") .. "}"
      end
      local function show(label, ...)
        local n = select("#", ...)
        local t = { ... }
        for i = 1, n do print(label, i, dump(t[i])) end
      end
      show("fail", ghl.get_message(os.getenv("GHL_SPEC_FAIL"), { base_url = base, retries = 0 }))
      local c = ghl.new({ base_url = base, retries = 0 })
      print("client", tostring(c))
      show("ok", c:get_message(os.getenv("GHL_SPEC_OK")))
      print("rate_limit", dump(c:rate_limit()))
      c:close()
      print("closed", tostring(c))
      local msg, err = ghl.get_message(os.getenv("GHL_SPEC_FAIL"), { base_url = base, retries = 0 })
      io.stderr:write("stderr: ", tostring(err), "\n")
      error(err)
    ]]
    local fail_id, ok_id = h.fresh_id("err_401_jwt"), h.fresh_id("sms")
    local ok, out = h.run_lua(code, {
      GHL_TOKEN = TOKEN, GHL_SPEC_URL = h.http_url, GHL_SPEC_FAIL = fail_id, GHL_SPEC_OK = ok_id,
    })
    assert.is_false(ok, "the run ends with error(err)")
    -- it ran as planned: the failure, the message, the closing error on stderr
    assert.is_truthy(out:find("ghl: HTTP 401 Unauthorized: Invalid JWT" .. suffix(fail_id), 1, true), out)
    assert.is_truthy(out:find("Xq1sMs0000aaaa000001", 1, true))
    assert.is_truthy(out:find("stderr: ghl: HTTP 401", 1, true))
    assert.is_truthy(out:find("closed\tghl.client (closed)", 1, true))
    assert.equal("Bearer " .. TOKEN, h.requests_for(ok_id)[1].headers.authorization)
    assert.equal(2, #h.requests_for(fail_id))
    h.assert_no_token(out, TOKEN, "the subprocess's output")
  end)

  it("is in nothing printed when a bad token raises uncaught (subprocess)", function()
    local ok, out = h.run_lua([[
      local ghl = require("ghl")
      ghl.new({ token = os.getenv("GHL_TOKEN") .. "\r\nX-Injected: 1" })
    ]], { GHL_TOKEN = TOKEN })
    assert.is_false(ok)
    assert.is_truthy(out:find("ghl: option 'token' must not contain", 1, true), out)
    h.assert_no_token(out, TOKEN, "the subprocess's output")
  end)
end)

describe("TLS", function()
  it("without cainfo the server's certificate is not trusted: kind tls, curl_code 60", function()
    local id = h.fresh_id("sms")
    local msg, err, info = ghl.get_message(id, {
      token = TOKEN, base_url = h.https_url, retries = 2, max_retry_delay = 0,
    })
    assert.is_nil(msg)
    assert.equal("ghl: TLS error: SSL certificate problem: unable to get local issuer certificate"
      .. suffix(id), err)
    assert.equal("tls", info.kind)
    assert.equal(60, info.curl_code) -- CURLE_PEER_FAILED_VERIFICATION
    assert.equal(1, info.attempts, "a certificate that fails verification is not retried")
    assert.is_nil(info.status)
    assert.is_nil(info.body)
    assert.is_nil(info.rate_limit)
    assert.equal(0, #h.requests_for(id), "no request went over the unverified connection")
    h.assert_no_token(err)
    h.assert_no_token(info)
  end)

  it("a cainfo file that does not exist: kind tls, curl_code 77", function()
    local id = h.fresh_id("sms")
    local msg, err, info = ghl.get_message(id, {
      token = TOKEN, base_url = h.https_url, retries = 0, cainfo = "/nonexistent/ghl-spec-ca.pem",
    })
    assert.is_nil(msg)
    assert.matches("^ghl: TLS error: [^\n]+" .. h.literal(suffix(id)) .. "$", err)
    assert.equal("tls", info.kind)
    assert.equal(77, info.curl_code) -- CURLE_SSL_CACERT_BADFILE
    assert.equal(0, #h.requests_for(id))
  end)

  it("with cainfo the request succeeds over TLS", function()
    local id = h.fresh_id("sms")
    local msg, err, info = ghl.get_message(id, h.tls_opts { retries = 0 })
    assert.is_nil(err)
    assert.same(h.expected_message(ghl, "sms.json"), msg)
    assert.equal(200, info.status)
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.equal("https", reqs[1].listener)
  end)

  it("ssl_verify = false without cainfo succeeds", function()
    local id = h.fresh_id("sms")
    local msg, err = ghl.get_message(id, {
      token = TOKEN, base_url = h.https_url, retries = 0, ssl_verify = false,
    })
    assert.is_nil(err)
    assert.same(h.expected_message(ghl, "sms.json"), msg)
    assert.equal("https", h.requests_for(id)[1].listener)
  end)

  it("the localhost name is verified against the certificate and works", function()
    local id = h.fresh_id("call")
    local msg, err = ghl.get_message(id, h.tls_opts { retries = 0, base_url = h.https_localhost_url })
    assert.is_nil(err)
    assert.same(h.expected_message(ghl, "call.json"), msg)
    assert.equal("https", h.requests_for(id)[1].listener)
  end)

  it("a client keeps verifying: a second call on it also succeeds over one connection", function()
    local c = ghl.new(h.tls_opts { retries = 0, base_url = h.https_localhost_url })
    local a, b = h.fresh_id("sms"), h.fresh_id("err_404")
    assert.is_table((c:get_message(a)))
    local msg, err, info = c:get_message(b)
    c:close()
    assert.is_nil(msg)
    assert.equal("ghl: HTTP 404 Not Found: Message not found" .. suffix(b), err)
    assert.equal("http", info.kind)
    assert.equal(h.requests_for(a)[1].conn, h.requests_for(b)[1].conn)
  end)
end)
