-- CONTRACT.md section 2: the rest of the Conversations API, through ghl.new
-- clients against the local server (spec/support/api_server.py has the routes
-- and scenarios). Every assertion is on exact values: the path, the raw query
-- string and the decoded body the server logged, the headers, the attempts,
-- every result field and info.trace_id.

local h = require("helpers")
local ghl = require("ghl")

local cjson = h.json
local NULL = cjson.null
local unpack = table.unpack or unpack -- luacheck: ignore

local STEP_LIMIT = 50 -- every loop over an iterator stops here at the latest

---------------------------------------------------------------------------
-- helpers of this file

-- The number of requests logged so far, and the ones logged after such a mark.
local function mark() return #h.requests() end
local function since(n)
  local all, out = h.requests(), {}
  for i = n + 1, #all do out[#out + 1] = all[i] end
  return out
end

local function path_only(r) return (r.path:match("^[^?]*")) end
local function logged(v) if v == NULL then return nil end return v end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

-- cjson's view of a JSON value -> what ghl promises: object members that are
-- null absent, null array elements ghl.null.
local function plain(v)
  return h.copy_without_nulls(v, ghl.null)
end

-- The same, plus the message rules of section 1 for `type`.
local function as_message(m)
  return h.apply_type_rule(ghl, plain(m))
end

local MESSAGES = h.fixture_json("messages.json")
local CONVERSATIONS = h.fixture_json("conversations.json")

