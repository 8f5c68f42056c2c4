-- ghl.resty: ghl for OpenResty / lua-nginx-module, on nginx cosockets.
--
--   local ghl_resty = require("ghl.resty")
--   local msg, err, info = ghl_resty.get_message(id, opts)
--   local messages, failures = ghl_resty.get_messages(ids, opts)
--
-- The same arguments and returns as ghl.get_message and client:get_messages,
-- usable wherever cosockets work (rewrite_by_lua*, access_by_lua*,
-- content_by_lua*, ngx.timer.at callbacks), never blocking the event loop: a
-- worker holds as many fetches in flight as it holds connections.
--
-- Split of the work: this file only moves bytes (connect, TLS handshake,
-- send, receive, keep-alive). The C core (ghl._exchange, src/exchange.c and
-- src/http1.c) does what it does for libcurl: the request bytes, reading the
-- HTTP/1.1 response from the bytes received (status, the headers ghl reads,
-- Content-Length or chunked framing, max_body_size), the retry rule and its
-- waits, and the three returns with the token cut out.
--
-- nginx.conf needs `resolver` for a host name (services.leadconnectorhq.com)
-- and `lua_ssl_trusted_certificate` to verify TLS; the options `cainfo` and
-- `proxy` raise, as cosockets cannot honour them. One option of its own:
-- `pool_size`, the idle connections kept per pool (host, port, TLS settings).

local ghl = require("ghl")

local new_exchange, new_window = ghl._exchange, ghl._window
local ngx = ngx -- luacheck: ignore
local tcp = ngx and ngx.socket and ngx.socket.tcp
local now, sleep = ngx and ngx.now, ngx and ngx.sleep
local spawn, wait, kill = ngx and ngx.thread.spawn, ngx and ngx.thread.wait, ngx and ngx.thread.kill
local floor, min = math.floor, math.min
local find, match = string.find, string.match
local unpack = unpack or table.unpack -- luacheck: ignore

local M = {
  null = ghl.null,
  -- nginx's own default pool (30) would make 512 fetches in flight open and
  -- close connections all the time
  POOL_SIZE = 512,
  KEEPALIVE_TIMEOUT = 60, -- seconds an idle connection stays in the pool
}

-- Where cosockets (and light threads) work.
local PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local function check_phase()
  if not tcp then
    error("ghl: ghl.resty needs OpenResty or nginx's lua module (ngx.socket.tcp)", 0)
  end
  local phase = ngx.get_phase()
  if not PHASES[phase] then
    error("ghl: ghl.resty cannot fetch in the '" .. phase .. "' phase (no cosockets there):"
      .. " call it from rewrite_by_lua*, access_by_lua*, content_by_lua* or an ngx.timer.at callback", 0)
  end
end

local UNSUPPORTED = {
  cainfo = "ghl: option 'cainfo' is not supported by ghl.resty: set lua_ssl_trusted_certificate in nginx.conf",
  proxy = "ghl: option 'proxy' is not supported by ghl.resty (cosockets cannot go through a proxy)",
}

