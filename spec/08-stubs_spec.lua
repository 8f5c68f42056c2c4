-- The LuaCATS stubs (types/) and the README follow the code: every function the module, its
-- clients and the adapters export has a stub and a README section, and every stubbed function
-- exists. Names starting with "_" are internal and need neither (two documented ones are stubbed
-- all the same). The stubs of ghl_resty.new clients (after the "ghl_resty.new clients" line of
-- types/ghl/resty.lua) are checked against the code only where ghl_resty.new exists.

local h = require("helpers")
local ghl = require("ghl")

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local q = h.quote
local function read(path) return assert(h.read_file(ROOT .. "/" .. path), "cannot read " .. path) end

-- A stub file: functions of each table name (`function T.f(` / `function T:f(`), the fields of
-- each class (`---@class C` then its `---@field` lines), and the names after the client marker.
local function parse_stub(path, marker)
  local text = read(path)
  local fns, classes, planned, late = {}, {}, {}, {}
  local after_marker, class = false, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if marker and line:find(marker, 1, true) then after_marker = true end
    local c = line:match("^%-%-%-@class ([%w%._]+)")
    if c then
      class = c
      classes[c] = classes[c] or {}
    elseif class and line:match("^%-%-%-@field ") then
      local field = line:match("^%-%-%-@field ([%w_]+)") -- not `[string] any`
      if field then classes[class][field] = true end
    elseif not line:match("^%-%-%-") then
      class = nil
    end
    local t, name = line:match("^function ([%w_]+)[%.:]([%w_]+)%(")
    if t then
      fns[t] = fns[t] or {}
      fns[t][name] = true
      if after_marker then
        late[t .. "." .. name] = true
        if line:find("-- planned", 1, true) then planned[t .. "." .. name] = true end
      end
    end
  end
  return { fns = fns, classes = classes, late = late, planned = planned }
end

local function keys(t, filter)
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and (filter == nil or filter(v)) then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

local function is_function(v) return type(v) == "function" end
local function not_function(v) return type(v) ~= "function" end

local README = read("README.md")
local function readme_has(s) return README:find(s, 1, true) ~= nil end

local function methods_of(obj)
  local mt = getmetatable(obj)
  local index = type(mt) == "table" and mt.__index
  assert(type(index) == "table", "no method table")
  return index
end

local STUB = parse_stub("types/ghl.lua")
local RESTY = parse_stub("types/ghl/resty.lua", "-- ghl_resty.new clients")
local NVIM = parse_stub("types/ghl/nvim.lua")

describe("types/ghl.lua", function()
  it("has a stub for every function of require('ghl')", function()
    for _, name in ipairs(keys(ghl, is_function)) do
      assert.is_true(STUB.fns.ghl[name], "no stub for ghl." .. name)
    end
  end)

  it("has a field for every other value of require('ghl')", function()
    for _, name in ipairs(keys(ghl, not_function)) do
      assert.is_true(STUB.classes.ghl[name], "no ---@field " .. name .. " in ---@class ghl")
    end
  end)

  it("stubs only what exists", function()
    for name in pairs(STUB.fns.ghl) do assert.is_function(ghl[name], "ghl." .. name .. " is stubbed but absent") end
    for name in pairs(STUB.classes.ghl) do assert.is_not_nil(ghl[name], "ghl." .. name .. " is stubbed but absent") end
  end)

  it("has the client's every method, and no other", function()
    local c = ghl.new({ token = "stub-check" })
    local methods = methods_of(c)
    c:close()
    for _, name in ipairs(keys(methods, is_function)) do
      assert.is_true(STUB.fns.Client[name], "no stub for client:" .. name)
    end
    for name in pairs(STUB.fns.Client) do assert.is_function(methods[name], "client:" .. name .. " is stubbed but absent") end
  end)

  it("has every option, per call option and info field", function()
    for name in read("src/options.h"):gmatch("\n    X%(([%w_]+), ") do
      assert.is_true(STUB.classes["ghl.Options"][name] or STUB.classes["ghl.BatchOptions"][name],
        "no ---@field " .. name .. " in ghl.Options")
    end
    local info_table = README:match("`info` is a table, on success and on failure:\n\n(.-)\n\n")
    assert.is_string(info_table)
    local n = 0
    for field in info_table:gmatch("\n| `([%w_]+)` |") do
      n = n + 1
      assert.is_true(STUB.classes["ghl.Info"][field], "no ---@field " .. field .. " in ghl.Info")
    end
    assert.is_true(n >= 9, "the README's info table was not found whole")
    for _, field in ipairs({ "max", "remaining", "interval_ms", "daily_limit", "daily_remaining" }) do
      assert.is_true(STUB.classes["ghl.RateLimit"][field], "no ---@field " .. field .. " in ghl.RateLimit")
    end
    for field in pairs(ghl.build_info()) do
      assert.is_true(STUB.classes["ghl.BuildInfo"][field], "no ---@field " .. field .. " in ghl.BuildInfo")
    end
  end)
end)

