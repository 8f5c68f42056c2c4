-- Running Lua code in the middle of a ghl call, for the re-entrancy specs
-- (spec/14-hardening_spec.lua). The sweeps run in a child interpreter under
-- a `timeout`, since a module that fails them may crash or hang; busted
-- itself only asks finalizer_errors_propagate().
--
-- Two ways in:
--   "hook"       debug.sethook(f, "c"): f runs at each function call, also
--                the ones ghl makes from C (its protected bodies, through
--                lua_pcall). An event counts when `target` (the ghl function
--                under test) is on the stack below the called function.
--   "finalizer"  a __gc finalizer (newproxy on 5.1 and LuaJIT, a table's
--                __gc on 5.2+), with the collector made aggressive, so it
--                runs at an allocation inside ghl. Each run arms a fresh one,
--                so one runs at every collection cycle during the call; a run
--                counts when `target` is on the stack.
--
-- sweep() runs a case once per k = 1, 2, ...: the action runs at the k-th
-- counted event, until a call has fewer than k events (for a finalizer:
-- M.TRIES calls in a row), so the action lands at every point of the call
-- where Lua can run (at most max_k of them).

local M = {}

function M.pack(...)
  return { n = select("#", ...), ... }
end

-- An object whose collection runs fn (a finalizer on every runtime).
function M.make_gc(fn)
  if newproxy then -- luacheck: ignore (5.1, LuaJIT)
    local p = newproxy(true) -- luacheck: ignore
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

-- Whether target is on the stack from `level` down.
function M.on_stack(target, level)
  for l = level, 200 do
    local info = debug.getinfo(l, "f")
    if info == nil then return false end
    if info.func == target then return true end
  end
  return false
end

-- Whether an error raised by a finalizer reaches the code that allocated
-- (5.1, 5.2, 5.3 and LuaJIT: yes; 5.4 turns it into a warning).
function M.finalizer_errors_propagate()
  local ok = pcall(function()
    M.make_gc(function() error("probe") end)
    collectgarbage("collect")
    collectgarbage("collect")
  end)
  return not ok
end

-- The collector at its most eager: no pause between cycles and big steps,
-- so a cycle ends (and a finalizer runs) every few allocations. 5.4 takes
-- the figures through "incremental" (where a pause of 0 means "unchanged",
-- hence 1, and a step size of 2^0 bytes); 5.1, 5.2 and LuaJIT through
-- setpause / setstepmul (M.STEPMUL, when set, for a caller whose process
-- holds a large heap: a cycle must still end within one call). Returns a
-- function that puts the settings back.
local function aggressive_gc()
  -- 5.4 answers "incremental" with the mode it was in (5.2 with 0; 5.1 and LuaJIT raise)
  local ok, mode = pcall(collectgarbage, "incremental")
  if ok and type(mode) == "string" then
    collectgarbage("incremental", 1, 1000, 0)
    collectgarbage("collect")
    return function()
      collectgarbage("incremental", 200, 100, 13) -- 5.4's defaults
      if mode ~= "incremental" then collectgarbage(mode) end
    end
  end
  local pause = collectgarbage("setpause", 0)
  local stepmul = collectgarbage("setstepmul", M.STEPMUL or 5000)
  collectgarbage("collect") -- the next cycle's threshold comes from the pause set now
  return function()
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
  end
end

-- Calls call() (which calls target) and runs action() at the k-th counted
-- event. Returns whether the action ran, and pcall(call)'s results packed.
function M.run(mode, target, k, call, action)
  local n, fired = 0, false
  local function event()
    n = n + 1
    if n == k and not fired then
      fired = true
      action()
    end
  end
  if mode == "hook" then
    debug.sethook(function()
      -- level 2 is the function being called; target's own entry does not count
      if fired or debug.getinfo(2, "f").func == target then return end
      if M.on_stack(target, 3) then event() end
    end, "c")
    local r = M.pack(pcall(call))
    debug.sethook()
    return fired, r
  end
  assert(mode == "finalizer", "mode is hook or finalizer")
  local done = false
  local function arm()
    M.make_gc(function()
      if done then return end
      arm()
      if not fired and M.on_stack(target, 2) then event() end
    end)
  end
  local restore = aggressive_gc()
  arm()
  local r = M.pack(pcall(call))
  done = true
  restore()
  collectgarbage("collect")
  return fired, r
end

-- How many calls a k gets before the sweep takes it that no call has k
-- events: a hook is deterministic; when a finalizer runs is not.
M.TRIES = { hook = 1, finalizer = 12 }

-- A sweep stops at this many problems: a module that gets one point wrong
-- usually gets them all wrong, and may be about to crash.
M.MAX_WRONG = 5

-- case(k) returns call, action, check (a fresh client and ids each time);
-- check(fired, r) returns nil when the outcome is right, else what is wrong.
-- Every call is checked, those where the action did not run included.
-- Returns how many calls fired and the list of what was wrong.
function M.sweep(mode, target, max_k, case)
  local fired_runs, wrong = 0, {}
  for k = 1, max_k do
    local fired = false
    for _ = 1, M.TRIES[mode] do
      local call, action, check = case(k)
      local r
      fired, r = M.run(mode, target, k, call, action)
      local problem = check(fired, r)
      if problem then wrong[#wrong + 1] = "k=" .. k .. (fired and "" or " (not fired)") .. ": " .. problem end
      if fired or #wrong >= M.MAX_WRONG then break end
    end
    if not fired or #wrong >= M.MAX_WRONG then break end
    fired_runs = fired_runs + 1
  end
  return fired_runs, wrong
end

-- Prints "<name> fired=<n> wrong=<m>" and one "WRONG ..." line per problem.
function M.report(name, fired_runs, wrong)
  print(string.format("%s fired=%d wrong=%d", name, fired_runs, #wrong))
  for _, w in ipairs(wrong) do print("WRONG " .. name .. " " .. (w:gsub("\n", " "))) end
end

-- The modes a case is swept in.
M.MODES = { "hook", "finalizer" }

-- A short description of pcall results, for problems.
function M.show(r)
  local parts = {}
  for i = 1, r.n do
    local v = r[i]
    if type(v) == "table" then
      parts[i] = "{id=" .. tostring(v.id) .. ",kind=" .. tostring(v.kind) .. ",errmsg=" .. tostring(v.errmsg) .. "}"
    else
      parts[i] = tostring(v)
    end
  end
  return table.concat(parts, ", ")
end

return M