-- A copy of opts without pool_size (ghl.resty's own), and pool_size.
local function split_options(opts)
  if type(opts) ~= "table" then return opts, M.POOL_SIZE end
  -- the common case: nothing to take out (the C side never changes the table)
  if opts.pool_size == nil and opts.cainfo == nil and opts.proxy == nil then return opts, M.POOL_SIZE end
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  for key, why in pairs(UNSUPPORTED) do
    if copy[key] ~= nil then error(why, 0) end
  end
  local size = copy.pool_size
  copy.pool_size = nil
  if size == nil then return copy, M.POOL_SIZE end
  if type(size) ~= "number" or size < 1 or size ~= floor(size) or size > 1e6 then
    error("ghl: option 'pool_size' must be an integer from 1 to 1000000", 0)
  end
  return copy, size
end

-- ghl._exchange, raising its misuse errors as the C module does (no
-- position: LuaJIT would name this file's line).
local function exchange(id, opts, batch)
  local ok, ex = pcall(new_exchange, id, opts, batch)
  if not ok then error(ex, 0) end
  return ex
end

local function ms(seconds)
  local n = floor(seconds * 1000 + 0.5)
  return n > 0 and n or 1
end

-- ---- one attempt ----

-- What a cosocket error means for the exchange.
local function connect_failure(err)
  if err == "timeout" then return "connect_timeout" end
  if find(err, "resolve", 1, true) then return "resolve" end
  return "connect"
end

local function tls_failure(err)
  if err == "timeout" then return "timeout" end
  -- "<X509 error number>: text" and "certificate host mismatch" are verification
  if match(err, "^%d+:") or find(err, "host mismatch", 1, true) then return "verify" end
  return "tls"
end

local function io_failure(err)
  if err == "timeout" then return "timeout" end
  if err == "closed" then return "closed" end
  return "recv"
end

-- Reads the answer into ex, each read bounded by what is left of the
-- attempt (one receive(n) would re-arm its timer on every packet); C reads
-- the HTTP (status, headers, Content-Length or chunked framing, the body
-- limit) from the bytes. Returns true and whether the connection may be
-- kept; or false, what failed and its text (what is nil when ex knows
-- already; "stale" when the connection was closed before any byte came).
local function read_response(sock, ex, deadline)
  local first = true
  while true do
    sock:settimeout(ms(deadline - now()))
    local data, err = sock:receiveany(65536)
    if not data then
      if first and err ~= "timeout" then return false, "stale", err end
      if err == "closed" then
        if ex:closed() then return true, false end
        return false
      end
      return false, io_failure(err), "reading the response: " .. err
    end
    first = false
    local whole, keep = ex:feed(data)
    if whole ~= nil then return whole, keep end
  end
end

-- One attempt on a pooled or new connection; reports to ex what happened.
local function attempt(ex, t)
  local started = now()
  local deadline = started + t.timeout
  for _ = 1, 2 do -- a second time only for a kept connection found closed
    local sock = tcp()
    sock:settimeouts(ms(min(t.connect_timeout, deadline - now())), ms(deadline - now()), ms(deadline - now()))
    local ok, err = sock:connect(t.host, t.port, t.pool_opts)
    if not ok then
      local what = connect_failure(err)
      if what == "resolve" and find(err, "no resolver", 1, true) then
        err = err .. " (add a resolver directive to nginx.conf)"
      end
      return ex:fail(what, err)
    end
    local reused = sock:getreusedtimes() > 0
    if t.https and not reused then
      sock:settimeout(ms(deadline - now()))
      ok, err = sock:sslhandshake(nil, t.server_name, t.verify)
      if not ok then
        sock:close()
        return ex:fail(tls_failure(err), "TLS handshake: " .. err)
      end
    end
    ok, err = sock:send(t.request) -- bounded by the send timeout set at the start
    local whole, what, text
    if not ok then
      whole, what, text = false, reused and err ~= "timeout" and "stale" or (err == "timeout" and "timeout" or "send"), err
    else
      whole, what, text = read_response(sock, ex, deadline)
    end
    if whole then
      if what then -- may be kept: back to the worker's pool
        sock:setkeepalive(M.KEEPALIVE_TIMEOUT * 1000, t.pool_size)
      else
        sock:close()
      end
      return
    end
    sock:close()
    if what == nil then return end -- the C side knows already
    if what ~= "stale" or not reused then
      if what == "stale" then what = ok and io_failure(text) or "send" end
      if what == "timeout" then text = "Operation timed out after " .. ms(now() - started) .. " milliseconds" end
      return ex:fail(what, text)
    end
    -- the server closed a kept connection before answering: once more at once
  end
  return ex:fail("closed", "the server closed the connection before answering")
end

-- What every attempt of an exchange connects to and sends.
local function target_of(ex, pool_size)
  local scheme, host, port, server_name, pool_key = ex:target()
  local connect_timeout, timeout = ex:timeouts()
  return {
    https = scheme == "https", host = host, port = port, server_name = server_name,
    verify = find(pool_key, ":verify", 1, true) ~= nil,
    pool_opts = { pool = pool_key, pool_size = pool_size },
    pool_size = pool_size, request = ex:request(),
    connect_timeout = connect_timeout, timeout = timeout,
  }
end

-- Attempts and waits until the C retry rule says done; the three returns.
local function run(ex, pool_size, window)
  local t = target_of(ex, pool_size)
  while true do
    attempt(ex, t)
    if window then window:take(ex) end
    local delay = ex:next_attempt()
    if not delay then break end
    sleep(delay) -- a timer that keeps an exiting worker alive until it fires
  end
  t.request = nil
  return ex:result()
end

--- get_message(id [, opts]) -> message, nil, info | nil, errmsg, info
function M.get_message(id, opts)
  check_phase()
  local o, pool_size = split_options(opts)
  return run(exchange(id, o), pool_size)
end

--- get_messages(ids [, opts]) -> messages, failures (both keyed by id)
-- At most opts.concurrency (default 8) light threads in flight, started
-- only while the rate-limit window has room, as the C batch does.
function M.get_messages(ids, opts)
  check_phase()
  if type(ids) ~= "table" then
    error("ghl: bad argument 'ids' (a table expected, got " .. type(ids) .. ")", 0)
  end
  local o, pool_size = split_options(opts)
  local order, exchanges = {}, {}
  for i = 1, #ids do -- every id checked before anything is sent
    local id = ids[i]
    local ex = exchange(id, o, true)
    if not exchanges[id] then
      exchanges[id] = ex
      order[#order + 1] = id
    end
  end
  local concurrency, max_retry_delay = exchange("x", o, true):batch()
  local messages, failures = {}, {}
  local window = new_window(max_retry_delay)
  local slots, running, nxt = {}, 0, 1

  local function fetch(slot, id)
    return slot, id, run(exchanges[id], pool_size, window)
  end

  while nxt <= #order or running > 0 do
    while running < concurrency and nxt <= #order do
      local room, pause = window:room(running)
      if not room then
        if running == 0 then sleep(pause) end
        break
      end
      local slot = 1
      while slots[slot] do slot = slot + 1 end
      slots[slot] = spawn(fetch, slot, order[nxt])
      nxt, running = nxt + 1, running + 1
    end
    if running > 0 then
      local list = {}
      for _, th in pairs(slots) do list[#list + 1] = th end
      local ok, slot, id, msg, err, info = wait(unpack(list))
      if not ok then
        for _, th in pairs(slots) do kill(th) end
        error(slot, 0)
      end
      slots[slot], running = nil, running - 1
      exchanges[id] = nil
      if msg ~= nil then
        messages[id] = msg
      else
        info.errmsg = err
        failures[id] = info
      end
    end
  end
  return messages, failures
end

-- Where the request body can be read.
local BODY_PHASES = { rewrite = true, access = true, content = true }

--- verify_webhook([opts]) -> event, nil, info | nil, errmsg, info
-- ghl.verify_webhook over the current request's raw body (read here, also
-- when nginx buffered it to a temporary file) and its headers.
function M.verify_webhook(opts)
  local phase = ngx and ngx.get_phase and ngx.get_phase()
  if not BODY_PHASES[phase] then
    error("ghl: verify_webhook reads the request body: call it from rewrite_by_lua*, access_by_lua*"
      .. " or content_by_lua*, not the '" .. tostring(phase) .. "' phase", 0)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil then
    local path = ngx.req.get_body_file() -- larger than client_body_buffer_size
    if path ~= nil then
      local f, why = io.open(path, "rb")
      if not f then error("ghl: cannot read the request body nginx buffered to " .. path .. ": " .. tostring(why), 0) end
      body = f:read("*a")
      f:close()
    end
  end
  -- get_headers() gives lower-case names, a list for a repeated one (which
  -- ghl.verify_webhook refuses); its default of 100 headers keeps an attacker
  -- from pushing the signature out of sight: the request then fails unsigned
  return ghl.verify_webhook(body or "", ngx.req.get_headers(), opts)
end

return M
