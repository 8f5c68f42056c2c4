-- Connection reuse (ghl.get_message, clients) and client:get_messages, judged
-- by what the local stand-in server logged: connections (`conn`), requests per
-- id, requests in flight (`inflight`), rate-limit windows (`window`) and
-- arrival times (`t`).

local h = require("helpers")
local ghl = require("ghl")

-- Clock difference between the module's monotonic clock and the server's
-- wall clock over a second or two, plus rounding of waits to milliseconds.
local TOLERANCE = 0.05

local path_of, logged_rl = h.message_path, h.logged_rate_limit

local function fresh_ids(scenario, n)
  local out = {}
  for i = 1, n do out[i] = h.fresh_id(scenario) end
  return out
end

-- The logged requests for any of `ids`, in log order.
local function requests_of(ids)
  local want = {}
  for _, id in ipairs(ids) do want[id] = true end
  local out = {}
  for _, r in ipairs(h.requests()) do
    if want[r.id] then out[#out + 1] = r end
  end
  return out
end

-- Distinct values of `field` in reqs: a set and its size.
local function distinct(reqs, field)
  local set, n = {}, 0
  for _, r in ipairs(reqs) do
    if not set[r[field]] then
      set[r[field]] = true
      n = n + 1
    end
  end
  return set, n
end

local count_keys = h.count_keys

local function per_id(reqs)
  local out = {}
  for _, r in ipairs(reqs) do
    out[r.id] = (out[r.id] or 0) + 1
  end
  return out
end

local function max_field(reqs, field)
  local m = 0
  for _, r in ipairs(reqs) do
    if r[field] > m then m = r[field] end
  end
  return m
end

local function log_size()
  return #h.requests()
end

local function client(extra)
  return ghl.new(h.opts(extra))
end

describe("connection reuse", function()
  describe("ghl.get_message", function()
    it("keeps one connection for a loop of calls with the same options", function()
      local ids = fresh_ids("sms", 6)
      for _, id in ipairs(ids) do
        -- a new table every time, with the same contents
        local msg, err = ghl.get_message(id, h.opts { retries = 0, timeout = 11 })
        assert.is_nil(err)
        assert.equal("Xq1sMs0000aaaa000001", msg.id)
      end
      local reqs = requests_of(ids)
      assert.equal(6, #reqs)
      local _, conns = distinct(reqs, "conn")
      assert.equal(1, conns)
    end)

    it("opens a second connection for other options and keeps both", function()
      local a = h.opts { retries = 0, user_agent = "ghl-spec-a" }
      local b = h.opts { retries = 0, user_agent = "ghl-spec-b" }
      local plan = { a, a, b, b, a, b, a }
      local ids = {}
      for i, o in ipairs(plan) do
        ids[i] = h.fresh_id("sms")
        local msg, err = ghl.get_message(ids[i], o)
        assert.is_nil(err)
        assert.is_table(msg)
      end
      local conn = {}
      for i, id in ipairs(ids) do
        local reqs = h.requests_for(id)
        assert.equal(1, #reqs)
        conn[i] = reqs[1].conn
      end
      for _, i in ipairs { 2, 5, 7 } do assert.equal(conn[1], conn[i]) end
      for _, i in ipairs { 4, 6 } do assert.equal(conn[3], conn[i]) end
      assert.not_equal(conn[1], conn[3])
    end)

    it("keeps one TLS connection for a loop of calls over HTTPS", function()
      local ids = fresh_ids("call", 5)
      for _, id in ipairs(ids) do
        local msg, err = ghl.get_message(id, h.tls_opts { retries = 0, timeout = 14 })
        assert.is_nil(err)
        assert.equal("TYPE_CALL", msg.type)
      end
      local reqs = requests_of(ids)
      assert.equal(5, #reqs)
      for _, r in ipairs(reqs) do assert.equal("https", r.listener) end
      local _, conns = distinct(reqs, "conn")
      assert.equal(1, conns)
    end)
  end)

  describe("a client", function()
    it("sends all its calls on one connection, per-call overrides included", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("sms", 6)
      for i, id in ipairs(ids) do
        local o = (i % 2 == 0) and { timeout = 5 + i, retries = 1 } or nil
        local msg, err = c:get_message(id, o)
        assert.is_nil(err)
        assert.is_table(msg)
      end
      c:close()
      local reqs = requests_of(ids)
      assert.equal(6, #reqs)
      local _, conns = distinct(reqs, "conn")
      assert.equal(1, conns)
    end)

    it("sends all its calls on one connection over HTTPS", function()
      local c = ghl.new(h.tls_opts { retries = 0 })
      local ids = fresh_ids("email", 4)
      for _, id in ipairs(ids) do
        local msg, err = c:get_message(id)
        assert.is_nil(err)
        assert.is_table(msg)
      end
      c:close()
      local reqs = requests_of(ids)
      assert.equal(4, #reqs)
      local _, conns = distinct(reqs, "conn")
      assert.equal(1, conns)
    end)

    it("gives way to a new connection when closed and made anew", function()
      local o = h.opts { retries = 0 }
      local first = client(o)
      local a, b = h.fresh_id("sms"), h.fresh_id("sms")
      assert.is_table((first:get_message(a)))
      assert.is_table((first:get_message(b)))
      first:close()
      local second = client(o)
      local x, y = h.fresh_id("sms"), h.fresh_id("sms")
      assert.is_table((second:get_message(x)))
      assert.is_table((second:get_message(y)))
      second:close()
      local ca, cb = h.requests_for(a)[1].conn, h.requests_for(b)[1].conn
      local cx, cy = h.requests_for(x)[1].conn, h.requests_for(y)[1].conn
      assert.equal(ca, cb)
      assert.equal(cx, cy)
      assert.not_equal(ca, cx)
    end)
  end)
end)

describe("client:get_messages", function()
  it("returns messages and failures keyed by id, one request per id", function()
    local c = client { retries = 0 }
    local ids = { h.fresh_id("sms"), h.fresh_id("call"), h.fresh_id("email") }
    local messages, failures = c:get_messages(ids)
    c:close()
    assert.is_table(messages)
    assert.is_table(failures)
    assert.equal(3, count_keys(messages))
    assert.equal(0, count_keys(failures))
    assert.same(h.expected_message(ghl, "sms.json"), messages[ids[1]])
    assert.same(h.expected_message(ghl, "call.json"), messages[ids[2]])
    assert.same(h.expected_message(ghl, "email.json"), messages[ids[3]])
    for _, id in ipairs(ids) do
      local reqs = h.requests_for(id)
      assert.equal(1, #reqs)
      assert.equal("GET", reqs[1].method)
      assert.equal(path_of(id), reqs[1].path)
      assert.equal("Bearer " .. h.TOKEN, reqs[1].headers.authorization)
      assert.equal("2021-04-15", reqs[1].headers.version)
    end
    h.assert_no_token(messages, nil, "messages")
  end)

  it("fetches a duplicated id once", function()
    local c = client { retries = 0 }
    local a, b, d = h.fresh_id("sms"), h.fresh_id("call"), h.fresh_id("err_404")
    local messages, failures = c:get_messages({ a, b, a, d, b, a, d })
    c:close()
    assert.equal(2, count_keys(messages))
    assert.equal(1, count_keys(failures))
    assert.is_table(messages[a])
    assert.is_table(messages[b])
    assert.equal(404, failures[d].status)
    assert.equal(1, failures[d].attempts)
    local counts = per_id(requests_of { a, b, d })
    assert.same({ [a] = 1, [b] = 1, [d] = 1 }, counts)
  end)

  it("puts each outcome in the right table with the right info", function()
    local c = client { max_retry_delay = 0.1 }
    local sms, call = h.fresh_id("sms"), h.fresh_id("call")
    local nf, flaky, down = h.fresh_id("err_404"), h.fresh_id("flaky_503_1"), h.fresh_id("err_503")
    local messages, failures = c:get_messages({ sms, call, nf, flaky, down }, { retries = 2 })
    c:close()
    assert.same({ [sms] = true, [call] = true, [flaky] = true },
      (function() local s = {} for k in pairs(messages) do s[k] = true end return s end)())
    assert.same({ [nf] = true, [down] = true },
      (function() local s = {} for k in pairs(failures) do s[k] = true end return s end)())
    assert.same(h.expected_message(ghl, "sms.json"), messages[sms])
    assert.same(h.expected_message(ghl, "call.json"), messages[call])
    assert.same(h.expected_message(ghl, "sms.json"), messages[flaky])

    local f = failures[nf]
    assert.equal("ghl: HTTP 404 Not Found: Message not found (GET " .. path_of(nf) .. ")", f.errmsg)
    assert.equal("http", f.kind)
    assert.equal(404, f.status)
    assert.equal(1, f.attempts)
    assert.is_true(h.is_integer(f.attempts))
    assert.equal("Message not found", f.message)
    assert.equal(h.trace_id("err_404.json"), f.trace_id)
    assert.equal(h.fixture("err_404.json"), f.body)
    local nf_reqs = h.requests_for(nf)
    assert.equal(1, #nf_reqs)
    assert.same(logged_rl(nf_reqs[1]), f.rate_limit)

    local g = failures[down]
    assert.equal("http", g.kind)
    assert.equal(503, g.status)
    assert.equal(3, g.attempts)
    assert.matches("^ghl: HTTP 503 Service Unavailable", g.errmsg)
    assert.equal(" (GET " .. path_of(down) .. ")", g.errmsg:sub(-#path_of(down) - 7))
    local down_reqs = h.requests_for(down)
    assert.equal(3, #down_reqs)
    for i, r in ipairs(down_reqs) do assert.equal(i, r.attempt) end

    local flaky_reqs = h.requests_for(flaky)
    assert.equal(2, #flaky_reqs)
    assert.equal(503, flaky_reqs[1].status)
    assert.equal(200, flaky_reqs[2].status)
    assert.equal(1, #h.requests_for(sms))
    assert.equal(1, #h.requests_for(call))
    h.assert_no_token(failures, nil, "failures")
  end)

  it("follows each call's retries: 0 leaves a flaky id in failures after one attempt", function()
    local c = client { retries = 2, max_retry_delay = 0.1 }
    local flaky = h.fresh_id("flaky_503_1")
    local messages, failures = c:get_messages({ flaky }, { retries = 0 })
    c:close()
    assert.is_nil(messages[flaky])
    assert.equal(503, failures[flaky].status)
    assert.equal("http", failures[flaky].kind)
    assert.equal(1, failures[flaky].attempts)
    assert.equal(1, #h.requests_for(flaky))
  end)

  it("uses the client's retries when the call gives none", function()
    local c = client { retries = 1, max_retry_delay = 0.1 }
    local flaky2, flaky1 = h.fresh_id("flaky_500_2"), h.fresh_id("flaky_500_1")
    local messages, failures = c:get_messages({ flaky2, flaky1 })
    c:close()
    assert.is_table(messages[flaky1])
    assert.equal(2, #h.requests_for(flaky1))
    assert.equal(500, failures[flaky2].status)
    assert.equal(2, failures[flaky2].attempts)
    assert.equal(2, #h.requests_for(flaky2))
  end)

  it("applies a call's timeout to each transfer", function()
    local c = client { retries = 0 }
    local slow, quick = h.fresh_id("slow_ok_1500"), h.fresh_id("sms")
    local messages, failures = c:get_messages({ slow, quick }, { timeout = 0.3 })
    c:close()
    assert.is_table(messages[quick])
    assert.is_nil(messages[slow])
    assert.equal("timeout", failures[slow].kind)
    assert.equal(28, failures[slow].curl_code)
    assert.equal(1, failures[slow].attempts)
    assert.is_nil(failures[slow].status)
    assert.matches("^ghl: ", failures[slow].errmsg)
  end)

  describe("an invalid id", function()
    local bad_ids = { "bad id!", "", string.rep("a", 129), "semi;colon", 42, {}, true }
    for _, bad in ipairs(bad_ids) do
      for _, where in ipairs { "first", "middle", "last" } do
        it("(" .. type(bad) .. " " .. tostring(type(bad) == "string" and #bad or "") .. ") "
          .. where .. " raises before anything is sent", function()
          local c = client { retries = 0 }
          local good = fresh_ids("sms", 3)
          local ids
          if where == "first" then
            ids = { bad, good[1], good[2], good[3] }
          elseif where == "middle" then
            ids = { good[1], good[2], bad, good[3] }
          else
            ids = { good[1], good[2], good[3], bad }
          end
          local before = log_size()
          assert.has_error(function() c:get_messages(ids) end)
          assert.equal(before, log_size())
          assert.equal(0, #requests_of(good))
          -- the client still works
          local messages = c:get_messages({ good[1] })
          assert.is_table(messages[good[1]])
          c:close()
        end)
      end
    end

    it("in a list that is not a table raises", function()
      local c = client { retries = 0 }
      local before = log_size()
      assert.has_error(function() c:get_messages(h.fresh_id("sms")) end)
      assert.has_error(function() c:get_messages(nil) end)
      assert.equal(before, log_size())
      c:close()
    end)
  end)

  it("gives two empty tables for an empty list and sends nothing", function()
    local c = client { retries = 0 }
    local before = log_size()
    local messages, failures = c:get_messages({})
    assert.same({}, messages)
    assert.same({}, failures)
    assert.not_equal(messages, failures)
    messages, failures = c:get_messages({}, { concurrency = 3 })
    assert.same({}, messages)
    assert.same({}, failures)
    assert.equal(before, log_size())
    c:close()
  end)

  describe("concurrency", function()
    it("keeps at most `concurrency` requests in flight on at most as many connections", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("slow_ok_317", 9)
      local messages, failures = c:get_messages(ids, { concurrency = 3 })
      assert.equal(9, count_keys(messages))
      assert.equal(0, count_keys(failures))
      local reqs = requests_of(ids)
      assert.equal(9, #reqs)
      assert.equal(3, max_field(reqs, "inflight"))
      local conns_seen, conns = distinct(reqs, "conn")
      assert.is_true(conns <= 3, "connections: " .. conns)

      -- a second batch finds those connections kept
      local more = fresh_ids("sms", 3)
      messages = c:get_messages(more, { concurrency = 3 })
      assert.equal(3, count_keys(messages))
      for _, r in ipairs(requests_of(more)) do
        assert.is_true(conns_seen[r.conn] == true, "a new connection for the second batch")
      end
      c:close()
    end)

    it("starts that many requests at once, before any answer (HTTP/1.1 server)", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("slow_ok_333", 4)
      local messages = c:get_messages(ids, { concurrency = 4 })
      c:close()
      assert.equal(4, count_keys(messages))
      local reqs = requests_of(ids)
      assert.equal(4, #reqs)
      assert.equal(4, max_field(reqs, "inflight"))
    end)

    it("can grow from one batch to the next on the same client", function()
      -- in a child interpreter: a failure here may be a crash
      local prefix = h.fresh_id("sms") .. "-"
      local code = string.format([[
        local ghl = require("ghl")
        local c = ghl.new { token = %q, base_url = %q, retries = 0 }
        local got = 0
        for round, n in ipairs { 1, 2, 5, 3, 8 } do
          local ids = {}
          for i = 1, n do ids[i] = %q .. round .. "x" .. i end
          local messages = c:get_messages(ids, { concurrency = n })
          for _ in pairs(messages) do got = got + 1 end
        end
        c:close()
        print("got " .. got)
      ]], h.TOKEN, h.http_url, prefix)
      local ok, out = h.run_lua(code)
      assert.is_true(ok, out)
      assert.matches("got 19", out)
      local n = 0
      for _, r in ipairs(h.requests()) do
        if r.id and r.id:sub(1, #prefix) == prefix then n = n + 1 end
      end
      assert.equal(19, n)
    end)

    it("with 1 sends one request at a time on one connection", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("slow_ok_123", 4)
      local messages = c:get_messages(ids, { concurrency = 1 })
      c:close()
      assert.equal(4, count_keys(messages))
      local reqs = requests_of(ids)
      assert.equal(4, #reqs)
      assert.equal(1, max_field(reqs, "inflight"))
      local _, conns = distinct(reqs, "conn")
      assert.equal(1, conns)
    end)

    it("waits between requests only as the rules say (concurrency 1)", function()
      -- no retry, no rate-limit pause: each request follows the last answer
      -- at once; 0.5 s is far above a local round trip
      local c = client { retries = 0 }
      local ids = fresh_ids("sms", 4)
      local messages = c:get_messages(ids, { concurrency = 1 })
      c:close()
      assert.equal(4, count_keys(messages))
      local reqs = requests_of(ids)
      assert.equal(4, #reqs)
      for i = 2, #reqs do
        local gap = reqs[i].t - reqs[i - 1].t
        assert.is_true(gap < 0.5, string.format("%.3f s between request %d and %d", gap, i - 1, i))
      end
    end)

    it("defaults to 8", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("slow_ok_311", 12)
      local messages = c:get_messages(ids)
      c:close()
      assert.equal(12, count_keys(messages))
      local reqs = requests_of(ids)
      assert.equal(12, #reqs)
      assert.equal(8, max_field(reqs, "inflight"))
      local _, conns = distinct(reqs, "conn")
      assert.is_true(conns <= 8, "connections: " .. conns)
    end)

    it("never exceeds the number of ids", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("slow_ok_211", 2)
      local messages = c:get_messages(ids, { concurrency = 64 })
      c:close()
      assert.equal(2, count_keys(messages))
      local reqs = requests_of(ids)
      assert.equal(2, #reqs)
      local _, conns = distinct(reqs, "conn")
      assert.is_true(conns <= 2, "connections: " .. conns)
    end)
  end)

  describe("options", function()
    for _, bad in ipairs { 0, 65, -1, 1.5, "8", true, 0 / 0, math.huge } do
      it("concurrency = " .. tostring(bad) .. " (" .. type(bad) .. ") raises naming concurrency", function()
        local c = client { retries = 0 }
        local ids = fresh_ids("sms", 2)
        local o = { concurrency = bad }
        local before = log_size()
        local ok, err = pcall(c.get_messages, c, ids, o)
        assert.is_false(ok)
        assert.matches("concurrency", tostring(err))
        assert.equal(before, log_size())
        assert.equal(1, count_keys(o))
        c:close()
      end)
    end

    for _, key in ipairs { "token", "base_url", "max_retry_delay", "convert_enums", "concurrenc", "foo" } do
      it("an unknown key (" .. key .. ") raises naming it", function()
        local c = client { retries = 0 }
        local ids = fresh_ids("sms", 2)
        local o = { [key] = (key == "convert_enums") and false or 1 }
        if key == "token" then o[key] = h.TOKEN end
        if key == "base_url" then o[key] = h.http_url end
        local before = log_size()
        local ok, err = pcall(c.get_messages, c, ids, o)
        assert.is_false(ok)
        assert.matches(h.literal(key), tostring(err))
        assert.equal(before, log_size())
        c:close()
      end)
    end

    it("accepts concurrency 1 and 64, timeout, connect_timeout and retries, and leaves opts alone", function()
      for _, n in ipairs { 1, 64 } do
        local c = client { retries = 0 }
        local o = { concurrency = n, timeout = 5, connect_timeout = 2, retries = 1 }
        local ids = fresh_ids("sms", 2)
        local messages, failures = c:get_messages(ids, o)
        assert.equal(2, count_keys(messages))
        assert.equal(0, count_keys(failures))
        assert.same({ concurrency = n, timeout = 5, connect_timeout = 2, retries = 1 }, o)
        c:close()
      end
    end)

    it("concurrency is not an option of get_message or ghl.new", function()
      local c = client { retries = 0 }
      local ok, err = pcall(c.get_message, c, h.fresh_id("sms"), { concurrency = 2 })
      assert.is_false(ok)
      assert.matches("concurrency", tostring(err))
      c:close()
      ok, err = pcall(ghl.new, h.opts { concurrency = 2 })
      assert.is_false(ok)
      assert.matches("concurrency", tostring(err))
    end)
  end)

  describe("and rate_limit()", function()
    it("gives the figures of the batch's last response", function()
      local c = client { retries = 0 }
      local ids = fresh_ids("sms", 3)
      c:get_messages(ids, { concurrency = 1 })
      local reqs = requests_of(ids)
      assert.equal(3, #reqs)
      assert.same(logged_rl(reqs[3]), c:rate_limit())
      c:close()
    end)

    it("gives one of the batch's responses with concurrency > 1, an error response included", function()
      local c = client { retries = 0 }
      local ids = { h.fresh_id("err_404"), h.fresh_id("sms"), h.fresh_id("err_422") }
      c:get_messages(ids, { concurrency = 3 })
      local rl = c:rate_limit()
      assert.is_table(rl)
      local found = false
      for _, r in ipairs(requests_of(ids)) do
        -- field by field: an encoded table's key order is not fixed
        local want = logged_rl(r)
        local same = true
        for _, k in ipairs(h.RATE_LIMIT_FIELDS) do
          if want[k] ~= rl[k] then same = false end
        end
        if same then found = true end
      end
      assert.is_true(found, "rate_limit() matches none of the batch's responses")
      c:close()
    end)

    it("is nil after a batch whose last response had no rate-limit headers", function()
      local c = client { retries = 0 }
      assert.is_table((c:get_message(h.fresh_id("sms"))))
      assert.is_table(c:rate_limit())
      c:get_messages({ h.fresh_id("no_ratelimit") })
      assert.is_nil(c:rate_limit())
      c:close()
    end)
  end)
end)

describe("client:get_messages and the rate limit", function()
  -- rlwin_<n>_<ms>[_<lag>] ids share one window per scenario name: see server.py.

  -- The requests for ids, in arrival order, and the same grouped by window.
  local function windows_of(ids)
    local reqs = requests_of(ids)
    table.sort(reqs, function(a, b) return a.t < b.t end)
    local by, count = {}, 0
    for _, r in ipairs(reqs) do
      if not by[r.window] then
        by[r.window] = {}
        count = count + 1
      end
      table.insert(by[r.window], r)
    end
    assert.is_not_nil(by[count], "windows are numbered 1, 2, ...")
    return reqs, by, count
  end

  local function count_status(reqs, status)
    local n = 0
    for _, r in ipairs(reqs) do
      if r.status == status then n = n + 1 end
    end
    return n
  end

  -- After an answer said 0 remain, nothing arrives before the interval has
  -- passed: each window that follows one where an answer said 0 begins at
  -- least `interval` after the earliest such answer. Returns how many pauses
  -- were checked.
  local function assert_paused(by, count, interval)
    local checked = 0
    for w = 2, count do
      local zero_at
      for _, r in ipairs(by[w - 1]) do
        if r.rate_limit.remaining == 0 and (zero_at == nil or r.t < zero_at) then zero_at = r.t end
      end
      if zero_at then
        local gap = by[w][1].t - zero_at
        assert.is_true(gap >= interval - TOLERANCE,
          string.format("window %d began %.3f s after an answer said 0 remain, not %.3f s", w, gap, interval))
        checked = checked + 1
      end
    end
    return checked
  end

  -- A batch that never went over the limit: every id answered 200 once,
  -- no 429, at most `limit` requests per window, the pause kept.
  local function assert_within(ids, limit, interval)
    local reqs, by, count = windows_of(ids)
    assert.equal(0, count_status(reqs, 429), "requests over the limit")
    assert.equal(#ids, #reqs)
    for w = 1, count do
      assert.is_true(#by[w] <= limit, "window " .. w .. " got " .. #by[w] .. " requests")
    end
    assert.is_true(assert_paused(by, count, interval) >= 1, "the batch never paused")
  end

  it("starts no more than remain and waits for the window at 0 (concurrency below the limit)", function()
    local c = client {}
    local ids = fresh_ids("rlwin_5_650", 12)
    local messages, failures = c:get_messages(ids, { concurrency = 4 })
    c:close()
    assert.equal(12, count_keys(messages))
    assert.equal(0, count_keys(failures))
    assert_within(ids, 5, 0.65)
  end)

  it("goes by the lowest Remaining when an earlier answer with more comes in late", function()
    -- the window's first answer comes 250 ms late; with concurrency 2 the
    -- others go one at a time until 1 remains. The late answer's Remaining
    -- (5) must not let more than that 1 start.
    local c = client {}
    -- connections made and known beforehand, so the batch's first requests go out together
    local warm = fresh_ids("sms", 2)
    assert.equal(2, count_keys((c:get_messages(warm, { concurrency = 2 }))))
    local ids = fresh_ids("rlwin_6_2000_250", 8)
    local messages, failures = c:get_messages(ids, { concurrency = 2 })
    c:close()
    assert.equal(8, count_keys(messages))
    assert.equal(0, count_keys(failures))
    assert_within(ids, 6, 2.0)
  end)

  it("with concurrency above the limit gets every message; only requests sent before any answer go over", function()
    local c = client {}
    local ids = fresh_ids("rlwin_5_600", 20)
    local messages, failures = c:get_messages(ids, { concurrency = 8 })
    c:close()
    assert.equal(20, count_keys(messages))
    assert.equal(0, count_keys(failures))
    local reqs, by, count = windows_of(ids)
    assert.equal(20, count_status(reqs, 200))
    -- the 8 first requests go out before the first answer says 5 remain: at
    -- most 3 of them over the limit, and nothing after
    local over = count_status(reqs, 429)
    assert.is_true(over <= 3, over .. " requests over the limit")
    assert.equal(over, count_status(by[1], 429))
    for _, r in ipairs(by[1]) do assert.equal(1, r.attempt) end
    for w = 2, count do
      assert.equal(0, count_status(by[w], 429), "requests over the limit in window " .. w)
      assert.is_true(#by[w] <= 5, "window " .. w .. " got " .. #by[w] .. " requests")
    end
    assert.equal(20 + over, #reqs)
    assert.is_true(assert_paused(by, count, 0.6) >= 1, "the batch never paused")
  end)

  it("starts no more than the client's last answer said remain", function()
    local c = client {}
    local first = h.fresh_id("rlwin_4_700")
    assert.is_table((c:get_message(first)))
    assert.equal(3, c:rate_limit().remaining)
    local ids = fresh_ids("rlwin_4_700", 7)
    local messages, failures = c:get_messages(ids, { concurrency = 8 })
    c:close()
    assert.equal(7, count_keys(messages))
    assert.equal(0, count_keys(failures))
    table.insert(ids, 1, first)
    assert_within(ids, 4, 0.7)
  end)
end)
