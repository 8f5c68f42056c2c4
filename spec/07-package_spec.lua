-- The package around the module: one version, written in src/options.h (GHL_VERSION), that the
-- module, the rockspec, the README and the changelog follow; the licence the rockspec names.

local h = require("helpers")
local ghl = require("ghl")

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local function read(path) return assert(h.read_file(ROOT .. "/" .. path), "cannot read " .. path) end

local VERSION = read("src/options.h"):match('\n#define GHL_VERSION "([^"]+)"')

local function rockspecs()
  local out = {}
  local p = assert(io.popen("ls " .. h.quote(ROOT .. "/rockspec")))
  for name in p:lines() do out[#out + 1] = name end
  p:close()
  return out
end

-- The rockspec's fields, by running it in an empty environment (a rockspec is Lua assignments).
local function rockspec_fields(path)
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadstring(read(path)))
    setfenv(chunk, env)
  else
    chunk = assert(load(read(path), path, "t", env))
  end
  chunk()
  return env
end

describe("the version", function()
  it("is written once, in src/options.h, as MAJOR.MINOR.PATCH", function()
    assert.matches("^%d+%.%d+%.%d+$", VERSION)
  end)

  it("is the module's ghl.VERSION and its default User-Agent", function()
    assert.equal(VERSION, ghl.VERSION)
    local req = ghl.get_message_request("abc", { token = "t" })
    assert.equal("lua-ghl/" .. VERSION, req.headers["User-Agent"])
  end)

  it("names the one rockspec, which follows it", function()
    local files = rockspecs()
    assert.same({ "ghl-" .. VERSION .. "-1.rockspec" }, files)
    local spec = rockspec_fields("rockspec/" .. files[1])
    assert.equal("ghl", spec.package)
    assert.equal(VERSION .. "-1", spec.version)
    assert.equal("ghl-" .. VERSION .. ".tar.gz", spec.source.url)
    assert.equal("ghl-" .. VERSION, spec.source.dir)
  end)

  it("is what the README says, wherever it names a version or a rockspec", function()
    local readme = read("README.md")
    assert.matches("| `ghl.VERSION` | the module's version, `\"" .. h.literal(VERSION) .. "\"` |", readme)
    local named = 0
    for v in readme:gmatch("ghl%-(%d+%.%d+%.%d+)%-%d+%.rockspec") do
      named = named + 1
      assert.equal(VERSION, v, "README names rockspec/ghl-" .. v .. "-*.rockspec")
    end
    for v in readme:gmatch("ghl%-(%d+%.%d+%.%d+)%-%d+%.src%.rock") do
      named = named + 1
      assert.equal(VERSION, v, "README names ghl-" .. v .. "-*.src.rock")
    end
    assert.is_true(named >= 2, "the README's install lines name no rockspec")
  end)
end)

describe("CHANGELOG.md", function()
  local text = read("CHANGELOG.md")

  it("has one entry per version, newest first, the current one included", function()
    local seen, versions = {}, {}
    for heading in text:gmatch("\n## ([^\n]+)") do
      local v = heading:match("^(%d+%.%d+%.%d+)")
      assert.is_true(heading == "Unreleased" or v ~= nil, "a heading that is no version: " .. heading)
      if v then
        assert.is_nil(seen[v], "two entries for " .. v)
        seen[v] = true
        versions[#versions + 1] = v
      end
    end
    assert.is_true(seen[VERSION], "no entry for " .. VERSION)
    local function parts(v)
      local a, b, c = v:match("^(%d+)%.(%d+)%.(%d+)$")
      return tonumber(a) * 1e6 + tonumber(b) * 1e3 + tonumber(c)
    end
    for i = 2, #versions do
      assert.is_true(parts(versions[i - 1]) > parts(versions[i]), versions[i - 1] .. " before " .. versions[i])
    end
    -- Unreleased, when there, comes first
    local first = text:match("\n## ([^\n]+)")
    if text:find("\n## Unreleased", 1, true) then assert.equal("Unreleased", first) end
  end)
end)

describe("LICENSE", function()
  it("holds the MIT terms the rockspec names", function()
    local license = read("LICENSE")
    assert.matches("^MIT License\n", license)
    assert.matches("Permission is hereby granted, free of charge", license, 1, true)
    assert.equal("MIT", rockspec_fields("rockspec/" .. rockspecs()[1]).description.license)
  end)
end)
