-- The fault matrix: what get_message returns when the network, the server or
-- the body goes wrong, with the exact errmsg, info fields and attempt counts.

local h = require("helpers")
local ghl = require("ghl")

local MiB = 1024 * 1024

local suffix = h.request_suffix

-- A pattern for errmsg: literal `head`, then `middle` (a pattern), then the request.
local function errmsg_pattern(head, middle, id)
  return "^" .. h.literal(head) .. (middle or "") .. h.literal(suffix(id)) .. "$"
end

local function get(scenario, extra)
  local id = h.fresh_id(scenario)
  local msg, err, info = ghl.get_message(id, h.opts(extra))
  assert.is_table(info)
  if err then
    assert.is_string(err)
    assert.is_nil(err:find("\n", 1, true), "errmsg is one line")
    h.assert_no_token(err, nil, "errmsg")
  end
  h.assert_no_token(info, nil, "info")
  return id, msg, err, info
end

local function count_listener(name)
  local n = 0
  for _, r in ipairs(h.requests()) do
    if r.listener == name then n = n + 1 end
  end
  return n
end

-- A TCP port on 127.0.0.1 that nothing listens on. Plain Lua cannot bind a
-- socket, so Python binds an ephemeral port and closes it at once: a connect
-- to it is then refused (unless another process takes the port in the few
-- milliseconds in between, which nothing on a test machine does).
local function closed_port()
  local p = assert(io.popen(h.PYTHON .. " -c 'import socket; s = socket.socket(); "
    .. "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1]); s.close()'"))
  local line = p:read("*l")
  p:close()
  return assert(tonumber(line), "no port from python: " .. tostring(line))
end

