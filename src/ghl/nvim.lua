-- ghl.nvim: ghl for Neovim (0.7 and later, LuaJIT).
--
--   require("ghl.nvim").get_message(id, opts, function(message, errmsg, info)
--     ...  -- runs on the main loop: every Neovim API is allowed here
--   end)
--
-- get_message returns at once; the callback is called once, through
-- vim.schedule, with the same three values ghl.get_message returns. Misuse
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

local ENGINES_MAX = 16 -- option sets with a client of their own; idle ones past that are closed

local engines = {}     -- looped client -> its engine
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

function Engine:add(id, opts, callback)
  if self.stepping then
    self.deferred[#self.deferred + 1] = { id, opts, callback }
    return
  end
  local tag = self.client:_add("get_message", id, opts)
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
      local added, why = pcall(self.add, self, d[1], d[2], d[3])
      if not added then deliver(d[3], host_failure(why)) end
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
  local client = require("ghl")._looped_client(opts)
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

-- ghl_nvim.get_message(id, opts, callback)
function M.get_message(id, opts, callback)
  local ghl = require("ghl")
  if type(callback) ~= "function" then
    error("ghl: bad argument 'callback' (a function expected, got " .. type(callback) .. ")", 0)
  end
  -- misuse raises here, with the C module's message, before anything is sent
  local ok, err = pcall(ghl.get_message_request, id, opts)
  if not ok then error(err, 0) end
  local e = engine_for(opts)
  e:add(id, opts, callback)
end

return M
