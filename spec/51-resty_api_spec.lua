-- require("ghl.resty").new(opts) inside a real nginx (CONTRACT.md section 5):
-- every method of the C client on cosockets, compared field by field with
-- what the C client returns and sends for the same scenario; the POST retry
-- rule; the iterators; token functions called in the request's light
-- thread, one call per client shared by concurrent requests; oauth_token;
-- and the README's OpenResty token provider (ngx.shared and a lock).
--
-- Each test sends a Lua chunk to nginx (POST /run), which runs it in a
-- content handler and answers with its return values as JSON. nginx loads
-- build/luajit/ghl.so, so this file runs under GHL_RUNTIME=luajit only.

local h = require("helpers")

if os.getenv("GHL_RUNTIME") ~= "luajit" then
  describe("ghl.resty clients in nginx", function()
    pending("runs once, under GHL_RUNTIME=luajit (nginx loads build/luajit/ghl.so)")
  end)
  return
end

local ghl = require("ghl")
local json = h.json
local q, capture, write_file = h.quote, h.capture, h.write_file

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local MODULE_DIRS = { "/usr/lib/nginx/modules", "/usr/share/nginx/modules" }
local NULL = json.null

local function find_module(name)
  for _, dir in ipairs(MODULE_DIRS) do
    local path = dir .. "/" .. name
    if h.read_file(path) then return path end
  end
  error("nginx module " .. name .. " not found under " .. table.concat(MODULE_DIRS, ", ")
    .. ": run scripts/install-deps hosts", 0)
end

local function nginx_conf(dir, port)
  return table.concat({
    "load_module " .. find_module("ndk_http_module.so") .. ";",
    "load_module " .. find_module("ngx_http_lua_module.so") .. ";",
    "daemon off;",
    "master_process off;",
    "worker_processes 1;",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log info;",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. dir .. "/tmp_body;",
    "  proxy_temp_path " .. dir .. "/tmp_proxy;",
    "  fastcgi_temp_path " .. dir .. "/tmp_fastcgi;",
    "  uwsgi_temp_path " .. dir .. "/tmp_uwsgi;",
    "  scgi_temp_path " .. dir .. "/tmp_scgi;",
    '  lua_package_path "' .. ROOT .. "/src/?.lua;" .. ROOT .. "/examples/openresty/?.lua;" .. dir .. '/?.lua;;";',
    '  lua_package_cpath "' .. ROOT .. '/build/luajit/?.so;;";',
    "  lua_ssl_trusted_certificate " .. h.cainfo .. ";",
    "  lua_shared_dict ghl_tokens 1m;",
    "  lua_shared_dict spec 1m;",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    client_body_buffer_size 1m;",
    "    location /run { content_by_lua_block { require('spec_runner').run() } }",
    "    location /pong { content_by_lua_block { ngx.say('pong') } }",
    "  }",
    "}",
    "",
  }, "\n")
end

-- Runs the posted chunk with ghl, resty (ghl.resty), cjson and pack() in
-- scope; answers {ok, values = {n = ..., ["1"] = ...}} or {ok = false, err}.
local RUNNER = [==[
local cjson = require("cjson.safe")
local M = { shared = {} } -- what the chunks of one worker share (a client, ...)

local function pack(...)
  local t = { n = select("#", ...) }
  for i = 1, t.n do
    local v = select(i, ...)
    t[tostring(i)] = v == nil and cjson.null or v
  end
  return t
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function packed(ok, ...)
  if not ok then return { ok = false, err = tostring((...)) } end
  return { ok = true, values = pack(...) }
end

function M.run()
  ngx.req.read_body()
  local code = ngx.req.get_body_data() or ""
  local env = setmetatable({ ghl = require("ghl"), resty = require("ghl.resty"), cjson = cjson,
    pack = pack, hex = hex, shared = M.shared }, { __index = _G })
  local f, why = loadstring(code, "=test")
  local out
  if not f then
    out = { ok = false, err = "load: " .. why }
  else
    setfenv(f, env)
    -- an error that is not a string shows where it came from
    out = packed(xpcall(f, function(e)
      if type(e) == "string" then return e end
      return tostring(e) .. "\n" .. debug.traceback()
    end))
  end
  ngx.header["Content-Type"] = "application/json"
  local text, err = cjson.encode(out)
  ngx.say(text or cjson.encode({ ok = false, err = "encode: " .. tostring(err) }))
end

return M
]==]

local function start_nginx()
  local dir = h.temp_dir("ghl-nginx51")
  write_file(dir .. "/spec_runner.lua", RUNNER)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local last_err
  for _ = 1, 8 do
    local port = math.random(20000, 59999)
    write_file(dir .. "/nginx.conf", nginx_conf(dir, port))
    os.remove(dir .. "/error.log")
    local proc = h.spawn(dir, "nginx", "exec nginx -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf"))
    local base = "http://127.0.0.1:" .. port
    local up = h.wait_for(function()
      if not h.alive(proc.pid) then return "exited" end
      local code = capture("curl -s -o /dev/null -w '%{http_code}' --max-time 1 " .. q(base .. "/pong"))
      return code == "200" and "up" or nil
    end, 10)
    if up == "up" then return { dir = dir, port = port, base = base, proc = proc } end
    h.stop_process(proc)
    last_err = (h.read_file(dir .. "/nginx.out") or "") .. (h.read_file(dir .. "/error.log") or "")
    if not last_err:find("Address already in use", 1, true) then break end
  end
  error("nginx did not start:\n" .. tostring(last_err), 0)
end

local function stop_nginx(srv)
  if not srv then return end
  h.stop_process(srv.proc, 10)
  h.remove_dir(srv.dir)
end

local function error_log(srv)
  return h.hide_token((h.read_file(srv.dir .. "/error.log") or ""):sub(-3000))
end

