-- Retries: which failures are tried again, how many times, and how long the
-- module waits in between (measured from the server log's arrival times).

local h = require("helpers")
local ghl = require("ghl")

-- Slack for the gap between two logged arrivals: timer and scheduling noise
-- below, the request's own round trip above.
local EARLY = 0.05
local LATE = 0.5

local function get(scenario, extra)
  local id = h.fresh_id(scenario)
  local msg, err, info = ghl.get_message(id, h.opts(extra))
  assert.is_table(info)
  if err then h.assert_no_token(err, nil, "errmsg") end
  h.assert_no_token(info, nil, "info")
  return id, msg, err, info
end

local gaps = h.gaps

local function assert_gap_between(g, low, high, what)
  assert.is_number(g, (what or "gap") .. " missing")
  assert.is_true(g >= low - EARLY, (what or "gap") .. " " .. g .. " < " .. low)
  assert.is_true(g <= high, (what or "gap") .. " " .. g .. " > " .. high)
end

-- The attempts the server logged for id, as their statuses.
local function logged_statuses(id)
  local out = {}
  for i, r in ipairs(h.requests_for(id)) do
    assert.equal(i, r.attempt)
    out[i] = r.status
  end
  return out
end

describe("retries", function()
  describe("Retry-After", function()
    it("in seconds: the wait is at least the header's value", function()
      local id, msg, err, info = get("ra_secs_1", { retries = 1, max_retry_delay = 5 })
      assert.is_nil(msg)
      assert.matches("^ghl: HTTP 429 Too Many Requests: ", err)
      assert.equal("http", info.kind)
      assert.equal(429, info.status)
      assert.equal(2, info.attempts)
      assert.equal(1, info.retry_after)
      assert.same({ 429, 429 }, logged_statuses(id))
      assert_gap_between(gaps(h.requests_for(id))[1], 1, 1 + LATE)
    end)

    it("in seconds, then success", function()
      local id, msg, err, info = get("flaky_429ra_1_1", { retries = 2, max_retry_delay = 5 })
      assert.is_nil(err)
      assert.same(h.expected_message(ghl, "sms.json"), msg)
      assert.equal(2, info.attempts)
      assert.is_nil(info.retry_after, "the last response had no Retry-After")
      assert.same({ 429, 200 }, logged_statuses(id))
      assert_gap_between(gaps(h.requests_for(id))[1], 1, 1 + LATE)
    end)

    it("in seconds is capped by max_retry_delay", function()
      local id, msg, _, info = get("ra_secs_30", { retries = 2, max_retry_delay = 0.2 })
      assert.is_nil(msg)
      assert.equal(3, info.attempts)
      assert.equal(30, info.retry_after)
      for i, g in ipairs(gaps(h.requests_for(id))) do
        assert_gap_between(g, 0.2, 0.2 + LATE, "wait " .. i)
      end
    end)

    -- An HTTP date has whole seconds: a date "2 s ahead" is between 1 and 2 s ahead.
    it("as an HTTP date: the wait reaches the date", function()
      local id, msg, _, info = get("ra_date_2", { retries = 1, max_retry_delay = 5 })
      assert.is_nil(msg)
      assert.equal(2, info.attempts)
      assert.is_true(info.retry_after == 1 or info.retry_after == 2, "retry_after " .. tostring(info.retry_after))
      assert.same({ 429, 429 }, logged_statuses(id))
      assert_gap_between(gaps(h.requests_for(id))[1], 1, 2 + LATE)
    end)

    it("as an HTTP date is capped by max_retry_delay", function()
      local id, msg, _, info = get("ra_date_30", { retries = 1, max_retry_delay = 0.2 })
      assert.is_nil(msg)
      assert.equal(2, info.attempts)
      assert.is_true(info.retry_after >= 29 and info.retry_after <= 30, "retry_after " .. info.retry_after)
      assert_gap_between(gaps(h.requests_for(id))[1], 0.2, 0.2 + LATE)
    end)
  end)

  describe("429 with X-RateLimit-Remaining: 0", function()
    it("waits the interval header", function()
      local id, msg, err, info = get("flaky_429rl_600_1", { retries = 1, max_retry_delay = 5 })
      assert.is_nil(err)
      assert.is_table(msg)
      assert.equal(2, info.attempts)
      assert.same({ 429, 200 }, logged_statuses(id))
      assert_gap_between(gaps(h.requests_for(id))[1], 0.6, 0.6 + LATE)
    end)

    it("caps the interval at max_retry_delay", function()
      local id, msg, _, info = get("rl_zero_60000", { retries = 1, max_retry_delay = 0.2 })
      assert.is_nil(msg)
      assert.equal(429, info.status)
      assert.equal(2, info.attempts)
      assert.equal(0, info.rate_limit.remaining)
      assert.equal(60000, info.rate_limit.interval_ms)
      assert.is_nil(info.retry_after)
      assert_gap_between(gaps(h.requests_for(id))[1], 0.2, 0.2 + LATE)
    end)
  end)

  describe("retryable statuses", function()
    local CASES = {
      { "429", 429 }, { "500", 500 }, { "502", 502 }, { "503", 503 }, { "504", 504 },
      { "524", 524 }, { "cto", 401 },
    }
    for _, case in ipairs(CASES) do
      local s, status = case[1], case[2]
      it(status .. " (" .. s .. ") is retried until it succeeds", function()
        local id, msg, err, info = get("flaky_" .. s .. "_2", { retries = 2, max_retry_delay = 0 })
        assert.is_nil(err)
        assert.same(h.expected_message(ghl, "sms.json"), msg)
        assert.is_nil(info.kind)
        assert.equal(200, info.status)
        assert.equal(3, info.attempts)
        assert.same({ status, status, 200 }, logged_statuses(id))
      end)
    end

    for _, case in ipairs {
      { "err_500", 500 }, { "err_502_html", 502 }, { "err_503", 503 }, { "err_504", 504 },
      { "err_524_html", 524 }, { "err_401_cto", 401 },
    } do
      it(case[1] .. " gives up after retries + 1 attempts", function()
        local id, msg, err, info = get(case[1], { retries = 3, max_retry_delay = 0 })
        assert.is_nil(msg)
        assert.matches("^ghl: HTTP " .. case[2] .. " ", err)
        assert.equal("http", info.kind)
        assert.equal(case[2], info.status)
        assert.equal(4, info.attempts)
        assert.same({ case[2], case[2], case[2], case[2] }, logged_statuses(id))
      end)
    end

    it("the 401 Command timed out keeps its message", function()
      local id, _, err, info = get("err_401_cto", { retries = 1, max_retry_delay = 0 })
      assert.equal("ghl: HTTP 401 Unauthorized: Command timed out (GET /conversations/messages/" .. id .. ")", err)
      assert.equal("Command timed out", info.message)
      assert.equal(2, info.attempts)
    end)
  end)

  describe("statuses that are not retried", function()
    for _, case in ipairs {
      { "err_401_jwt", 401 }, { "err_400", 400 }, { "err_403_json", 403 }, { "err_403_html", 403 },
      { "err_404", 404 }, { "err_422", 422 },
    } do
      it(case[1] .. " is tried once", function()
        local id, msg, _, info = get(case[1], { retries = 3, max_retry_delay = 0 })
        assert.is_nil(msg)
        assert.equal("http", info.kind)
        assert.equal(case[2], info.status)
        assert.equal(1, info.attempts)
        assert.same({ case[2] }, logged_statuses(id))
      end)
    end
  end)

  describe("retries = 0", function()
    for _, scenario in ipairs { "flaky_503_1", "flaky_429ra_1_1", "flaky_429rl_600_1", "flaky_cto_1" } do
      it("turns retrying off for " .. scenario, function()
        local t0 = h.now()
        local id, msg, _, info = get(scenario, { retries = 0, max_retry_delay = 5 })
        local elapsed = h.now() - t0
        assert.is_nil(msg)
        assert.equal("http", info.kind)
        assert.equal(1, info.attempts)
        assert.equal(1, #h.requests_for(id))
        assert.is_true(elapsed < 0.5, "no wait after the last attempt: " .. elapsed .. " s")
      end)
    end
  end)

  describe("backoff", function()
    it("the n-th wait is within [0, 0.5 * 2^(n-1)] s", function()
      local id, msg, _, info = get("flaky_503_3", { retries = 3, max_retry_delay = 30 })
      assert.is_table(msg)
      assert.equal(4, info.attempts)
      local g = gaps(h.requests_for(id))
      assert.equal(3, #g)
      assert_gap_between(g[1], 0, 0.5 + 0.15, "wait 1")
      assert_gap_between(g[2], 0, 1.0 + 0.15, "wait 2")
      assert_gap_between(g[3], 0, 2.0 + 0.15, "wait 3")
    end)

    it("is jittered: the first waits are not all at the ceiling", function()
      local below = 0
      for _ = 1, 6 do
        local id, msg = get("flaky_503_1", { retries = 1, max_retry_delay = 30 })
        assert.is_table(msg)
        local g = gaps(h.requests_for(id))[1]
        assert_gap_between(g, 0, 0.5 + 0.15, "wait")
        if g < 0.4 then below = below + 1 end
      end
      assert.is_true(below > 0, "six waits all in [0.4, 0.5] s")
    end)

    it("every wait is capped by max_retry_delay", function()
      local id, msg, _, info = get("flaky_503_5", { retries = 5, max_retry_delay = 0.1 })
      assert.is_table(msg)
      assert.equal(6, info.attempts)
      for i, g in ipairs(gaps(h.requests_for(id))) do
        assert_gap_between(g, 0, 0.1 + 0.15, "wait " .. i)
      end
    end)

    it("max_retry_delay = 0 retries at once", function()
      local id, msg = get("flaky_500_4", { retries = 4, max_retry_delay = 0 })
      assert.is_table(msg)
      for i, g in ipairs(gaps(h.requests_for(id))) do
        assert_gap_between(g, 0, 0.15, "wait " .. i)
      end
    end)

    it("retries = 10 is the most, and it is honoured", function()
      local id, msg, _, info = get("err_503", { retries = 10, max_retry_delay = 0 })
      assert.is_nil(msg)
      assert.equal(11, info.attempts)
      assert.equal(11, #h.requests_for(id))
    end)
  end)

  describe("per-call override on a client", function()
    it("client:get_message's retries applies to that call only", function()
      local c = ghl.new(h.opts { retries = 2, max_retry_delay = 0 })
      local a, b, d = h.fresh_id("err_503"), h.fresh_id("err_503"), h.fresh_id("err_503")
      local _, _, ia = c:get_message(a, { retries = 0 })
      local _, _, ib = c:get_message(b)
      local _, _, id_ = c:get_message(d, { retries = 1 })
      c:close()
      assert.equal(1, ia.attempts)
      assert.equal(3, ib.attempts)
      assert.equal(2, id_.attempts)
      assert.equal(1, #h.requests_for(a))
      assert.equal(3, #h.requests_for(b))
      assert.equal(2, #h.requests_for(d))
    end)

    it("a call may turn retrying on for a client that has it off", function()
      local c = ghl.new(h.opts { retries = 0, max_retry_delay = 0 })
      local id = h.fresh_id("flaky_502_2")
      local msg, err, info = c:get_message(id, { retries = 2 })
      c:close()
      assert.is_nil(err)
      assert.is_table(msg)
      assert.equal(3, info.attempts)
      assert.same({ 502, 502, 200 }, logged_statuses(id))
    end)

    it("client:get_messages takes retries per call too", function()
      local c = ghl.new(h.opts { retries = 0, max_retry_delay = 0 })
      local a, b = h.fresh_id("flaky_503_2"), h.fresh_id("err_404")
      local messages, failures = c:get_messages({ a, b }, { retries = 2 })
      c:close()
      assert.is_table(messages[a])
      assert.equal(3, #h.requests_for(a))
      assert.equal(1, failures[b].attempts)
      assert.equal(404, failures[b].status)
      assert.equal(1, #h.requests_for(b))
    end)

    it("a call may override timeout, and timeouts are retried", function()
      local c = ghl.new(h.opts { retries = 0, timeout = 30, max_retry_delay = 0 })
      local id = h.fresh_id("slow_ok_1000")
      local t0 = h.now()
      local msg, _, info = c:get_message(id, { timeout = 0.2, retries = 1 })
      local elapsed = h.now() - t0
      c:close()
      assert.is_nil(msg)
      assert.equal("timeout", info.kind)
      assert.equal(28, info.curl_code)
      assert.equal(2, info.attempts)
      assert.equal(2, #h.requests_for(id))
      assert.is_true(elapsed >= 0.35 and elapsed < 1.5, "elapsed " .. elapsed)
    end)
  end)
end)
