-- examples/openresty/: its handler.lua in Debian's nginx, with its nginx.conf changed only where a
-- test must (a free port, a scratch directory for nginx's files, the repository's paths, the test
-- server's DNS), reaching the test server through GHL_BASE_URL as the README says.
--
-- nginx loads build/luajit/ghl.so whatever runtime busted runs on, so this file runs once,
-- under GHL_RUNTIME=luajit, and is pending on the others.

local h = require("helpers")

if os.getenv("GHL_RUNTIME") ~= "luajit" then
  describe("examples/openresty", function()
    pending("runs once, under GHL_RUNTIME=luajit (nginx loads build/luajit/ghl.so)")
  end)
  return
end

local json = h.json
local q = h.quote
local ROOT = h.SPEC_DIR:gsub("/spec$", "")

local function find_module(name)
  for _, dir in ipairs({ "/usr/lib/nginx/modules", "/usr/share/nginx/modules" }) do
    if h.read_file(dir .. "/" .. name) then return dir .. "/" .. name end
  end
  error("nginx module " .. name .. " not found: run scripts/install-deps hosts", 0)
end

-- The example's nginx.conf with only the test's changes; each must have applied.
local function example_conf(dir, port)
  local conf = assert(h.read_file(ROOT .. "/examples/openresty/nginx.conf"))
  local function sub(pattern, repl)
    local out, n = conf:gsub(pattern, function() return repl end)
    assert(n >= 1, "the example's nginx.conf has no " .. pattern)
    conf = out
  end
  sub("load_module [^;]*ndk_http_module%.so;", "load_module " .. find_module("ndk_http_module.so") .. ";")
  sub("load_module [^;]*ngx_http_lua_module%.so;", "load_module " .. find_module("ngx_http_lua_module.so") .. ";")
  sub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
  sub("pid [^;]*;", "pid " .. dir .. "/nginx.pid;")
  sub("error_log stderr info;", "error_log " .. dir .. "/error.log info;")
  sub("pid [^;]*;", "pid " .. dir .. "/nginx.pid;")
  sub("access_log /dev/stdout;", "access_log off;")
  sub("resolver [^;]*;", "resolver 127.0.0.1:" .. h.dns_port .. " ipv6=off;")
  sub('lua_package_path "[^"]*";', 'lua_package_path "' .. ROOT .. '/examples/openresty/?.lua;' .. ROOT .. '/src/?.lua;;";')
  sub('lua_package_cpath "[^"]*";', 'lua_package_cpath "' .. ROOT .. '/build/luajit/?.so;;";')
  for _, what in ipairs({ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" }) do
    sub(what .. "_temp_path [^;]*;", what .. "_temp_path " .. dir .. "/" .. what .. ";")
  end
  return conf
end

describe("examples/openresty", function()
  local srv

  setup(function()
    h.start()
    local dir = h.temp_dir("ghl-example")
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
    local last
    for _ = 1, 8 do -- a few ports, in case one is taken
      local port = math.random(20000, 59999)
      h.write_file(dir .. "/nginx.conf", example_conf(dir, port))
      os.remove(dir .. "/error.log")
      local proc = h.spawn(dir, "nginx", "exec env GHL_TOKEN=" .. q(h.TOKEN) .. " GHL_BASE_URL=" .. q(h.http_url)
        .. " nginx -p " .. q(ROOT .. "/examples/openresty") .. " -c " .. q(dir .. "/nginx.conf"))
      local base = "http://127.0.0.1:" .. port
      local up = h.wait_for(function()
        if not h.alive(proc.pid) then return "exited" end
        local code = h.capture("curl -s -o /dev/null -w '%{http_code}' --max-time 1 " .. q(base .. "/ping"))
        return code == "200" and "up" or nil
      end, 10)
      if up == "up" then
        srv = { dir = dir, base = base, proc = proc }
        return
      end
      h.stop_process(proc)
      last = h.hide_token((h.read_file(dir .. "/error.log") or "") .. (h.read_file(proc.out) or ""))
      if not last:find("Address already in use", 1, true) then break end
    end
    error("the example's nginx did not start:\n" .. tostring(last), 0)
  end)

  teardown(function()
    if srv then
      h.stop_process(srv.proc, 10)
      h.remove_dir(srv.dir)
    end
  end)

  it("fetches from GHL_BASE_URL's server with GHL_TOKEN", function()
    local id = h.fresh_id("sms")
    local out = h.capture("curl -s --max-time 20 -w '\\n%{http_code}' " .. q(srv.base .. "/messages/" .. id))
    local body, code = out:match("^(.*)\n(%d+)$")
    assert.equal("200", code, h.hide_token(out))
    local msg = json.decode(body)
    assert.equal("Xq1sMs0000aaaa000001", msg.id)
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
  end)
end)
