-- ghl.resty: ghl for OpenResty / lua-nginx-module, on nginx cosockets.
--
--   local ghl_resty = require("ghl.resty")
--   local msg, err, info = ghl_resty.get_message(id, opts)
--   local messages, failures = ghl_resty.get_messages(ids, opts)
--   local client = ghl_resty.new(opts)     -- every method of ghl.new(opts)
--   local page, err, info = client:list_messages(conversation_id, { limit = 20 })
--
-- The same arguments and returns as ghl.get_message, client:get_messages and
-- the C client's methods,
-- usable wherever cosockets work (rewrite_by_lua*, access_by_lua*,
-- content_by_lua*, ngx.timer.at callbacks), never blocking the event loop: a
-- worker holds as many fetches in flight as it holds connections.
--
-- Split of the work: this file only moves bytes (connect, TLS handshake,
-- send, receive, keep-alive), and calls a token function in the request's
-- own light thread, one call at a time per client. The C core
-- (ghl._exchange_call, src/exchange.c and src/http1.c) does what it does for
-- libcurl: the method's arguments, the request bytes, reading the HTTP/1.1
-- response from the bytes received (status, the headers ghl reads,
-- Content-Length or chunked framing, max_body_size), the retry rule and its
-- waits, the token rule, and the three returns with the token cut out.
--
-- nginx.conf needs `resolver` for a host name (services.leadconnectorhq.com)
-- and `lua_ssl_trusted_certificate` to verify TLS; the options `cainfo` and
-- `proxy` raise, as cosockets cannot honour them. One option of its own:
-- `pool_size`, the idle connections kept per pool (host, port, TLS settings).

local ghl = require("ghl")

local new_call, new_window, next_page = ghl._exchange_call, ghl._window, ghl._next_page
local ngx = ngx -- luacheck: ignore
local tcp = ngx and ngx.socket and ngx.socket.tcp
local now, sleep = ngx and ngx.now, ngx and ngx.sleep
local spawn, wait, kill = ngx and ngx.thread.spawn, ngx and ngx.thread.wait, ngx and ngx.thread.kill
local floor, min = math.floor, math.min
local find, match = string.find, string.match
local unpack = unpack or table.unpack -- luacheck: ignore
local running, status_of = coroutine.running, coroutine.status

