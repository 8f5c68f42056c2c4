-- Loaded with `lua -l check_memory_init` by scripts/check-memory before busted.
--
-- GHL_GC_MODE makes the collector aggressive, so that every __gc path runs
-- while the spec is busy, not only at exit:
--   incremental   a new cycle right after the last one, big steps (every Lua)
--   generational  Lua 5.4's generational mode with frequent major collections
--   (unset)       the interpreter's defaults
--
-- GHL_LUA_EXE names the program the spec starts as "the interpreter" for its
-- child processes: spec/helpers.lua's M.lua_exe() reads /proc/<ppid>/exe,
-- which under valgrind is valgrind's tool and under `ld.so --preload` is the
-- loader. scripts/check-memory passes a wrapper that runs the interpreter
-- under the same tool; the io.popen shim below answers with it.
--
-- GHL_KEEP_LOADED=1 keeps ghl.so mapped until the process ends. Lua 5.4
-- dlclose()s C modules in lua_close(), before LeakSanitizer runs, and a leak
-- reported in an unmapped library has no symbols. The module is loaded once
-- here and its handle taken off the list that lua_close() unloads; the spec
-- still runs luaopen_ghl afresh on its own require.

-- LeakSanitizer ends the process with _exit(), so whatever is still in
-- stdio's buffer (busted's summary line) would be lost.
io.stdout:setvbuf("line")

local mode = os.getenv("GHL_GC_MODE")
if mode == "incremental" then
  if _VERSION == "Lua 5.4" then
    collectgarbage("incremental") -- (its arguments cannot set 0: 0 means "unchanged")
  end
  collectgarbage("setpause", 0) -- the next cycle starts as soon as one ends
  collectgarbage("setstepmul", 1000)
  if collectgarbage("setpause", 0) ~= 0 then error("the collector kept its pause") end
elseif mode == "generational" then
  if _VERSION ~= "Lua 5.4" then error("generational mode needs Lua 5.4") end
  collectgarbage("generational", 1, 10) -- a minor collection every 1 %, a major one every 10 %
elseif mode ~= nil and mode ~= "" then
  error("GHL_GC_MODE: unknown mode '" .. mode .. "'")
end

local exe = os.getenv("GHL_LUA_EXE")
if exe and exe ~= "" then
  local popen = io.popen
  io.popen = function(cmd, ...)
    if cmd == "readlink /proc/$PPID/exe" then
      cmd = "printf '%s\\n' '" .. exe:gsub("'", "'\\''") .. "'"
    end
    return popen(cmd, ...)
  end
end

if os.getenv("GHL_KEEP_LOADED") == "1" then
  local clibs = debug.getregistry()._CLIBS
  if type(clibs) ~= "table" then error("GHL_KEEP_LOADED needs Lua 5.4") end
  require("ghl")
  package.loaded["ghl"] = nil
  local keep, found = {}, false
  for path, handle in pairs(clibs) do
    if type(path) == "string" and path:match("ghl%.so$") then keep[handle], found = true, true end
  end
  if not found then error("ghl.so is not in the registry's _CLIBS") end
  local rest = {}
  for i = 1, #clibs do
    if not keep[clibs[i]] then rest[#rest + 1] = clibs[i] end
  end
  for i = #clibs, 1, -1 do clibs[i] = nil end
  for i, handle in ipairs(rest) do clibs[i] = handle end
end

return true
