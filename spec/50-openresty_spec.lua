-- require("ghl.resty") inside a real nginx (Debian's nginx-core with the
-- http_lua module), on cosockets: every phase where they work, the phases
-- where they do not, the fault cases of spec/10 and spec/11 compared with
-- what the C module returns, TLS, keep-alive, get_messages, 512 fetches in
-- flight through one worker, and reload / quit with fetches in flight.
--
-- nginx loads build/luajit/ghl.so whatever runtime busted runs on, so this
-- file runs once, under GHL_RUNTIME=luajit, and is pending on the others.

local h = require("helpers")

if os.getenv("GHL_RUNTIME") ~= "luajit" then
  describe("ghl.resty in nginx", function()
    pending("runs once, under GHL_RUNTIME=luajit (nginx loads build/luajit/ghl.so)")
  end)
  return
end

local ghl = require("ghl")
local json = h.json

local q, capture, write_file = h.quote, h.capture, h.write_file
local alive, spawn, stop = h.alive, h.spawn, h.stop_process

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local MODULE_DIRS = { "/usr/lib/nginx/modules", "/usr/share/nginx/modules" }
local SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt" -- does not hold the run's CA

local function find_module(name)
  for _, dir in ipairs(MODULE_DIRS) do
    local path = dir .. "/" .. name
    if h.read_file(path) then return path end
  end
  error("nginx module " .. name .. " not found under " .. table.concat(MODULE_DIRS, ", ")
    .. ": run scripts/install-deps hosts", 0)
end

-- The nginx.conf: only the module's paths, a resolver and the trusted CA
-- beyond what the spec's own locations need. conf.master: a master process
-- (reload needs one).
local function nginx_conf(dir, port, conf)
  local H = "require('spec_handlers')"
  return table.concat({
    "load_module " .. find_module("ndk_http_module.so") .. ";",
    "load_module " .. find_module("ngx_http_lua_module.so") .. ";",
    "daemon off;",
    "master_process " .. (conf.master and "on" or "off") .. ";",
    "worker_processes 1;",
    "worker_rlimit_nofile 8192;",
    "env GHL_TOKEN=" .. h.TOKEN .. ";",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log info;",
    "events { worker_connections 4096; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. dir .. "/tmp_body;",
    "  proxy_temp_path " .. dir .. "/tmp_proxy;",
    "  fastcgi_temp_path " .. dir .. "/tmp_fastcgi;",
    "  uwsgi_temp_path " .. dir .. "/tmp_uwsgi;",
    "  scgi_temp_path " .. dir .. "/tmp_scgi;",
    '  lua_package_path "' .. ROOT .. "/src/?.lua;" .. dir .. '/?.lua;;";',
    '  lua_package_cpath "' .. ROOT .. '/build/luajit/?.so;;";',
    "  resolver 127.0.0.1:" .. h.dns_port .. " ipv6=off;",
    "  lua_ssl_trusted_certificate " .. h.cainfo .. ";",
    "  lua_shared_dict spec 1m;",
    "  init_by_lua_block { " .. H .. ".init() }",
    "  server {",
    "    listen 127.0.0.1:" .. port .. " backlog=4096;",
    "    location /content { content_by_lua_block { " .. H .. ".content() } }",
    "    location /batch { content_by_lua_block { " .. H .. ".batch() } }",
    "    location /untrusted {",
    "      lua_ssl_trusted_certificate " .. SYSTEM_CA .. ";",
    "      content_by_lua_block { " .. H .. ".content() }",
    "    }",
    "    location /untrusted_tally {",
    "      lua_ssl_trusted_certificate " .. SYSTEM_CA .. ";",
    "      content_by_lua_block { " .. H .. ".tally() }",
    "    }",
    "    location /tally { content_by_lua_block { " .. H .. ".tally() } }",
    "    location /rewrite {",
    "      rewrite_by_lua_block { " .. H .. ".fetch_into_ctx() }",
    "      content_by_lua_block { " .. H .. ".reply_ctx() }",
    "    }",
    "    location /access {",
    "      access_by_lua_block { " .. H .. ".fetch_into_ctx() }",
    "      content_by_lua_block { " .. H .. ".reply_ctx() }",
    "    }",
    "    location /timer { content_by_lua_block { " .. H .. ".timer() } }",
    "    location /load { content_by_lua_block { " .. H .. ".load() } }",
    "    location /set {",
    "      set_by_lua_block $ghl_err { return " .. H .. ".phase_error() }",
    "      content_by_lua_block { " .. H .. ".reply({ err = ngx.var.ghl_err }) }",
    "    }",
    "    location /header_filter {",
    "      content_by_lua_block { ngx.say('body') }",
    "      header_filter_by_lua_block { ngx.header['X-Ghl-Err'] = " .. H .. ".phase_error() }",
    "    }",
    "    location /log {",
    "      content_by_lua_block { ngx.say('body') }",
    "      log_by_lua_block { ngx.shared.spec:set('log_err', " .. H .. ".phase_error()) }",
    "    }",
    "    location /shared { content_by_lua_block { " .. H .. ".shared() } }",
    "    location /webhook { client_body_buffer_size 1k; content_by_lua_block { " .. H .. ".webhook() } }",
    "    location /pong { content_by_lua_block { ngx.say('pong') } }",
    "  }",
    "}",
    "",
  }, "\n")
end

