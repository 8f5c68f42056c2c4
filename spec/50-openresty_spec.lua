-- require("ghl.resty") inside a real nginx (Debian's nginx-core with the
-- http_lua module): every phase that may yield, timers, errors, and the event
-- loop staying free while a fetch is in flight.
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

local function find_module(name)
  for _, dir in ipairs(MODULE_DIRS) do
    local path = dir .. "/" .. name
    if h.read_file(path) then return path end
  end
  error("nginx module " .. name .. " not found under " .. table.concat(MODULE_DIRS, ", ")
    .. ": run scripts/install-deps hosts", 0)
end

-- The nginx.conf, with or without the thread pool line.
local function nginx_conf(dir, port, with_pool)
  return table.concat({
    "load_module " .. find_module("ndk_http_module.so") .. ";",
    "load_module " .. find_module("ngx_http_lua_module.so") .. ";",
    "daemon off;",
    "master_process off;",
    "worker_processes 1;",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log info;",
    with_pool and "thread_pool ghl threads=4;" or "",
    "events { worker_connections 64; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. dir .. "/tmp_body;",
    "  proxy_temp_path " .. dir .. "/tmp_proxy;",
    "  fastcgi_temp_path " .. dir .. "/tmp_fastcgi;",
    "  uwsgi_temp_path " .. dir .. "/tmp_uwsgi;",
    "  scgi_temp_path " .. dir .. "/tmp_scgi;",
    '  lua_package_path "' .. ROOT .. "/src/?.lua;" .. dir .. '/?.lua;;";',
    '  lua_package_cpath "' .. ROOT .. '/build/luajit/?.so;;";',
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    location /content { content_by_lua_block { require('spec_handlers').content() } }",
    "    location /rewrite {",
    "      rewrite_by_lua_block { require('spec_handlers').fetch_into_ctx() }",
    "      content_by_lua_block { require('spec_handlers').reply_ctx() }",
    "    }",
    "    location /access {",
    "      access_by_lua_block { require('spec_handlers').fetch_into_ctx() }",
    "      content_by_lua_block { require('spec_handlers').reply_ctx() }",
    "    }",
    "    location /timer { content_by_lua_block { require('spec_handlers').timer() } }",
    "    location /misuse { content_by_lua_block { require('spec_handlers').misuse() } }",
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

local function opts(args)
  local o = { token = args.token, base_url = args.base }
  if args.convert_enums == "false" then o.convert_enums = false end
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
      r.null_is_cjson_null = a[1] == cjson.null
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
  return report(phase, pcall(resty.get_message, args.id, opts(args)))
end

local function reply(r)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(r))
end

function M.content() reply(fetch(ngx.get_phase())) end

function M.fetch_into_ctx() ngx.ctx.report = fetch(ngx.get_phase()) end

function M.reply_ctx() reply(ngx.ctx.report) end

function M.timer()
  local args = ngx.req.get_uri_args()
  local result
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then result = { err = "premature" } return end
    result = report(ngx.get_phase(), pcall(resty.get_message, args.id, opts(args)))
  end)
  if not ok then return reply({ err = "timer: " .. tostring(err) }) end
  for _ = 1, 200 do
    if result then break end
    ngx.sleep(0.05)
  end
  reply(result or { err = "the timer did not finish in 10 s" })
end

function M.misuse()
  local args = ngx.req.get_uri_args()
  local o = opts(args)
  if args.bad_option then o[args.bad_option] = 1 end
  reply(report(ngx.get_phase(), pcall(resty.get_message, args.id, o)))
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
local function start_nginx(with_pool)
  local dir = h.temp_dir("ghl-nginx")
  write_file(dir .. "/spec_handlers.lua", HANDLERS)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local last_err
  for _ = 1, 8 do
    local port = math.random(20000, 59999)
    write_file(dir .. "/nginx.conf", nginx_conf(dir, port, with_pool))
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
  stop(ngx_state.proc)
  h.remove_dir(ngx_state.dir)
end

-- GET base..path?args with curl: status, body, seconds.
local function get(srv, path, args, max_time)
  local url = srv.base .. path .. (args and ("?" .. query(args)) or "")
  local out = capture("curl -s --max-time " .. (max_time or 15) .. " -w '\\n%{http_code} %{time_total}' " .. q(url))
  local body, code, secs = out:match("^(.*)\n(%d+) ([%d%.]+)$")
  return tonumber(code), body, tonumber(secs)
