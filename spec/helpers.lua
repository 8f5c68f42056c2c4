-- Shared spec support for ghl.
--
-- Loaded by busted before the spec files (see .busted), and required by them
-- as `local h = require("helpers")`; both give the same table, so one test
-- server serves the whole run.
--
-- The server (spec/support/server.py) starts on first use of h.http_url,
-- h.https_url, h.other_url, h.cainfo or h.start(), with a throw-away CA and
-- a certificate for 127.0.0.1 / localhost made by the openssl CLI, and stops
-- when busted exits (or when this table is collected, or when the Lua process
-- goes away: the server watches its parent).

if type(package.loaded["helpers"]) == "table" then
  return package.loaded["helpers"]
end

local cjson = require("cjson").new()
local system = require("system")

local M = {}
package.loaded["helpers"] = M

-- An obviously fake token; the specs pass it as opts.token and check that it
-- never comes back in errmsg or info.
M.TOKEN = "pit-test-token-DO-NOT-LEAK-7f3a"

M.PYTHON = "/usr/bin/python3"
M.HAS_INTEGERS = math.type ~= nil
M.IS_54 = _VERSION == "Lua 5.4"
M.json = cjson

local state = {}

local function script_dir()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "spec"
  if dir:sub(1, 1) ~= "/" then
    dir = (os.getenv("PWD") or ".") .. "/" .. dir
  end
  return dir
end

M.SPEC_DIR = script_dir()
M.FIXTURES = M.SPEC_DIR .. "/support/fixtures"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- A new empty directory under $TMPDIR (or /tmp) named <prefix>.XXXXXX.
local function temp_dir(prefix)
  local dir = capture('mktemp -d "${TMPDIR:-/tmp}/' .. prefix .. '.XXXXXX"')
  assert(dir ~= "" and dir:sub(1, 1) == "/", "mktemp -d failed")
  return dir
end

M.now = system.gettime
M.sleep = system.sleep

local function make_certs(dir)
  local ext = io.open(dir .. "/server.ext", "w")
  ext:write("subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            "basicConstraints=CA:FALSE\n",
            "keyUsage=critical,digitalSignature,keyEncipherment\n",
            "extendedKeyUsage=serverAuth\n")
  ext:close()
  local d = q(dir)
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local log = " >>" .. d .. "/openssl.out 2>&1"
  local ok = run("openssl req -x509 " .. ec .. " -keyout " .. d .. "/ca.key -out " .. d
                 .. "/ca.pem -days 2 -subj '/CN=ghl spec throw-away CA'"
                 .. " -addext basicConstraints=critical,CA:TRUE"
                 .. " -addext keyUsage=critical,keyCertSign,cRLSign" .. log)
    and run("openssl req -new " .. ec .. " -keyout " .. d .. "/server.key -out " .. d
            .. "/server.csr -subj /CN=127.0.0.1" .. log)
    and run("openssl x509 -req -in " .. d .. "/server.csr -CA " .. d .. "/ca.pem -CAkey "
            .. d .. "/ca.key -set_serial 0x" .. string.format("%x", os.time())
            .. " -days 2 -out " .. d .. "/server.pem -extfile " .. d .. "/server.ext" .. log)
  if not ok then
    error("openssl failed:\n" .. (read_file(dir .. "/openssl.out") or ""), 0)
  end
end

local TEMP_FILES = {
  "ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "server.ext",
  "openssl.out", "server.out", "ready.json", "ready.json.tmp", "requests.jsonl",
}

-- Start the server (once per run). Returns the state table.
function M.start()
  if state.pid then return state end
  if state.failed then error(state.failed, 0) end
  local ok, err = pcall(function()
    local dir = temp_dir("ghl-spec")
    state.dir = dir
    make_certs(dir)
    state.cainfo = dir .. "/ca.pem"
    state.log = dir .. "/requests.jsonl"
    local ready = dir .. "/ready.json"
    local parent = capture("echo $PPID")
    local max_seconds = tonumber(os.getenv("GHL_SPEC_SERVER_SECONDS") or "") or 600
    local cmd = M.PYTHON .. " " .. q(M.SPEC_DIR .. "/support/server.py")
      .. " --cert " .. q(dir .. "/server.pem") .. " --key " .. q(dir .. "/server.key")
      .. " --log " .. q(state.log) .. " --ready-file " .. q(ready)
      .. " --max-seconds " .. tostring(max_seconds)
      .. (parent:match("^%d+$") and (" --parent-pid " .. parent) or "")
      .. " >" .. q(dir .. "/server.out") .. " 2>&1 </dev/null &"
    assert(run(cmd), "could not launch the test server")
    local deadline = system.monotime() + 10
    local info
    while system.monotime() < deadline do
      local s = read_file(ready)
      if s then
        info = cjson.decode(s)
        break
      end
      system.sleep(0.05)
    end
    if not info then
      error("test server not ready after 10 s:\n" .. (read_file(dir .. "/server.out") or ""), 0)
    end
    local function int(v) return string.format("%d", assert(tonumber(v))) end
    state.pid = int(info.pid)
    state.http_port, state.https_port, state.other_port = int(info.http), int(info.https), int(info.other)
    state.proxy_port = int(info.proxy)
    state.dns_port = int(info.dns)
    state.http_url = "http://127.0.0.1:" .. state.http_port
    state.https_url = "https://127.0.0.1:" .. state.https_port
    state.https_localhost_url = "https://localhost:" .. state.https_port
    state.other_url = "http://127.0.0.1:" .. state.other_port
  end)
  if not ok then
    state.failed = tostring(err)
    M.stop()
    error(err, 0)
  end
  return state