-- The chunk's values (n of them, JSON nulls as nil); raises with its error.
local function run_in(srv, code, max_time)
  local path = srv.dir .. "/chunk.lua"
  write_file(path, "local BASE, TOKEN = " .. string.format("%q, %q", h.http_url, h.TOKEN) .. "\n" .. code)
  local out = capture("curl -s --max-time " .. (max_time or 30) .. " -X POST --data-binary @" .. q(path)
    .. " " .. q(srv.base .. "/run"))
  local ok, r = pcall(json.decode, out)
  assert(ok and type(r) == "table", "nginx answered: " .. h.hide_token(out) .. "\n" .. error_log(srv))
  if not r.ok then error("in nginx: " .. h.hide_token(tostring(r.err)), 0) end
  local values = {}
  for i = 1, r.values.n do
    local v = r.values[tostring(i)]
    if v ~= NULL then values[i] = v end
  end
  return values, r.values.n
end

-- Lua values as the JSON round trip shows them: nulls in arrays as
-- cjson.null (which ghl.null is), integers as numbers.
local function as_json(v)
  return json.decode(json.encode({ v = v })).v
end

-- v with the fresh id `from` (and its nonce) made `to`, everywhere.
local function swap(v, from, to)
  if type(v) == "string" then
    local function sub(text, a, b) return (text:gsub(h.literal(a), (b:gsub("%%", "%%%%")))) end
    v = sub(v, from, to)
    return sub(v, from:match("%-%-(.*)$"), to:match("%-%-(.*)$"))
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[swap(k, from, to)] = swap(x, from, to) end
  return out
end

