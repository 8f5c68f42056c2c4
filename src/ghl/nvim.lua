-- ghl.nvim: ghl for Neovim (0.7 and later, LuaJIT).
--
--   require("ghl.nvim").get_message(id, opts, function(message, errmsg, info)
--     ...  -- runs on the main loop: every Neovim API is allowed here
--   end)
--
-- get_message returns at once. The blocking libcurl call runs on libuv's
-- thread pool (vim.loop.new_work), so the UI keeps going; the callback is
-- called once, through vim.schedule, with the same three values
-- ghl.get_message returns. Misuse (a bad id or option, a callback that is not
-- a function) raises in the caller before anything is sent, as in the C
-- module; everything else, failures of the thread itself included, arrives
-- through the callback.
--
-- The work function runs in another Lua state (one per pool thread, reused
-- from job to job, so ghl's per-state client cache keeps the connection
-- between calls handled by the same thread). Such a state can take and return
-- only strings, numbers, booleans and nil, so the options go there and the
-- results come back serialised as Lua table constructors (numbers with 17
-- significant digits, strings byte for byte), and package.path/package.cpath
-- are passed so the thread finds ghl.
--
-- JSON null in an array is ghl.null (= cjson.null, a NULL lightuserdata), as
-- the module promises in every host, so `x == require("ghl").null` works the
-- same in Neovim, OpenResty and plain Lua. It is not vim.NIL (a different
-- value, the one vim.json.decode and the API use).
--
-- libuv's pool is small (4 threads unless UV_THREADPOOL_SIZE says otherwise)
-- and Neovim's own file I/O shares it: a thread stays busy for the whole call,
-- retries and their waits included.

local M = {}

local function ghl_lib()
  return require("ghl")
end

---------------------------------------------------------------------------
-- Serialising plain data (tables of strings, numbers, booleans, ghl.null)

local function ser(v, out, depth)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = string.format("%q", v)
  elseif t == "number" then
    if v ~= v then
      out[#out + 1] = "(0/0)"
    elseif v == math.huge then
      out[#out + 1] = "math.huge"
    elseif v == -math.huge then
      out[#out + 1] = "(-math.huge)"
    elseif math.type and math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "nil" then
    out[#out + 1] = "nil"
  elseif t == "userdata" and v == ghl_lib().null then
    out[#out + 1] = "NULL"
  elseif t == "table" then
    if depth > 1000 then error("nesting too deep", 0) end
    out[#out + 1] = "{"
    for k, x in pairs(v) do
      out[#out + 1] = "["
      ser(k, out, depth + 1)
      out[#out + 1] = "]="
      ser(x, out, depth + 1)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    error("cannot pass a " .. t, 0)
  end
end

-- "return v1, v2, ..." for n values.
local function serialize(n, ...)
  local out = { "return " }
  for i = 1, n do
    if i > 1 then out[#out + 1] = "," end
    ser((select(i, ...)), out, 0)
  end
  return table.concat(out)
end

local function deserialize(s)
  local chunk, err = (loadstring or load)(s, "=ghl.nvim", "t")
  if not chunk then error(err, 0) end
  local env = { NULL = ghl_lib().null, math = { huge = math.huge } }
  if setfenv then
    setfenv(chunk, env)
  else
    chunk = load(s, "=ghl.nvim", "t", env)
  end
  return chunk()
end

M._serialize = serialize
M._deserialize = deserialize

---------------------------------------------------------------------------
-- The pool thread's side

-- Runs in a pool thread's Lua state (loaded there by the work function):
-- takes the serialised options, returns the serialised results.
function M._work(id, opts_s)
  local ok, res = pcall(function()
    local ghl = require("ghl")
    local opts = deserialize(opts_s)
    local ok2, msg, err, info = pcall(ghl.get_message, id, opts)
    if not ok2 then
      return serialize(3, nil, "ghl: " .. tostring(msg):gsub("^ghl: ", ""), { kind = "host" })
    end
    return serialize(3, msg, err, info)
  end)
  if ok then return res end
  return serialize(3, nil, "ghl: worker thread failed: " .. tostring(res), { kind = "host" })
end

-- The work function: string.dump'ed into the pool thread, so no upvalues.
local function work(path, cpath, id, opts_s)
  package.path = path
  package.cpath = cpath
  local ok, mod = pcall(require, "ghl.nvim")
  if not ok then
    return nil, "ghl: cannot load ghl.nvim on the worker thread: " .. tostring(mod)
  end
  return mod._work(id, opts_s)
end

---------------------------------------------------------------------------
-- The main loop's side

local function convert_type(msg) ghl_lib().convert_type(msg) end

local in_flight = {}

function M.get_message(id, opts, callback)
  local ghl = ghl_lib()
  if type(callback) ~= "function" then
    error("ghl: bad argument 'callback' (a function expected, got " .. type(callback) .. ")", 0)
  end
  local ok, err = pcall(ghl.get_message_request, id, opts)
  if not ok then error(err, 0) end -- the C module's message, unchanged

  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local convert = o.convert_enums ~= false
  o.convert_enums = false

  local function deliver(msg, errmsg, info)
    vim.schedule(function()
      callback(msg, errmsg, info)
    end)
  end

  -- The after-work function runs in a libuv callback: nothing may raise here.
  local function after(res, errmsg)
    local ok2, msg, e, info = pcall(function()
      if type(res) ~= "string" then
        return nil, errmsg or "ghl: the worker thread returned nothing", { kind = "host" }
      end
      local m, e2, i = deserialize(res)
      if m ~= nil and convert then convert_type(m) end
      return m, e2, i
    end)
    if not ok2 then
      deliver(nil, "ghl: cannot read the worker thread's result: " .. tostring(msg), { kind = "host" })
    else
      deliver(msg, e, info)
    end
  end

  -- One work handle per call, held here until its result is back (luv must
  -- not collect it while the job is in flight).
  local ok3, qerr = pcall(function()
    local handle
    handle = vim.loop.new_work(work, function(...)
      in_flight[handle] = nil
      after(...)
    end)
    in_flight[handle] = true
    local queued, why = handle:queue(package.path, package.cpath, id, serialize(1, o))
    if not queued then
      in_flight[handle] = nil
      error(why or "queue failed", 0)
    end
  end)
  if not ok3 then
    deliver(nil, "ghl: cannot use the libuv thread pool: " .. tostring(qerr), { kind = "host" })
  end
end

return M