end

-- Kill the server by its own pid and remove the temp files. Idempotent.
function M.stop()
  if state.pid then
    run("kill " .. state.pid .. " 2>/dev/null")
    state.pid = nil
  end
  if state.dir and not os.getenv("GHL_SPEC_KEEP") then
    for _, name in ipairs(TEMP_FILES) do
      os.remove(state.dir .. "/" .. name)
    end
    os.remove(state.dir)
    state.dir = nil
  end
end

-- Lazily started fields.
local LAZY = {
  http_url = true, https_url = true, https_localhost_url = true, other_url = true,
  cainfo = true, http_port = true, https_port = true, other_port = true,
  proxy_port = true, dns_port = true, pid = true, log = true,
}
setmetatable(M, {
  __index = function(_, key)
    if LAZY[key] then
      return M.start()[key]
    end
  end,
})

-- Stop the server when busted is done, and as a fallback when collected.
do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and type(busted.subscribe) == "function" then
    pcall(busted.subscribe, { "exit" }, function()
      M.stop()
      return nil, true
    end)
  end
  local sentinel
  if newproxy then -- luacheck: ignore
    sentinel = newproxy(true) -- luacheck: ignore
    getmetatable(sentinel).__gc = function() M.stop() end
  else
    sentinel = setmetatable({}, { __gc = function() M.stop() end })
  end
  state.sentinel = sentinel
end

---------------------------------------------------------------------------
-- The server's log

-- The log grows over the whole run (thousands of lines by the last spec
-- files), and tests poll it: each call decodes only the lines added since
-- the last one, so a poll costs the same early and late, and under valgrind.
local parsed = { log = nil, offset = 0, entries = {} }

