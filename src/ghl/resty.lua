-- ghl.resty: ghl for OpenResty / lua-nginx-module.
--
--   local ghl_resty = require("ghl.resty")
--   local msg, err, info = ghl_resty.get_message(id, opts)
--
-- Same arguments and returns as ghl.get_message, usable wherever the request
-- may yield (rewrite_by_lua*, access_by_lua*, content_by_lua*, ngx.timer.at
-- callbacks), and never blocking the worker's event loop.
--
-- How: the blocking libcurl call runs on an nginx thread pool through
-- ngx.run_worker_thread (lua-nginx-module >= 0.10.21). nginx.conf needs, in
-- the main context:
--
--   thread_pool ghl threads=4;
--
-- The calling coroutine yields until the thread is done; the event loop keeps
-- serving other requests meanwhile. Each job runs in a Lua VM that nginx
-- keeps for worker threads (created with the caller's package.path and
-- package.cpath, reused from one job to the next), so ghl's per-state client
-- cache keeps the connection (keep-alive, TLS session) between calls made on
-- the same VM. A thread is busy for the whole call, retries and their waits
-- included: size `threads=` for the number of fetches in flight at once.
--
-- Why not cosockets: ngx.socket.tcp would make the I/O native to the event
-- loop, but then this module would have to reimplement in Lua what the C
-- module does with libcurl (TLS verification against a CA file, proxies,
-- gzip/deflate, retries with Retry-After, rate-limit headers, body limits)
-- and keep the two in step. Worker threads run the very same C code as every
-- other host, at the cost of one pool thread per fetch in flight.
--
-- What crosses the thread boundary: run_worker_thread copies booleans,
-- numbers, strings, lightuserdata and (nested, metatable-less) tables both
-- ways. The message table and info are plain data, and ghl.null is the NULL
-- lightuserdata, so a null array element arrives as the same value as
-- ngx.null and cjson.null. MESSAGE_TYPES additions made by the application
-- live in the worker's own VM, so the `type` rule is applied here, on the
-- calling side, with this VM's ghl.MESSAGE_TYPES.

local ghl = require("ghl")

local M = {
  THREAD_POOL = "ghl",
  null = ghl.null,
}

local function shallow_copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local convert_type = ghl.convert_type -- the C module's type rule, with this VM's MESSAGE_TYPES

-- Runs on a pool thread, in the worker-thread VM: no ngx API here. Always
-- returns three values that run_worker_thread can carry back.
function M.worker_get_message(id, opts)
  local ok, lib = pcall(require, "ghl")
  if not ok then
    return nil, "ghl: cannot load the C module on the worker thread: " .. tostring(lib),
      { kind = "host" }
  end
  local ok2, msg, err, info = pcall(lib.get_message, id, opts)
  if not ok2 then
    return nil, "ghl: " .. tostring(msg):gsub("^ghl: ", ""), { kind = "host" }
  end
  return msg, err, info
end

local NO_POOL_HINT = 'add "thread_pool ' .. M.THREAD_POOL
  .. ' threads=4;" to the main context of nginx.conf'

function M.get_message(id, opts)
  -- Misuse raises here, in the caller's handler, before anything is sent.
  -- (The C module's message, unchanged: no position prefix.)
  local ok, why = pcall(ghl.get_message_request, id, opts)
  if not ok then error(why, 0) end
  if opts ~= nil then opts = shallow_copy(opts) else opts = {} end
  local convert = opts.convert_enums ~= false
  opts.convert_enums = false

  local run = ngx and ngx.run_worker_thread
  if not run then
    return nil, "ghl: ngx.run_worker_thread is not available (lua-nginx-module 0.10.21 or later"
      .. " built with threads is needed)", { kind = "host" }
  end
  local done, msg, err, info = run(M.THREAD_POOL, "ghl.resty", "worker_get_message", id, opts)
  if not done then
    why = tostring(msg)
    if why:find("thread pool", 1, true) or why:find("thread_pool", 1, true) then
      return nil, "ghl: no nginx thread pool named \"" .. M.THREAD_POOL .. "\" (" .. why
        .. "): " .. NO_POOL_HINT, { kind = "host" }
    end
    return nil, "ghl: ngx.run_worker_thread failed: " .. why, { kind = "host" }
  end
  if not msg then return nil, err, info end
  if convert then convert_type(msg) end
  return msg, nil, info
end

return M