describe("the README", function()
  it("has a section for every function of require('ghl') and every client method", function()
    for _, name in ipairs(keys(ghl, is_function)) do
      assert.is_true(readme_has("\n### ghl." .. name .. "\n"), "no '### ghl." .. name .. "' section")
    end
    for _, name in ipairs(keys(ghl, not_function)) do
      assert.is_true(readme_has("\n| `ghl." .. name .. "` |"), "no row for ghl." .. name .. " under Constants")
    end
    local c = ghl.new({ token = "stub-check" })
    local methods = methods_of(c)
    c:close()
    for _, name in ipairs(keys(methods, is_function)) do
      assert.is_true(readme_has("\n### client:" .. name .. "\n"), "no '### client:" .. name .. "' section")
    end
  end)
end)

describe("types/ghl/resty.lua", function()
  local resty = require("ghl.resty")

  it("has a stub for every export of ghl.resty, and a README syntax line", function()
    for _, name in ipairs(keys(resty, is_function)) do
      assert.is_true(RESTY.fns.ghl_resty[name], "no stub for ghl_resty." .. name)
      assert.is_true(readme_has("ghl_resty." .. name .. "("), "the README never shows ghl_resty." .. name .. "(...)")
    end
    for _, name in ipairs(keys(resty, not_function)) do
      assert.is_true(RESTY.classes["ghl.resty"][name], "no ---@field " .. name .. " in ---@class ghl.resty")
      assert.is_true(readme_has("ghl_resty." .. name), "the README never names ghl_resty." .. name)
    end
  end)

  it("stubs only what exists, ghl_resty.new clients where ghl_resty.new exists", function()
    for name in pairs(RESTY.fns.ghl_resty) do
      local key = "ghl_resty." .. name
      if not RESTY.late[key] or (resty.new ~= nil and not RESTY.planned[key]) then
        assert.is_function(resty[name], key .. " is stubbed but absent")
      end
    end
    for name in pairs(RESTY.classes["ghl.resty"]) do
      assert.is_not_nil(resty[name], "ghl_resty." .. name .. " is stubbed but absent")
    end
    -- the clients' methods: the C client's (the contract: the same methods), checked on a client
    -- where one can be made outside nginx
    for name in pairs(RESTY.fns.RestyClient) do
      assert.is_true(STUB.fns.Client[name], "ghl_resty client:" .. name .. " is no C client method")
    end
    if resty.new ~= nil then
      local ok, c = pcall(resty.new, { token = "stub-check" })
      if ok and type(c) == "table" then
        local methods = getmetatable(c) and getmetatable(c).__index
        if type(methods) ~= "table" then methods = c end
        for _, name in ipairs(keys(methods, is_function)) do
          assert.is_true(RESTY.fns.RestyClient[name], "no stub for ghl_resty client:" .. name)
        end
        for name in pairs(RESTY.fns.RestyClient) do
          if not RESTY.planned["RestyClient." .. name] then
            assert.is_function(methods[name], "ghl_resty client:" .. name .. " is stubbed but absent")
          end
        end
      end
    end
  end)

  it("has the pool_size option", function()
    assert.is_true(RESTY.classes["ghl.resty.Options"].pool_size)
  end)
end)

