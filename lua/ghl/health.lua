-- :checkhealth ghl. Found by Neovim on the runtimepath as lua/ghl/health.lua: add this
-- repository to it (a plugin manager does; see README.md, "Neovim"). Says whether ghl loads,
-- whether it was built for LuaJIT, which libcurl and TLS library it has, whether ghl.nvim loads
-- and whether a token is configured. It never shows the token.

local M = {}

local health = vim.health or require("health") -- Neovim 0.8+ / 0.7
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local fail = health.error or health.report_error
local info = health.info or health.report_info

local function load_failure(err)
  local advice = {
    "Neovim runs LuaJIT, which loads modules built against the Lua 5.1 headers:"
      .. " `make build/luajit/ghl.so` in the ghl repository, or `luarocks --lua-version=5.1 make ...`",
    "ghl also needs libcurl and OpenSSL's libcrypto (Debian: libcurl4, libssl3)",
  }
  -- a build for 5.2-5.4 names the first Lua function LuaJIT lacks: lua_rotate,
  -- lua_newuserdatauv, luaL_prepbuffsize, luaL_setfuncs, ...
  local symbol = err:match("undefined symbol: (luaL?_[%w_]+)")
  if symbol then
    table.insert(advice, 1, "the undefined symbol " .. symbol .. " means this ghl.so was built for"
      .. " another Lua (5.2, 5.3 or 5.4), not for LuaJIT")
  end
  if err:find("module 'ghl' not found", 1, true) then
    table.insert(advice, 1, "ghl.so is not on package.cpath: build it (the plugin adds the repository's"
      .. " build/luajit/ to package.cpath when it is there) or point package.cpath at a luarocks install")
  end
  fail("ghl does not load: " .. err, advice)
end

-- Where the configured token comes from, or nil; never its value.
local function token_source()
  local t = vim.g.ghl_token
  if type(t) == "string" and t ~= "" then return "vim.g.ghl_token", t end
  t = os.getenv("GHL_TOKEN")
  if t ~= nil and t ~= "" then return "the GHL_TOKEN environment variable", t end
  return nil
end

function M.check()
  start("ghl")
  local loaded, ghl = pcall(require, "ghl")
  if not loaded then
    load_failure(tostring(ghl))
    return
  end
  ok("ghl " .. tostring(ghl.VERSION) .. " loads")

  local build = type(ghl.build_info) == "function" and ghl.build_info() or nil
  if build == nil then
    warn("this ghl.so has no build_info(): it predates it; rebuild it for the build details")
  else
    local jit_version = rawget(_G, "jit") and jit.version or _VERSION
    if build.lua == "Lua 5.1" then
      ok("built for LuaJIT (against the Lua 5.1 headers); running on " .. jit_version)
    else
      fail("built against the " .. tostring(build.lua) .. " headers, not Lua 5.1's, which LuaJIT loads",
        { "rebuild it: `make build/luajit/ghl.so`" })
    end
    if build.tls then
      ok("libcurl " .. build.libcurl .. " with TLS by " .. build.tls .. (build.http2 and ", HTTP/2" or ""))
    else
      warn("libcurl " .. build.libcurl .. " has no TLS library: https:// base URLs cannot work")
    end
  end

  local nvim_loaded, err = pcall(require, "ghl.nvim")
  if nvim_loaded then
    ok("ghl.nvim loads")
  else
    fail("ghl.nvim does not load: " .. tostring(err),
      { "ghl/nvim.lua must be on package.path (the repository's src/, or a luarocks install's share/lua/5.1)" })
  end

  local source, token = token_source()
  if source == nil then
    warn("no token configured", { "set GHL_TOKEN in the environment, or vim.g.ghl_token, or pass opts.token" })
  elseif token:find("[%c ]") then
    fail("the token in " .. source .. " holds spaces or control characters (ghl would refuse it)")
  else
    ok("a token is configured (" .. source .. ")")
  end
  info("ghl.get_message and clients from ghl.nvim.new run on the main loop without blocking it")
end

return M
