-- :checkhealth ghl in a headless Neovim, with the repository on the runtimepath as a plugin
-- manager puts it (plugin/ghl.lua adds its src/ and build/luajit/ to Lua's paths; Neovim finds
-- lua/ghl/health.lua). The report is written to a file and read back.

local h = require("helpers")
local ghl = require("ghl")

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local q = h.quote
local SECRET = "pit-health-secret-0c9e"

-- Runs :checkhealth ghl; `cmds` are --cmd lines run before plugins load, `env` name -> value.
local function checkhealth(cmds, env)
  local dir = h.temp_dir("ghl-health")
  local line = "env -u GHL_TOKEN -u LUA_PATH -u LUA_CPATH HOME=" .. q(dir) .. " XDG_STATE_HOME=" .. q(dir) .. " XDG_DATA_HOME=" .. q(dir)
  for k, v in pairs(env or {}) do line = line .. " " .. q(k .. "=" .. v) end
  line = line .. " timeout -k 5 60 nvim --headless --clean -n -i NONE"
  for _, c in ipairs(cmds or {}) do line = line .. " --cmd " .. q(c) end
  line = line .. " --cmd " .. q("set runtimepath+=" .. ROOT) .. " -c 'checkhealth ghl'"
    .. " -c " .. q("write! " .. dir .. "/report.txt") .. " -c 'qall!' </dev/null >/dev/null 2>&1"
  assert(h.capture("command -v nvim"):match("nvim"), "nvim not found: run scripts/install-deps hosts")
  h.capture(line)
  local report = h.read_file(dir .. "/report.txt") or ""
  h.remove_dir(dir)
  assert.matches("## ghl", report, 1, true)
  return report
end

describe(":checkhealth ghl", function()
  local build = ghl.build_info()

  it("says that ghl loads, for LuaJIT, with which libcurl and TLS library, and where the token is from", function()
    local report = checkhealth({}, { GHL_TOKEN = SECRET })
    assert.matches("OK: ghl " .. h.literal(ghl.VERSION) .. " loads", report)
    assert.matches("OK: built for LuaJIT (against the Lua 5.1 headers); running on LuaJIT", report, 1, true)
    assert.matches("OK: libcurl " .. build.libcurl .. " with TLS by " .. build.tls, report, 1, true)
    assert.matches("OK: ghl.nvim loads", report, 1, true)
    assert.matches("OK: a token is configured (the GHL_TOKEN environment variable)", report, 1, true)
    assert.is_nil(report:find("ERROR", 1, true), report)
    assert.is_nil(report:find(SECRET, 1, true), "the report shows the token")
  end)

  it("finds the plugin's vim.g.ghl_token, and never shows it", function()
    local report = checkhealth({ "let g:ghl_token = '" .. SECRET .. "'" })
    assert.matches("OK: a token is configured (vim.g.ghl_token)", report, 1, true)
    assert.is_nil(report:find(SECRET, 1, true), "the report shows the token")
  end)

  it("warns when no token is configured", function()
    local report = checkhealth({})
    assert.matches("WARNING: no token configured", report, 1, true)
  end)

  it("says a token with a space would be refused, without showing it", function()
    local report = checkhealth({}, { GHL_TOKEN = SECRET .. " x" })
    assert.matches("ERROR: the token in the GHL_TOKEN environment variable holds spaces or control characters",
      report, 1, true)
    assert.is_nil(report:find(SECRET, 1, true), "the report shows the token")
  end)

  it("names a build for another Lua, and the build that fixes it", function()
    local report = checkhealth({ "lua package.cpath = " .. string.format("%q", ROOT .. "/build/lua5.4/?.so;")
      .. " .. package.cpath" })
    assert.matches("ERROR: ghl does not load: ", report, 1, true)
    assert.matches("undefined symbol: lua", report, 1, true)
    assert.matches("means this ghl.so was built for another Lua (5.2, 5.3 or 5.4), not for LuaJIT", report, 1, true)
    assert.matches("make build/luajit/ghl.so", report, 1, true)
  end)

  it("says where to put ghl.so when it is not found", function()
    local report = checkhealth({ "let g:loaded_ghl = 1", "lua package.cpath = ''" })
    assert.matches("ERROR: ghl does not load: module 'ghl' not found", report, 1, true)
    assert.matches("ghl.so is not on package.cpath", report, 1, true)
  end)
end)