local function log_lines()
  M.start()
  if parsed.log ~= state.log then parsed = { log = state.log, offset = 0, entries = {} } end
  local f = io.open(state.log, "rb")
  if f then
    f:seek("set", parsed.offset)
    local s = f:read("*a") or ""
    f:close()
    local stop = 0 -- only whole lines: the server may be writing the last one
    for line, next_pos in s:gmatch("([^\n]*)\n()") do
      if line ~= "" then
        local entry = cjson.decode(line)
        for k, v in pairs(entry) do -- a null field is absent, as in the module's own tables
          if v == cjson.null then entry[k] = nil end
        end
        parsed.entries[#parsed.entries + 1] = entry
      end
      stop = next_pos - 1
    end
    parsed.offset = parsed.offset + stop
  end
  return parsed.entries -- callers only read it
end

-- The path get_message requests for a message id.
function M.message_path(id)
  return "/conversations/messages/" .. id
end

-- The tail an errmsg ends with: the request it is about.
function M.request_suffix(id)
  return " (GET " .. M.message_path(id) .. ")"
end

-- The fields of info.rate_limit and client:rate_limit().
M.RATE_LIMIT_FIELDS = { "max", "remaining", "interval_ms", "daily_limit", "daily_remaining" }

-- The rate-limit figures the server put on a logged response, or nil.
function M.logged_rate_limit(req)
  local r = req.rate_limit
  if r == nil or r == cjson.null then return nil end
  local out = {}
  for _, k in ipairs(M.RATE_LIMIT_FIELDS) do out[k] = r[k] end
  return out
end

-- The seconds between consecutive logged arrivals.
function M.gaps(reqs)
  local out = {}
  for i = 2, #reqs do out[#out + 1] = reqs[i].t - reqs[i - 1].t end
  return out
end

-- Every request the server saw, in order.
function M.requests()
  local out = {}
  for _, r in ipairs(log_lines()) do
    if r.event == nil then out[#out + 1] = r end
  end
  return out
end

-- Requests for one full message id (nonce included), in order.
function M.requests_for(id, listener)
  local out = {}
  for _, r in ipairs(M.requests()) do
    if r.id == id and (listener == nil or r.listener == listener) then out[#out + 1] = r end
  end
  return out
end

-- Non-request events (client_gone, body_complete, tls_failed), optionally for one id.
function M.events(id)
  local out = {}
  for _, r in ipairs(log_lines()) do
    if r.event ~= nil and (id == nil or r.id == id) then out[#out + 1] = r end
  end
  return out
end

-- Poll fn() until it returns a truthy value or `seconds` pass; returns that value.
function M.wait_for(fn, seconds)
  local deadline = system.monotime() + (seconds or 5)
  repeat
    local v = fn()
    if v then return v end
    system.sleep(0.02)
  until system.monotime() >= deadline
  return fn()
end

local counter = 0
local run_tag = string.format("%x", os.time() % 0x100000)

-- A message id for `scenario` no other test uses (so attempt counters start at 0).
function M.fresh_id(scenario)
  counter = counter + 1
  return scenario .. "--r" .. run_tag .. "n" .. counter
end

-- Options for the test server over plain HTTP, merged with `extra`.
function M.opts(extra)
  local o = { token = M.TOKEN, base_url = M.http_url }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Options for the test server over HTTPS with the run's CA, merged with `extra`.
function M.tls_opts(extra)
  local o = { token = M.TOKEN, base_url = M.https_url, cainfo = M.cainfo }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

---------------------------------------------------------------------------
-- Fixtures and expectations

function M.fixture(name)
  local s = read_file(M.FIXTURES .. "/" .. name)
  if not s then error("no fixture " .. name, 2) end
  return s
end

function M.fixture_json(name)
  return cjson.decode(M.fixture(name))
end

-- A decoded fixture as ghl gives it: null object members absent, null array
-- elements null_value.
local function copy_without_nulls(v, null_value)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if x == cjson.null then
      -- cjson gives object keys as strings, array indexes as numbers
      if type(k) == "number" then out[k] = null_value end
    else
      out[k] = copy_without_nulls(x, null_value)
    end
  end
  return out
end

-- What the contract says get_message / decode_message return for a fixture:
-- unwrapped, null members dropped, null array elements as ghl.null, `type`
-- named by the TYPE_ rule unless convert_enums is false.
function M.expected_message(ghl, name, convert_enums)
  local doc = M.fixture_json(name)
  local msg = doc
  if type(doc.message) == "table" then msg = doc.message end
  msg = copy_without_nulls(msg, ghl.null)
  if convert_enums ~= false then M.apply_type_rule(ghl, msg) end
  return msg
end

M.copy_without_nulls = copy_without_nulls

-- The contract's `type` rule, applied to msg in place; returns msg.
function M.apply_type_rule(ghl, msg)
  local mt = msg.messageType
  if type(mt) == "string" and mt:sub(1, 5) == "TYPE_" then
    msg.type = mt
  elseif type(msg.type) == "number" and ghl.MESSAGE_TYPES[msg.type] ~= nil then
    msg.type = ghl.MESSAGE_TYPES[msg.type]
  end
  return msg
end

function M.trace_id(name)
  return M.fixture_json(name).traceId
end

---------------------------------------------------------------------------
-- Running another interpreter (for what needs a different environment)

-- The interpreter running this process (lua5.x or luajit).
function M.lua_exe()
  if not state.exe then
    state.exe = capture("readlink /proc/$PPID/exe")
  end
  return state.exe
end

local function env_prefix(env)
  local prefix = "env"
  for k, v in pairs(env or {}) do
    if v == false then
      prefix = prefix .. " -u " .. q(k)
    else
      prefix = prefix .. " " .. q(k .. "=" .. v)
    end
  end
  return prefix
end

-- Run `code` in a fresh interpreter of the same kind with `env` (name -> value,
-- false to unset) added to the environment; returns ok, stdout+stderr, exit
-- status. With `seconds`, the run is a hang guard: `timeout` ends the
-- interpreter (and whatever it forked: timeout signals its own process group)
-- after that long, and the exit status is then 124 (137 if it had to KILL).
function M.run_lua(code, env, seconds)
  local guard = seconds and ("timeout -k 5 " .. string.format("%d", seconds) .. " ") or ""
  local p = assert(io.popen(guard .. env_prefix(env) .. " " .. q(M.lua_exe()) .. " -e " .. q(code) .. " 2>&1; echo \"rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  out = out:gsub("rc=%d+%s*$", "")
  return rc == 0, out, rc
end

-- Start `code` in a fresh interpreter of the same kind, in the background:
-- stdout in <dir>/<name>.out, stderr in <dir>/<name>.err, its exit status in
-- <dir>/<name>.rc once it has ended. The pid is the interpreter's own (the
-- shell execs it), so a signal sent to it reaches the interpreter. Returns
-- the same table as spawn, plus `err`; end it with stop_process.
function M.spawn_lua(dir, name, code, env)
  local rc = dir .. "/" .. name .. ".rc"
  local out, err = dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".err"
  os.remove(rc)
  local sh = "(exec " .. env_prefix(env) .. " " .. q(M.lua_exe()) .. " -e " .. q(code) .. ") >" .. q(out)
    .. " 2>" .. q(err) .. " </dev/null & p=$!; echo $p; wait $p; echo $? >" .. q(rc)
  local pipe = assert(io.popen("sh -c " .. q(sh), "r"))
  local pid = pipe:read("*l")
  assert(pid and pid:match("^%d+$"), "could not start " .. name)
  return { pid = pid, pipe = pipe, rc_file = rc, out = out, err = err }
end

-- s with the test token replaced by "<TOKEN>": what a failing assertion may
-- show of a child's output or a returned value without printing the token.
function M.hide_token(s)
  return (tostring(s):gsub(M.literal(M.TOKEN), "<TOKEN>"))
end

-- A Lua pattern matching s literally.
function M.literal(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

---------------------------------------------------------------------------
-- Files and processes of a spec's own (nginx, Neovim, curl)

-- s quoted for sh.
M.quote = q

-- Run cmd in sh; its stdout without trailing white space.
M.capture = capture

M.temp_dir = temp_dir

function M.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Remove a directory made by temp_dir, unless GHL_SPEC_KEEP is set.
function M.remove_dir(dir)
  if dir and not os.getenv("GHL_SPEC_KEEP") then
    os.execute("rm -rf " .. q(dir))
  end
end

-- Whether pid is a process that has not ended (a zombie counts as ended).
function M.alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return false end
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- Start cmd in the background with its output in <dir>/<name>.out; its exit
-- status lands in <dir>/<name>.rc once it has ended. Returns
-- { pid, pipe, rc_file, out }.
function M.spawn(dir, name, cmd)
  local rc = dir .. "/" .. name .. ".rc"
  os.remove(rc)
  local sh = "(" .. cmd .. ") >" .. q(dir .. "/" .. name .. ".out") .. " 2>&1 </dev/null & p=$!; echo $p; wait $p; echo $? >"
    .. q(rc)
  local pipe = assert(io.popen("sh -c " .. q(sh), "r"))
  local pid = pipe:read("*l")
  assert(pid and pid:match("^%d+$"), "could not start " .. name)
  return { pid = pid, pipe = pipe, rc_file = rc, out = dir .. "/" .. name .. ".out" }
end

-- End a process from spawn: TERM, then KILL if it is still there after
-- `seconds` (5 by default). Idempotent.
function M.stop_process(proc, seconds)
  if not proc or not proc.pipe then return end
  if M.alive(proc.pid) then os.execute("kill -TERM " .. proc.pid .. " 2>/dev/null") end
  if not M.wait_for(function() return not M.alive(proc.pid) end, seconds or 5) then
    os.execute("kill -KILL " .. proc.pid .. " 2>/dev/null")
    M.wait_for(function() return not M.alive(proc.pid) end, 5)
  end
  proc.pipe:close()
  proc.pipe = nil
end

---------------------------------------------------------------------------
-- Assertions

-- How many keys t has (get_messages' results are keyed by id).
function M.count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

function M.is_integer(v)
  if type(v) ~= "number" then return false end
  if math.type then return math.type(v) == "integer" end
  return v % 1 == 0
end

function M.is_float(v)
  if type(v) ~= "number" then return false end
  if math.type then return math.type(v) == "float" end
  return true
end

-- Fails (without showing the token) if the token appears anywhere in value:
-- strings, table keys and values, recursively, metatables' __index tables included.
function M.assert_no_token(value, token, what)
  token = token or M.TOKEN
  local luassert = require("luassert")
  local seen = {}
  local function walk(v, path)
    local t = type(v)
    if t == "string" then
      if v:find(token, 1, true) then
        luassert(false, "the token appears in " .. (what or "value") .. path)
      end
      -- also the bare secret part, in case a prefix got cut
      local tail = token:sub(-12)
      if #tail >= 8 and v:find(tail, 1, true) then
        luassert(false, "part of the token appears in " .. (what or "value") .. path)
      end
    elseif t == "table" and not seen[v] then
      seen[v] = true
      for k, x in pairs(v) do
        walk(k, path .. "[a key]")
        walk(x, path .. "." .. tostring(k))
      end
      local mt = getmetatable(v)
      if type(mt) == "table" and type(mt.__index) == "table" then
        walk(mt.__index, path .. ".<__index>")
      end
    end
  end
  walk(value, "")
end

return M