-- What the server logged of a request, for comparing two of them.
local function sent(req)
  -- libcurl's own defaults (Accept: */*, a form type on a POST without a
  -- body) say nothing ghl chose
  local hd = req.headers
  local has_body = type(req.body) == "string" and req.body ~= ""
  -- (a JSON body's members come in the order its table gave them)
  local body = req.json ~= NULL and req.json ~= nil and "(json)" or req.body
  return { method = req.method, path = req.path, query = req.query, body = body, json = req.json,
    auth_is_token = hd.authorization == "Bearer " .. h.TOKEN, version = hd.version,
    accept = hd.accept ~= "*/*" and hd.accept or nil,
    user_agent = hd["user-agent"], content_type = has_body and hd["content-type"] or nil }
end

-- info without rate_limit (its figures differ between two requests), and
-- rate_limit checked against what the server sent on the last request.
local function split_info(info, reqs)
  if type(info) ~= "table" then return info end
  local out = {}
  for k, v in pairs(info) do out[k] = v end
  local rl = out.rate_limit
  out.rate_limit = nil
  if reqs and #reqs > 0 then
    assert.same(h.logged_rate_limit(reqs[#reqs]), rl, "info.rate_limit")
  end
  return out
end

describe("ghl.resty clients in nginx", function()
  local srv

  setup(function()
    h.start()
    srv = start_nginx()
  end)

  teardown(function()
    stop_nginx(srv)
    srv = nil
  end)

  -- Runs `call` (a method call on c, with ID the fresh id) on a
  -- ghl_resty.new(opts) client in nginx and on a ghl.new(opts) client here,
  -- with ids of the same scenario; asserts equal returns (ids swapped),
  -- equal requests sent, and returns nginx's values.
  local function same_as_c_client(scenario, call, opts, post)
    opts = opts or "{ retries = 0 }"
    local rid, cid = h.fresh_id(scenario), h.fresh_id(scenario)
    local code = "local o = " .. opts .. "\no.token, o.base_url = TOKEN, BASE\n"
      .. "local c = resty.new(o)\nlocal ID = " .. string.format("%q", rid) .. "\n"
      .. "local r = pack(c:" .. call .. ")\n"
      .. (post and ("r['1'] = " .. post .. "(r['1'])") or "") .. "\nr.rate_limit = c:rate_limit()\nreturn r"
    local got = run_in(srv, code)[1]
    local o = assert(load("return " .. opts))()
    o.token, o.base_url = h.TOKEN, h.http_url
    local c = ghl.new(o)
    local env = setmetatable({ c = c, ID = cid, pack = function(...) return { n = select("#", ...), ... } end,
      hex = function(s) return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)) end },
      { __index = _G })
    local chunk = assert(load("local r = pack(c:" .. call .. ")\n" .. (post and ("r[1] = " .. post .. "(r[1])") or "")
      .. "\nreturn r", "=c", "t", env))
    if setfenv then setfenv(chunk, env) end
    local want = chunk()
    local want_rl = c:rate_limit()
    c:close()
    local rreqs, creqs = h.requests_for(rid), h.requests_for(cid)
    assert.equal(want.n, got.n, "the number of returns")
    for i = 1, want.n do
      local w = want[i]
      if i == 3 then w = split_info(w) end
      local g = got[tostring(i)]
      if g == NULL then g = nil end
      if i == 3 then g = split_info(g, rreqs) end
      assert.same(swap(as_json(w), cid, rid), g, "return value " .. i)
    end
    assert.equal(#creqs, #rreqs, "requests sent")
    for i = 1, #creqs do assert.same(swap(sent(creqs[i]), cid, rid), sent(rreqs[i]), "request " .. i) end
    if want_rl == nil then
      assert.is_nil(got.rate_limit, "client:rate_limit()")
    else
      assert.same(h.logged_rate_limit(rreqs[#rreqs]), got.rate_limit, "client:rate_limit()")
    end
    h.assert_no_token(got, nil, "nginx's answer")
    return got, rid, rreqs
  end

  local function value(got, i)
    local v = got[tostring(i)]
    if v == NULL then return nil end
    return v
  end

  describe("every method of the C client", function()
    it("get_message", function()
      local got, rid = same_as_c_client("sms", "get_message(ID)")
      assert.same(as_json(h.expected_message(ghl, "sms.json")), value(got, 1))
      assert.same({ 200, 1, h.trace_id("sms.json") }, { got["3"].status, got["3"].attempts, got["3"].trace_id })
      assert.equal(1, #h.requests_for(rid))
    end)

    it("get_conversation", function()
      local got = same_as_c_client("ok", "get_conversation(ID)")
      local expected = h.copy_without_nulls(h.fixture_json("conversation.json"), NULL)
      expected.traceId = nil
      assert.same(expected, value(got, 1))
      assert.equal("conv-trace-0001", got["3"].trace_id)
    end)

    it("get_email, unwrapped and at the top level", function()
      local got = same_as_c_client("ok", "get_email(ID)")
      assert.same(h.copy_without_nulls(h.fixture_json("email_message.json").emailMessage, NULL), value(got, 1))
      same_as_c_client("email_top", "get_email(ID)")
    end)

    it("list_messages, with a query and its cursor", function()
      local got, rid, reqs = same_as_c_client("pages", "list_messages(ID, { limit = 2 })")
      local page = value(got, 1)
      assert.same({ true, "MsG0000000000000004", 2 }, { page.next_page, page.last_message_id, #page.messages })
      assert.equal("TYPE_SMS", page.messages[1].type)
      assert.equal("limit=2", reqs[1].query)
      assert.equal("/conversations/" .. rid .. "/messages", reqs[1].path:match("^[^?]*"))
      same_as_c_client("pages", "list_messages(ID, { limit = 2, lastMessageId = 'MsG0000000000000004' })")
      same_as_c_client("empty", "list_messages(ID)")
    end)

    it("search_conversations, and its misuse", function()
      local got = same_as_c_client("pages", "search_conversations({ locationId = ID, limit = 2 })")
      assert.same({ 5, 1711563231004, 2 }, { value(got, 1).total, value(got, 1).next, #value(got, 1).conversations })
      same_as_c_client("pages", "search_conversations({ locationId = ID, limit = 2, startAfterDate = 1711563231002 })")
      local ok, err = pcall(run_in, srv, "return resty.new({ token = TOKEN, base_url = BASE }):search_conversations({ limit = 2 })")
      assert.is_false(ok)
      assert.equal("in nginx: ghl: search_conversations needs query.locationId", err)
    end)

    it("send_message: the JSON body, the answer, emailMessageId for an Email", function()
      local got, rid, reqs = same_as_c_client("ok",
        "send_message({ type = 'SMS', contactId = ID, message = 'Hi \"Ana\"\\nsee you caf\\195\\169', attachments = {}, scheduled = false })")
      assert.same({ conversationId = "CoV0000000000000conv", messageId = "MsG00000000000sent01",
        msg = "Message queued successfully." }, value(got, 1))
      assert.equal("send-ok", got["3"].trace_id)
      assert.equal("POST", reqs[1].method)
      assert.matches("^application/json", reqs[1].headers["content-type"])
      assert.matches('"attachments":{}', reqs[1].body)
      assert.equal(rid, reqs[1].json.contactId)
      got = same_as_c_client("ok", "send_message({ type = 'Email', contactId = ID, subject = 'Hello', html = '<p>Hi</p>' })")
      assert.equal("EmL00000000000sent01", value(got, 1).emailMessageId)
    end)

    it("get_recording: the bytes and their content type", function()
      local got = same_as_c_client("ok", "get_recording(ID, 'LoC0000000000000test')", nil, "hex")
      local wav = h.fixture("recording.wav")
      assert.equal((wav:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)), value(got, 1))
      assert.equal("audio/x-wav", got["3"].content_type)
    end)

    it("request: an array, an empty body, raw, args.query, args.json and args.version", function()
      local got = same_as_c_client("ok", "request('GET', '/spec/array/' .. ID)")
      assert.same({ 1, NULL, "two", { three = 3 }, { 4.5, -6 } }, value(got, 1))
      got = same_as_c_client("ok", "request('DELETE', '/spec/empty/' .. ID)")
      assert.is_true(value(got, 1))
      got = same_as_c_client("ok", "request('GET', '/spec/text/' .. ID, { raw = true })")
      assert.equal("plain text\n", value(got, 1))
      got = same_as_c_client("ok",
        "request('PATCH', '/spec/echo/' .. ID, { query = { a = 1, b = { 'x', 'y' } }, json = { k = 'v' }, version = '2099-01-01' })")
      assert.same({ method = "PATCH", json = { k = "v" }, query = "a=1&b=x,y" }, value(got, 1))
      got = same_as_c_client("ok", "request('POST', '/spec/echo/' .. ID)")
      assert.same({ method = "POST" }, value(got, 1)) -- null members are absent
    end)

    it("errors: kind http with the API's message, the token cut out", function()
      for _, case in ipairs({
        { "err_404", "get_conversation(ID)" }, { "err_422", "list_messages(ID)" },
        { "err_401_jwt", "get_email(ID)" }, { "echo_auth_400", "send_message({ type = 'SMS', contactId = ID })" },
        { "err_404", "request('GET', '/conversations/' .. ID)" },
        { "err_404", "get_recording(ID, 'LoC0000000000000test')" },
      }) do
        local got = same_as_c_client(case[1], case[2])
        assert.equal("http", got["3"].kind, case[2])
        assert.matches("^ghl: HTTP %d%d%d ", got["2"])
      end
    end)

    it("raises for misuse as the C client does, sending nothing", function()
      for _, call in ipairs({
        "get_conversation('a/b')", "get_recording('ok', 'a b')", "list_messages('ok', { limit = 1.5 })",
        "send_message({ contactId = 'x' })", "send_message('{}')", "request('FETCH', '/x')",
        "request('GET', '/a/../b')", "request('GET', '/x', { bogus = 1 })", "get_message('ok', { token = 'x' })",
        "get_message('ok', { bogus = 1 })", "get_messages({ 'ok', 'bad id' })",
      }) do
        local c = ghl.new(h.opts())
        local cok, cerr = pcall(assert(load("local c = ...; return c:" .. call)), c)
        c:close()
        assert.is_false(cok, call)
        local ok, err = pcall(run_in, srv, "return resty.new({ token = TOKEN, base_url = BASE }):" .. call)
        assert.is_false(ok, call)
        assert.equal("in nginx: " .. tostring(cerr), err, call)
      end
    end)

    it("a closed client raises, close is idempotent, options are checked at new, the token is out of sight", function()
      local values = run_in(srv, [[
        local c = resty.new({ token = TOKEN, base_url = BASE })
        c:close(); c:close()
        local ok, err = pcall(c.get_message, c, "ok")
        local ok2, err2 = pcall(resty.new, { token = TOKEN, bogus = 1 })
        local ok3, err3 = pcall(resty.new, { token = TOKEN, concurrency = 2 })
        local ok4, err4 = pcall(resty.new, { token = TOKEN, cainfo = "/x" })
        local c5 = resty.new({ token = TOKEN, base_url = BASE .. "/" })
        return ok, err, ok2, err2, ok3, err3, ok4, err4, tostring(c), next(c5) == nil, tostring(c5)
      ]])
      assert.same({ false, "ghl: the client is closed", false, "ghl: unknown option 'bogus'",
        false, "ghl: option 'concurrency' cannot be given here",
        false, "ghl: option 'cainfo' is not supported by ghl.resty: set lua_ssl_trusted_certificate in nginx.conf",
        "ghl.resty client (closed)", true, "ghl.resty client (" .. h.http_url .. ")" }, values)
    end)

    it("get_messages: messages and failures keyed by id, per-call concurrency", function()
      local ok1, ok2, bad = h.fresh_id("echo"), h.fresh_id("echo"), h.fresh_id("err_404")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, retries = 0 })
        local m, f = c:get_messages({ %q, %q, %q, %q }, { concurrency = 2 })
        return m, f, c:rate_limit() ~= nil
      ]], ok1, ok2, bad, ok1))
      assert.same({ ok1, ok2 }, { values[1][ok1].id, values[1][ok2].id })
      assert.is_nil(values[1][bad])
      assert.same({ "http", 404, "ghl: HTTP 404 Not Found: Message not found" .. h.request_suffix(bad) },
        { values[2][bad].kind, values[2][bad].status, values[2][bad].errmsg })
      assert.is_true(values[3])
      assert.equal(1, #h.requests_for(ok1))
    end)

    it("per-call opts: retries, and keys a call cannot take", function()
      local id = h.fresh_id("err_503")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, max_retry_delay = 0 })
        local _, _, info = c:get_conversation(%q, { retries = 0 })
        local ok, err = pcall(c.get_conversation, c, "ok", { base_url = BASE })
        return info.attempts, ok, err
      ]], id))
      assert.same({ 1, false, "ghl: option 'base_url' cannot be given here" }, values)
      assert.equal(1, #h.requests_for(id))
    end)
  end)

  describe("the POST rule", function()
    it("never repeats a POST answered 503; repeats one answered 429", function()
      local got = same_as_c_client("flaky_503_1", "send_message({ type = 'SMS', contactId = ID })",
        "{ retries = 2, max_retry_delay = 0 }")
      assert.same({ "http", 503, 1 }, { got["3"].kind, got["3"].status, got["3"].attempts })
      got = same_as_c_client("flaky_429_1", "send_message({ type = 'SMS', contactId = ID })",
        "{ retries = 2, max_retry_delay = 0 }")
      assert.equal(2, got["3"].attempts)
      assert.equal("MsG00000000000sent01", value(got, 1).messageId)
    end)

    it("never repeats a POST that timed out or was reset, also on a kept connection", function()
      local stuck, reset = h.fresh_id("never_answer"), h.fresh_id("reset")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, retries = 2, max_retry_delay = 0, timeout = 0.5 })
        assert(c:get_conversation("ok--warm"))
        local _, e1, i1 = c:send_message({ type = "SMS", contactId = %q })
        local _, e2, i2 = c:send_message({ type = "SMS", contactId = %q })
        return i1.kind, i1.attempts, i1.curl_code, i2.kind, i2.attempts, e1, e2
      ]], stuck, reset))
      assert.same({ "timeout", 1, 28, "network", 1 }, { values[1], values[2], values[3], values[4], values[5] })
      assert.matches("%(POST /conversations/messages%)$", values[6])
      h.sleep(0.3)
      assert.equal(1, #h.requests_for(stuck))
      assert.equal(1, #h.requests_for(reset))
    end)

    it("repeats a POST whose connection was refused", function()
      local values = run_in(srv, [[
        local c = resty.new({ token = TOKEN, base_url = "http://127.0.0.1:9", retries = 2, max_retry_delay = 0 })
        local r, _, info = c:send_message({ type = "SMS", contactId = "ok--refused" })
        return r == nil, info.kind, info.attempts, info.curl_code
      ]])
      assert.same({ true, "network", 3, 7 }, values)
    end)
  end)

  describe("iterators", function()
    it("each_message walks every page with lastMessageId, fetching as the loop asks", function()
      local id = h.fresh_id("pages")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, retries = 0 })
        local steps = {}
        local iter, st = c:each_message(%q, { limit = 2 })
        local before = 0
        for item, err, info in iter, st do
          steps[#steps + 1] = { item.id, err == nil, info.trace_id }
          if #steps > 50 then break end
        end
        return steps
      ]], id))
      local want = {}
      local msgs = h.fixture_json("messages.json")
      for i = 1, 5 do want[i] = { msgs[i].id, true, "list-pages-" .. math.ceil(i / 2) } end
      assert.same(want, values[1])
      local reqs = h.requests_for(id)
      assert.same({ "limit=2", "lastMessageId=MsG0000000000000004&limit=2", "lastMessageId=MsG0000000000000002&limit=2" },
        { reqs[1].query, reqs[2].query, reqs[3].query })
      assert.equal(3, #reqs)
    end)

    it("fetches nothing until the loop asks, and stops when it breaks", function()
      local id = h.fresh_id("pages")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, retries = 0 })
        local iter, st = c:each_message(%q, { limit = 2 })
        ngx.sleep(0.2)
        local n = 0
        for item in iter, st do n = n + 1; if n == 1 then break end end
        return n
      ]], id))
      assert.same({ 1 }, values)
      assert.equal(1, #h.requests_for(id))
    end)

    it("gives false, errmsg, info once for a failing page, then ends", function()
      local id = h.fresh_id("failpage")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, retries = 0 })
        local steps = {}
        for item, err, info in c:each_message(%q) do
          steps[#steps + 1] = { item and item.id or item, err or false, info.status }
          if #steps > 50 then break end
        end
        return steps
      ]], id))
      local msgs = h.fixture_json("messages.json")
      local c = ghl.new(h.opts({ retries = 0 }))
      local cid = h.fresh_id("failpage")
      local csteps = {}
      for item, err, info in c:each_message(cid) do
        csteps[#csteps + 1] = { item and item.id or item, err or false, info.status }
        if #csteps > 50 then break end
      end
      c:close()
      assert.same({ { msgs[1].id, false, 200 }, { msgs[2].id, false, 200 } }, { values[1][1], values[1][2] })
      assert.equal(3, #values[1])
      assert.same(swap(csteps, cid, id), values[1])
      assert.is_false(values[1][3][1])
      assert.equal(422, values[1][3][3])
    end)

    it("each_conversation walks with startAfterDate until a short page; ends at an empty page after full ones", function()
      local loc, exact = h.fresh_id("pages"), h.fresh_id("exact")
      local values = run_in(srv, string.format([[
        local c = resty.new({ token = TOKEN, base_url = BASE, retries = 0 })
        local function walk(loc)
          local ids = {}
          for item, err in c:each_conversation({ locationId = loc, limit = 2 }) do
            ids[#ids + 1] = item and item.id or err
            if #ids > 50 then break end
          end
          return ids
        end
        local ok, err = pcall(c.each_conversation, c, { limit = 2 })
        return walk(%q), walk(%q), ok, err
      ]], loc, exact))
      local convs = h.fixture_json("conversations.json")
      local all = {}
      for i = 1, 5 do all[i] = convs[i].id end
      assert.same(all, values[1])
      assert.same({ all[1], all[2], all[3], all[4] }, values[2])
      assert.equal(3, #h.requests_for(loc))
      assert.equal(3, #h.requests_for(exact))
      assert.same({ false, "ghl: search_conversations needs query.locationId" }, { values[3], values[4] })
    end)
  end)

  -- A provider (in the chunk) that hands out "<prefix>-v1", "<prefix>-v2", ...
  -- and records what it was called with in `calls`.
  local PROVIDER = [[
    local calls = {}
    local function provider(prefix, on_renew, pause)
      local n = 0
      return function(...)
        local old = ...
        calls[#calls + 1] = select("#", ...) == 0 and "(none)" or tostring(old)
        if pause then ngx.sleep(pause) end -- others come meanwhile
        if old ~= nil and on_renew then return on_renew(old) end
        n = n + 1
        return prefix .. "-v" .. n
      end
    end
    local function client(token, extra)
      local o = { token = token, base_url = BASE, max_retry_delay = 0 }
      for k, v in pairs(extra or {}) do o[k] = v end
      return resty.new(o)
    end
  ]]

  local function tokens_sent(id)
    local out = {}
    for _, req in ipairs(h.requests_for(id)) do
      out[#out + 1] = (req.headers.authorization or ""):gsub("^Bearer ", "")
    end
    return out
  end

  describe("a token function", function()
    it("is called when the first token is needed, with no argument, and kept", function()
      local a, b = h.fresh_id("authonly_v1"), h.fresh_id("authonly_v1")
      local v = run_in(srv, PROVIDER .. string.format([[
        local c = client(provider("tok-lazy"))
        local before = #calls
        local m1, e1, i1 = c:get_message(%q)
        local m2 = c:get_message(%q)
        return before, m1 and m1.id, e1, i1.attempts, m2 and m2.id, calls
      ]], a, b))
      assert.same({ 0, a, nil, 1, b, { "(none)" } }, v)
      assert.same({ "tok-lazy-v1" }, tokens_sent(a))
      assert.same({ "tok-lazy-v1" }, tokens_sent(b))
    end)

    it("is called again after a 401 with the token that failed; the request goes once more, outside retries", function()
      local id = h.fresh_id("authonly_v2")
      local v = run_in(srv, PROVIDER .. string.format([[
        local c = client(provider("tok-renew"), { retries = 0 })
        local m, e, i = c:get_message(%q)
        return m and m.id, e, i.attempts, calls
      ]], id))
      assert.same({ id, nil, 2, { "(none)", "tok-renew-v1" } }, v)
      assert.same({ "tok-renew-v1", "tok-renew-v2" }, tokens_sent(id))
    end)

    it("returning the same token or nil leaves the 401 as it is", function()
      for _, answer in ipairs({ "same", "nil" }) do
        local id = h.fresh_id("authonly_v9")
        local v = run_in(srv, PROVIDER .. string.format([[
          local c = client(provider("tok-%s", function(old) if %q == "same" then return old end return nil end))
          local m, e, i = c:get_message(%q)
          return m == nil, e, i.kind, i.status, i.attempts, calls
        ]], answer, answer, id))
        assert.same({ true, "ghl: HTTP 401 Unauthorized: Invalid JWT" .. h.request_suffix(id), "http", 401, 1,
          { "(none)", "tok-" .. answer .. "-v1" } }, v)
      end
    end)

    it("is not called for the gateway's 401 Command timed out, which is retried", function()
      local id = h.fresh_id("flaky_cto_1")
      local v = run_in(srv, PROVIDER .. string.format([[
        local c = client(provider("tok-cto"), { retries = 1 })
        local m, e, i = c:get_message(%q)
        return m and m.id, e, i.attempts, calls
      ]], id))
      assert.same({ "Xq1sMs0000aaaa000001", nil, 2, { "(none)" } }, v)
    end)

    it("returning anything but a token is a failure of kind token", function()
      local v = run_in(srv, PROVIDER .. [[
        local out = {}
        for i, bad in ipairs({ 42, "", "two words", {}, true }) do
          local c = client(function() return bad end)
          local m, e, info = c:get_message("sms--bad" .. i)
          out[i] = { m == nil, e, info.kind, info.attempts == nil }
        end
        return out
      ]])
      local kinds = { "number", "an empty string or one with spaces or control characters",
        "an empty string or one with spaces or control characters", "table", "boolean" }
      for i, what in ipairs(kinds) do
        assert.same({ true, "ghl: token provider failed: it returned " .. what .. ", not a token", "token", true }, v[1][i])
      end
    end)

    it("that raises gives kind token, with any token cut out of its message", function()
      local id = h.fresh_id("authonly_v2")
      local v = run_in(srv, string.format([[
        local c = resty.new({ base_url = BASE, token = function(old)
          if old == nil then return "tok-raise-secret-v1" end
          error("cannot renew tok-raise-secret-v1 now", 0)
        end })
        local m, e, i = c:get_message(%q)
        local c2 = resty.new({ base_url = BASE, token = function() error({}) end })
        local _, e2, i2 = c2:get_message("sms")
        return m == nil, e, i, e2, i2
      ]], id))
      assert.is_true(v[1])
      assert.equal("ghl: token provider failed: cannot renew <redacted> now", v[2])
      assert.same({ kind = "token", attempts = 1 }, v[3])
      h.assert_no_token(v, "tok-raise-secret-v1", "the returns")
      assert.equal("ghl: token provider failed: (an error that is not a string)", v[4])
      assert.same({ kind = "token" }, v[5])
    end)

    it("that calls its own client gets 'busy', a failure of kind token", function()
      local v = run_in(srv, [[
        local c
        c = resty.new({ base_url = BASE, token = function() return c:get_message("sms") end })
        local m, e, i = c:get_message("sms--busy")
        return m == nil, e, i.kind
      ]])
      assert.same({ true, "ghl: token provider failed: ghl: the client is busy", "token" }, v)
    end)

    it("is called once for 50 light threads that all need a first token and then all get a 401", function()
      local ids = {}
      for i = 1, 50 do ids[i] = h.fresh_id("authonly_v2") end
      local v = run_in(srv, PROVIDER .. [[
        local ids = cjson.decode(]] .. string.format("%q", json.encode(ids)) .. [[)
        local c = client(provider("tok-shared", nil, 0.3))
        local threads = {}
        for i, id in ipairs(ids) do
          threads[i] = ngx.thread.spawn(function() return c:get_message(id) end)
        end
        local out = {}
        for i, th in ipairs(threads) do
          local ok, m, e, info = ngx.thread.wait(th)
          out[i] = { ok, m and m.id, e or false, info and info.attempts }
        end
        return out, calls
      ]], 60)
      assert.same({ "(none)", "tok-shared-v1" }, v[2])
      for i, id in ipairs(ids) do
        assert.same({ true, id, false, 2 }, v[1][i])
        assert.same({ "tok-shared-v1", "tok-shared-v2" }, tokens_sent(id))
      end
    end)

    it("is called once for 20 concurrent nginx requests sharing a client, counted in a shared dict", function()
      run_in(srv, [[
        ngx.shared.spec:set("provider_calls", 0)
        local n = 0
        shared.client = resty.new({ base_url = BASE, retries = 0, token = function(old)
          ngx.shared.spec:incr("provider_calls", 1)
          ngx.sleep(0.3) -- the other requests come meanwhile
          n = n + 1
          return "tok-req-v" .. n
        end })
      ]])
      local ids, files = {}, {}
      for i = 1, 20 do
        ids[i] = h.fresh_id("authonly_v2")
        files[i] = srv.dir .. "/req" .. i
        write_file(files[i] .. ".lua", string.format([[
          local m, e, info = shared.client:get_message(%q)
          return m and m.id, e or false, info.attempts
        ]], ids[i]))
      end
      local cmd = {}
      for i = 1, 20 do
        cmd[#cmd + 1] = "curl -s --max-time 30 -X POST --data-binary @" .. q(files[i] .. ".lua") .. " "
          .. q(srv.base .. "/run") .. " > " .. q(files[i] .. ".out") .. " &"
      end
      capture(table.concat(cmd, " ") .. " wait")
      local calls = run_in(srv, "return ngx.shared.spec:get('provider_calls')")[1]
      assert.equal(2, calls, "provider calls: the first token and one renewal")
      for i, id in ipairs(ids) do
        local r = json.decode(h.read_file(files[i] .. ".out"))
        assert.is_true(r.ok, r.err)
        assert.same({ id, false, 2 }, { r.values["1"], r.values["2"], r.values["3"] })
        assert.same({ "tok-req-v1", "tok-req-v2" }, tokens_sent(id))
      end
    end)

    it("is called once for a get_messages batch whose every request got a 401, also when it refuses", function()
      for _, how in ipairs({ "new", "same", "nil", "raise" }) do
        local ids = {}
        for i = 1, 8 do ids[i] = h.fresh_id(how == "new" and "authonly_v2" or "authonly_v9") end
        local v = run_in(srv, PROVIDER .. string.format([[
          local how = %q
          local ids = cjson.decode(%q)
          local c = client(provider("tok-refuse-" .. how, how ~= "new" and function(old)
            if how == "raise" then error("refused " .. old, 0) end
            if how == "same" then return old end
            return nil
          end))
          local m, f = c:get_messages(ids, { concurrency = 4 })
          local n = #calls
          c:get_message(ids[1]) -- the next call asks again, if refused
          return m, f, n, #calls
        ]], how, json.encode(ids)))
        assert.equal(2, v[3], how)
        if how == "new" then
          assert.equal(8, h.count_keys(v[1]))
          assert.same({}, v[2])
          assert.equal(2, v[4])
        else
          assert.same({}, v[1])
          assert.equal(3, v[4])
          for _, id in ipairs(ids) do
            local f = v[2][id]
            if how == "raise" then
              assert.same({ "token", "ghl: token provider failed: refused <redacted>" }, { f.kind, f.errmsg })
            else
              assert.same({ "http", 401 }, { f.kind, f.status })
            end
          end
        end
      end
    end)

    it("repeats a POST once after a 401: the API did not take it", function()
      local contact = h.fresh_id("authonly_v2")
      local v = run_in(srv, PROVIDER .. string.format([[
        local c = client(provider("tok-post"))
        local r, e, i = c:send_message({ type = "SMS", contactId = %q, message = "hi" })
        return type(r), e, i.attempts, calls
      ]], contact))
      assert.same({ "table", nil, 2, { "(none)", "tok-post-v1" } }, v)
      assert.same({ "tok-post-v1", "tok-post-v2" }, tokens_sent(contact))
    end)

    it("fails every id of a batch, and an iterator's step, when it cannot give the first token", function()
      local v = run_in(srv, [[
        local c = resty.new({ base_url = BASE, token = function() error("no vault", 0) end })
        local m, f = c:get_messages({ "a1", "a2" })
        local steps = {}
        for item, err, info in c:each_message("ok--x") do
          steps[#steps + 1] = { item, err, info.kind }
          if #steps > 5 then break end
        end
        return m, f.a1.kind, f.a1.errmsg, f.a2.kind, f.a2.errmsg, steps
      ]])
      assert.same({ {}, "token", "ghl: token provider failed: no vault", "token", "ghl: token provider failed: no vault",
        { { false, "ghl: token provider failed: no vault", "token" } } }, v)
    end)

    it("is asked again at once when the thread whose call was in flight is killed", function()
      local id = h.fresh_id("sms")
      local v = run_in(srv, string.format([[
        local calls = 0
        local c = resty.new({ base_url = BASE, token = function()
          calls = calls + 1
          if calls == 1 then ngx.sleep(5) end
          return "tok-kill-v1"
        end })
        local a = ngx.thread.spawn(function() return c:get_message("sms--killed") end)
        ngx.sleep(0.05)
        ngx.thread.kill(a)
        local t0 = ngx.now()
        local m, e = c:get_message(%q)
        ngx.update_time()
        return m and m.id, e, calls, ngx.now() - t0 < 2
      ]], id))
      assert.same({ "Xq1sMs0000aaaa000001", nil, 2, true }, v)
      assert.equal(1, #h.requests_for(id))
    end)

    it("works with the module-level get_message and get_messages too, each call asking it", function()
      local a, b, c2 = h.fresh_id("authonly_v1"), h.fresh_id("authonly_v1"), h.fresh_id("authonly_v1")
      local v = run_in(srv, string.format([[
        local calls = 0
        local function p(old)
          calls = calls + 1
          if old then return nil end
          return "tok-module-v1"
        end
        local m = resty.get_message(%q, { base_url = BASE, token = p })
        local ms, fs = resty.get_messages({ %q, %q }, { base_url = BASE, token = p, concurrency = 2 })
        return m and m.id, ms[%q] and ms[%q].id, ms[%q] and ms[%q].id, fs, calls
      ]], a, b, c2, b, b, c2, c2))
      assert.same({ a, b, c2, {}, 2 }, v)
    end)
  end)

  describe("oauth_token", function()
    local SECRET, REFRESH, CODE = "cs-very-secret-123", "rt-old-refresh-456", "code-789-secret"

    local function form_code(client_id, extra)
      return string.format("{ client_id = %q, client_secret = %q, grant_type = 'refresh_token', refresh_token = %q,"
        .. " user_type = 'Location'%s }", client_id, SECRET, REFRESH, extra or "")
    end

    it("POSTs the form without a token and returns the API's answer", function()
      local id = h.fresh_id("ok")
      local v = run_in(srv, "return resty.oauth_token(" .. form_code(id) .. ", { base_url = BASE })")
      local res, err, info = v[1], v[2], v[3]
      assert.is_nil(err)
      assert.same({ "at-new-" .. REFRESH, "rt-next-" .. REFRESH, 86399, "Bearer" },
        { res.access_token, res.refresh_token, res.expires_in, res.token_type })
      assert.is_nil(res.traceId)
      assert.same({ 200, 1, "oauth-ok" }, { info.status, info.attempts, info.trace_id })
      local req = h.requests_for(id)[1]
      assert.same({ "POST", "/oauth/token", "application/x-www-form-urlencoded" },
        { req.method, req.path, req.headers["content-type"] })
      assert.is_nil(req.headers.authorization)
      assert.equal("client_id=" .. id .. "&client_secret=" .. SECRET .. "&grant_type=refresh_token&refresh_token="
        .. REFRESH .. "&user_type=Location", req.body)
    end)

    it("never repeats a request that may have reached the API; repeats after a 429", function()
      local id, id2 = h.fresh_id("flaky_503_1"), h.fresh_id("flaky_429_1")
      local v = run_in(srv, "local o = { base_url = BASE, retries = 2, max_retry_delay = 0 }\n"
        .. "local r1, e1, i1 = resty.oauth_token(" .. form_code(id) .. ", o)\n"
        .. "local r2, e2, i2 = resty.oauth_token(" .. form_code(id2) .. ", o)\n"
        .. "return r1 == nil, i1.kind, i1.status, i1.attempts, e1:sub(1, 33), r2 ~= nil, e2, i2.attempts")
      assert.same({ true, "http", 503, 1, "ghl: HTTP 503 Service Unavailable", true, nil, 2 }, v)
      assert.equal(1, #h.requests_for(id))
      assert.equal(2, #h.requests_for(id2))
    end)

    it("keeps every secret out of errmsg and info, and gives no info.body", function()
      local id = h.fresh_id("echo_secrets")
      local v = run_in(srv, "return resty.oauth_token(" .. form_code(id, string.format(", code = %q", CODE))
        .. ", { base_url = BASE })")
      assert.is_nil(v[1])
      assert.equal("ghl: HTTP 400 Bad Request: refresh token <redacted> of client " .. id
        .. " (secret <redacted>, code <redacted>) is invalid (POST /oauth/token)", v[2])
      assert.is_nil(v[3].body)
      for _, secret in ipairs({ SECRET, REFRESH, CODE }) do h.assert_no_token(v, secret, "the returns") end
    end)

    it("takes only the options that make sense for it", function()
      local v = run_in(srv, [[
        local out = {}
        for _, key in ipairs({ "token", "version", "convert_enums", "max_body_size", "bogus", "cainfo" }) do
          local o = { base_url = BASE }
          o[key] = key == "convert_enums" and false or (key == "max_body_size" and 10 or "x")
          local ok, err = pcall(resty.oauth_token, { client_id = "ok" }, o)
          out[#out + 1] = ok and "did not raise" or err
        end
        local ok, err = pcall(resty.oauth_token, "client_id=x")
        out[#out + 1] = ok and "did not raise" or err
        return out
      ]])
      assert.same({ "ghl: option 'token' cannot be given to oauth_token", "ghl: option 'version' cannot be given to oauth_token",
        "ghl: option 'convert_enums' cannot be given to oauth_token", "ghl: option 'max_body_size' cannot be given to oauth_token",
        "ghl: option 'bogus' cannot be given to oauth_token",
        "ghl: option 'cainfo' is not supported by ghl.resty: set lua_ssl_trusted_certificate in nginx.conf",
        "ghl: bad argument 'form' (table expected, got string)" }, v[1])
    end)
  end)

  describe("the README's token provider (examples/openresty/ghl_tokens.lua)", function()
    it("refreshes once for 20 light threads, through oauth_token, and stores both new tokens", function()
      local client_id = h.fresh_id("ok")
      local ids = {}
      for i = 1, 20 do ids[i] = h.fresh_id("authonly_v2") end
      local v = run_in(srv, string.format([[
        local ghl_tokens = require("ghl_tokens")
        ghl_tokens.store("at-old-v1", "rt-v2")
        local c = resty.new({ base_url = BASE, retries = 0, token = ghl_tokens.provider({
          client_id = %q, client_secret = "cs-secret-1", oauth = { base_url = BASE } }) })
        local ids = cjson.decode(%q)
        local threads = {}
        for i, id in ipairs(ids) do threads[i] = ngx.thread.spawn(function() return c:get_message(id) end) end
        local out = {}
        for i, th in ipairs(threads) do
          local _, m, e, info = ngx.thread.wait(th)
          out[i] = { m and m.id, e or false, info.attempts }
        end
        local access, refresh = ghl_tokens.load()
        return out, access, refresh, ngx.shared.ghl_tokens:get("lock")
      ]], client_id, json.encode(ids)), 60)
      for i, id in ipairs(ids) do
        assert.same({ id, false, 2 }, v[1][i])
        assert.same({ "at-old-v1", "at-new-rt-v2" }, tokens_sent(id))
      end
      assert.same({ "at-new-rt-v2", "rt-next-rt-v2" }, { v[2], v[3] })
      assert.is_nil(v[4])
      local reqs = h.requests_for(client_id)
      assert.equal(1, #reqs)
      assert.matches("refresh_token=rt%-v2", reqs[1].body)
    end)

    it("a second client (as another worker's) waits for the refresh under way, sending no second one", function()
      local client_id = h.fresh_id("slow_ok_400") -- the refresh takes 0.4 s: the other client finds the lock
      local ids = {}
      for i = 1, 10 do ids[i] = h.fresh_id("authonly_v3") end
      local v = run_in(srv, string.format([[
        local ghl_tokens = require("ghl_tokens")
        ghl_tokens.store("at-old-v1", "rt-v3")
        local function new_client()
          return resty.new({ base_url = BASE, retries = 0, token = ghl_tokens.provider({
            client_id = %q, client_secret = "cs-secret-1", oauth = { base_url = BASE } }) })
        end
        local clients = { new_client(), new_client() } -- each has its own token call
        local ids = cjson.decode(%q)
        local threads = {}
        for i, id in ipairs(ids) do
          local c = clients[i %% 2 + 1]
          threads[i] = ngx.thread.spawn(function() return c:get_message(id) end)
        end
        local out = {}
        for i, th in ipairs(threads) do
          local _, m, e, info = ngx.thread.wait(th)
          out[i] = { m and m.id, e or false, info.attempts }
        end
        return out, (ghl_tokens.load())
      ]], client_id, json.encode(ids)), 60)
      for i, id in ipairs(ids) do
        assert.same({ id, false, 2 }, v[1][i])
        assert.same({ "at-old-v1", "at-new-rt-v3" }, tokens_sent(id))
      end
      assert.equal("at-new-rt-v3", v[2])
      assert.equal(1, #h.requests_for(client_id))
    end)

    it("a failed refresh is kind token, with no secret in it, and leaves no lock", function()
      local client_id = h.fresh_id("echo_secrets")
      local id = h.fresh_id("authonly_v2")
      local v = run_in(srv, string.format([[
        local ghl_tokens = require("ghl_tokens")
        ghl_tokens.store("at-old-v1", "rt-secret-v2")
        local c = resty.new({ base_url = BASE, retries = 0, token = ghl_tokens.provider({
          client_id = %q, client_secret = "cs-secret-1", oauth = { base_url = BASE } }) })
        local m, e, i = c:get_message(%q)
        return m == nil, e, i, ngx.shared.ghl_tokens:get("lock"), (ghl_tokens.load())
      ]], client_id, id))
      assert.is_true(v[1])
      assert.equal("ghl: token provider failed: ghl: HTTP 400 Bad Request: refresh token <redacted> of client "
        .. client_id .. " (secret <redacted>, code None) is invalid (POST /oauth/token)", v[2])
      assert.same({ kind = "token", attempts = 1 }, v[3])
      assert.is_nil(v[4])
      assert.equal("at-old-v1", v[5])
      h.assert_no_token(v, "rt-secret-v2", "the returns")
      h.assert_no_token(v, "cs-secret-1", "the returns")
    end)
  end)
end)