-- Lua run inside nginx: each handler answers with a JSON report.
local HANDLERS = [==[
local cjson = require("cjson")
local ghl = require("ghl")
local resty = require("ghl.resty")

local M = {}

local NUMBERS = { "timeout", "connect_timeout", "retries", "max_retry_delay", "max_body_size",
  "concurrency", "pool_size" }

local function opts(args)
  local o = { token = args.token, base_url = args.base }
  for _, k in ipairs(NUMBERS) do
    if args[k] then o[k] = tonumber(args[k]) end
  end
  if args.convert_enums == "false" then o.convert_enums = false end
  if args.ssl_verify == "false" then o.ssl_verify = false end
  if args.cainfo then o.cainfo = args.cainfo end
  if args.proxy then o.proxy = args.proxy end
  if args.token_function then local t = o.token o.token = function() return t end end
  return o
end

local function report(phase, ok, msg, err, info)
  local r = { phase = phase, raised = not ok, err = err, info = info }
  if not ok then r.err = tostring(msg) return r end
  r.msg = msg
  if type(msg) == "table" then
    r.msg_type = msg.type
    -- what a null array element is, checked here, before JSON hides it
    local a = msg.attachments
    if type(a) == "table" and a[1] ~= nil then
      r.null_is_ngx_null = a[1] == ngx.null
      r.null_is_ghl_null = a[1] == ghl.null
    end
  end
  return r
end

local function fetch(phase)
  local args = ngx.req.get_uri_args()
  if args.add_type then
    local code, name = args.add_type:match("^(%d+):(.+)$")
    ghl.MESSAGE_TYPES[tonumber(code)] = name
  end
  local o = opts(args)
  if args.bad_option then o[args.bad_option] = 1 end
  local t0 = ngx.now()
  local r = report(phase, pcall(resty.get_message, args.id, o))
  ngx.update_time()
  r.seconds = ngx.now() - t0
  return r
end

function M.reply(r)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(r))
end

function M.content() M.reply(fetch(ngx.get_phase())) end

function M.fetch_into_ctx() ngx.ctx.report = fetch(ngx.get_phase()) end

function M.reply_ctx() M.reply(ngx.ctx.report) end

function M.timer()
  local args = ngx.req.get_uri_args()
  local result
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then result = { err = "premature" } return end
    result = report(ngx.get_phase(), pcall(resty.get_message, args.id, opts(args)))
  end)
  if not ok then return M.reply({ err = "timer: " .. tostring(err) }) end
  for _ = 1, 200 do
    if result then break end
    ngx.sleep(0.05)
  end
  M.reply(result or { err = "the timer did not finish in 10 s" })
end