local function expected_messages(from, to)
  local out = {}
  for i = from, to do out[#out + 1] = as_message(MESSAGES[i]) end
  return out
end

local function expected_conversations(from, to)
  local out = {}
  for i = from, to do out[#out + 1] = plain(CONVERSATIONS[i]) end
  return out
end

local function client(extra)
  return ghl.new(h.opts(extra))
end

-- Fails if the token shows anywhere in what a call returned.
local function no_token(...)
  local n = select("#", ...)
  local t = { ... }
  for i = 1, n do h.assert_no_token(t[i], nil, "return value " .. i) end
  return ...
end

-- The headers every JSON request carries; the token is compared, never printed.
local function assert_common_headers(r, version)
  assert.is_true(r.headers.authorization == "Bearer " .. h.TOKEN, "Authorization: Bearer <the token>")
  assert.equal(version or ghl.API_VERSION, r.headers.version)
  assert.equal("lua-ghl/" .. ghl.VERSION, r.headers["user-agent"])
end

local function assert_json_headers(r, version)
  assert_common_headers(r, version)
  assert.equal("application/json", r.headers.accept)
end

local function assert_json_body_header(r)
  assert.matches("^application/json", r.headers["content-type"])
end

local function assert_ok_info(info, trace_id, attempts)
  assert.is_table(info)
  assert.is_nil(info.kind)
  assert.equal(200, info.status)
  assert.equal(trace_id, info.trace_id)
  assert.equal(attempts or 1, info.attempts)
  assert.is_true(h.is_integer(info.attempts))
  assert.is_table(info.rate_limit)
end

-- fn() raises (message matching `pattern` when given) and sends nothing.
local function assert_raises_unsent(fn, pattern)
  local before = mark()
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  h.assert_no_token(err, nil, "error")
  -- a Lua runtime error (a method that does not exist, ...) is not the raise asked for
  assert.is_nil(tostring(err):find("attempt to ", 1, true), "not a misuse error: " .. tostring(err))
  if pattern then assert.matches(pattern, tostring(err)) end
  assert.equal(0, #since(before), "requests sent before the error")
  return err
end

-- Runs an iterator; returns the steps as { item, err, info } (at most STEP_LIMIT).
local function collect(iter, state, control)
  local steps = {}
  for item, err, info in iter, state, control do
    steps[#steps + 1] = { item = item, err = err, info = info }
    no_token(err, info)
    if #steps >= STEP_LIMIT then break end
  end
  return steps
end

local BAD_IDS = {
  "", ("a"):rep(129), "a/b", "a b", "a?b", "a#b", "..", "a.b", "a%2Fb", "é", "a\0b", "a\nb",
}

---------------------------------------------------------------------------

describe("client:get_conversation", function()
  it("GETs /conversations/{id} and returns the flat conversation, traceId in info, nothing renamed", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local conv, err, info = no_token(c:get_conversation(id))
    assert.is_nil(err)
    local expected = plain(h.fixture_json("conversation.json"))
    expected.traceId = nil
    assert.same(expected, conv)
    assert.equal(1, conv.type) -- a channel, not TYPE_CALL
    assert.is_true(h.is_integer(conv.type))
    assert.is_true(h.is_integer(conv.dateAdded))
    assert.is_true(h.is_integer(conv.dateUpdated))
    assert.is_true(h.is_integer(conv.meta.count))
    assert.equal(1711563231120, conv.dateUpdated)
    assert.is_nil(conv.assignedTo)
    assert.equal(ghl.null, conv.tags[2])
    assert.is_nil(conv.traceId)
    assert_ok_info(info, "conv-trace-0001")
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
    assert.equal("/conversations/" .. id, reqs[1].path)
    assert.is_nil(logged(reqs[1].query))
    assert.is_nil(logged(reqs[1].body))
    assert_json_headers(reqs[1])
    assert.same(h.logged_rate_limit(reqs[1]), info.rate_limit)
    assert.same(h.logged_rate_limit(reqs[1]), c:rate_limit())
    c:close()
  end)

  it("puts base_url's path before /conversations", function()
    local c = client { retries = 0, base_url = h.http_url .. "/v2/" }
    local id = h.fresh_id("ok")
    local conv, err = no_token(c:get_conversation(id))
    assert.is_nil(err)
    assert.equal("CoV0000000000000conv", conv.id)
    assert.equal("/v2/conversations/" .. id, h.requests_for(id)[1].path)
    local id2 = h.fresh_id("ok")
    local res, err2 = no_token(c:send_message { type = "SMS", contactId = id2 })
    assert.is_nil(err2)
    assert.equal("MsG00000000000sent01", res.messageId)
    assert.equal("/v2/conversations/messages", h.requests_for(id2)[1].path)
    c:close()
  end)

  it("works over HTTPS", function()
    local c = ghl.new(h.tls_opts { retries = 0 })
    local id = h.fresh_id("ok")
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = id, message = "tls" })
    assert.is_nil(err)
    assert.equal("send-ok", info.trace_id)
    local r = h.requests_for(id)[1]
    assert.equal("https", r.listener)
    assert.same({ type = "SMS", contactId = id, message = "tls" }, r.json)
    local page = c:list_messages(h.fresh_id("pages"), { limit = 2 })
    assert.equal(2, #page.messages)
    assert.equal("MsG0000000000000005", res and page.messages[1].id)
    c:close()
  end)

  it("retries a GET after a 503 (section 1's rule)", function()
    local c = client { max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local conv, err, info = no_token(c:get_conversation(id))
    assert.is_nil(err)
    assert.equal("CoV0000000000000conv", conv.id)
    assert_ok_info(info, "conv-trace-0001", 2)
    assert.equal(2, #h.requests_for(id))
    c:close()
  end)

  it("obeys per-call retries = 0", function()
    local c = client { max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local conv, err, info = no_token(c:get_conversation(id, { retries = 0 }))
    assert.is_nil(conv)
    assert.equal("ghl: HTTP 503 Service Unavailable: Service temporarily unavailable (GET /conversations/"
      .. id .. ")", err)
    assert.equal("http", info.kind)
    assert.equal(503, info.status)
    assert.equal(1, info.attempts)
    assert.equal(1, #h.requests_for(id))
    c:close()
  end)

  it("returns nil, errmsg, info on a 404", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("err_404")
    local conv, err, info = no_token(c:get_conversation(id))
    assert.is_nil(conv)
    assert.equal("ghl: HTTP 404 Not Found: Message not found (GET /conversations/" .. id .. ")", err)
    assert.equal("http", info.kind)
    assert.equal(404, info.status)
    assert.equal("Message not found", info.message)
    assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000404", info.trace_id)
    assert.equal(h.fixture("err_404.json"), info.body)
    assert.equal(1, info.attempts)
    c:close()
  end)

  it("times out a GET that never answers and retries it", function()
    local c = client { timeout = 0.5, retries = 1, max_retry_delay = 0 }
    local id = h.fresh_id("never_answer")
    local t0 = h.now()
    local conv, err, info = no_token(c:get_conversation(id))
    assert.is_true(h.now() - t0 < 5)
    assert.is_nil(conv)
    assert.matches("^ghl: ", err)
    assert.equal("timeout", info.kind)
    assert.equal(2, info.attempts)
    assert.equal(2, #h.requests_for(id))
    c:close()
  end)
end)

describe("ids in paths", function()
  local calls = {
    get_conversation = function(c, id) return c:get_conversation(id) end,
    get_email = function(c, id) return c:get_email(id) end,
    list_messages = function(c, id) return c:list_messages(id) end,
    each_message = function(c, id) return c:each_message(id) end,
    get_recording_message = function(c, id) return c:get_recording(id, "loc1") end,
    get_recording_location = function(c, id) return c:get_recording("ok--x", id) end,
  }
  for name, call in pairs(calls) do
    it("raise before sending for " .. name, function()
      local c = client { retries = 0 }
      for _, bad in ipairs(BAD_IDS) do
        assert_raises_unsent(function() call(c, bad) end)
      end
      for _, bad in ipairs { 5, true, {}, false } do
        assert_raises_unsent(function() call(c, bad) end)
      end
      assert_raises_unsent(function() call(c, nil) end)
      -- 128 bytes of the alphabet is a valid id: it is sent
      local long = h.fresh_id("err_404")
      long = long .. ("_"):rep(128 - #long)
      local before = mark()
      local a, b = call(c, long)
      if type(a) == "function" then a(b) end -- an iterator: take one step
      assert.equal(1, #since(before))
      c:close()
    end)
  end
end)

describe("per-call opts", function()
  local calls = {
    get_conversation = function(c, o) return c:get_conversation("ok--x", o) end,
    get_email = function(c, o) return c:get_email("ok--x", o) end,
    list_messages = function(c, o) return c:list_messages("ok--x", nil, o) end,
    each_message = function(c, o) return c:each_message("ok--x", nil, o) end,
    search_conversations = function(c, o) return c:search_conversations({ locationId = "ok--x" }, o) end,
    each_conversation = function(c, o) return c:each_conversation({ locationId = "ok--x" }, o) end,
    send_message = function(c, o) return c:send_message({ type = "SMS", contactId = "ok--x" }, o) end,
    get_recording = function(c, o) return c:get_recording("ok--x", "loc1", o) end,
    request = function(c, o) return c:request("GET", "/spec/array", nil, o) end,
  }
  for name, call in pairs(calls) do
    it("reject unknown and bad keys in " .. name, function()
      local c = client()
      assert_raises_unsent(function() call(c, { timout = 1 }) end, "timout")
      assert_raises_unsent(function() call(c, { token = "x" }) end, "token")
      assert_raises_unsent(function() call(c, { retries = -1 }) end, "retries")
      assert_raises_unsent(function() call(c, { timeout = 0 }) end, "timeout")
      c:close()
    end)
  end

  it("raise on a closed client", function()
    local c = client()
    c:close()
    for name, call in pairs(calls) do
      assert.is_function(c[name], name)
      local ok, err = pcall(call, c, nil)
      assert.is_false(ok, name .. " on a closed client")
      assert.is_nil(tostring(err):find("attempt to ", 1, true), tostring(err))
    end
  end)
end)

describe("client:list_messages", function()
  it("GETs /conversations/{id}/messages and returns the page, messages decoded", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local page, err, info = no_token(c:list_messages(id))
    assert.is_nil(err)
    assert.same({ messages = expected_messages(1, 5), next_page = false,
                  last_message_id = "MsG0000000000000001" }, page)
    local m = page.messages
    assert.equal("TYPE_SMS", m[1].type)
    assert.equal("TYPE_CALL", m[2].type)
    assert.equal("TYPE_EMAIL", m[3].type)
    assert.equal("TYPE_WHATSAPP", m[4].type) -- 19, no messageType
    assert.equal(99, m[5].type)
    assert.is_nil(m[1].userId)
    assert.is_nil(m[4].status)
    assert.equal(ghl.null, m[3].attachments[2])
    assert.is_true(h.is_integer(m[2].meta.call.duration))
    assert.is_true(h.is_integer(m[5].meta.n))
    assert.equal(-9007199254740991, m[5].meta.n)
    assert.is_true(h.is_float(m[5].meta.f))
    assert.equal("caf\195\169 \240\159\152\128\nline 2", m[4].body)
    assert_ok_info(info, "list-ok")
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
    assert.equal("/conversations/" .. id .. "/messages", reqs[1].path)
    assert.is_nil(logged(reqs[1].query))
    assert_json_headers(reqs[1])
    c:close()
  end)

  it("sends the query and returns each page with its cursor", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("pages")
    local query = { limit = 2 }
    local p1, err, info = no_token(c:list_messages(id, query))
    assert.is_nil(err)
    assert.same({ messages = expected_messages(1, 2), next_page = true,
                  last_message_id = "MsG0000000000000004" }, p1)
    assert.equal("list-pages-1", info.trace_id)
    local p2, err2, info2 = no_token(c:list_messages(id, { limit = 2, lastMessageId = p1.last_message_id }))
    assert.is_nil(err2)
    assert.same({ messages = expected_messages(3, 4), next_page = true,
                  last_message_id = "MsG0000000000000002" }, p2)
    assert.equal("list-pages-2", info2.trace_id)
    local p3 = c:list_messages(id, { limit = 2, lastMessageId = p2.last_message_id })
    assert.same({ messages = expected_messages(5, 5), next_page = false,
                  last_message_id = "MsG0000000000000001" }, p3)
    local reqs = h.requests_for(id)
    assert.equal(3, #reqs)
    assert.equal("limit=2", reqs[1].query)
    assert.equal("lastMessageId=MsG0000000000000004&limit=2", reqs[2].query)
    assert.equal("lastMessageId=MsG0000000000000002&limit=2", reqs[3].query)
    for _, r in ipairs(reqs) do assert.equal("/conversations/" .. id .. "/messages", path_only(r)) end
    assert.same({ limit = 2 }, query)
    c:close()
  end)

  it("returns an empty page without last_message_id", function()
    local c = client { retries = 0 }
    local page, err, info = no_token(c:list_messages(h.fresh_id("empty")))
    assert.is_nil(err)
    assert.same({ messages = {}, next_page = false }, page)
    assert.is_nil(page.last_message_id)
    assert.equal("list-empty", info.trace_id)
    c:close()
  end)

  it("joins an array message with '; '", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("err_422")
    local page, err, info = no_token(c:list_messages(id))
    assert.is_nil(page)
    assert.matches("^ghl: HTTP 422 Unprocessable %a+: id must be a string; id must be longer than or equal to 20 characters %(GET /conversations/"
      .. h.literal(id) .. "/messages%)$", err)
    assert.equal("id must be a string; id must be longer than or equal to 20 characters", info.message)
    assert.equal(422, info.status)
    c:close()
  end)

  it("retries a GET after a 503", function()
    local c = client { max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local page, err, info = no_token(c:list_messages(id))
    assert.is_nil(err)
    assert.equal(5, #page.messages)
    assert.equal(2, info.attempts)
    assert.equal(2, #h.requests_for(id))
    c:close()
  end)
end)

describe("query encoding", function()
  -- what the server logged as the raw query for a GET /spec/echo with `query`
  local function sent_query(query)
    local c = client { retries = 0 }
    local before = mark()
    local res, err, info = no_token(c:request("GET", "/spec/echo", { query = query }))
    assert.is_nil(err)
    assert.equal("echo-get", info.trace_id)
    local reqs = since(before)
    assert.equal(1, #reqs)
    assert.equal("/spec/echo", path_only(reqs[1]))
    assert.equal(logged(reqs[1].query), res.query) -- what the server answered
    c:close()
    return logged(reqs[1].query)
  end

  it("sorts the keys bytewise", function()
    assert.equal("B=3&_x=4&a=2&ab=6&b=1", sent_query { b = 1, a = 2, B = 3, _x = 4, ab = 6 })
  end)

  it("percent-encodes names and values, keeping only A-Za-z0-9-._~", function()
    assert.equal("k=a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25i%2Aj%27k%22l~._-Zz09",
      sent_query { k = "a b&c=d/e?f#g+h%i*j'k\"l~._-Zz09" })
    assert.equal("caf%C3%A9=%C3%A9%F0%9F%98%80%0A%00%7F", sent_query { ["caf\195\169"] = "\195\169\240\159\152\128\n\0\127" })
    assert.equal("a%20b=1", sent_query { ["a b"] = 1 })
    assert.equal("e=", sent_query { e = "" })
  end)

  it("joins sequences with literal commas, each element encoded", function()
    assert.equal("ids=a%2Cb,c%20d,3,true&type=TYPE_SMS,TYPE_EMAIL",
      sent_query { type = { "TYPE_SMS", "TYPE_EMAIL" }, ids = { "a,b", "c d", 3, true } })
  end)

  it("sends integers without a fraction and booleans as true/false", function()
    assert.equal("big=1711563231005&f=false&limit=3&neg=-7&t=true&z=0",
      sent_query { limit = 3.0, neg = -7, big = 1711563231005, t = true, f = false, z = 0 })
  end)

  it("sends no query string for an empty query table", function()
    assert.is_nil(sent_query {})
  end)

  it("raises, naming the key, for values it cannot send", function()
    local c = client { retries = 0 }
    local function bad(query, pattern)
      assert_raises_unsent(function() c:request("GET", "/spec/echo", { query = query }) end, pattern)
      assert_raises_unsent(function() c:list_messages("ok--x", query) end, pattern)
    end
    bad({ nested = { x = 1 } }, "nested")
    bad({ deep = { { 1 } } }, "deep")
    bad({ fn = print }, "fn")
    bad({ frac = 1.5 }, "frac")
    bad({ seqfrac = { 1, 2.5 } }, "seqfrac")
    bad({ [true] = 1 }, "true")
    bad({ [7] = "x" }, "7")
    bad({ ok = 1, [2.5] = "x" }, "2.5")
    assert_raises_unsent(function() c:list_messages("ok--x", "limit=2") end)
    c:close()
  end)

  it("leaves the caller's query table unchanged", function()
    local c = client { retries = 0 }
    local query = { type = { "TYPE_SMS", "TYPE_EMAIL" }, limit = 3.0, flag = true, name = "a b" }
    local copy = deep_copy(query)
    local res = c:request("GET", "/spec/echo", { query = query })
    assert.equal("flag=true&limit=3&name=a%20b&type=TYPE_SMS,TYPE_EMAIL", res.query)
    assert.same(copy, query)
    assert.is_nil(getmetatable(query))
    c:close()
  end)
end)

describe("JSON request bodies", function()
  -- PUT /spec/echo with `json`: the logged request and the echoed answer
  local function put(value, method)
    local c = client { retries = 0 }
    local before = mark()
    local res, err, info = no_token(c:request(method or "PUT", "/spec/echo", { json = value }))
    assert.is_nil(err)
    local reqs = since(before)
    assert.equal(1, #reqs)
    assert_json_body_header(reqs[1])
    assert_json_headers(reqs[1])
    assert.equal("echo-" .. (method or "PUT"):lower(), info.trace_id)
    assert.is_nil(res.traceId)
    c:close()
    return reqs[1], res
  end

  it("encodes an empty table as {}", function()
    local r = put {}
    assert.equal("{}", r.body)
  end)

  it("encodes sequences as arrays, ghl.null as null, integers without a fraction", function()
    local r, res = put { list = { 1, ghl.null, "x", true }, n = 3.0, big = 1711563231005, neg = -42,
                         f = 1.5, none = ghl.null, empty = {} }
    assert.equal(NULL, r.json.list[2])
    assert.equal(4, #r.json.list)
    assert.equal(NULL, r.json.none)
    assert.equal(1.5, r.json.f)
    assert.equal(1711563231005, r.json.big)
    assert.matches('"n":3[,}]', r.body)
    assert.matches('"big":1711563231005[,}]', r.body)
    assert.matches('"neg":%-42[,}]', r.body)
    assert.matches('"list":%[1,null,"x",true%]', r.body)
    assert.matches('"empty":{}', r.body)
    -- the echo comes back decoded by the rules of section 1
    assert.same({ method = "PUT", json = { list = { 1, ghl.null, "x", true }, n = 3, big = 1711563231005,
                                           neg = -42, f = 1.5, empty = {} } }, res)
    assert.is_true(h.is_integer(res.json.n))
  end)

  it("round-trips strings with quotes, backslashes, newlines, control characters and UTF-8", function()
    local s = 'quote " backslash \\ slash / newline \n tab \t cr \r ctrl \1\31 del \127 '
      .. "caf\195\169 \240\159\152\128 \226\128\168"
    local r, res = put { s = s, [s] = "key" }
    assert.equal(s, r.json.s)
    assert.equal("key", r.json[s])
    assert.equal(s, res.json.s)
  end)

  it("sends nested tables, and PATCH and POST bodies the same way", function()
    local v = { a = { b = { c = { 1, { d = true } } } }, f = false }
    local r = put(v)
    assert.same({ a = { b = { c = { 1, { d = true } } } }, f = false }, r.json)
    local r2 = put(v, "PATCH")
    assert.equal("PATCH", r2.method)
    assert.same(r.json, r2.json)
    local r3 = put(v, "POST")
    assert.equal("POST", r3.method)
    assert.same(r.json, r3.json)
  end)

  it("raises for values JSON cannot hold", function()
    local c = client { retries = 0 }
    assert_raises_unsent(function() c:request("PUT", "/spec/echo", { json = { f = print } }) end)
    assert_raises_unsent(function() c:request("PUT", "/spec/echo", { json = "text" }) end, "json")
    assert_raises_unsent(function()
      c:send_message { type = "SMS", contactId = "ok--x", bad = coroutine.create(print) }
    end)
    c:close()
  end)
end)

describe("client:send_message", function()
  it("POSTs the body as JSON and returns the response, traceId in info", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local body = { type = "SMS", contactId = id, message = 'Hi "Ana"\nsee you caf\195\169',
                   attachments = {}, scheduled = false }
    local copy = deep_copy(body)
    local res, err, info = no_token(c:send_message(body))
    assert.is_nil(err)
    assert.same({ conversationId = "CoV0000000000000conv", messageId = "MsG00000000000sent01",
                  msg = "Message queued successfully." }, res)
    assert_ok_info(info, "send-ok")
    assert.same(copy, body)
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    local r = reqs[1]
    assert.equal("POST", r.method)
    assert.equal("/conversations/messages", r.path)
    assert.is_nil(logged(r.query))
    assert_json_headers(r)
    assert_json_body_header(r)
    assert.same({ type = "SMS", contactId = id, message = 'Hi "Ana"\nsee you caf\195\169',
                  attachments = {}, scheduled = false }, r.json)
    assert.matches('"attachments":{}', r.body)
    c:close()
  end)

  it("gets emailMessageId back for an Email", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local body = { type = "Email", contactId = id, subject = "Hello", html = "<p>Hi</p>",
                   attachments = { "https://example.test/a.pdf" }, emailCc = { "a@example.test", "b@example.test" } }
    local res, err = no_token(c:send_message(body))
    assert.is_nil(err)
    assert.same({ conversationId = "CoV0000000000000conv", messageId = "MsG00000000000sent01",
                  msg = "Message queued successfully.", emailMessageId = "EmL00000000000sent01" }, res)
    assert.same(body, h.requests_for(id)[1].json)
  end)

  it("raises without type or contactId, or without a table", function()
    local c = client { retries = 0 }
    assert_raises_unsent(function() c:send_message { contactId = "ok--x", message = "x" } end, "type")
    assert_raises_unsent(function() c:send_message { type = "SMS", message = "x" } end, "contactId")
    assert_raises_unsent(function() c:send_message() end)
    assert_raises_unsent(function() c:send_message('{"type":"SMS"}') end)
    c:close()
  end)

  it("never repeats a POST answered 503", function()
    local c = client { retries = 2, max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = id, message = "once" })
    assert.is_nil(res)
    assert.equal("ghl: HTTP 503 Service Unavailable: Service temporarily unavailable (POST /conversations/messages)", err)
    assert.equal("http", info.kind)
    assert.equal(503, info.status)
    assert.equal(1, info.attempts)
    h.sleep(0.2)
    assert.equal(1, #h.requests_for(id))
    c:close()
  end)

  it("repeats a POST answered 429", function()
    local c = client { retries = 2, max_retry_delay = 0 }
    local id = h.fresh_id("flaky_429_1")
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = id, message = "twice" })
    assert.is_nil(err)
    assert.equal("MsG00000000000sent01", res.messageId)
    assert_ok_info(info, "send-ok", 2)
    local reqs = h.requests_for(id)
    assert.equal(2, #reqs)
    assert.same(reqs[1].json, reqs[2].json)
    assert.equal(429, reqs[1].status)
    c:close()
  end)

  it("never repeats a POST that timed out", function()
    local c = client { retries = 2, max_retry_delay = 0, timeout = 0.5 }
    local id = h.fresh_id("never_answer")
    local t0 = h.now()
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = id })
    assert.is_nil(res)
    assert.matches("^ghl: ", err)
    assert.equal("timeout", info.kind)
    assert.equal(1, info.attempts)
    assert.is_true(h.now() - t0 < 3)
    h.sleep(0.3)
    assert.equal(1, #h.requests_for(id))
    c:close()
  end)

  it("never repeats a POST that timed out on a connection kept from an earlier request", function()
    local c = client { retries = 2, max_retry_delay = 0, timeout = 0.5 }
    local warm = c:get_conversation(h.fresh_id("ok")) -- the connection the POST then reuses
    assert.is_table(warm)
    local id = h.fresh_id("never_answer")
    local res, _, info = no_token(c:send_message { type = "SMS", contactId = id })
    assert.is_nil(res)
    assert.same({ "timeout", 1 }, { info.kind, info.attempts })
    h.sleep(0.3)
    assert.equal(1, #h.requests_for(id))
    c:close()
  end)

  it("never repeats a POST whose connection was reset", function()
    local c = client { retries = 2, max_retry_delay = 0 }
    local id = h.fresh_id("reset")
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = id })
    assert.is_nil(res)
    assert.matches("^ghl: ", err)
    assert.equal("network", info.kind)
    assert.equal(1, info.attempts)
    assert.is_number(info.curl_code)
    h.sleep(0.3)
    assert.equal(1, #h.requests_for(id))
    c:close()
  end)

  it("repeats a POST whose connection was refused", function()
    local c = ghl.new { token = h.TOKEN, base_url = "http://127.0.0.1:9", retries = 2, max_retry_delay = 0 }
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = "ok--refused" })
    assert.is_nil(res)
    assert.matches("^ghl: ", err)
    assert.equal("network", info.kind)
    assert.equal(3, info.attempts)
    assert.is_nil(info.status)
    c:close()
  end)

  it("keeps the token out of an error that quotes the headers", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("echo_auth_400")
    local res, err, info = no_token(c:send_message { type = "SMS", contactId = id })
    assert.is_nil(res)
    assert.equal("http", info.kind)
    assert.equal(400, info.status)
    assert.equal("echo-auth-400", info.trace_id)
    assert.matches("Version: " .. h.literal(ghl.API_VERSION), info.message)
    assert.matches("%(POST /conversations/messages%)$", err)
    c:close()
  end)
end)

describe("client:get_email", function()
  it("GETs /conversations/messages/email/{id} and unwraps emailMessage", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local email, err, info = no_token(c:get_email(id))
    assert.is_nil(err)
    assert.same(plain(h.fixture_json("email_message.json").emailMessage), email)
    assert.is_nil(email.replyToMessageId)
    assert.same({ "ana@example.test" }, email.to)
    assert.equal('<p>Hi <b>Ana</b>,<br>see you "Friday".</p>\n', email.body)
    assert.is_true(h.is_integer(email.messageCount))
    assert_ok_info(info, "email-trace-0001")
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
    assert.equal("/conversations/messages/email/" .. id, reqs[1].path)
    assert_json_headers(reqs[1])
    c:close()
  end)

  it("takes an email at the top level", function()
    local c = client { retries = 0 }
    local email, err, info = no_token(c:get_email(h.fresh_id("email_top")))
    assert.is_nil(err)
    assert.same(plain(h.fixture_json("email_message.json").emailMessage), email)
    assert.is_nil(info.trace_id)
    c:close()
  end)

  it("returns a 404", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("err_404")
    local email, err, info = no_token(c:get_email(id))
    assert.is_nil(email)
    assert.equal("ghl: HTTP 404 Not Found: Message not found (GET /conversations/messages/email/" .. id .. ")", err)
    assert.equal(404, info.status)
    c:close()
  end)
end)

describe("client:search_conversations", function()
  it("GETs /conversations/search with the query and returns the page and its cursor", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("pages")
    local query = { locationId = loc, limit = 2 }
    local p1, err, info = no_token(c:search_conversations(query))
    assert.is_nil(err)
    assert.same({ conversations = expected_conversations(1, 2), total = 5, next = 1711563231004 }, p1)
    assert.is_true(h.is_integer(p1.total))
    assert.is_true(h.is_integer(p1.next))
    assert.equal(1, p1.conversations[1].type) -- not renamed
    assert.equal(2, p1.conversations[2].type)
    assert.is_nil(p1.conversations[1].assignedTo)
    assert.equal(ghl.null, p1.conversations[2].tags[2])
    assert.same({ 1711563231005, "CoV0000000000000c005" }, p1.conversations[1].sort)
    assert_ok_info(info, "search-pages-1")
    assert.same({ locationId = loc, limit = 2 }, query)
    local p2 = c:search_conversations { locationId = loc, limit = 2, startAfterDate = p1.next }
    assert.same({ conversations = expected_conversations(3, 4), total = 5, next = 1711563231002 }, p2)
    local p3, _, info3 = c:search_conversations { locationId = loc, limit = 2, startAfterDate = p2.next }
    assert.same({ conversations = expected_conversations(5, 5), total = 5 }, p3)
    assert.is_nil(p3.next)
    assert.equal("search-pages-3", info3.trace_id)
    local reqs = h.requests_for(loc)
    assert.equal(3, #reqs)
    for _, r in ipairs(reqs) do
      assert.equal("GET", r.method)
      assert.equal("/conversations/search", path_only(r))
      assert_json_headers(r)
    end
    assert.equal("limit=2&locationId=" .. loc, reqs[1].query)
    assert.equal("limit=2&locationId=" .. loc .. "&startAfterDate=1711563231004", reqs[2].query)
    assert.equal("limit=2&locationId=" .. loc .. "&startAfterDate=1711563231002", reqs[3].query)
    c:close()
  end)

  it("takes a page shorter than the default limit of 20 as the last", function()
    local c = client { retries = 0 }
    local res, err = no_token(c:search_conversations { locationId = h.fresh_id("ok") })
    assert.is_nil(err)
    assert.same({ conversations = expected_conversations(1, 5), total = 5 }, res)
    c:close()
  end)

  it("gives a cursor after a full page, also when the next page is empty", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("exact")
    local p2 = c:search_conversations { locationId = loc, limit = 2, startAfterDate = 1711563231004 }
    assert.same({ conversations = expected_conversations(3, 4), total = 4, next = 1711563231002 }, p2)
    local p3 = c:search_conversations { locationId = loc, limit = 2, startAfterDate = p2.next }
    assert.same({ conversations = {}, total = 4 }, p3)
    c:close()
  end)

  it("raises without query.locationId", function()
    local c = client { retries = 0 }
    assert_raises_unsent(function() c:search_conversations { limit = 2 } end, "locationId")
    assert_raises_unsent(function() c:search_conversations() end)
    assert_raises_unsent(function() c:each_conversation { limit = 2 } end, "locationId")
    assert_raises_unsent(function() c:each_conversation() end)
    assert_raises_unsent(function() c:search_conversations { locationId = "ok--x", bad = { a = 1 } } end, "bad")
    c:close()
  end)
end)

describe("client:get_recording", function()
  it("GETs the recording path and returns the bytes with their content type", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local wav, err, info = no_token(c:get_recording(id, "LoC0000000000000test"))
    assert.is_nil(err)
    local expected = h.fixture("recording.wav")
    assert.equal(556, #expected)
    assert.is_true(wav == expected, "the bytes differ")
    assert.equal("RIFF", wav:sub(1, 4))
    assert.is_truthy(wav:find("\0", 1, true))
    assert.is_truthy(wav:find("\255", 1, true))
    assert.equal("audio/x-wav", info.content_type)
    assert.equal(200, info.status)
    assert.equal(1, info.attempts)
    assert.is_nil(info.kind)
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
    assert.equal("/conversations/messages/" .. id .. "/locations/LoC0000000000000test/recording", reqs[1].path)
    assert_common_headers(reqs[1])
    c:close()
  end)

  it("retries a GET after a 503", function()
    local c = client { max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local wav, err, info = no_token(c:get_recording(id, "loc1"))
    assert.is_nil(err)
    assert.is_true(wav == h.fixture("recording.wav"), "the bytes differ")
    assert.equal(2, info.attempts)
    assert.equal(2, #h.requests_for(id))
    c:close()
  end)

  it("returns a 404", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("err_404")
    local wav, err, info = no_token(c:get_recording(id, "loc1"))
    assert.is_nil(wav)
    assert.equal("ghl: HTTP 404 Not Found: Message not found (GET /conversations/messages/" .. id
      .. "/locations/loc1/recording)", err)
    assert.equal("http", info.kind)
    assert.equal(404, info.status)
    c:close()
  end)
end)

describe("client:each_message", function()
  it("walks every page with lastMessageId, giving each item with its page's info", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("pages")
    local query = { limit = 2 }
    local steps = collect(c:each_message(id, query))
    assert.equal(5, #steps)
    local traces = {}
    for i, s in ipairs(steps) do
      assert.same(as_message(MESSAGES[i]), s.item)
      assert.is_nil(s.err)
      assert.equal(200, s.info.status)
      traces[i] = s.info.trace_id
    end
    assert.same({ "list-pages-1", "list-pages-1", "list-pages-2", "list-pages-2", "list-pages-3" }, traces)
    local reqs = h.requests_for(id)
    assert.equal(3, #reqs)
    assert.equal("limit=2", reqs[1].query)
    assert.equal("lastMessageId=MsG0000000000000004&limit=2", reqs[2].query)
    assert.equal("lastMessageId=MsG0000000000000002&limit=2", reqs[3].query)
    for _, r in ipairs(reqs) do
      assert.equal("/conversations/" .. id .. "/messages", path_only(r))
      assert_json_headers(r)
    end
    assert.same({ limit = 2 }, query)
    c:close()
  end)

  it("fetches pages only as the loop asks", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("pages")
    local iter, state, control = c:each_message(id, { limit = 2 })
    h.sleep(0.1)
    assert.equal(0, #h.requests_for(id))
    local n = 0
    for item in iter, state, control do -- luacheck: ignore 512
      n = n + 1
      assert.equal("MsG0000000000000005", item.id)
      break
    end
    assert.equal(1, n)
    h.sleep(0.1)
    assert.equal(1, #h.requests_for(id))
    -- the second item of page 1 costs no request either
    local id2 = h.fresh_id("pages")
    local seen = 0
    for _ in c:each_message(id2, { limit = 2 }) do
      seen = seen + 1
      if seen == 2 then break end
    end
    h.sleep(0.1)
    assert.equal(1, #h.requests_for(id2))
    c:close()
  end)

  it("ends at an empty page", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("empty")
    local steps = collect(c:each_message(id))
    assert.equal(0, #steps)
    assert.equal(1, #h.requests_for(id))
    local id2 = h.fresh_id("emptynext")
    steps = collect(c:each_message(id2))
    assert.equal(2, #steps)
    assert.equal("MsG0000000000000005", steps[1].item.id)
    assert.equal("MsG0000000000000004", steps[2].item.id)
    local reqs = h.requests_for(id2)
    assert.equal(2, #reqs)
    assert.equal("lastMessageId=MsG0000000000000004", reqs[2].query)
    c:close()
  end)

  it("gives false, errmsg, info once for a failing page, then ends", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("failpage")
    local steps = collect(c:each_message(id))
    assert.equal(3, #steps)
    assert.equal("MsG0000000000000005", steps[1].item.id)
    assert.equal("MsG0000000000000004", steps[2].item.id)
    assert.equal("list-failpage-1", steps[2].info.trace_id)
    local f = steps[3]
    assert.is_false(f.item)
    assert.matches("^ghl: HTTP 422 ", f.err)
    -- the request it is about (a query after the path, if any, is not asserted)
    assert.matches("%(GET /conversations/" .. h.literal(id) .. "/messages[^)]*%)$", f.err)
    assert.equal("http", f.info.kind)
    assert.equal(422, f.info.status)
    assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000422", f.info.trace_id)
    assert.equal(2, #h.requests_for(id))
    -- a first page that fails
    local id2 = h.fresh_id("err_404")
    steps = collect(c:each_message(id2))
    assert.equal(1, #steps)
    assert.is_false(steps[1].item)
    assert.equal(404, steps[1].info.status)
    assert.equal(1, #h.requests_for(id2))
    c:close()
  end)

  it("passes per-call opts to every page", function()
    local c = client { max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local steps = collect(c:each_message(id, nil, { retries = 0 }))
    assert.equal(1, #steps)
    assert.is_false(steps[1].item)
    assert.equal(503, steps[1].info.status)
    assert.equal(1, steps[1].info.attempts)
    assert.equal(1, #h.requests_for(id))
    local loc = h.fresh_id("flaky_503_1")
    steps = collect(c:each_conversation({ locationId = loc }, { retries = 0 }))
    assert.equal(1, #steps)
    assert.is_false(steps[1].item)
    assert.equal(1, #h.requests_for(loc))
    c:close()
  end)

  it("leaves the client usable after an error raised in the loop body", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("pages")
    local ok, err = pcall(function()
      for item in c:each_message(id, { limit = 2 }) do error("stop at " .. item.id, 0) end
    end)
    assert.is_false(ok)
    assert.equal("stop at MsG0000000000000005", err)
    assert.equal(1, #h.requests_for(id))
    local conv, err2 = no_token(c:get_conversation(h.fresh_id("ok")))
    assert.is_nil(err2)
    assert.equal("CoV0000000000000conv", conv.id)
    -- and a new iterator starts from the first page again
    local steps = collect(c:each_message(id, { limit = 2 }))
    assert.equal(5, #steps)
    assert.equal(4, #h.requests_for(id))
    c:close()
  end)

  it("retries a page by the GET rule", function()
    local c = client { max_retry_delay = 0 }
    local id = h.fresh_id("flaky_503_1")
    local steps = collect(c:each_message(id))
    assert.equal(5, #steps)
    assert.equal(2, steps[1].info.attempts)
    assert.equal(2, #h.requests_for(id))
    c:close()
  end)

  it("needs no coroutine: works inside pcall and coroutine.wrap, and with coroutine.* unusable", function()
    local c = client { retries = 0 }
    local ok, ids = pcall(function()
      local out = {}
      for item in c:each_message(h.fresh_id("pages"), { limit = 2 }) do
        out[#out + 1] = item.id
        if #out >= STEP_LIMIT then break end
      end
      return out
    end)
    assert.is_true(ok, tostring(ids))
    assert.equal(5, #ids)
    -- a coroutine that yields every item out between steps
    local gen = coroutine.wrap(function()
      for item in c:each_message(h.fresh_id("pages"), { limit = 2 }) do coroutine.yield(item.id) end
      coroutine.yield(nil)
    end)
    local got = {}
    for _ = 1, STEP_LIMIT do
      local v = gen()
      if v == nil then break end
      got[#got + 1] = v
    end
    assert.same(ids, got)
    -- the iterator itself makes no coroutine
    local saved = {}
    for k, v in pairs(coroutine) do saved[k] = v end
    for _, k in ipairs { "create", "wrap", "resume", "yield" } do
      coroutine[k] = function() error("coroutine." .. k .. " used", 2) end -- luacheck: ignore 122
    end
    local ok2, n = pcall(function()
      local k = 0
      for _ in c:each_message(h.fresh_id("pages"), { limit = 2 }) do
        k = k + 1
        if k >= STEP_LIMIT then break end
      end
      return k
    end)
    for k, v in pairs(saved) do coroutine[k] = v end -- luacheck: ignore 122
    assert.is_true(ok2, tostring(n))
    assert.equal(5, n)
    c:close()
  end)
end)

describe("client:each_conversation", function()
  it("walks every page with startAfterDate = the last item's sort[1]", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("pages")
    local query = { locationId = loc, limit = 2 }
    local steps = collect(c:each_conversation(query))
    assert.equal(5, #steps)
    local traces = {}
    for i, s in ipairs(steps) do
      assert.same(plain(CONVERSATIONS[i]), s.item)
      assert.is_nil(s.err)
      traces[i] = s.info.trace_id
    end
    assert.same({ "search-pages-1", "search-pages-1", "search-pages-2", "search-pages-2", "search-pages-3" }, traces)
    local reqs = h.requests_for(loc)
    assert.equal(3, #reqs)
    assert.equal("limit=2&locationId=" .. loc, reqs[1].query)
    assert.equal("limit=2&locationId=" .. loc .. "&startAfterDate=1711563231004", reqs[2].query)
    assert.equal("limit=2&locationId=" .. loc .. "&startAfterDate=1711563231002", reqs[3].query)
    assert.same({ locationId = loc, limit = 2 }, query)
    c:close()
  end)

  it("stops after a short page, with the default limit of 20 too", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("ok")
    local steps = collect(c:each_conversation { locationId = loc })
    assert.equal(5, #steps)
    assert.equal(1, #h.requests_for(loc))
    assert.equal("locationId=" .. loc, h.requests_for(loc)[1].query)
    c:close()
  end)

  it("ends at an empty page after full ones", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("exact")
    local steps = collect(c:each_conversation { locationId = loc, limit = 2 })
    assert.equal(4, #steps)
    assert.equal("CoV0000000000000c002", steps[4].item.id)
    local reqs = h.requests_for(loc)
    assert.equal(3, #reqs)
    assert.equal("limit=2&locationId=" .. loc .. "&startAfterDate=1711563231002", reqs[3].query)
    c:close()
  end)

  it("fetches pages only as the loop asks", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("pages")
    local iter, state, control = c:each_conversation { locationId = loc, limit = 2 }
    h.sleep(0.1)
    assert.equal(0, #h.requests_for(loc))
    for item in iter, state, control do -- luacheck: ignore 512
      assert.equal("CoV0000000000000c005", item.id)
      break
    end
    h.sleep(0.1)
    assert.equal(1, #h.requests_for(loc))
    c:close()
  end)

  it("gives false, errmsg, info once for a failing page, then ends", function()
    local c = client { retries = 0 }
    local loc = h.fresh_id("err_404")
    local steps = collect(c:each_conversation { locationId = loc })
    assert.equal(1, #steps)
    assert.is_false(steps[1].item)
    assert.matches("^ghl: HTTP 404 Not Found: Message not found %(GET /conversations/search[^)]*%)$", steps[1].err)
    assert.equal(404, steps[1].info.status)
    assert.equal("http", steps[1].info.kind)
    assert.equal(1, #h.requests_for(loc))
    c:close()
  end)
end)

describe("client:request", function()
  it("decodes an array body, integers and nulls as in section 1", function()
    local c = client { retries = 0 }
    local before = mark()
    local res, err, info = no_token(c:request("GET", "/spec/array"))
    assert.is_nil(err)
    assert.same({ 1, ghl.null, "two", { three = 3 }, { 4.5, -6 } }, res)
    assert.is_true(h.is_integer(res[1]))
    assert.is_true(h.is_integer(res[4].three))
    assert.is_true(h.is_float(res[5][1]))
    assert.equal(200, info.status)
    assert.equal(1, info.attempts)
    assert.is_nil(info.trace_id)
    local reqs = since(before)
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
    assert.equal("/spec/array", reqs[1].path)
    assert.is_nil(logged(reqs[1].body))
    assert_json_headers(reqs[1])
    c:close()
  end)

  it("gives true for an empty 2xx body", function()
    local c = client { retries = 0 }
    local before = mark()
    local res, err, info = no_token(c:request("DELETE", "/spec/empty"))
    assert.is_nil(err)
    assert.is_true(res)
    assert.equal(204, info.status)
    local reqs = since(before)
    assert.equal(1, #reqs)
    assert.equal("DELETE", reqs[1].method)
    assert.is_nil(logged(reqs[1].body))
    c:close()
  end)

  it("gives the body as a string with raw = true", function()
    local c = client { retries = 0 }
    local res, err, info = no_token(c:request("GET", "/spec/text", { raw = true }))
    assert.is_nil(err)
    assert.equal("plain text\n", res)
    assert.equal(200, info.status)
    local arr = c:request("GET", "/spec/array", { raw = true })
    assert.equal('[1,null,"two",{"three":3,"none":null},[4.5,-6]]', arr)
    -- not JSON without raw: kind decode
    local r2, err2, info2 = no_token(c:request("GET", "/spec/text"))
    assert.is_nil(r2)
    assert.matches("^ghl: ", err2)
    assert.equal("decode", info2.kind)
    assert.equal(200, info2.status)
    c:close()
  end)

  it("sends args.query, args.json and args.version", function()
    local c = client { retries = 0 }
    local before = mark()
    local res, err, info = no_token(c:request("PATCH", "/spec/echo", {
      query = { b = "x y", a = { 1, 2 } }, json = { k = "v" }, version = "2021-07-28" }))
    assert.is_nil(err)
    assert.same({ method = "PATCH", json = { k = "v" }, query = "a=1,2&b=x%20y" }, res)
    assert.equal("echo-patch", info.trace_id)
    local r = since(before)[1]
    assert.equal("/spec/echo", path_only(r))
    assert.equal("a=1,2&b=x%20y", r.query)
    assert.same({ k = "v" }, r.json)
    assert_json_headers(r, "2021-07-28")
    assert_json_body_header(r)
    -- the next request has the client's version again
    before = mark()
    c:request("GET", "/spec/echo")
    assert.equal(ghl.API_VERSION, since(before)[1].headers.version)
    c:close()
  end)

  it("reaches an API endpoint with nothing renamed", function()
    local c = client { retries = 0 }
    local id = h.fresh_id("ok")
    local conv, err, info = no_token(c:request("GET", "/conversations/" .. id))
    assert.is_nil(err)
    local expected = plain(h.fixture_json("conversation.json"))
    expected.traceId = nil
    assert.same(expected, conv)
    assert.equal("conv-trace-0001", info.trace_id)
    local page = c:request("GET", "/conversations/" .. h.fresh_id("ok") .. "/messages")
    assert.equal(2, page.messages.messages[1].type) -- the raw number: no message rule here
    c:close()
  end)

  it("retries GET, PUT and DELETE by section 1's rule, POST and PATCH only after a 429", function()
    local c = client { retries = 2, max_retry_delay = 0 }
    for _, case in ipairs {
      { "GET", "flaky_503_1", 2, true }, { "PUT", "flaky_503_1", 2, true }, { "DELETE", "flaky_503_1", 2, true },
      { "POST", "flaky_503_1", 1, false }, { "PATCH", "flaky_503_1", 1, false },
      { "POST", "flaky_429_1", 2, true }, { "PATCH", "flaky_429_1", 2, true },
      { "PUT", "flaky_500_2", 3, true },
    } do
      local method, scenario, attempts, success = unpack(case)
      local id = h.fresh_id(scenario)
      local args = (method ~= "GET" and method ~= "DELETE") and { json = { n = 1 } } or nil
      local res, err, info = no_token(c:request(method, "/spec/echo/" .. id, args))
      local what = method .. " " .. scenario
      assert.equal(success, res ~= nil, what .. ": " .. tostring(err))
      assert.equal(attempts, info.attempts, what)
      if success then assert.equal(method, res.method, what) end
      h.sleep(0.05)
      assert.equal(attempts, #h.requests_for(id), what)
    end
    c:close()
  end)

  it("raises for a bad method", function()
    local c = client { retries = 0 }
    for _, m in ipairs { "get", "Get", "HEAD", "OPTIONS", "TRACE", "CONNECT", "", " GET", "GET " } do
      assert_raises_unsent(function() c:request(m, "/spec/echo") end)
    end
    assert_raises_unsent(function() c:request(nil, "/spec/echo") end)
    assert_raises_unsent(function() c:request(1, "/spec/echo") end)
    c:close()
  end)

  it("raises for a bad path, also when percent-encoded", function()
    local c = client { retries = 0 }
    for _, p in ipairs {
      "spec/echo", "", "/spec/echo?x=1", "/spec/echo#x", "/spec echo", "/spec\\echo", "/spec\necho",
      "/spec\0echo", "/spec\techo", "/spec\127", "/.", "/..", "/spec/./echo", "/spec/../echo", "/spec/..",
      "/spec/%2e%2e/echo", "/spec/%2E%2E", "/spec/%2e/echo", "/spec/.%2e/echo", "/spec/%3Fx", "/spec/%23x",
      "/spec/%20x", "/spec/%5Cx", "/spec/%0Ax", "/spec/%00", "/spec/%7f",
      "/" .. ("a"):rep(2048),
    } do
      assert_raises_unsent(function() c:request("GET", p) end)
    end
    assert_raises_unsent(function() c:request("GET", nil) end)
    assert_raises_unsent(function() c:request("GET", 5) end)
    -- 2048 bytes is allowed: it is sent
    local id = h.fresh_id("x")
    local p = "/spec/echo/" .. id
    p = p .. ("a"):rep(2048 - #p)
    assert.equal(2048, #p)
    local before = mark()
    local res, err, info = no_token(c:request("GET", p))
    assert.is_nil(res)
    assert.equal(404, info.status)
    assert.matches("^ghl: HTTP 404 ", err)
    local reqs = since(before)
    assert.equal(1, #reqs)
    assert.equal(p, reqs[1].path)
    c:close()
  end)

  it("raises for unknown or ill-typed args", function()
    local c = client { retries = 0 }
    assert_raises_unsent(function() c:request("GET", "/spec/echo", { querry = {} }) end, "querry")
    assert_raises_unsent(function() c:request("GET", "/spec/echo", { raw = "yes" }) end, "raw")
    assert_raises_unsent(function() c:request("GET", "/spec/echo", { version = 5 }) end, "version")
    assert_raises_unsent(function() c:request("GET", "/spec/echo", { version = "a\nb" }) end, "version")
    assert_raises_unsent(function() c:request("GET", "/spec/echo", { query = "a=1" }) end, "query")
    assert_raises_unsent(function() c:request("GET", "/spec/echo", "raw") end)
    c:close()
  end)

  it("keeps the token out of errors", function()
    local c = client { retries = 0 }
    local res, err, info = no_token(c:request("POST", "/spec/echo/" .. h.fresh_id("echo_auth_400"), { json = {} }))
    assert.is_nil(res)
    assert.equal(400, info.status)
    assert.equal("echo-auth-400", info.trace_id)
    assert.is_string(err)
    c:close()
  end)
end)