describe("faults", function()
  describe("connection refused", function()
    it("is kind network, curl_code 7, no status, tried once with retries = 0", function()
      local port = closed_port()
      local id = h.fresh_id("sms")
      local before = #h.requests()
      local t0 = h.now()
      local msg, err, info = ghl.get_message(id, {
        token = h.TOKEN, base_url = "http://127.0.0.1:" .. port, retries = 0,
      })
      assert.is_nil(msg)
      assert.matches(errmsg_pattern("ghl: network error: Failed to connect to 127.0.0.1 port " .. port
        .. " after ", "%d+ ms: Couldn't connect to server", id), err)
      assert.equal("network", info.kind)
      assert.equal(7, info.curl_code) -- CURLE_COULDNT_CONNECT
      assert.equal(1, info.attempts)
      assert.is_nil(info.status)
      assert.is_nil(info.body)
      assert.is_nil(info.message)
      assert.is_nil(info.rate_limit)
      assert.is_nil(info.retry_after)
      assert.is_true(h.now() - t0 < 2)
      assert.equal(before, #h.requests())
      h.assert_no_token(err)
      h.assert_no_token(info)
    end)

    it("is retried: 3 attempts with the default retries", function()
      local port = closed_port()
      local id = h.fresh_id("sms")
      local t0 = h.now()
      local msg, err, info = ghl.get_message(id, {
        token = h.TOKEN, base_url = "http://127.0.0.1:" .. port, max_retry_delay = 0.05,
      })
      assert.is_nil(msg)
      assert.matches("^ghl: network error: ", err)
      assert.equal("network", info.kind)
      assert.equal(7, info.curl_code)
      assert.equal(3, info.attempts)
      assert.is_true(h.now() - t0 < 2)
    end)
  end)

  describe("never_answer", function()
    it("times out after `timeout`: kind timeout, curl_code 28", function()
      local t0 = h.now()
      local id, msg, err, info = get("never_answer", { timeout = 1, retries = 0 })
      local elapsed = h.now() - t0
      assert.is_nil(msg)
      assert.matches(errmsg_pattern("ghl: timeout: Operation timed out after ",
        "%d+ milliseconds with 0 bytes received", id), err)
      assert.equal("timeout", info.kind)
      assert.equal(28, info.curl_code) -- CURLE_OPERATION_TIMEDOUT
      assert.equal(1, info.attempts)
      assert.is_nil(info.status)
      assert.is_nil(info.body)
      assert.is_nil(info.rate_limit)
      assert.is_true(elapsed >= 0.9 and elapsed <= 3, "elapsed " .. elapsed)
      assert.equal(1, #h.requests_for(id))
    end)

    it("is retried: 3 attempts with the default retries", function()
      local t0 = h.now()
      local id, msg, _, info = get("never_answer", { timeout = 0.4, max_retry_delay = 0.05 })
      local elapsed = h.now() - t0
      assert.is_nil(msg)
      assert.equal("timeout", info.kind)
      assert.equal(28, info.curl_code)
      assert.equal(3, info.attempts)
      local reqs = h.requests_for(id)
      assert.equal(3, #reqs)
      for i, r in ipairs(reqs) do assert.equal(i, r.attempt) end
      assert.is_true(elapsed >= 1.1 and elapsed < 3, "elapsed " .. elapsed)
    end)
  end)

  it("stall_half times out with the half body received", function()
    local sms = h.fixture("sms.json")
    local half = math.floor(#sms / 2)
    local t0 = h.now()
    local id, msg, err, info = get("stall_half", { timeout = 0.5, retries = 0 })
    local elapsed = h.now() - t0
    assert.is_nil(msg)
    assert.matches(errmsg_pattern("ghl: timeout: Operation timed out after ",
      "%d+ milliseconds with " .. half .. " out of " .. #sms .. " bytes received", id), err)
    assert.equal("timeout", info.kind)
    assert.equal(28, info.curl_code)
    assert.equal(200, info.status)
    assert.equal(1, info.attempts)
    assert.equal(sms:sub(1, half), info.body)
    assert.is_true(elapsed >= 0.45 and elapsed < 2, "elapsed " .. elapsed)
  end)

  describe("reset_mid_body", function()
    it("is kind network with curl_code 56", function()
      local id, msg, err, info = get("reset_mid_body", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: network error: Recv failure: Connection reset by peer" .. suffix(id), err)
      assert.equal("network", info.kind)
      assert.equal(56, info.curl_code) -- CURLE_RECV_ERROR
      assert.equal(200, info.status)
      assert.equal(1, info.attempts)
      assert.is_nil(info.message)
      assert.equal(1, #h.requests_for(id))
    end)

    it("is retried", function()
      local id, msg, _, info = get("reset_mid_body", { retries = 2, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.equal("network", info.kind)
      assert.equal(3, info.attempts)
      assert.equal(3, #h.requests_for(id))
    end)
  end)

  describe("short_body", function()
    it("is kind network with curl_code 18", function()
      local sms = h.fixture("sms.json")
      local id, msg, err, info = get("short_body", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: network error: transfer closed with 100 bytes remaining to read" .. suffix(id), err)
      assert.equal("network", info.kind)
      assert.equal(18, info.curl_code) -- CURLE_PARTIAL_FILE
      assert.equal(200, info.status)
      assert.equal(1, info.attempts)
      assert.equal(sms, info.body)
    end)

    it("is retried", function()
      local id, msg, _, info = get("short_body", { retries = 2, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.equal(18, info.curl_code)
      assert.equal(3, info.attempts)
      assert.equal(3, #h.requests_for(id))
    end)
  end)

  it("slow_drip succeeds within timeout = 5", function()
    local t0 = h.now()
    local id, msg, err, info = get("slow_drip", { timeout = 5, retries = 0 })
    assert.is_nil(err)
    assert.same(h.expected_message(ghl, "sms.json"), msg)
    assert.equal(1, info.attempts)
    assert.equal(1, #h.requests_for(id))
    assert.is_true(h.now() - t0 < 5)
  end)

  describe("max_body_size", function()
    it("huge_9mib fails with too_large on its Content-Length, reading none of the body", function()
      local id, msg, err, info = get("huge_9mib", {})
      assert.is_nil(msg)
      assert.equal("ghl: response too large: more than 8388608 bytes (max_body_size)" .. suffix(id), err)
      assert.equal("too_large", info.kind)
      assert.equal(200, info.status)
      assert.equal(1, info.attempts, "too_large is not retried")
      assert.is_nil(info.curl_code)
      assert.is_nil(info.body, "not a byte of the body was kept")
      assert.equal(1, #h.requests_for(id))
      -- The server logs how far it got before the client went away. What it
      -- managed to send sits in the two sockets' buffers (about 1 MiB on
      -- loopback); the module closed the connection on the headers.
      local ev = h.wait_for(function() return h.events(id)[1] end, 5)
      assert.is_table(ev, "the server logged no event for " .. id)
      assert.equal("client_gone", ev.event)
      assert.equal(9 * MiB, ev.total)
      assert.is_true(ev.bytes_sent < 4 * MiB, "bytes_sent " .. tostring(ev.bytes_sent))
      assert.equal(1, #h.events(id))
    end)

    it("huge_9mib succeeds with max_body_size = 10 MiB", function()
      local id, msg, err, info = get("huge_9mib", { max_body_size = 10 * MiB, retries = 0 })
      assert.is_nil(err)
      assert.equal(200, info.status)
      assert.equal("TYPE_SMS", msg.type)
      assert.is_true(#msg.body > 9 * MiB - 1024 and msg.body:match("^a+$") ~= nil)
      local ev = h.wait_for(function() return h.events(id)[1] end, 5)
      assert.equal("body_complete", ev.event)
      assert.equal(ev.total, ev.bytes_sent)
    end)

    -- No message fixture reaches 1000 bytes (sms.json is 749), so the limit is
    -- set around that body's length.
    it("a body one byte over the limit is too_large", function()
      local n = #h.fixture("sms.json")
      local id, msg, err, info = get("sms", { max_body_size = n - 1, retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: response too large: more than " .. (n - 1) .. " bytes (max_body_size)"
        .. suffix(id), err)
      assert.equal("too_large", info.kind)
      assert.equal(200, info.status)
      assert.equal(1, info.attempts)
      assert.is_nil(info.body)
    end)

    it("a body exactly at the limit, or under it, is read", function()
      local n = #h.fixture("sms.json")
      for _, limit in ipairs { n, 1000 } do
        local _, msg, err = get("sms", { max_body_size = limit, retries = 0 })
        assert.is_nil(err)
        assert.same(h.expected_message(ghl, "sms.json"), msg)
      end
    end)

    it("counts the decoded bytes of a compressed body", function()
      -- gzip makes sms.json 370 bytes on the wire: the Content-Length passes,
      -- the 749 decoded bytes do not.
      local id, msg, err, info = get("gzip_sms", { max_body_size = 600, retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: response too large: more than 600 bytes (max_body_size)" .. suffix(id), err)
      assert.equal("too_large", info.kind)
      assert.equal(200, info.status)
    end)
  end)

  describe("a 200 that is not a message", function()
    local long_brackets = string.rep("[", 64 * 1024)
    local CASES = {
      { "empty_200", "the body is empty", body = false },
      { "not_json", "the body is not valid JSON", body = 'this is not JSON {"message": ' },
      { "json_array", "no message in the body", body = h.fixture("json_array.json") },
      { "json_string", "the body is not a JSON object", body = h.fixture("json_string.json") },
      { "deep_nesting", "the body is not valid JSON", body = long_brackets }, -- cut at 64 KiB
      { "invalid_utf8", "the body is not valid UTF-8", body_has = "ab\255\254cd" },
      { "no_message", "no message in the body", body = h.fixture("no_message.json"),
        trace_id = h.trace_id("no_message.json") },
      { "message_string", "no message in the body", body = h.fixture("message_string.json"),
        trace_id = h.trace_id("message_string.json") },
      { "big_numbers", "a number is out of range", body_has = "1e400",
        trace_id = "7c1d2e3f-0a1b-4c5d-8e9f-000000000099" },
    }
    for _, case in ipairs(CASES) do
      local scenario, why = case[1], case[2]
      it(scenario .. " is kind decode: " .. why, function()
        local id, msg, err, info = get(scenario, { retries = 2, max_retry_delay = 0 })
        assert.is_nil(msg)
        assert.equal("ghl: cannot decode the response: " .. why .. suffix(id), err)
        assert.equal("decode", info.kind)
        assert.equal(200, info.status)
        assert.equal(1, info.attempts, "decode failures are not retried")
        assert.equal(1, #h.requests_for(id))
        assert.is_nil(info.curl_code)
        assert.is_nil(info.message)
        assert.equal(case.trace_id, info.trace_id)
        assert.is_table(info.rate_limit)
        if case.body == false then
          assert.is_nil(info.body)
        elseif case.body then
          assert.equal(case.body, info.body)
        else
          assert.is_string(info.body)
          assert.is_truthy(info.body:find(case.body_has, 1, true))
        end
      end)
    end
  end)

  describe("numbers and keys", function()
    it("2^53 + 1 decodes as a float (2^53), 2^53 - 1 as an integer", function()
      local _, msg, err = get("numbers", { retries = 0 })
      assert.is_nil(err)
      assert.is_true(h.is_float(msg.meta.beyondSafe))
      assert.equal(2 ^ 53, msg.meta.beyondSafe)
      assert.is_true(h.is_integer(msg.meta.maxSafe))
      assert.equal(9007199254740991, msg.meta.maxSafe)
      assert.equal(-9007199254740991, msg.meta.minSafe)
      if h.HAS_INTEGERS then
        assert.equal("integer", math.type(msg.meta.maxSafe))
        assert.equal("integer", math.type(msg.meta.minSafe))
        assert.equal("float", math.type(msg.meta.half))
      end
    end)

    it("dup_keys succeeds and the last value wins", function()
      local _, msg, err, info = get("dup_keys", { retries = 0 })
      assert.is_nil(err)
      assert.is_nil(info.kind)
      assert.equal("second", msg.body)
      assert.equal("sent", msg.status)
      assert.equal("TYPE_SMS", msg.type)
    end)
  end)

  describe("compression", function()
    for _, case in ipairs { { "gzip_sms", "gzip" }, { "deflate_sms", "deflate" } } do
      it(case[1] .. " is decoded", function()
        local id, msg, err, info = get(case[1], { retries = 0 })
        assert.is_nil(err)
        assert.same(h.expected_message(ghl, "sms.json"), msg)
        assert.equal(h.trace_id("sms.json"), info.trace_id)
        assert.matches(case[2], h.requests_for(id)[1].headers["accept-encoding"])
      end)
    end

    it("gzip_corrupt is kind decode without curl_code, not retried", function()
      local id, msg, err, info = get("gzip_corrupt", { retries = 2, max_retry_delay = 0 })
      assert.is_nil(msg)
      -- libcurl's text, then zlib's reason
      assert.matches(errmsg_pattern("ghl: cannot decode the response: "
        .. "Error while processing content unencoding: ", "[%w ]+", id), err)
      assert.equal("decode", info.kind)
      assert.is_nil(info.curl_code)
      assert.equal(200, info.status)
      assert.equal(1, info.attempts)
      assert.equal(1, #h.requests_for(id))
      assert.is_nil(info.body)
    end)
  end)

  describe("redirects are not followed", function()
    it("302 to the other origin: kind http, the other listener saw nothing", function()
      local other_before = count_listener("other")
      local id, msg, err, info = get("redirect_302_other", { retries = 3, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 302 Found: Moved" .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(302, info.status)
      assert.equal("Moved", info.message)
      assert.equal(1, info.attempts)
      assert.equal(1, #h.requests_for(id))
      assert.matches('"location": "http://127%.0%.0%.1:' .. h.other_port .. '/', info.body)
      -- no request at all reached the other origin, so it never saw the token
      assert.equal(other_before, count_listener("other"))
    end)

    it("301 to the same server: kind http, the target was not asked for", function()
      local id, msg, err, info = get("redirect_301_same", { retries = 3, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 301 Moved Permanently: Moved" .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(301, info.status)
      assert.equal(1, info.attempts)
      assert.equal(1, #h.requests_for(id))
      assert.equal(0, #h.requests_for("sms--" .. id:match("%-%-(.*)$") .. "-moved"))
    end)
  end)

  describe("HTTP error bodies", function()
    it("an HTML 403 has no message; body holds the HTML", function()
      local id, msg, err, info = get("err_403_html", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 403 Forbidden" .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(403, info.status)
      assert.is_nil(info.message)
      assert.is_nil(info.trace_id)
      assert.is_nil(info.curl_code)
      assert.equal(h.fixture("err_403.html"), info.body)
    end)

    it("an HTML 524 has no message; body holds the HTML", function()
      local id, msg, err, info = get("err_524_html", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 524 A Timeout Occurred" .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(524, info.status)
      assert.is_nil(info.message)
      assert.equal(h.fixture("err_524.html"), info.body)
    end)

    it("a 422's message array is joined with '; '", function()
      local id, msg, err, info = get("err_422", { retries = 0 })
      local text = "id must be a string; id must be longer than or equal to 20 characters"
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 422 Unprocessable Entity: " .. text .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(422, info.status)
      assert.equal(text, info.message)
      assert.equal(h.trace_id("err_422.json"), info.trace_id)
      assert.equal(h.fixture("err_422.json"), info.body)
    end)

    it("a 500 with an empty body has no body and no message", function()
      local id, msg, err, info = get("err_500_empty", { retries = 0 })
      assert.is_nil(msg)
      assert.equal("ghl: HTTP 500 Internal Server Error" .. suffix(id), err)
      assert.equal("http", info.kind)
      assert.equal(500, info.status)
      assert.is_nil(info.body)
      assert.is_nil(info.message)
      assert.is_nil(info.trace_id)
      assert.equal(1, info.attempts)
    end)
  end)
end)