end

local function get_json(srv, path, args)
  local code, body = get(srv, path, args)
  assert.equal(200, code, "HTTP " .. tostring(code) .. " from nginx: " .. tostring(body)
    .. "\n" .. (h.read_file(srv.dir .. "/error.log") or ""):sub(-2000))
  return json.decode(body)
end

local function fetch_args(id, extra)
  local a = { id = id, base = h.http_url, token = h.TOKEN }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

describe("ghl.resty in nginx", function()
  local srv

  setup(function()
    h.start()
    srv = start_nginx(true)
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

  it("fetches a message in a content handler", function()
    local id = h.fresh_id("sms")
    assert_sms(get_json(srv, "/content", fetch_args(id)), "content")
    assert.equal(1, #h.requests_for(id))
  end)

  it("fetches a message in a rewrite handler", function()
    assert_sms(get_json(srv, "/rewrite", fetch_args(h.fresh_id("sms"))), "rewrite")
  end)

  it("fetches a message in an access handler", function()
    assert_sms(get_json(srv, "/access", fetch_args(h.fresh_id("sms"))), "access")
  end)

  it("fetches a message in an ngx.timer.at callback", function()
    assert_sms(get_json(srv, "/timer", fetch_args(h.fresh_id("sms"))), "timer")
  end)

  it("sends what ghl.get_message sends", function()
    local id = h.fresh_id("sms")
    get_json(srv, "/content", fetch_args(id))
    local req = h.requests_for(id)[1]
    assert.equal("GET", req.method)
    assert.equal("/conversations/messages/" .. id, req.path)
    assert.equal("Bearer " .. h.TOKEN, req.headers["authorization"])
    assert.equal(ghl.API_VERSION, req.headers["version"])
  end)

  it("keeps the connection between calls", function()
    local a, b = h.fresh_id("sms"), h.fresh_id("sms")
    get_json(srv, "/content", fetch_args(a))
    get_json(srv, "/content", fetch_args(b))
    assert.equal(h.requests_for(a)[1].conn, h.requests_for(b)[1].conn)
  end)

  it("gives a null array element as ngx.null, which is ghl.null and cjson.null", function()
    local r = get_json(srv, "/content", fetch_args(h.fresh_id("nulls")))
    assert.is_nil(r.err)
    assert.is_true(r.null_is_ngx_null)
    assert.is_true(r.null_is_ghl_null)
    assert.is_true(r.null_is_cjson_null)
    assert.same(h.expected_message(ghl, "nulls.json"), r.msg)
  end)

  it("names `type` with the calling VM's MESSAGE_TYPES, and honours convert_enums", function()
    local r = get_json(srv, "/content", fetch_args(h.fresh_id("unknown_type")))
    assert.equal(99, r.msg_type)
    r = get_json(srv, "/content", fetch_args(h.fresh_id("unknown_type"), { add_type = "99:TYPE_SPEC_NINETY_NINE" }))
    assert.equal("TYPE_SPEC_NINETY_NINE", r.msg_type)
    r = get_json(srv, "/content", fetch_args(h.fresh_id("sms"), { convert_enums = "false" }))
    assert.equal(2, r.msg_type)
    r = get_json(srv, "/content", fetch_args(h.fresh_id("whatsapp_no_mt")))
    assert.equal("TYPE_WHATSAPP", r.msg_type)
  end)

  it("returns nil, errmsg, info for an HTTP error", function()
    local r = get_json(srv, "/content", fetch_args(h.fresh_id("err_404")))
    assert.is_false(r.raised)
    assert.is_nil(r.msg)
    assert.matches("^ghl: HTTP 404 Not Found: Message not found", r.err)
    assert.equal("http", r.info.kind)
    assert.equal(404, r.info.status)
    assert.equal("Message not found", r.info.message)
    assert.equal(h.trace_id("err_404.json"), r.info.trace_id)
    h.assert_no_token(r, h.TOKEN, "the report")
  end)

  it("returns nil, errmsg, info for a network failure", function()
    local args = fetch_args("sms", { base = "http://127.0.0.1:9" })
    local r = get_json(srv, "/content", args)
    assert.is_false(r.raised)
    assert.matches("^ghl: ", r.err)
    assert.equal("network", r.info.kind)
  end)

  it("raises in the handler on misuse, sending nothing", function()
    local r = get_json(srv, "/misuse", fetch_args("bad id"))
    assert.is_true(r.raised)
    assert.matches("^ghl: .*'id'", r.err)
    local id = h.fresh_id("sms")
    r = get_json(srv, "/misuse", fetch_args(id, { bad_option = "bogus" }))
    assert.is_true(r.raised)
    assert.matches("bogus", r.err)
    assert.equal(0, #h.requests_for(id))
  end)

  it("leaves the worker's event loop free while a fetch is in flight", function()
    local id = h.fresh_id("slow_ok_4000")
    local url = srv.base .. "/content?" .. query(fetch_args(id))
    local slow = spawn(srv.dir, "slow", "exec curl -s --max-time 20 -w '\\n%{http_code} %{time_total}' " .. q(url))
    local ok, err = pcall(function()
      -- The slow fetch has reached the test server: a pool thread is waiting on it.
      assert.truthy(h.wait_for(function() return #h.requests_for(id) == 1 end, 10),
        "the slow fetch never reached the test server")
      local t0 = h.now()
      local code, body, secs = get(srv, "/pong", nil, 5)
      local wall = h.now() - t0
      assert.equal(200, code)
      assert.equal("pong", body:gsub("%s+$", ""))
      assert.is_true(secs < 1.0, "pong took " .. tostring(secs) .. " s")
      assert.is_true(wall < 1.0, "pong took " .. wall .. " s of wall time")
      -- and the slow fetch was still in flight when pong came back
      assert.is_nil(h.read_file(slow.rc_file), "the slow fetch had already finished")
      assert.truthy(h.wait_for(function() return h.read_file(slow.rc_file) end, 15),
        "the slow fetch did not finish")
      local out = h.read_file(slow.out)
      local sbody, scode, ssecs = out:match("^(.*)\n(%d+) ([%d%.]+)$")
      assert.equal("200", scode)
      assert.is_true(tonumber(ssecs) >= 3.9, "the slow fetch took only " .. tostring(ssecs) .. " s")
      local r = json.decode(sbody)
      assert.is_nil(r.err)
      assert.equal("TYPE_SMS", r.msg_type)
    end)
    stop(slow)
    assert(ok, err)
  end)

  it("runs fetches side by side on the pool's threads", function()
    local ids = { h.fresh_id("slow_ok_2000"), h.fresh_id("slow_ok_2000"), h.fresh_id("slow_ok_2000") }
    local procs = {}
    local t0 = h.now()
    for i, id in ipairs(ids) do
      local url = srv.base .. "/content?" .. query(fetch_args(id))
      procs[i] = spawn(srv.dir, "par" .. i, "exec curl -s --max-time 20 -o /dev/null -w '%{http_code}' " .. q(url))
    end
    local done = h.wait_for(function()
      for _, p in ipairs(procs) do
        if not h.read_file(p.rc_file) then return nil end
      end
      return true
    end, 15)
    local elapsed = h.now() - t0
    for _, p in ipairs(procs) do stop(p) end
    assert.truthy(done, "the fetches did not finish")
    for _, p in ipairs(procs) do assert.equal("200", h.read_file(p.out)) end
    -- one after the other would take 6 s
    assert.is_true(elapsed < 5.0, "three 2 s fetches took " .. elapsed .. " s")
  end)
end)

describe("ghl.resty in nginx without the thread pool", function()
  local srv

  setup(function()
    h.start()
    srv = start_nginx(false)
  end)

  teardown(function()
    stop_nginx(srv)
    srv = nil
  end)

  it("returns an error that says which line to add", function()
    local id = h.fresh_id("sms")
    local r = get_json(srv, "/content", fetch_args(id))
    assert.is_false(r.raised)
    assert.is_nil(r.msg)
    assert.matches("^ghl: ", r.err)
    assert.truthy(r.err:find("thread_pool ghl threads=4;", 1, true), r.err)
    assert.is_table(r.info)
    assert.equal(0, #h.requests_for(id))
  end)
end)