describe("types/ghl/nvim.lua", function()
  -- ghl.nvim's clients exist only inside Neovim: a headless one lists their methods.
  local function nvim_exports()
    local dir = h.temp_dir("ghl-stubs")
    h.write_file(dir .. "/list.lua", [[
      package.path = ]] .. string.format("%q", ROOT .. "/src/?.lua;") .. [[ .. package.path
      package.cpath = ]] .. string.format("%q", ROOT .. "/build/luajit/?.so;") .. [[ .. package.cpath
      local lines = {}
      local ok, err = pcall(function()
        local m = require("ghl.nvim")
        for k, v in pairs(m) do lines[#lines + 1] = "module " .. k .. " " .. type(v) end
        local c = m.new({ token = "stub-check" })
        local mt = getmetatable(c)
        local methods = type(mt) == "table" and type(mt.__index) == "table" and mt.__index or c
        for k, v in pairs(methods) do lines[#lines + 1] = "method " .. tostring(k) .. " " .. type(v) end
        c:close()
      end)
      if not ok then lines[#lines + 1] = "error " .. tostring(err) end
      local f = io.open(]] .. string.format("%q", dir .. "/out") .. [[, "w")
      f:write(table.concat(lines, "\n"), "\n")
      f:close()
      vim.cmd("qall!")
    ]])
    assert(h.capture("command -v nvim"):match("nvim"), "nvim not found: run scripts/install-deps hosts")
    h.capture("cd " .. q(dir) .. " && env -u LUA_PATH -u LUA_CPATH HOME=" .. q(dir) .. " XDG_STATE_HOME=" .. q(dir) .. " XDG_DATA_HOME=" .. q(dir)
      .. " timeout -k 5 60 nvim --headless --clean -n -i NONE -c " .. q("luafile " .. dir .. "/list.lua")
      .. " </dev/null >/dev/null 2>&1")
    local out = h.read_file(dir .. "/out") or "error no output from Neovim"
    h.remove_dir(dir)
    local module, methods = {}, {}
    for kind, name, t in out:gmatch("(%a+) ([%w_]+) (%a+)") do
      assert.is_not_equal("error", kind, out)
      if kind == "module" then module[name] = t elseif t == "function" then methods[name] = true end
    end
    assert.is_nil(out:match("^error") or out:match("\nerror"), out)
    return module, methods
  end

  it("has a stub for every export of ghl.nvim and its clients, and only for them", function()
    local module, methods = nvim_exports()
    assert.is_true(next(methods) ~= nil, "no client methods listed")
    for name, t in pairs(module) do
      if name:sub(1, 1) ~= "_" and t == "function" then
        assert.is_true(NVIM.fns.ghl_nvim[name], "no stub for ghl_nvim." .. name)
        assert.is_true(readme_has("ghl_nvim." .. name .. "("), "the README never shows ghl_nvim." .. name .. "(...)")
      end
    end
    for name in pairs(NVIM.fns.ghl_nvim) do assert.equal("function", module[name], "ghl_nvim." .. name .. " is stubbed but absent") end
    for name in pairs(methods) do
      if name:sub(1, 1) ~= "_" then
        assert.is_true(NVIM.fns.NvimClient[name], "no stub for ghl_nvim client:" .. name)
        assert.is_true(STUB.fns.Client[name] ~= nil, "ghl_nvim client:" .. name .. " is no C client method (README)")
      end
    end
    for name in pairs(NVIM.fns.NvimClient) do assert.is_true(methods[name], "ghl_nvim client:" .. name .. " is stubbed but absent") end
  end)
end)
