-- ghl.nvim: ghl for Neovim (0.7 and later, LuaJIT).
--
--   local ghl_nvim = require("ghl.nvim")
--   ghl_nvim.get_message(id, opts, function(message, errmsg, info)
--     ...  -- runs on the main loop: every Neovim API is allowed here
--   end)
--   local client = ghl_nvim.new(opts)
--   client:list_messages(conversation_id, { limit = 20 }, nil, function(page, errmsg, info) end)
--   client:each_message(conversation_id, nil, nil, on_item, on_done)
--
-- Every call returns at once; the callback is called once, through
-- vim.schedule, with the three values the C module's method returns. Misuse
-- (a bad id or option, a callback that is not a function) raises in the
-- caller before anything is sent, as in the C module; everything else
-- arrives through the callback.
--
-- How: everything runs on Neovim's main loop, in the caller's own Lua state.
-- The C module keeps a "looped" client per option set (ghl._looped_client):
-- libcurl's multi handle with its sockets in an epoll set of the client's
-- own. This adapter watches that one descriptor with a libuv poll handle
-- and keeps one libuv timer (libcurl's timeouts, retry waits); on either it
-- calls client:_step(), which never blocks and hands back the fetches that
-- are finished. No thread, no second Lua state: results are made in this
-- state (its ghl.MESSAGE_TYPES, ghl.null as everywhere), nothing waits for a
-- pool thread, and quitting Neovim never waits for a fetch in flight.

local M = {}

local unpack_args = table.unpack or unpack -- luacheck: ignore (5.1, LuaJIT)

local ENGINES_MAX = 16 -- option sets with a client of their own; idle ones past that are closed

local engines = {}     -- shared looped client -> its engine (ghl_nvim.get_message)
local engine_count = 0
local uses = 0

local function host_failure(errmsg)
  return nil, "ghl: " .. tostring(errmsg):gsub("^ghl: ", ""), { kind = "host" }
end

local function deliver(callback, msg, errmsg, info)
  vim.schedule(function() callback(msg, errmsg, info) end)
end

local Engine = {}
Engine.__index = Engine

-- The libuv handles of a looped client. Nothing here may raise inside a
-- libuv callback: a step's failures go to the callbacks.
local function new_engine(client)
  local uv = vim.loop
  local e = setmetatable({
    client = client,
    callbacks = {}, -- tag -> callback
    waiting = 0,
    deferred = {},  -- calls that came while a step ran (from a finalizer or hook)
    stepping = false,
    used = 0,
  }, Engine)
  e.poll = uv.new_poll(client:_fd())
  e.timer = uv.new_timer()
  e.on_ready = function() e:step() end
  e.poll:start("r", e.on_ready)
  return e
end

-- Queues client method `method` with the n arguments in args.
function Engine:add(method, args, n, callback)
  if self.stepping then
    self.deferred[#self.deferred + 1] = { method, args, n, callback }
    return
  end
  local tag = self.client:_add(method, unpack_args(args, 1, n))
  self.callbacks[tag] = callback
  self.waiting = self.waiting + 1
  self.timer:start(0, 0, self.on_ready) -- the transfer starts on the next loop turn
end

function Engine:finish(tag, msg, errmsg, info)
  local callback = self.callbacks[tag]
  if callback == nil then return end
  self.callbacks[tag] = nil
  self.waiting = self.waiting - 1
  deliver(callback, msg, errmsg, info)
end

function Engine:step()
  if self.closed then return end
  self.stepping = true
  local ok, results, wait = pcall(self.client._step, self.client)
  self.stepping = false
  if ok then
    for i = 1, #results do
      local r = results[i]
      self:finish(r[1], r[2], r[3], r[4])
    end
  else
    -- Lua code that ran inside the step (a finalizer, a hook) raised while
    -- a result was made: that fetch gets the error, the rest go on
    local got, tag = pcall(self.client._interrupted, self.client)
    if got and tag then self:finish(tag, host_failure(results)) end
    wait = 0
  end
  if wait then self.timer:start(wait, 0, self.on_ready) else self.timer:stop() end
  local deferred = self.deferred
  if #deferred > 0 then
    self.deferred = {}
    for i = 1, #deferred do
      local d = deferred[i]
      local added, why = pcall(self.add, self, d[1], d[2], d[3], d[4])
      if not added then deliver(d[4], host_failure(why)) end
    end
  end
end

-- Stops the handles and closes the client; its fetches are dropped.
function Engine:close()
  self.closed = true
  self.poll:stop()
  self.poll:close() -- before the client closes the descriptor it watches
  self.timer:stop()
  self.timer:close()
  self.client:close()
end

-- Past ENGINES_MAX engines, closes the least recently used idle one.
local function close_an_idle_engine()
  local oldest
  for _, e in pairs(engines) do
    if e.waiting == 0 and not e.stepping and (oldest == nil or e.used < oldest.used) then oldest = e end
  end
  if oldest == nil then return end
  engines[oldest.client] = nil
  engine_count = engine_count - 1
  oldest:close()
end

local function engine_for(opts)
  local ok, client = pcall(require("ghl")._looped_client, opts) -- bad options raise, unprefixed
  if not ok then error(client, 0) end
  local e = engines[client]
  if e == nil then
    if engine_count >= ENGINES_MAX then close_an_idle_engine() end
    e = new_engine(client)
    engines[client] = e
    engine_count = engine_count + 1
  end
  uses = uses + 1
  e.used = uses
  return e
end

local function check_callback(name, f)
  if type(f) ~= "function" then
    error("ghl: bad argument '" .. name .. "' (a function expected, got " .. type(f) .. ")", 0)
  end
end

-- ghl_nvim.get_message(id, opts, callback)
function M.get_message(id, opts, callback)
  check_callback("callback", callback)
  -- misuse raises here, with the C module's message (LuaJIT would prefix a
  -- position), before anything is sent; a token function is not called yet
  local ok, why = pcall(require("ghl")._check_id, id) -- called from pcall: no position prefix
  if not ok then error(why, 0) end
  local e = engine_for(opts)
  e:add("get_message", { id, opts }, 2, callback)
end

---------------------------------------------------------------------------
-- Clients: ghl_nvim.new(opts), with every method of a C client

local Client = {}
Client.__index = Client

-- The client's methods that take their C method's arguments, then a callback.
local METHODS = {
  get_message = 2, get_email = 2, get_conversation = 2, list_messages = 3,
  search_conversations = 2, send_message = 2, get_recording = 3, request = 4,
}

-- ghl_nvim.new([opts]): a client of its own (its connections, its fetches).
function M.new(opts)
  local client = require("ghl")._looped_client(opts, true)
  return setmetatable({ engine = new_engine(client) }, Client)
end

-- client:<method>(args..., callback): the C method's arguments (nil where
-- left out), and last the callback.
for name, arity in pairs(METHODS) do
  Client[name] = function(self, ...)
    local n = select("#", ...)
    local callback = n > 0 and select(n, ...) or nil
    check_callback("callback", callback)
    local args = { ... }
    args[n] = nil
    if self.engine.closed then error("ghl: the client is closed", 0) end
    if n - 1 > arity then error("ghl: " .. name .. " takes " .. arity .. " arguments and a callback", 0) end
    -- misuse raises in the caller: the C side reads the arguments at once
    self.engine:add(name, args, arity, callback)
  end
