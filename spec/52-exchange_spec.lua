-- ghl._exchange_call, the C side of a Lua transport (README, "Internal
-- interface for transports"), driven from plain Lua with no network: the
-- bytes it builds for each kind of request, the token calls of a client
-- with a token function, and the answers it shapes. On every runtime, so
-- that the memory checks (valgrind, ASan) cover exchange.c too; ghl.resty
-- drives the same calls in nginx (spec/50, spec/51).

local ghl = require("ghl")

local TOKEN = "tok-exchange-secret-0123456789"
local BASE = "http://api.test:8080/v2"

local function opts(extra)
  local o = { token = TOKEN, base_url = BASE, retries = 0, max_retry_delay = 0 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- Feeds one whole answer to ex, as a transport would: the head (its lines,
-- a Content-Length added when it has none) and the body.
local function answer(ex, head, body)
  body = body or ""
  if not head:lower():find("\r\ncontent%-length:") then head = head .. "\r\nContent-Length: " .. #body end
  local whole, keep = ex:feed(head .. "\r\n\r\n" .. body)
  assert.is_true(whole)
  assert.is_true(keep)
end

local OK_MESSAGE = '{"message":{"id":"m1","type":2,"messageType":"TYPE_SMS"},"traceId":"t-1"}'

local function finalizable(fn) -- an object whose finalizer is fn
  local newproxy = newproxy -- luacheck: ignore
  if newproxy then -- 5.1, LuaJIT: only userdata have finalizers
    local u = newproxy(true)
    getmetatable(u).__gc = fn
    return u
  end
  return setmetatable({}, { __gc = fn })
end

-- an answer of 300 tables: the collector steps while result() makes them, on every version
local BIG_BODY = '{"message":{"id":"m1","meta":{"items":[' .. ('{"a":1},'):rep(299) .. '{"a":1}]}}}'

describe("ghl._exchange_call", function()
  it("builds a GET with the client's headers, base_url's prefix and the query", function()
    local ex = ghl._exchange_call("list_messages", opts(), nil, false, "conv_1", { limit = 2, lastMessageId = "a b" })
    local target = { ex:target() }
    local req = ex:request()
    assert.same({ "http", "api.test", 8080, "api.test", "ghl:http:api.test:8080:", true, 10, 30, req }, target)
    assert.equal("GET /v2/conversations/conv_1/messages?lastMessageId=a%20b&limit=2 HTTP/1.1\r\n"
      .. "Host: api.test:8080\r\n"
      .. "Authorization: Bearer " .. TOKEN .. "\r\n"
      .. "Version: " .. ghl.API_VERSION .. "\r\n"
      .. "Accept: application/json\r\n"
      .. "User-Agent: lua-ghl/" .. ghl.VERSION .. "\r\n"
      .. "Accept-Encoding: identity\r\n\r\n", req)
  end)

  it("builds a POST with its JSON body and Content-Length, and says it is not safe to repeat", function()
    local ex = ghl._exchange_call("send_message", opts(), nil, false, { type = "SMS", contactId = "c1" })
    local target = { ex:target() }
    assert.is_false(target[6])
    local req = ex:request()
    local head, body = req:match("^(.-\r\n)\r\n(.*)$")
    assert.truthy(head:find("^POST /v2/conversations/messages HTTP/1.1\r\n"))
    assert.truthy(head:find("\r\nContent-Type: application/json\r\n", 1, true))
    assert.truthy(head:find("\r\nContent-Length: " .. #body .. "\r\n", 1, true))
    assert.same({ type = "SMS", contactId = "c1" }, require("cjson").decode(body))
  end)

  it("builds client:request's own requests: a PATCH with a version, a POST with no body", function()
    local ex = ghl._exchange_call("request", opts(), nil, false, "PATCH", "/x/y", { json = {}, version = "2099-01-01" })
    local req = ex:request()
    assert.truthy(req:find("^PATCH /v2/x/y HTTP/1.1\r\n"))
    assert.truthy(req:find("\r\nVersion: 2099-01-01\r\n", 1, true))
    assert.truthy(req:find("\r\nContent%-Length: 2\r\n\r\n{}$"))
    req = ghl._exchange_call("request", opts(), nil, false, "POST", "/x"):request()
    assert.truthy(req:find("\r\nContent%-Length: 0\r\n\r\n$"))
    assert.is_nil(req:find("Content-Type", 1, true))
  end)

  it("builds oauth_token's form POST without Authorization", function()
    local ex = ghl._exchange_call("oauth_token", { base_url = BASE }, nil, false,
      { client_id = "id1", client_secret = "cs-secret-42", refresh_token = "rt-secret-43" })
    local req = ex:request()
    assert.is_nil(req:find("Authorization", 1, true))
    assert.truthy(req:find("\r\nContent-Type: application/x-www-form-urlencoded\r\n", 1, true))
    assert.truthy(req:find("\r\n\r\nclient_id=id1&client_secret=cs%-secret%-42&refresh_token=rt%-secret%-43$"))
    answer(ex, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json",
      '{"error":"invalid_grant","error_description":"rt-secret-43 and cs-secret-42 are bad"}')
    assert.is_nil(ex:next_attempt())
    local res, err, info = ex:result()
    assert.is_nil(res)
    assert.equal("ghl: HTTP 400 Bad Request: <redacted> and <redacted> are bad (POST /oauth/token)", err)
    assert.is_nil(info.body)
  end)

  it("raises for misuse with the C client's messages", function()
    local c = ghl.new(opts())
    for _, case in ipairs({
      { "get_conversation", "a/b" }, { "send_message", { contactId = "x" } }, { "send_message", "{}" },
      { "request", "GET", "/a/../b" }, { "get_message", "ok", { base_url = BASE } },
      { "search_conversations", { limit = 1 } }, { "get_recording", "m1" },
    }) do
      local name = case[1]
      local want = raised(c[name], c, (table.unpack or unpack)(case, 2)) -- luacheck: ignore
      assert.equal(want, raised(ghl._exchange_call, name, opts(), nil, false, (table.unpack or unpack)(case, 2)), name) -- luacheck: ignore
    end
    c:close()
    assert.equal("ghl: no method 'each_message'", raised(ghl._exchange_call, "each_message", opts(), nil, false, "c"))
    assert.equal("ghl: bad argument 'token' (an empty string or one with spaces or control characters)",
      raised(ghl._exchange_call, "get_message", opts(), "two words", false, "m1"))
  end)

  it("takes a provider's token later, renews once after a 401, outside retries", function()
    local o = opts({ token = function() end })
    local ex = ghl._exchange_call("get_message", o, nil, false, "m1")
    assert.equal("ghl: the exchange has no token yet (ex:set_token)", raised(ex.request, ex))
    assert.same({ "new", "tok-v1" }, { ex:token_answer(true, "tok-v1", false) })
    ex:set_token("tok-v1")
    assert.truthy(ex:request():find("\r\nAuthorization: Bearer tok-v1\r\n", 1, true))
    answer(ex, "HTTP/1.1 401 Unauthorized\r\nX-RateLimit-Remaining: 7",
      '{"statusCode":401,"message":"Invalid JWT for tok-v1"}')
    assert.is_nil(ex:next_attempt())
    assert.is_true(ex:wants_token())
    assert.same({ "same" }, { ex:token_answer(true, "tok-v1", true) })
    assert.same({ "same" }, { ex:token_answer(true, nil, true) })
    assert.same({ "failed", "ghl: token provider failed: cannot renew <redacted>" },
      { ex:token_answer(false, "cannot renew tok-v1", true) })
    assert.same({ "failed", "ghl: token provider failed: it returned number, not a token" },
      { ex:token_answer(true, 42, true) })
    assert.same({ "failed", "ghl: token provider failed: (an error that is not a string)" },
      { ex:token_answer(false, {}, true) })
    ex:renew("tok-v2")
    assert.equal(1, ex:attempts())
    local req = ex:request()
    assert.truthy(req:find("\r\nAuthorization: Bearer tok-v2\r\n", 1, true))
    answer(ex, "HTTP/1.1 503 Service Unavailable", '{"message":"busy tok-v1 tok-v2"}')
    assert.is_nil(ex:next_attempt()) -- retries = 0: the renewal did not count
    assert.is_false(ex:wants_token())
    local msg, err, info = ex:result()
    assert.is_nil(msg)
    assert.equal("ghl: HTTP 503 Service Unavailable: busy <redacted> <redacted> (GET /conversations/messages/m1)", err)
    assert.same({ "http", 2 }, { info.kind, info.attempts })
    assert.same({ true }, { ex:rate_limit() })
  end)

  it("gives the message and the last figures after a renewal with retries left", function()
    local ex = ghl._exchange_call("get_message", opts({ token = function() end, retries = 1 }), nil, false, "m1")
    ex:set_token("tok-a")
    answer(ex, "HTTP/1.1 401 Unauthorized", '{"message":"Invalid JWT"}')
    assert.is_nil(ex:next_attempt())
    ex:renew("tok-b")
    assert.equal("ghl: renew before the exchange ended with a 401", raised(ex.renew, ex, "tok-c"))
    answer(ex, "HTTP/1.1 503 Service Unavailable", "{}")
    assert.equal(0, ex:next_attempt()) -- the one retry
    answer(ex, "HTTP/1.1 200 OK\r\nX-RateLimit-Max: 100\r\nX-RateLimit-Remaining: 98", OK_MESSAGE)
    assert.is_nil(ex:next_attempt())
    local msg, err, info = ex:result()
    assert.is_nil(err)
    assert.same({ "m1", "TYPE_SMS", 3, "t-1" }, { msg.id, msg.type, info.attempts, info.trace_id })
    local got, rl = ex:rate_limit()
    assert.is_true(got)
    assert.same({ 100, 98 }, { rl.max, rl.remaining })
  end)

  -- guards: the request bytes are built on the C stack while they fit, and move to the heap past it
  it("builds requests of every size, a query past 1 KB and a body of 10 KB included", function()
    for _, n in ipairs({ 1, 1500, 2100, 10000 }) do
      local text = string.rep("x", n)
      local req = ghl._exchange_call("send_message", opts(), nil, false, { type = "SMS", contactId = "c1", message = text }):request()
      local head, body = req:match("^(.-\r\n)\r\n(.*)$")
      assert.truthy(head:find("\r\nContent-Length: " .. #body .. "\r\n", 1, true), n)
      assert.equal(text, require("cjson").decode(body).message, n)
      local ex = ghl._exchange_call("list_messages", opts(), nil, false, "conv_1", { lastMessageId = text:sub(1, 200), limit = 5 })
      assert.equal("GET /v2/conversations/conv_1/messages?lastMessageId=" .. text:sub(1, 200) .. "&limit=5 HTTP/1.1\r\n",
        ex:request():match("^[^\n]*\n"), n)
    end
    local long = string.rep("q", 1200)
    local req = ghl._exchange_call("request", opts(), nil, false, "GET", "/x", { query = { a = long } }):request()
    assert.equal("GET /v2/x?a=" .. long .. " HTTP/1.1\r\n", req:match("^[^\n]*\n"))
  end)

  -- guards: a body lives in the exchange's own storage while it fits, and moves to the heap past it
  it("reads bodies of every size, also a large one and then a small one on a retry", function()
    for _, n in ipairs({ 10, 4000, 5000, 70000 }) do
      local ex = ghl._exchange_call("get_message", opts({ retries = 1 }), nil, false, "m1")
      local big = string.rep("b", n)
      answer(ex, "HTTP/1.1 503 Service Unavailable", '{"message":"' .. big .. '"}')
      assert.equal(0, ex:next_attempt(), n)
      answer(ex, "HTTP/1.1 200 OK", '{"message":{"id":"m1","body":"' .. big:sub(1, math.floor(n / 2)) .. '"}}')
      local _, msg, err, info = ex:next_attempt(true)
      assert.is_nil(err, n)
      assert.same({ "m1", math.floor(n / 2), 2 }, { msg.id, #msg.body, info.attempts }, n)
    end
  end)

  it("next_attempt(true) gives a wait while a retry is due, then nil and what result() would give", function()
    local ex = ghl._exchange_call("get_message", opts({ retries = 1 }), nil, false, "m1")
    answer(ex, "HTTP/1.1 503 Service Unavailable", "{}")
    assert.same({ 0 }, { ex:next_attempt(true) })
    answer(ex, "HTTP/1.1 200 OK\r\nX-RateLimit-Max: 100\r\nX-RateLimit-Remaining: 98", OK_MESSAGE)
    local r = (function(...) return { n = select("#", ...), ... } end)(ex:next_attempt(true))
    assert.equal(4, r.n)
    assert.is_nil(r[1])
    assert.same({ "m1", "TYPE_SMS" }, { r[2].id, r[2].type })
    assert.is_nil(r[3])
    assert.same({ 200, 2, 100 }, { r[4].status, r[4].attempts, r[4].rate_limit.max })
    assert.same({ "m1", 2 }, { ex:result().id, select(3, ex:result()).attempts }) -- result() gives it again
    assert.equal("ghl: the exchange is done", raised(ex.next_attempt, ex, true))
  end)

  it("keeps a recording's bytes and its Content-Type", function()
    local ex = ghl._exchange_call("get_recording", opts(), nil, false, "m1", "loc1")
    answer(ex, "HTTP/1.1 200 OK\r\nContent-Type: audio/x-wav\r\nContent-Length: 6", "RIFF\0\255")
    assert.is_nil(ex:next_attempt())
    local bytes, err, info = ex:result()
    assert.is_nil(err)
    assert.equal("RIFF\0\255", bytes)
    assert.equal("audio/x-wav", info.content_type)
  end)

  it("release empties an exchange and reuse fills it with a new request, as _exchange_call would", function()
    local unpack_ = table.unpack or unpack -- luacheck: ignore
    local cases = {
      { "get_message", opts(), nil, false, "m1" },
      { "send_message", opts(), nil, false, { type = "SMS", contactId = "c1" } },
      { "list_messages", opts({ user_agent = "ua/" .. ("u"):rep(3000) }), nil, false, "conv_1", { limit = 2 } },
      { "request", opts(), nil, false, "PATCH", "/x/y", { json = { a = ("b"):rep(3000) }, version = "2099-01-01" } },
      { "oauth_token", { base_url = BASE }, nil, false, { client_id = "id1", client_secret = "cs-secret-42" } },
      { "get_message", opts({ token = "t" .. ("k"):rep(3000) }), nil, false, "m2" },
    }
    local ex = ghl._exchange_call(unpack_(cases[1]))
    for round = 1, 3 do
      for i, case in ipairs(cases) do
        local want = ghl._exchange_call(unpack_(case))
        ex:release()
        assert.equal("ghl.exchange (freed)", tostring(ex))
        assert.equal("ghl: the exchange is freed", raised(ex.request, ex))
        assert.equal(ex, ex:reuse(unpack_(case)))
        assert.same({ want:target() }, { ex:target() }, round .. ":" .. i)
        assert.equal(want:request(), ex:request(), round .. ":" .. i)
      end
    end
    assert.equal("ghl: reuse of an exchange not released", raised(ex.reuse, ex, unpack_(cases[1])))
    assert.is_true(ex:release())
    assert.is_true(ex:release()) -- twice is harmless
    assert.equal(raised(ghl._exchange_call, "get_message", opts(), nil, false, "a/b"),
      raised(ex.reuse, ex, "get_message", opts(), nil, false, "a/b"))
    assert.equal(raised(ghl._exchange_call, "request", opts(), nil, false, nil, "/x"),
      raised(ex.reuse, ex, "request", opts(), nil, false, nil, "/x"))
    assert.equal("ghl: bad argument 'method' (string expected, got nil)",
      raised(ghl._exchange_call, "request", opts(), nil, false, nil, "/x"))
  end)

  it("answers on a reused exchange and renews a token held in its room or on the heap", function()
    local long = "t" .. ("L"):rep(3000)
    local ex = ghl._exchange_call("get_message", opts(), nil, false, "m1")
    for _, first in ipairs({ "tok-room-1", long }) do
      for _, second in ipairs({ "tok-room-2", long .. "2" }) do
        ex:release()
        ex:reuse("get_message", opts({ token = function() end }), first, false, "m1") -- first: in the store or not
        answer(ex, "HTTP/1.1 401 Unauthorized", '{"statusCode":401,"message":"Invalid JWT ' .. first .. '"}')
        assert.is_nil(ex:next_attempt())
        assert.is_true(ex:wants_token())
        ex:renew(second)
        assert.truthy(ex:request():find("\r\nAuthorization: Bearer " .. second .. "\r\n", 1, true))
        answer(ex, "HTTP/1.1 500 Internal Server Error", '{"message":"' .. first .. " " .. second .. '"}')
        assert.is_nil(ex:next_attempt())
        local msg, err = ex:result()
        assert.is_nil(msg)
        assert.equal("ghl: HTTP 500 Internal Server Error: <redacted> <redacted> (GET /conversations/messages/m1)", err)
      end
    end
    ex:release()
    ex:reuse("get_message", opts(), nil, false, "m3")
    answer(ex, "HTTP/1.1 200 OK", OK_MESSAGE)
    local msg, err, info = select(2, ex:next_attempt(true))
    assert.same({ "m1", "TYPE_SMS", nil, 1 }, { msg.id, msg.messageType, err, info.attempts })
  end)

  it("a reuse that Lua code run while it reads its arguments filled first raises and leaks nothing", function()
    local ex = ghl._exchange_call("get_message", opts(), nil, false, "m0")
    ex:release()
    local args = setmetatable({}, { __index = function(_, key)
      if key == "version" then ex:reuse("get_message", opts(), nil, false, "m1") end
    end })
    assert.equal("ghl: reuse of an exchange not released", raised(ex.reuse, ex, "request", opts(), nil, false, "GET", "/x", args))
    assert.truthy(ex:request():find("^GET /v2/conversations/messages/m1 HTTP/1.1\r\n"))
    ex:release()
  end)

  it("a release from a finalizer that runs inside one of the exchange's methods waits for it to return", function()
    local inside, deferred, at_once = nil, 0, 0
    local function result(ex) -- nothing is made while inside is set but by the method and the call
      inside = ex
      local ok, msg = pcall(ex.result, ex)
      inside = nil
      return ok, msg
    end
    for _ = 1, 20 do
      local ex = ghl._exchange_call("get_message", opts(), nil, false, "m1")
      answer(ex, "HTTP/1.1 200 OK", BIG_BODY)
      assert.is_nil(ex:next_attempt())
      local released = false
      local function arm() -- a finalizer that, run outside a call, leaves another one
        finalizable(function()
          if released then return end
          if inside ~= ex then return arm() end
          released = true
          local empty = ex:release()
          if tostring(ex) == "ghl.exchange (freed)" then -- ran as the call ended, not in the method
            assert(empty == true, "release said the handle is not empty")
            at_once = at_once + 1
          else
            assert(empty == false, "a deferred release said the handle is empty")
            deferred = deferred + 1
          end
        end)
      end
      for _ = 1, 20 do arm() end
      for _ = 1, 5000 do -- until a collection cycle has come round (the more the heap holds, the later)
        local ok, msg = result(ex)
        if not ok then -- released as a call of it ended: the next one says so
          assert.equal("ghl: the exchange is freed", msg)
          break
        end
        assert.same({ "m1", 300, 1 }, { msg.id, #msg.meta.items, msg.meta.items[300].a })
      end
      assert.is_true(released)
      assert.equal("ghl.exchange (freed)", tostring(ex))
    end
    assert.equal(20, deferred + at_once)
    assert.is_true(deferred > 0, "no finalizer ran inside a method")
  end)

  it("a raise inside one of its methods leaves an exchange in use: release says so, the collector frees it", function()
    local ex = ghl._exchange_call("get_message", opts(), nil, false, "m1")
    answer(ex, "HTTP/1.1 200 OK", BIG_BODY)
    assert.is_nil(ex:next_attempt())
    local inside, ran = false, false
    local function arm()
      finalizable(function()
        if ran then return end
        if not inside then return arm() end
        ran = true
        error("finalizer says no")
      end)
    end
    for _ = 1, 20 do arm() end
    local raised_inside
    for _ = 1, 5000 do
      inside = true
      local ok, msg = pcall(ex.result, ex)
      inside = false
      if not ok then
        raised_inside = tostring(msg)
        break
      end
      if ran then break end
    end
    assert.is_true(ran)
    if _VERSION == "Lua 5.4" then -- a finalizer's error is a warning: the method ended as usual
      assert.is_nil(raised_inside)
      assert.is_true(ex:release())
      assert.equal("ghl.exchange (freed)", tostring(ex))
    else -- it unwound through the method
      assert.is_string(raised_inside, "the finalizer's error did not come out of ex:result()")
      assert.truthy(raised_inside:find("finalizer says no", 1, true), raised_inside)
      assert.is_false(ex:release())
      assert.is_false(ex:release())
      assert.equal("ghl: reuse of an exchange not released", raised(ex.reuse, ex, "get_message", opts(), nil, false, "m2"))
    end
    ex = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
  end)

  it("leaves ghl._exchange(id, opts) as before", function()
    local ex = ghl._exchange("m1", opts())
    assert.truthy(ex:request():find("^GET /v2/conversations/messages/m1 HTTP/1.1\r\n"))
    assert.truthy(tostring(ex):find("^ghl.exchange %(get_message, 0 attempts%)"))
  end)
end)
