-- What ghl takes from the host's lua-cjson: nothing it needs (ghl decodes on its own, and loads
-- without one), only, where the host's cjson has them (OpenResty's), array_mt / empty_array_mt,
-- so that an empty array of a response is written back as [] (Debian's lua-cjson 2.1 has
-- neither). Also ghl.build_info(), what the module was built against.

local h = require("helpers")
local ghl = require("ghl")

-- A child's prologue: the C lua-cjson found on package.cpath as require would, loaded by hand.
local REAL_CJSON = [[
  local function real_cjson()
    for pat in package.cpath:gmatch("[^;]+") do
      local path = pat:gsub("%?", "cjson")
      local f = io.open(path)
      if f then
        f:close()
        local open = package.loadlib(path, "luaopen_cjson")
        if open then return open() end
      end
    end
    error("no C lua-cjson on package.cpath")
  end
]]

-- A cjson with OpenResty's array marks, over the real one: with decode_array_with_array_mt(true)
-- on an instance, its decode gives every array (an empty one included) the metatable array_mt.
-- Only what the body below needs: an empty array is found in the text as "[]".
local MARKING_CJSON = REAL_CJSON .. [[
  local real = real_cjson()
  local array_mt, empty_array_mt = {}, {}
  local SENTINEL = "\0empty array\0"
  local function mark(v)
    if type(v) ~= "table" then return v end
    for k, x in pairs(v) do
      if x == SENTINEL then v[k] = setmetatable({}, array_mt) else mark(x) end
    end
    if v[1] ~= nil then setmetatable(v, array_mt) end
    return v
  end
  local function instance()
    local marking = false
    local inst = real.new()
    local cj = { null = real.null, array_mt = array_mt, empty_array_mt = empty_array_mt,
                 encode = inst.encode, new = instance }
    cj.decode_invalid_numbers = function(...) return inst.decode_invalid_numbers(...) end
    cj.decode_array_with_array_mt = function(on) marking = on end
    cj.decode = function(s)
      if not marking then return inst.decode(s) end
      return mark(inst.decode((s:gsub("%[%s*%]", '"\\u0000empty array\\u0000"'))))
    end
    return cj
  end
  package.preload.cjson = function() return instance() end
]]

local BODY = '{"message":{"id":"Ms1","type":2,"attachments":[],"meta":{}},"traceId":"t"}'

describe("ghl with the host's lua-cjson", function()
  it("loads and decodes where lua-cjson cannot be loaded", function()
    local ok, out = h.run_lua([[
      package.preload.cjson = function() error("cjson's loader: wrong Lua (undefined symbol x)", 0) end
      local ghl = require("ghl")
      local msg = assert(ghl.decode_message('{"message":{"id":"Ms1","type":2,"attachments":[]}}'))
      io.write(msg.id, " ", msg.type, " ", tostring(getmetatable(msg.attachments)))
    ]])
    assert.is_true(ok, out)
    assert.equal("Ms1 TYPE_SMS nil", out)
  end)

  it("loads with no lua-cjson on the paths at all", function()
    local ok, out = h.run_lua([[
      local ghl_path
      for pat in package.cpath:gmatch("[^;]+") do
        local f = io.open((pat:gsub("%?", "ghl")))
        if f then f:close(); ghl_path = pat:gsub("%?", "ghl"); break end
      end
      package.preload.ghl = assert(package.loadlib(ghl_path, "luaopen_ghl"))
      package.cpath, package.path = "", ""
      local ghl = require("ghl")
      io.write(package.loaded.cjson == nil and "no cjson, " or "cjson, ", ghl.decode_message('{"id":"a"}').id)
    ]])
    assert.is_true(ok, out)
    assert.equal("no cjson, a", out)
  end)

  it("with Debian's lua-cjson 2.1, gives an empty array as a plain table, sent back as {}", function()
    local cjson = require("cjson")
    if cjson.array_mt ~= nil then
      -- a host cjson with array marks: the next test's case, with the real thing
      local msg = assert(ghl.decode_message(BODY))
      assert.equal(cjson.array_mt, getmetatable(msg.attachments))
      return
    end
    local msg = assert(ghl.decode_message(BODY))
    assert.same({}, msg.attachments)
    assert.is_nil(getmetatable(msg.attachments))
    assert.equal('{"attachments":{}}', cjson.encode({ attachments = msg.attachments }))
  end)

  it("turns on array_mt where the host's cjson has it, and sends a marked table as []", function()
    local id = h.fresh_id("ok")
    local ok, out = h.run_lua(MARKING_CJSON .. [[
      local cjson = require("cjson")
      local ghl = require("ghl")
      local msg = assert(ghl.decode_message(]] .. string.format("%q", BODY) .. [[))
      assert(getmetatable(msg.attachments) == cjson.array_mt, "attachments not marked")
      assert(getmetatable(msg.meta) == nil, "an object marked as an array")
      local c = ghl.new({ token = ]] .. string.format("%q", h.TOKEN) .. [[,
        base_url = ]] .. string.format("%q", h.http_url) .. [[, retries = 0 })
      local sent, err = c:send_message({ type = "SMS", contactId = ]] .. string.format("%q", id) .. [[,
        attachments = msg.attachments, extra = setmetatable({}, cjson.empty_array_mt), meta = msg.meta })
      c:close()
      io.write(sent and "sent" or tostring(err))
    ]])
    assert.is_true(ok, h.hide_token(out))
    assert.equal("sent", out)
    local reqs = h.requests_for(id)
    assert.equal(1, #reqs)
    assert.matches('"attachments":[]', reqs[1].body, 1, true)
    assert.matches('"extra":[]', reqs[1].body, 1, true)
    assert.matches('"meta":{}', reqs[1].body, 1, true)
  end)
end)

describe("ghl.build_info", function()
  it("says what the module was built against and runs with", function()
    local b = ghl.build_info()
    assert.equal(ghl.VERSION, b.version)
    assert.equal(_VERSION, b.lua) -- LuaJIT's _VERSION is "Lua 5.1", the headers it loads
    assert.matches("^%d+%.%d+%.%d+", b.libcurl)
    assert.matches("^OpenSSL/%d", b.tls)
    assert.is_boolean(b.http2)
    assert.are_not.equal(b, ghl.build_info()) -- a table of the caller's own
  end)

  it("gives the libcurl that curl-config names", function()
    local want = h.capture("curl-config --version 2>/dev/null || pkg-config --modversion libcurl")
    assert.equal(want:match("%d+%.%d+%.%d+"), ghl.build_info().libcurl)
  end)
end)