end

-- Walks the pages of `page_method` (args before the query in `ids`),
-- calling on_item(item, info) for each item; on_done(true, nil, info) at
-- the end (also when on_item returned false, which stops the walk), or
-- on_done(nil, errmsg, info) when a page failed.
local function walk(self, iterator, page_method, ids, query, opts, on_item, on_done)
  check_callback("on_item", on_item)
  check_callback("on_done", on_done)
  if self.engine.closed then error("ghl: the client is closed", 0) end
  local own_query = {}
  for k, v in pairs(query or {}) do own_query[k] = v end
  local function fetch()
    local args = { unpack_args(ids) }
    args[#ids + 1], args[#ids + 2] = own_query, opts
    self.engine:add(page_method, args, #ids + 2, function(page, errmsg, info)
      if not page then return on_done(nil, errmsg, info) end
      local items = page.messages or page.conversations
      for i = 1, #items do
        if on_item(items[i], info) == false then return on_done(true, nil, info) end
      end
      if require("ghl")._next_page(iterator, page, own_query) then
        local ok, why = pcall(fetch)
        if not ok then on_done(nil, host_failure(why)) end
      else
        on_done(true, nil, info)
      end
    end)
  end
  fetch() -- the first page: misuse raises here
end

-- client:each_message(conversation_id, query, opts, on_item, on_done)
function Client:each_message(conversation_id, query, opts, on_item, on_done)
  walk(self, "each_message", "list_messages", { conversation_id }, query, opts, on_item, on_done)
end

-- client:each_conversation(query, opts, on_item, on_done)
function Client:each_conversation(query, opts, on_item, on_done)
  walk(self, "each_conversation", "search_conversations", {}, query, opts, on_item, on_done)
end

-- client:get_messages(ids [, opts], callback): callback(messages, failures)
-- once, both keyed by id, as the C method returns them; at most
-- opts.concurrency (default 8) of this call's fetches in flight.
function Client:get_messages(ids, opts, callback)
  if callback == nil and type(opts) == "function" then opts, callback = nil, opts end
  check_callback("callback", callback)
  if self.engine.closed then error("ghl: the client is closed", 0) end
  if type(ids) ~= "table" then error("ghl: bad argument 'ids' (table expected, got " .. type(ids) .. ")", 0) end
  local ghl = require("ghl")
  local todo, seen = {}, {}
  for i = 1, #ids do -- every id checked before anything is sent; duplicates fetched once
    ghl._check_id(ids[i])
    if not seen[ids[i]] then
      seen[ids[i]] = true
      todo[#todo + 1] = ids[i]
    end
  end
  local per_call = {}
  for k, v in pairs(opts or {}) do if k ~= "concurrency" then per_call[k] = v end end
  local limit = (opts and opts.concurrency) or 8
  local messages, failures = {}, {}
  local next_i, running, finished = 1, 0, 0
  if #todo == 0 then return deliver(callback, messages, failures) end
  local start
  local function done(id, msg, errmsg, info)
    running, finished = running - 1, finished + 1
    if msg then messages[id] = msg else info.errmsg = errmsg failures[id] = info end
    if finished == #todo then return callback(messages, failures) end
    start()
  end
  start = function()
    while running < limit and next_i <= #todo do
      local id = todo[next_i]
      next_i, running = next_i + 1, running + 1
      self.engine:add("get_message", { id, per_call }, 2, function(msg, errmsg, info)
        done(id, msg, errmsg, info)
      end)
    end
  end
  self.engine.client:_check_options(opts) -- misuse raises here, concurrency included
  start()
end

-- client:rate_limit(): the last response's figures, as the C method.
function Client:rate_limit()
  if self.engine.closed then error("ghl: the client is closed", 0) end
  return self.engine.client:rate_limit()
end

-- client:close(): drops what is in flight (no callback is called for it).
function Client:close()
  if not self.engine.closed then self.engine:close() end
end

return M