local M = {
  null = ghl.null,
  -- nginx's own default pool (30) would make 512 fetches in flight open and
  -- close connections all the time
  POOL_SIZE = 512,
  KEEPALIVE_TIMEOUT = 60, -- seconds an idle connection stays in the pool
  -- the longest a request waits for another one's call of the client's
  -- token function to end
  TOKEN_WAIT = 60,
  -- handshakes of this worker that failed verification within sslhandshake's
  -- call (see handshake below); read by the spec
  _verify_failed_at_once = 0,
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

-- Released exchanges (empty handles) for the next requests of this Lua
-- state: a request then makes no userdata, and the collector runs no
-- finalizer for it. One that raised or was abandoned is left to the collector.
local SPARE_MAX = 1024
local spare_handles, spare_count = {}, 0

-- ghl._exchange_call (on a spare handle if there is one), raising its
-- misuse errors as the C module does (no position: LuaJIT would name this
-- file's line).
local function exchange(name, opts, token, batch, ...)
  local ok, ex
  if spare_count > 0 then
    local h = spare_handles[spare_count]
    spare_handles[spare_count], spare_count = nil, spare_count - 1
    ok, ex = pcall(h.reuse, h, name, opts, token, batch, ...)
    if not ok then h:release() end -- what a raise left half made goes now
  else
    ok, ex = pcall(new_call, name, opts, token, batch, ...)
  end
  if not ok then error(ex, 0) end
  return ex
end

-- ex is over: its memory goes back now, its handle to the spares (unless
-- a raise inside one of its methods left it busy: the collector frees it).
local function release(ex)
  if ex:release() and spare_count < SPARE_MAX then
    spare_count = spare_count + 1
    spare_handles[spare_count] = ex
  end
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
-- The first read keeps the timeout set as the attempt began while no time
-- has passed since (ngx.now() moves only between events: on a kept
-- connection, or after a connect and send that did not wait).
local function read_response(sock, ex, deadline, started, reused)
  local first = true
  while true do
    if not (first and (reused or now() == started)) then sock:settimeout(ms(deadline - now())) end
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

-- sock:sslhandshake(nil, server_name, verify) -> true | nil, err.
-- A handshake that completes within the call (a fast server, on loopback)
-- and then fails verification makes lua-resty-core 0.1.25 (Debian 12's)
-- raise "assertion failed!" in place of returning the failure: its C side
-- reports success for that path, and its check of the recorded result is an
-- assert. That result is asked for again here, into buffers of our own: an
-- error there is the failure the usual path returns (same text); anything
-- else raised goes on up.
local function failure_recorded(sock)
  local ffi = require("ffi")
  local base = require("resty.core.base")
  local sess, msg, code = ffi.new("void *[1]"), ffi.new("char *[1]"), ffi.new("int[1]")
  local rc = ffi.C.ngx_http_lua_ffi_socket_tcp_get_sslhandshake_result(base.get_request(), sock[1], sess, msg, code)
  if rc ~= base.FFI_ERROR or msg[0] == nil then return nil end
  local text = ffi.string(msg[0])
  if code[0] ~= 0 then text = tonumber(code[0]) .. ": " .. text end
  return text
end

local function handshake(sock, server_name, verify)
  local ok, done, err = pcall(sock.sslhandshake, sock, nil, server_name, verify)
  if ok then return done, err end
  local asked, text = pcall(failure_recorded, sock)
  if not (asked and text) then error(done, 0) end
  M._verify_failed_at_once = M._verify_failed_at_once + 1
  return nil, text
end

-- Where an exchange connects, by pool key (scheme, host, port, TLS
-- settings) and pool size, made once each: connect's options, and whether
-- it is TLS and verified. One table less for the collector per request.
local places = {}

local function place_of(pool_key, pool_size, https, host)
  local by_size = places[pool_key]
  if by_size == nil then
    by_size = {}
    places[pool_key] = by_size
  end
  local p = by_size[pool_size]
  if p == nil then
    p = {
      connect = { pool = pool_key, pool_size = pool_size }, pool_size = pool_size,
      https = https, verify = find(pool_key, ":verify", 1, true) ~= nil, host = host,
    }
    by_size[pool_size] = p
  end
  return p
end

-- One attempt on a pooled or new connection to place p (port, server_name:
-- ex:target's) sending `request`; reports to ex what happened.
local function attempt(ex, p, port, server_name, request, repeat_safe, connect_timeout, timeout)
  local started = now()
  local deadline = started + timeout
  for _ = 1, 2 do -- a second time only for a kept connection found closed
    local sock = tcp()
    local rest = deadline - now()
    local left = ms(rest)
    sock:settimeouts(ms(min(connect_timeout, rest)), left, left)
    local ok, err = sock:connect(p.host, port, p.connect)
    if not ok then
      local what = connect_failure(err)
      if what == "resolve" and find(err, "no resolver", 1, true) then
        err = err .. " (add a resolver directive to nginx.conf)"
      end
      return ex:fail(what, err)
    end
    local reused = sock:getreusedtimes() > 0
    if p.https and not reused then
      sock:settimeout(ms(deadline - now()))
      ok, err = handshake(sock, server_name, p.verify)
      if not ok then
        sock:close()
        return ex:fail(tls_failure(err), "TLS handshake: " .. err)
      end
    end
    ok, err = sock:send(request) -- bounded by the send timeout set at the start
    local whole, what, text
    if not ok then
      whole, what, text = false, err == "timeout" and "timeout" or "stale", err
    else
      whole, what, text = read_response(sock, ex, deadline, started, reused)
    end
    if whole then
      if what then -- may be kept: back to the worker's pool
        sock:setkeepalive(M.KEEPALIVE_TIMEOUT * 1000, p.pool_size)
      else
        sock:close()
      end
      return
    end
    sock:close()
    if what == nil then return end -- the C side knows already
    -- a request not safe to repeat that was sent whole may have arrived
    if what ~= "stale" or not reused or (ok and not repeat_safe) then
      if what == "stale" then what = ok and io_failure(text) or "send" end
      if what == "timeout" then text = "Operation timed out after " .. ms(now() - started) .. " milliseconds" end
      return ex:fail(what, text)
    end
    -- the server closed a kept connection before answering: once more at once
  end
  return ex:fail("closed", "the server closed the connection before answering")
end

-- ---- tokens from a provider function ----
-- A client with a token function asks it in the light thread of the request
-- that needs a token: lazily for the first, and after a 401 with the token
-- that failed. While one such call is in flight for the client, every other
-- request of the worker that needs a token waits for it (an ngx.semaphore)
-- and takes its answer; a request whose token was replaced meanwhile just
-- goes again with the new one. A refusal (nil, the same token, a raise) is
-- kept for the rest of the call (get_messages' other ids), as in C.

local FIRST = {} -- the key of the first token's answer in a call's refusals

local function new_semaphore()
  local semaphore = require("ngx.semaphore")
  return semaphore.new(0)
end

-- nil, errmsg, {kind = "token"} (with the attempts made, if any)
local function token_failure(errmsg, attempts)
  local info = { kind = "token" }
  if attempts and attempts > 0 then info.attempts = attempts end
  return nil, errmsg, info
end

-- What the client's provider says when asked with `failed` (nil: the first
-- token): "new", token | "same" | "failed", errmsg. ex judges the answer
-- and cuts its tokens out of a raised message; refused holds this call's
-- refusals.
local function ask_token(cl, ex, failed, refused)
  for _ = 1, 3 do -- a wait for another question ends in a question of ours
    if failed == nil then
      if cl.token ~= nil then return "new", cl.token end
    elseif cl.token ~= failed then -- replaced meanwhile: no need to ask
      return "new", cl.token
    end
    local earlier = refused[failed or FIRST]
    if earlier then return earlier[1], earlier[2] end
    local rec = cl.refresh
    if rec == nil then
      rec = { failed = failed, sema = new_semaphore(), waiters = 0, thread = running() }
      cl.refresh = rec
      local ok, value
      if failed == nil then ok, value = pcall(cl.provider) else ok, value = pcall(cl.provider, failed) end
      local judged, status, answer = pcall(ex.token_answer, ex, ok, value, failed ~= nil)
      if not judged then status, answer = "failed", "ghl: token provider failed: " .. tostring(status) end
      if status == "new" then cl.token = answer end
      rec.status, rec.answer = status, answer
      cl.refresh = nil
      if rec.waiters > 0 then rec.sema:post(rec.waiters) end
      if status ~= "new" then refused[failed or FIRST] = { status, answer } end
      return status, answer
    end
    if status_of(rec.thread) == "dead" then
      -- the thread that asked was killed mid-call (ngx.thread.kill, the
      -- request aborted): its call counts as never made
      if cl.refresh == rec then cl.refresh = nil end
    else
      rec.waiters = rec.waiters + 1
      local woke = rec.sema:wait(M.TOKEN_WAIT)
      if not woke and rec.status == nil then
        if cl.refresh == rec then cl.refresh = nil end -- the next request asks again
        return "failed", "ghl: token provider failed: another request's call of it did not end within "
          .. M.TOKEN_WAIT .. " s"
      end
      if rec.failed == failed then -- the same question: its answer is ours
        if rec.status ~= "new" then refused[failed or FIRST] = { rec.status, rec.answer } end
        return rec.status, rec.answer
      end
    end
  end
  return "failed", "ghl: token provider failed: no answer for this request"
end

-- The client keeps the last response's rate-limit figures (false: it had none).
local function keep_rate_limit(cl, ex)
  local got, figures = ex:rate_limit()
  if got then cl.last_rate_limit = figures or false end
end

-- Attempts and waits until the C retry rule says done; the three returns.
-- cl (a client, or nil) gets the rate-limit figures and, if it has a token
-- function, renews `token` (what ex carries) after a 401, once.
local function run(ex, pool_size, window, cl, refused, token)
  local scheme, host, port, server_name, pool_key, repeat_safe, connect_timeout, timeout, request = ex:target()
  local p = place_of(pool_key, pool_size, scheme == "https", host)
  local asks = cl ~= nil and cl.provider ~= nil -- a 401 may want a new token
  local msg, err, info
  while true do
    attempt(ex, p, port, server_name, request, repeat_safe, connect_timeout, timeout)
    if window then window:take(ex) end
    local delay
    delay, msg, err, info = ex:next_attempt(not asks)
    if delay then
      sleep(delay) -- a timer that keeps an exiting worker alive until it fires
    elseif not asks then
      if cl then keep_rate_limit(cl, ex) end
      release(ex)
      return msg, err, info
    elseif ex:wants_token() then
      local status, answer = ask_token(cl, ex, token, refused)
      if status == "failed" then
        keep_rate_limit(cl, ex)
        local attempts = ex:attempts()
        release(ex)
        return token_failure(answer, attempts)
      end
      if status ~= "new" then break end -- the 401 as it is
      ex:renew(answer)
      token, request = answer, ex:request()
    else
      break
    end
  end
  keep_rate_limit(cl, ex)
  msg, err, info = ex:result()
  release(ex)
  return msg, err, info
end

-- ---- the client ----

local Client = {}
Client.__index = Client

-- A client's state (its options, token, the provider call in flight, the
-- last figures), out of the caller's sight: the client table itself holds
-- nothing, so no dump of it shows the token.
local states = setmetatable({}, { __mode = "k" })

local function check_open(cl, name)
  local st = states[cl]
  if st == nil then
    error("ghl: bad self for '" .. name .. "' (a ghl.resty client expected; call it as client:" .. name .. "(...))", 0)
  end
  if st.closed then error("ghl: the client is closed", 0) end
  -- the client's own token function calling it would wait for itself
  if st.refresh and st.refresh.thread == running() then error("ghl: the client is busy", 0) end
  return st
end

-- The exchange of method `name` with its arguments, checked as the C client
-- checks them; batch: get_messages' per-call keys too.
local function client_exchange(cl, name, batch, ...)
  return exchange(name, cl.opts, nil, batch, ...)
end

-- Runs one exchange of this client; with a provider, the exchange gets the
-- client's token now (asked for first, if there is none yet). refused: the
-- call's refusals.
local function client_run(cl, ex, refused, window)
  local token
  if cl.provider then
    local status, answer = ask_token(cl, ex, nil, refused)
    if status ~= "new" then
      release(ex)
      return token_failure(answer, 0)
    end
    ex:set_token(answer)
    token = answer
  end
  return run(ex, cl.pool_size, window, cl, refused, token)
end

local function method(name)
  return function(self, ...)
    local st = check_open(self, name)
    check_phase()
    return client_run(st, client_exchange(st, name, false, ...), {})
  end
end

Client.get_message = method("get_message")
Client.request = method("request")
Client.get_email = method("get_email")
Client.get_conversation = method("get_conversation")
Client.list_messages = method("list_messages")
Client.search_conversations = method("search_conversations")
Client.send_message = method("send_message")
Client.get_recording = method("get_recording")

-- messages, failures for ids: at most `concurrency` light threads in
-- flight, started only while the rate-limit window has room, as the C
-- batch does. make(id) gives an id's exchange; fetch(ex, window) runs it.
local function batch(ids, make, fetch)
  if type(ids) ~= "table" then
    error("ghl: bad argument 'ids' (a table expected, got " .. type(ids) .. ")", 0)
  end
  local order, exchanges = {}, {}
  for i = 1, #ids do -- every id checked before anything is sent
    local id = ids[i]
    local ex = make(id)
    if not exchanges[id] then
      exchanges[id] = ex
      order[#order + 1] = id
    else
      release(ex)
    end
  end
  local probe = make("x")
  local concurrency, max_retry_delay = probe:batch()
  release(probe)
  local messages, failures = {}, {}
  local window = new_window(max_retry_delay)
  local slots, running_count, nxt = {}, 0, 1

  -- an error raised in a light thread comes back whole, raised again below
  local function one(slot, id)
    return slot, id, pcall(fetch, exchanges[id], window)
  end

  while nxt <= #order or running_count > 0 do
    while running_count < concurrency and nxt <= #order do
      local room, pause = window:room(running_count)
      if not room then
        if running_count == 0 then sleep(pause) end
        break
      end
      local slot = 1
      while slots[slot] do slot = slot + 1 end
      slots[slot] = spawn(one, slot, order[nxt])
      nxt, running_count = nxt + 1, running_count + 1
    end
    if running_count > 0 then
      local list = {}
      for _, th in pairs(slots) do list[#list + 1] = th end
      local ok, slot, id, fine, msg, err, info = wait(unpack(list))
      if not ok or not fine then
        for _, th in pairs(slots) do kill(th) end
        error(ok and msg or slot, 0)
      end
      slots[slot], running_count = nil, running_count - 1
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

--- client:get_messages(ids [, opts]) -> messages, failures (both keyed by id)
function Client:get_messages(ids, opts)
  local st = check_open(self, "get_messages")
  check_phase()
  local refused = {}
  return batch(ids, function(id)
    return client_exchange(st, "get_message", true, id, opts)
  end, function(ex, window)
    return client_run(st, ex, refused, window)
  end)
end

-- ---- iterators: page after page, as the loop asks ----
-- No coroutine of their own, so a loop may run anywhere a fetch may (and
-- across pcall); each step that needs a page fetches it in the loop's thread.

local PAGERS = {
  each_message = { fetch = "list_messages", has_id = true, items = "messages" },
  each_conversation = { fetch = "search_conversations", has_id = false, items = "conversations" },
}

local function each_next(st)
  while not st.done do
    local items, i = st.items, st.index
    if items and i < #items then
      st.index = i + 1
      return items[i + 1], nil, st.info
    end
    if st.last then
      st.done = true
      return nil
    end
    local cl, p = st.client, st.pager
    local page, err, info
    if p.has_id then
      page, err, info = cl[p.fetch](cl, st.id, st.query, st.opts)
    else
      page, err, info = cl[p.fetch](cl, st.query, st.opts)
    end
    if page == nil then -- false, errmsg, info once, then the end
      st.done = true
      return false, err, info
    end
    st.info, st.index = info, 0
    st.items = type(page[p.items]) == "table" and page[p.items] or nil
    if not next_page(st.name, page, st.query) then st.last = true end
  end
  return nil
end

local function iterator(name)
  local p = PAGERS[name]
  return function(self, ...)
    -- everything checked now, as the page method would; nothing fetched yet
    release(client_exchange(check_open(self, name), p.fetch, false, ...))
    local st = { client = self, pager = p, name = name, index = 0 }
    local query, opts
    if p.has_id then
      st.id, query, opts = ...
    else
      query, opts = ...
    end
    st.query = {} -- our own copy: the next page's key goes in there
    if query ~= nil then
      for k, v in next, query do st.query[k] = v end
    end
    st.opts = opts
    return each_next, st
  end
end

Client.each_message = iterator("each_message")
Client.each_conversation = iterator("each_conversation")

--- client:rate_limit() -> the last response's figures, or nil
function Client:rate_limit()
  local rl = check_open(self, "rate_limit").last_rate_limit
  if not rl then return nil end
  local copy = {}
  for k, v in pairs(rl) do copy[k] = v end
  return copy
end

--- client:close(): later calls raise; calls in flight end as they would
function Client:close()
  local st = states[self]
  if st == nil then error("ghl: bad self for 'close' (a ghl.resty client expected)", 0) end
  st.closed = true
end

function Client:__tostring()
  local st = states[self]
  return "ghl.resty client (" .. (st == nil and "?" or st.closed and "closed" or st.base_url) .. ")"
end

Client.__close = Client.close

-- A client over checked options of its own (o, a copy of the caller's),
-- and its state.
local function make_client(o, pool_size)
  local base = o.base_url or ghl.BASE_URL
  local cl = setmetatable({}, Client)
  local st = {
    opts = o,
    pool_size = pool_size,
    provider = type(o.token) == "function" and o.token or nil,
    base_url = (base:gsub("/+$", "")),
  }
  states[cl] = st
  return cl, st
end

--- new(opts) -> a client with every method of ghl.new(opts), on cosockets
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("ghl: options must be a table (got " .. type(opts) .. ")", 0)
  end
  local o, pool_size = split_options(opts)
  local own = {}
  for k, v in pairs(o or {}) do own[k] = v end
  release(exchange("get_message", own, nil, false, "x")) -- checks the options as ghl.new does
  return (make_client(own, pool_size))
end

-- ---- the module-level functions ----
-- With a token string: an exchange of their own, no client. With a token
-- function: a client of their own for the one call (a client made with
-- new() keeps its token between calls).

local function has_provider(opts)
  return type(opts) == "table" and type(opts.token) == "function"
end

--- get_message(id [, opts]) -> message, nil, info | nil, errmsg, info
function M.get_message(id, opts)
  check_phase()
  if has_provider(opts) then
    ghl._check_id(id)
    return M.new(opts):get_message(id)
  end
  local o, pool_size = split_options(opts)
  return run(exchange("get_message", o, nil, false, id), pool_size)
end

--- get_messages(ids [, opts]) -> messages, failures (both keyed by id)
function M.get_messages(ids, opts)
  check_phase()
  local o, pool_size = split_options(opts)
  if has_provider(o) then
    local _, cl = make_client(o, pool_size) -- o is checked with the first id
    local refused = {}
    return batch(ids, function(id)
      return client_exchange(cl, "get_message", true, id)
    end, function(ex, window)
      return client_run(cl, ex, refused, window)
    end)
  end
  return batch(ids, function(id)
    return exchange("get_message", o, nil, true, id)
  end, function(ex, window)
    return run(ex, pool_size, window)
  end)
end

--- oauth_token(form [, opts]) -> res, nil, info | nil, errmsg, info
-- ghl.oauth_token on cosockets: POST /oauth/token, form-encoded, no token,
-- never repeated once it may have arrived; no secret in errmsg or info, no
-- info.body.
function M.oauth_token(form, opts)
  check_phase()
  local o, pool_size = split_options(opts)
  return run(exchange("oauth_token", o, nil, false, form), pool_size)
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