function M.batch()
  local args = ngx.req.get_uri_args()
  local ids = {}
  for id in (args.ids or ""):gmatch("[^,]+") do ids[#ids + 1] = id end
  local t0 = ngx.now()
  local ok, messages, failures = pcall(resty.get_messages, ids, opts(args))
  ngx.update_time()
  if not ok then return M.reply({ raised = true, err = tostring(messages) }) end
  M.reply({ messages = messages, failures = failures, seconds = ngx.now() - t0 })
end

-- args.times fetches of one id, one after another: how many of each outcome
-- ("message", "raised: <error>" or "<kind> <curl_code> <errmsg>").
function M.tally()
  local args = ngx.req.get_uri_args()
  local o, seen = opts(args), {}
  local before = resty._verify_failed_at_once
  for _ = 1, tonumber(args.times) do
    local ok, msg, err, info = pcall(resty.get_message, args.id, o)
    local key = not ok and ("raised: " .. tostring(msg)) or msg and "message"
      or (info.kind .. " " .. tostring(info.curl_code) .. " " .. err)
    seen[key] = (seen[key] or 0) + 1
  end
  M.reply({ seen = seen, at_once = resty._verify_failed_at_once - before })
end

-- For wrk: one fetch of an id of this request's own; 200 only when the
-- message is the one asked for.
function M.load()
  local args = ngx.req.get_uri_args()
  local id = "slow_echo_" .. (args.ms or "200") .. "--" .. ngx.var.request_id
  local msg, err = resty.get_message(id, { base_url = args.base }) -- the token from GHL_TOKEN
  if msg and msg.id == id and msg.body == id then
    ngx.say("ok")
  else
    ngx.status = 500
    ngx.say(err or "wrong message")
  end
end

-- The error a fetch raises in a phase without cosockets.
function M.webhook()
  local key = ngx.var.http_x_spec_key
  local ok, event, err, info = pcall(resty.verify_webhook, key and { public_key = key } or nil)
  if not ok then return M.reply({ raised = true, err = tostring(event) }) end
  M.reply({ raised = false, err = err, info = info,
            event_type = type(event) == "table" and event.type or nil,
            message_id = type(event) == "table" and event.messageId or nil,
            size = type(event) == "table" and event.pad and #event.pad or nil })
end

function M.phase_error()
  local ok, err = pcall(resty.get_message, "sms", { token = "t", base_url = "http://127.0.0.1:9" })
  return ok and "did not raise" or tostring(err)
end

function M.init()
  ngx.shared.spec:set("init_err", M.phase_error())
end

function M.shared()
  M.reply({ value = ngx.shared.spec:get(ngx.var.arg_key) })
end

return M
]==]

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function query(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(v) end
  table.sort(parts)
  return table.concat(parts, "&")
end

-- An nginx of our own on 127.0.0.1; tries a few ports in case one is taken.
local function start_nginx(conf)
  conf = conf or {}
  local dir = h.temp_dir("ghl-nginx")
  write_file(dir .. "/spec_handlers.lua", HANDLERS)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local last_err
  for _ = 1, 8 do
    local port = math.random(20000, 59999)
    write_file(dir .. "/nginx.conf", nginx_conf(dir, port, conf))
    os.remove(dir .. "/error.log")
    local proc = spawn(dir, "nginx", "exec nginx -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf"))
    local base = "http://127.0.0.1:" .. port
    local up = h.wait_for(function()
      if not alive(proc.pid) then return "exited" end
      local code = capture("curl -s -o /dev/null -w '%{http_code}' --max-time 1 " .. q(base .. "/pong"))
      return code == "200" and "up" or nil
    end, 10)
    if up == "up" then
      return { dir = dir, port = port, base = base, proc = proc }
    end
    stop(proc)
    last_err = (h.read_file(dir .. "/nginx.out") or "") .. (h.read_file(dir .. "/error.log") or "")
    if not last_err:find("Address already in use", 1, true) then break end
  end
  error("nginx did not start:\n" .. tostring(last_err), 0)
end

local function stop_nginx(ngx_state)
  if not ngx_state then return end
  stop(ngx_state.proc, 10)
  h.remove_dir(ngx_state.dir)
end

-- The end of nginx's error log, without the token (request lines quote it).
local function error_log(srv)
  return h.hide_token((h.read_file(srv.dir .. "/error.log") or ""):sub(-3000))
end

-- GET base..path?args with curl: status, body, seconds.
local function get(srv, path, args, max_time)
  local url = srv.base .. path .. (args and ("?" .. query(args)) or "")
  local out = capture("curl -s --max-time " .. (max_time or 30) .. " -w '\\n%{http_code} %{time_total}' " .. q(url))
  local body, code, secs = out:match("^(.*)\n(%d+) ([%d%.]+)$")
  return tonumber(code), body, tonumber(secs)
end

local function get_json(srv, path, args)
  local code, body = get(srv, path, args)
  assert.equal(200, code, "HTTP " .. tostring(code) .. " from nginx: " .. h.hide_token(tostring(body)) .. "\n" .. error_log(srv))
  return json.decode(body)
end

local function fetch_args(id, extra)
  local a = { id = id, base = h.http_url, token = h.TOKEN }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

-- What the C module (libcurl) returns for the same scenario and options.
local function c_module(id, extra)
  local o = h.opts()
  for k, v in pairs(extra or {}) do
    if k ~= "base" then o[k] = tonumber(v) or (v ~= "false" and v or false) end
  end
  if extra and extra.base then o.base_url = extra.base end
  local msg, err, info = ghl.get_message(id, o)
  return msg, err, info
end

-- s with the id `from` (and its nonce, which some answers quote) made `to`.
local function swap_id(s, from, to)
  if type(s) ~= "string" then return s end
  local function swap(text, a, b) return (text:gsub(h.literal(a), (b:gsub("%%", "%%%%")))) end
  s = swap(s, from, to)
  return swap(s, from:match("%-%-(.*)$"), to:match("%-%-(.*)$"))
end

describe("ghl.resty in nginx", function()
  local srv

  setup(function()
    h.start()
    srv = start_nginx()
  end)

  teardown(function()
    stop_nginx(srv)
    srv = nil
  end)

  local function assert_sms(r, phase)
    assert.is_false(r.raised, r.err)
    assert.equal(phase, r.phase)
    assert.is_nil(r.err)
    assert.equal("TYPE_SMS", r.msg_type)
    assert.same(h.expected_message(ghl, "sms.json"), r.msg)
    assert.equal(200, r.info.status)
    assert.equal(h.trace_id("sms.json"), r.info.trace_id)
    assert.equal(1, r.info.attempts)
  end

  describe("phases", function()
    it("fetches in a content handler", function()
      local id = h.fresh_id("sms")
      assert_sms(get_json(srv, "/content", fetch_args(id)), "content")
      assert.equal(1, #h.requests_for(id))
    end)

    it("fetches in a rewrite handler", function()
      assert_sms(get_json(srv, "/rewrite", fetch_args(h.fresh_id("sms"))), "rewrite")
    end)

    it("fetches in an access handler", function()
      assert_sms(get_json(srv, "/access", fetch_args(h.fresh_id("sms"))), "access")
    end)

    it("fetches in an ngx.timer.at callback", function()
      assert_sms(get_json(srv, "/timer", fetch_args(h.fresh_id("sms"))), "timer")
    end)

    local function assert_phase_error(err, phase)
      assert.equal("ghl: ghl.resty cannot fetch in the '" .. phase .. "' phase (no cosockets there):"
        .. " call it from rewrite_by_lua*, access_by_lua*, content_by_lua* or an ngx.timer.at callback", err)
    end

    it("raises a clear error in set_by_lua", function()
      assert_phase_error(get_json(srv, "/set").err, "set")
    end)

    it("raises a clear error in header_filter_by_lua", function()
      local out = capture("curl -s -D - -o /dev/null --max-time 10 " .. q(srv.base .. "/header_filter"))
      assert_phase_error(out:match("[Xx]%-[Gg]hl%-[Ee]rr: ([^\r\n]*)"), "header_filter")
    end)

    it("raises a clear error in log_by_lua", function()
      get(srv, "/log")
      local v = h.wait_for(function() return get_json(srv, "/shared", { key = "log_err" }).value end, 5)
      assert_phase_error(v, "log")
    end)

    it("raises a clear error in init_by_lua", function()
      assert_phase_error(get_json(srv, "/shared", { key = "init_err" }).value, "init")
    end)
  end)

  describe("what it sends and returns", function()
    it("sends what ghl.get_message_request shows, asking for an identity body", function()
      local id = h.fresh_id("sms")
      get_json(srv, "/content", fetch_args(id))
      local req = h.requests_for(id)[1]
      local shown = ghl.get_message_request(id, h.opts())
      assert.equal("GET", req.method)
      assert.equal("HTTP/1.1", req.version)
      assert.equal("/conversations/messages/" .. id, req.path)
      assert.equal("127.0.0.1:" .. h.http_port, req.headers["host"])
      for name, value in pairs(shown.headers) do
        if name ~= "Accept-Encoding" then assert.equal(value, req.headers[name:lower()], name) end
      end
      assert.equal("identity", req.headers["accept-encoding"])
    end)

    it("keeps base_url's path prefix", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { base = h.http_url .. "/v2/" }))
      assert.is_nil(r.err)
      assert.equal("/v2/conversations/messages/" .. id, h.requests_for(id)[1].path)
    end)

    it("reads a chunked body", function()
      local r = get_json(srv, "/content", fetch_args(h.fresh_id("chunked_sms")))
      assert.is_nil(r.err)
      assert.same(h.expected_message(ghl, "sms.json"), r.msg)
    end)

    it("gives the rate-limit figures the server sent", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id))
      assert.same(h.logged_rate_limit(h.requests_for(id)[1]), r.info.rate_limit)
    end)

    it("gives a null array element as ngx.null, which is ghl.null", function()
      local r = get_json(srv, "/content", fetch_args(h.fresh_id("nulls")))
      assert.is_nil(r.err)
      assert.is_true(r.null_is_ngx_null)
      assert.is_true(r.null_is_ghl_null)
      assert.same(h.expected_message(ghl, "nulls.json"), r.msg)
    end)

    it("names `type` with the worker's MESSAGE_TYPES, and honours convert_enums", function()
      local r = get_json(srv, "/content", fetch_args(h.fresh_id("unknown_type")))
      assert.equal(99, r.msg_type)
      r = get_json(srv, "/content", fetch_args(h.fresh_id("unknown_type"), { add_type = "99:TYPE_SPEC_NINETY_NINE" }))
      assert.equal("TYPE_SPEC_NINETY_NINE", r.msg_type)
      r = get_json(srv, "/content", fetch_args(h.fresh_id("sms"), { convert_enums = "false" }))
      assert.equal(2, r.msg_type)
    end)

    it("raises in the handler on misuse, sending nothing", function()
      local r = get_json(srv, "/content", fetch_args("bad id"))
      assert.is_true(r.raised)
      assert.equal("ghl: bad argument 'id' (only A-Z, a-z, 0-9, '_' and '-' are allowed)", r.err)
      local id = h.fresh_id("sms")
      r = get_json(srv, "/content", fetch_args(id, { bad_option = "bogus" }))
      assert.is_true(r.raised)
      assert.equal("ghl: unknown option 'bogus'", r.err)
      r = get_json(srv, "/content", fetch_args(id, { pool_size = "0" }))
      assert.is_true(r.raised)
      assert.equal("ghl: option 'pool_size' must be an integer from 1 to 1000000", r.err)
      assert.equal(0, #h.requests_for(id))
    end)

    it("takes a token function (spec/51 has the rest of its rule)", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { token_function = "1" }))
      assert_sms(r, "content")
      local req = h.requests_for(id)[1]
      assert.is_true(req.headers.authorization == "Bearer " .. h.TOKEN, "Authorization: Bearer <the token>")
    end)

    it("raises for cainfo, naming lua_ssl_trusted_certificate, and for proxy", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { cainfo = h.cainfo }))
      assert.is_true(r.raised)
      assert.equal("ghl: option 'cainfo' is not supported by ghl.resty: set lua_ssl_trusted_certificate"
        .. " in nginx.conf", r.err)
      r = get_json(srv, "/content", fetch_args(id, { proxy = "http://127.0.0.1:" .. h.proxy_port }))
      assert.is_true(r.raised)
      assert.equal("ghl: option 'proxy' is not supported by ghl.resty (cosockets cannot go through a proxy)", r.err)
      assert.equal(0, #h.requests_for(id))
    end)
  end)

  -- The same scenario through nginx and through the C module: every field
  -- equal, ids swapped.
  local function same_as_c_module(scenario, extra, check)
    local rid, cid = h.fresh_id(scenario), h.fresh_id(scenario)
    local r = get_json(srv, "/content", fetch_args(rid, extra))
    local _, cerr, cinfo = c_module(cid, extra)
    assert.is_false(r.raised, r.err)
    assert.is_nil(r.msg)
    local info = r.info
    for _, k in ipairs({ "kind", "status", "attempts", "retry_after", "message", "trace_id" }) do
      assert.equal(swap_id(cinfo[k], cid, rid), info[k], k)
    end
    assert.equal(swap_id(cinfo.body, cid, rid), info.body, "body")
    assert.equal(cinfo.curl_code, info.curl_code, "curl_code")
    assert.equal(cinfo.rate_limit == nil, info.rate_limit == nil, "rate_limit")
    local reqs = h.requests_for(rid)
    if info.rate_limit then assert.same(h.logged_rate_limit(reqs[#reqs]), info.rate_limit) end
    assert.equal(#h.requests_for(cid), #reqs, "requests")
    if cinfo.kind == "network" or cinfo.kind == "timeout" or cinfo.kind == "tls" then
      -- the transport's own text differs (libcurl's, the cosocket's)
      local label = cerr:match("^(ghl: [^:]+: )")
      assert.equal(label, r.err:sub(1, #label))
      assert.equal(h.request_suffix(rid), r.err:sub(-#h.request_suffix(rid)))
    else
      assert.equal(swap_id(cerr, cid, rid), r.err)
    end
    h.assert_no_token(r, h.TOKEN, "the report")
    if check then check(r, rid) end
    return r, rid
  end

  describe("faults, as the C module returns them", function()
    it("connection refused: kind network, curl_code 7, tried once", function()
      local r = same_as_c_module("sms", { base = "http://127.0.0.1:9", retries = "0" })
      assert.equal("network", r.info.kind)
      assert.equal(7, r.info.curl_code)
      assert.equal(1, r.info.attempts)
      assert.is_nil(r.info.status)
    end)

    it("connection refused is retried: attempts 3", function()
      local r = same_as_c_module("sms", { base = "http://127.0.0.1:9", max_retry_delay = "0.05" })
      assert.equal(3, r.info.attempts)
    end)

    it("a host the resolver does not know: kind network, curl_code 6", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { base = "http://nosuch.invalid:" .. h.http_port, retries = "0" }))
      assert.equal("network", r.info.kind)
      assert.equal(6, r.info.curl_code)
      assert.matches("^ghl: network error: .*nosuch%.invalid.* %(GET /conversations/messages/", r.err)
    end)

    it("reset mid-body: kind network, curl_code 56", function()
      local r = same_as_c_module("reset_mid_body", { retries = "0" })
      assert.equal(56, r.info.curl_code)
      assert.equal(200, r.info.status)
    end)

    it("a body cut short: kind network, curl_code 18", function()
      local r = same_as_c_module("short_body", { retries = "0" })
      assert.equal(18, r.info.curl_code)
    end)

    it("no answer within timeout: kind timeout, curl_code 28, after about `timeout`", function()
      local r = same_as_c_module("never_answer", { retries = "0", timeout = "1" })
      assert.equal("timeout", r.info.kind)
      assert.equal(28, r.info.curl_code)
      assert.is_true(r.seconds >= 0.9 and r.seconds < 2.5, tostring(r.seconds))
    end)

    it("timeout is the whole attempt: a stalled body times out after `timeout`", function()
      local r = same_as_c_module("stall_half", { retries = "0", timeout = "1" })
      assert.equal("timeout", r.info.kind)
      assert.is_true(r.seconds >= 0.9 and r.seconds < 2.5, tostring(r.seconds))
    end)

    it("a slow drip longer than timeout times out", function()
      local r = get_json(srv, "/content", fetch_args(h.fresh_id("slow_drip"), { retries = "0", timeout = "0.5" }))
      assert.equal("timeout", r.info.kind)
      assert.is_true(r.seconds < 1.5, tostring(r.seconds))
    end)

    it("429 with Retry-After: waits, retries, returns the last 429", function()
      local r = same_as_c_module("ra_secs_1", { retries = "1" })
      assert.equal("http", r.info.kind)
      assert.equal(429, r.info.status)
      assert.equal(2, r.info.attempts)
      assert.equal(1, r.info.retry_after)
      assert.is_true(r.seconds >= 0.9, tostring(r.seconds))
    end)

    it("a flaky 503 then 200: the message, attempts 2", function()
      local rid = h.fresh_id("flaky_503_1")
      local r = get_json(srv, "/content", fetch_args(rid, { max_retry_delay = "0.05" }))
      assert.is_nil(r.err)
      assert.equal(2, r.info.attempts)
      assert.equal(2, #h.requests_for(rid))
    end)

    it("429 with Retry-After then 200: waits Retry-After", function()
      local rid = h.fresh_id("flaky_429ra_1_1")
      local r = get_json(srv, "/content", fetch_args(rid))
      assert.is_nil(r.err)
      assert.equal(2, r.info.attempts)
      local gaps = h.gaps(h.requests_for(rid))
      assert.is_true(gaps[1] >= 0.95, tostring(gaps[1]))
    end)

    for _, scenario in ipairs({ "err_500", "err_502_html", "err_503", "err_504", "err_524_html", "err_401_cto" }) do
      it(scenario .. " is retried and returned as the C module does", function()
        same_as_c_module(scenario, { max_retry_delay = "0.05" })
      end)
    end

    for _, scenario in ipairs({ "err_400", "err_401_jwt", "err_403_html", "err_403_json", "err_404", "err_422",
                                "err_500_empty", "not_json", "empty_200", "json_array", "no_message",
                                "invalid_utf8" }) do
      it(scenario .. " gives what the C module gives", function()
        same_as_c_module(scenario, { retries = "0" })
      end)
    end

    it("a 3xx is kind http and is not followed", function()
      same_as_c_module("redirect_302_other")
    end)

    it("Content-Length over max_body_size: kind too_large, the body not read", function()
      local r, rid = same_as_c_module("huge_9mib")
      assert.equal("too_large", r.info.kind)
      assert.equal("ghl: response too large: more than 8388608 bytes (max_body_size)" .. h.request_suffix(rid), r.err)
    end)

    it("a chunked body over max_body_size stops being read: kind too_large", function()
      local r = same_as_c_module("chunked_huge", { max_body_size = "100000" })
      assert.equal("too_large", r.info.kind)
    end)

    it("cuts the token out of an error body that echoes it", function()
      local r = same_as_c_module("echo_auth_400", { retries = "0" })
      assert.truthy(r.info.message:find("Bearer <redacted>", 1, true), r.info.message)
      r = same_as_c_module("echo_auth_502_html", { retries = "0" })
      assert.truthy(r.info.body:find("Bearer <redacted>", 1, true))
    end)
  end)

  describe("TLS", function()
    local function https(host) return "https://" .. host .. ":" .. h.https_port end

    it("verifies the server against lua_ssl_trusted_certificate, with SNI", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { base = https("localhost") }))
      assert.is_nil(r.err)
      assert.same(h.expected_message(ghl, "sms.json"), r.msg)
      assert.equal("localhost:" .. h.https_port, h.requests_for(id)[1].headers["host"])
    end)

    it("a name the certificate does not hold: kind tls, curl_code 60, tried once", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { base = https("wrong-name.test") }))
      assert.is_false(r.raised, r.err)
      assert.equal("tls", r.info.kind)
      assert.equal(60, r.info.curl_code)
      assert.equal(1, r.info.attempts)
      assert.matches("^ghl: TLS error: TLS handshake: certificate host mismatch %(GET ", r.err)
      assert.equal(0, #h.requests_for(id))
    end)

    it("an unknown CA: kind tls, curl_code 60", function()
      -- by the IP, so that no connection verified with the run's CA is in the pool
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/untrusted", fetch_args(id, { base = https("127.0.0.1") }))
      assert.is_table(r.info, "no info in the answer: " .. h.hide_token(json.encode(r)) .. "\n" .. error_log(srv))
      assert.equal("tls", r.info.kind)
      assert.equal(60, r.info.curl_code)
      assert.matches("^ghl: TLS error: TLS handshake: %d+: .* %(GET ", r.err)
      assert.equal(0, #h.requests_for(id))
    end)

    -- With nginx and the test server on one core, the server that the
    -- ClientHello wakes runs before nginx reads: about half the handshakes
    -- then complete, and fail verification, within sslhandshake's call.
    local function on_one_core(pids, fn)
      local status = h.read_file("/proc/" .. pids[1] .. "/status") or ""
      local allowed = assert(status:match("Cpus_allowed_list:%s*(%S+)"), "no Cpus_allowed_list")
      local function place(cpus)
        for _, pid in ipairs(pids) do
          assert.equal("ok", capture("taskset -a -pc " .. cpus .. " " .. pid .. " >/dev/null && echo ok"))
        end
      end
      place(allowed:match("^%d+"))
      local ok, err = pcall(fn)
      place(allowed)
      if not ok then error(err, 0) end
    end

    it("a verification that fails within sslhandshake's call: the same failure as any other", function()
      local id = h.fresh_id("sms")
      local function failure(why)
        return "tls 60 ghl: TLS error: TLS handshake: " .. why .. " (GET /conversations/messages/" .. id .. ")"
      end
      local cases = {
        { "/untrusted_tally", https("127.0.0.1"), failure("21: unable to verify the first certificate") },
        { "/tally", https("wrong-name.test"), failure("certificate host mismatch") },
      }
      local at_once = 0
      on_one_core({ srv.proc.pid, h.pid }, function()
        for _ = 1, 10 do -- rounds of 600 handshakes until some took that path
          for _, c in ipairs(cases) do
            local r = get_json(srv, c[1], fetch_args(id, { base = c[2], times = 300 }))
            assert.same({ [c[3]] = 300 }, r.seen)
            at_once = at_once + r.at_once
          end
          if at_once > 0 then break end
        end
      end)
      assert.is_true(at_once > 0, "no handshake of 6000 completed within the call")
      assert.equal(0, #h.requests_for(id))
    end)

    it("an https base_url with an IP address: nginx checks names only, kind tls", function()
      local id = h.fresh_id("sms")
      local r = get_json(srv, "/content", fetch_args(id, { base = https("127.0.0.1") }))
      assert.equal("tls", r.info.kind)
      assert.equal(60, r.info.curl_code)
      assert.matches("^ghl: TLS error: TLS handshake: certificate host mismatch %(GET ", r.err)
    end)

    it("ssl_verify = false accepts both", function()
      local r = get_json(srv, "/untrusted", fetch_args(h.fresh_id("sms"), { base = https("wrong-name.test"), ssl_verify = "false" }))
      assert.is_nil(r.err)
    end)

    it("keeps the TLS connection between calls", function()
      local a, b = h.fresh_id("sms"), h.fresh_id("sms")
      get_json(srv, "/content", fetch_args(a, { base = https("localhost") }))
      get_json(srv, "/content", fetch_args(b, { base = https("localhost") }))
      assert.equal(h.requests_for(a)[1].conn, h.requests_for(b)[1].conn)
    end)
  end)

  describe("keep-alive", function()
    it("keeps the connection between calls", function()
      local ids = {}
      for i = 1, 5 do
        ids[i] = h.fresh_id(i % 2 == 0 and "chunked_sms" or "sms")
        assert.is_nil(get_json(srv, "/content", fetch_args(ids[i])).err)
      end
      for i = 2, 5 do assert.equal(h.requests_for(ids[1])[1].conn, h.requests_for(ids[i])[1].conn) end
    end)

    it("does not keep a connection whose attempt timed out", function()
      local stuck, good = h.fresh_id("never_answer"), h.fresh_id("sms")
      get_json(srv, "/content", fetch_args(stuck, { timeout = "0.3", retries = "0" }))
      assert.is_nil(get_json(srv, "/content", fetch_args(good)).err)
      assert.are_not.equal(h.requests_for(stuck)[1].conn, h.requests_for(good)[1].conn)
    end)

    it("a kept connection closed before the answer: tried again at once, not an attempt", function()
      local first, second = h.fresh_id("sms_then_drop"), h.fresh_id("sms")
      assert.is_nil(get_json(srv, "/content", fetch_args(first)).err)
      local r = get_json(srv, "/content", fetch_args(second))
      assert.is_nil(r.err)
      assert.equal(1, r.info.attempts)
      local conn = h.requests_for(first)[1].conn
      local dropped = false
      for _, e in ipairs(h.events(second)) do
        if e.event == "dropped" and e.conn == conn then dropped = true end
      end
      assert.is_true(dropped, "the server did not drop the second request")
      assert.are_not.equal(conn, h.requests_for(second)[1].conn)
    end)
  end)

  describe("get_messages", function()
    it("returns messages and failures keyed by id, failures with errmsg", function()
      local ok1, ok2, bad = h.fresh_id("echo"), h.fresh_id("echo"), h.fresh_id("err_404")
      local r = get_json(srv, "/batch", fetch_args(nil, { ids = table.concat({ ok1, ok2, bad, ok1 }, ",") }))
      assert.is_nil(r.err)
      assert.equal(ok1, r.messages[ok1].id)
      assert.equal(ok2, r.messages[ok2].id)
      assert.is_nil(r.messages[bad])
      assert.equal("http", r.failures[bad].kind)
      assert.equal(404, r.failures[bad].status)
      assert.equal("ghl: HTTP 404 Not Found: Message not found" .. h.request_suffix(bad), r.failures[bad].errmsg)
      assert.equal(1, #h.requests_for(ok1))
    end)

    it("an invalid id raises before anything is sent", function()
      local ok1 = h.fresh_id("sms")
      local r = get_json(srv, "/batch", fetch_args(nil, { ids = ok1 .. ",bad.id" }))
      assert.is_true(r.raised)
      assert.matches("^ghl: bad argument 'id'", r.err)
      assert.equal(0, #h.requests_for(ok1))
    end)

    it("holds at most `concurrency` in flight", function()
      local ids = {}
      for i = 1, 6 do ids[i] = h.fresh_id("slow_ok_400") end
      local r = get_json(srv, "/batch", fetch_args(nil, { ids = table.concat(ids, ","), concurrency = "3" }))
      assert.equal(6, h.count_keys(r.messages))
      local most = 0
      for _, id in ipairs(ids) do
        for _, req in ipairs(h.requests_for(id)) do most = math.max(most, req.inflight) end
      end
      assert.equal(3, most)
      assert.is_true(r.seconds >= 0.75 and r.seconds < 2, tostring(r.seconds))
    end)

    it("paces starts by the rate-limit window, as the C batch", function()
      -- a window of 3 requests per 1500 ms, concurrency below it: no 429, and
      -- 7 ids wait for the window to turn over at least once
      local scenario = "rlwin_3_1500" -- its own window: no other spec uses these figures
      local ids = {}
      for i = 1, 7 do ids[i] = h.fresh_id(scenario) end
      local r = get_json(srv, "/batch", fetch_args(nil, { ids = table.concat(ids, ","), concurrency = "2" }))
      assert.equal(7, h.count_keys(r.messages), json.encode(r.failures))
      local per_window = {}
      for _, id in ipairs(ids) do
        local reqs = h.requests_for(id)
        assert.equal(1, #reqs)
        assert.equal(200, reqs[1].status)
        per_window[reqs[1].window] = (per_window[reqs[1].window] or 0) + 1
      end
      for w, n in pairs(per_window) do assert.is_true(n <= 3, "window " .. w .. ": " .. n) end
      assert.is_true(r.seconds >= 1.4, tostring(r.seconds))
    end)
  end)

  it("leaves the worker's event loop free while a fetch is in flight", function()
    local id = h.fresh_id("slow_ok_2000")
    local url = srv.base .. "/content?" .. query(fetch_args(id))
    local slow = spawn(srv.dir, "slow", "exec curl -s --max-time 20 -o /dev/null -w '%{http_code}' " .. q(url))
    local ok, err = pcall(function()
      assert.truthy(h.wait_for(function() return #h.requests_for(id) == 1 end, 10))
      local code, _, secs = get(srv, "/pong", nil, 5)
      assert.equal(200, code)
      assert.is_true(secs < 1.0, "pong took " .. tostring(secs) .. " s")
      assert.is_nil(h.read_file(slow.rc_file), "the slow fetch had already finished")
      assert.truthy(h.wait_for(function() return h.read_file(slow.rc_file) end, 15))
      assert.equal("200", h.read_file(slow.out))
    end)
    stop(slow)
    assert(ok, err)
  end)

  it("holds 512 fetches in flight in one worker, each answered with its own message (wrk)", function()
    local script = srv.dir .. "/count.lua"
    write_file(script, [[
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() bad = 0 end
function response(status) if status ~= 200 then bad = bad + 1 end end
function done(summary)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("GHL requests=%d bad=%d errors=%d\n", summary.requests, b,
    e.connect + e.read + e.write + e.timeout))
end
]])
    local url = srv.base .. "/load?" .. query({ ms = 500, base = h.http_url })
    local out = capture("timeout 30 wrk -c 512 -t 2 -d 5s --timeout 10s -s " .. q(script) .. " " .. q(url) .. " 2>&1")
    local requests, bad, errors = out:match("GHL requests=(%d+) bad=(%d+) errors=(%d+)")
    assert.truthy(requests, out)
    requests, bad, errors = tonumber(requests), tonumber(bad), tonumber(errors)
    assert.equal(0, bad, out .. error_log(srv))
    assert.equal(0, errors, out)
    -- 512 connections, each a 0.5 s fetch at a time, for 5 s
    assert.is_true(requests >= 2048, out)
    assert.is_nil(error_log(srv):find("no available Lua vm", 1, true))
  end)
end)

describe("ghl.resty.verify_webhook in nginx", function()
  local srv, dir, spki

  local function sh(cmd)
    local out = capture(cmd .. " 2>&1; echo \"rc=$?\"")
    assert.truthy(out:find("rc=0\n?$"), cmd .. ": " .. out)
  end

  local function sign(body)
    write_file(dir .. "/body", body)
    sh("openssl pkeyutl -sign -rawin -inkey " .. q(dir .. "/ed.key") .. " -in " .. q(dir .. "/body")
      .. " -out " .. q(dir .. "/sig"))
    return (capture("base64 -w0 " .. q(dir .. "/sig")))
  end

  local function post(body, headers)
    write_file(dir .. "/post", body)
    local args = {}
    for k, v in pairs(headers) do args[#args + 1] = "-H " .. q(k .. ": " .. v) end
    local out = capture("curl -s --max-time 10 -X POST --data-binary @" .. q(dir .. "/post") .. " "
      .. table.concat(args, " ") .. " " .. q(srv.base .. "/webhook"))
    return json.decode(out)
  end

  setup(function()
    h.start()
    dir = h.temp_dir("ghl-webhook")
    sh("openssl genpkey -algorithm ed25519 -out " .. q(dir .. "/ed.key"))
    sh("openssl pkey -in " .. q(dir .. "/ed.key") .. " -pubout -outform DER -out " .. q(dir .. "/ed.der"))
    spki = capture("base64 -w0 " .. q(dir .. "/ed.der"))
    srv = start_nginx()
  end)

  teardown(function()
    stop_nginx(srv)
    h.remove_dir(dir)
  end)

  local BODY = '{"type":"InboundMessage","locationId":"LoC0000000000000test","messageId":"MsG0000000000000in01",'
    .. '"messageType":"SMS","body":"Is Friday still ok?","direction":"inbound"}'

  it("verifies the raw body against X-GHL-Signature and returns the event", function()
    local r = post(BODY, { ["X-GHL-Signature"] = sign(BODY), ["X-Spec-Key"] = spki,
      ["Content-Type"] = "application/json" })
    assert.is_false(r.raised, r.err)
    assert.is_nil(r.err)
    assert.same({ "InboundMessage", "MsG0000000000000in01", "ed25519" }, { r.event_type, r.message_id, r.info.algorithm })
  end)

  it("reads a body nginx buffered to a file", function()
    local big = '{"type":"InboundMessage","messageId":"MsG0000000000000in02","pad":"' .. string.rep("x", 200000) .. '"}'
    local r = post(big, { ["X-GHL-Signature"] = sign(big), ["X-Spec-Key"] = spki })
    assert.is_false(r.raised, r.err)
    assert.is_nil(r.err)
    assert.same({ "MsG0000000000000in02", 200000 }, { r.message_id, r.size })
  end)

  it("refuses a changed body, a missing signature, and the built-in key for a foreign signature", function()
    local r = post(BODY .. " ", { ["X-GHL-Signature"] = sign(BODY), ["X-Spec-Key"] = spki })
    assert.same({ false, "signature" }, { r.raised, r.info.kind })
    r = post(BODY, { ["X-Spec-Key"] = spki })
    assert.same({ false, "signature" }, { r.raised, r.info.kind })
    r = post(BODY, { ["X-GHL-Signature"] = sign(BODY) }) -- the built-in key
    assert.same({ false, "signature" }, { r.raised, r.info.kind })
  end)
end)

describe("ghl.resty in nginx with a master process", function()
  before_each(function() h.start() end)

  local function signal_master(srv, sig)
    assert.truthy(os.execute("kill -" .. sig .. " " .. srv.proc.pid), "kill -" .. sig)
  end

  -- Starts a fetch through nginx with curl; waits until the test server has it.
  local function in_flight(srv, name, id, extra)
    local url = srv.base .. "/content?" .. query(fetch_args(id, extra))
    local proc = spawn(srv.dir, name, "exec curl -s --max-time 25 " .. q(url))
    assert.truthy(h.wait_for(function() return #h.requests_for(id) >= 1 end, 10), "the fetch did not start")
    return proc
  end

  local function answer_of(proc)
    assert.truthy(h.wait_for(function() return h.read_file(proc.rc_file) end, 25), "curl did not finish")
    return json.decode(h.read_file(proc.out))
  end

  local function worker_pids(srv)
    local out = capture("pgrep -P " .. srv.proc.pid .. " 2>/dev/null")
    local pids = {}
    for pid in out:gmatch("%d+") do pids[#pids + 1] = pid end
    return pids
  end

  it("reload: a fetch in flight and one in a retry wait both get their answer", function()
    local srv = start_nginx({ master = true })
    local ok, err = pcall(function()
      local old = worker_pids(srv)
      assert.equal(1, #old)
      local slow = in_flight(srv, "slow", h.fresh_id("slow_ok_2000"))
      local waiting_id = h.fresh_id("flaky_429ra_2_1")
      local waiting = in_flight(srv, "waiting", waiting_id)
      signal_master(srv, "HUP")
      -- a new worker serves; the old one stays until its fetches are answered
      assert.truthy(h.wait_for(function()
        local now = worker_pids(srv)
        return #now >= 1 and now[1] ~= old[1] or (now[2] ~= nil)
      end, 10))
      local r = answer_of(slow)
      assert.is_nil(r.err)
      assert.equal("TYPE_SMS", r.msg_type)
      r = answer_of(waiting)
      assert.is_nil(r.err)
      assert.equal(2, r.info.attempts)
      assert.equal(2, #h.requests_for(waiting_id))
      assert.truthy(h.wait_for(function() return not alive(old[1]) end, 10), "the old worker did not exit")
      stop(slow)
      stop(waiting)
    end)
    stop_nginx(srv)
    assert(ok, err)
  end)

  it("quit: fetches in flight get their answer (or their timeout) before nginx exits", function()
    local srv = start_nginx({ master = true })
    local ok, err = pcall(function()
      local slow = in_flight(srv, "slow", h.fresh_id("slow_ok_1500"))
      local waiting = in_flight(srv, "waiting", h.fresh_id("flaky_429ra_2_1"))
      local stuck = in_flight(srv, "stuck", h.fresh_id("never_answer"), { timeout = "2", retries = "0" })
      signal_master(srv, "QUIT")
      local r = answer_of(slow)
      assert.is_nil(r.err)
      r = answer_of(waiting)
      assert.is_nil(r.err)
      assert.equal(2, r.info.attempts)
      r = answer_of(stuck)
      assert.equal("timeout", r.info.kind)
      assert.truthy(h.wait_for(function() return not alive(srv.proc.pid) end, 10), "nginx did not exit")
      stop(slow)
      stop(waiting)
      stop(stuck)
    end)
    stop_nginx(srv)
    assert(ok, err)
  end)
end)
