-- ghl's JSON decoder, through ghl.decode_message, against lua-cjson as the
-- reference: the same values for the same text, then the module's rules
-- (null members left out, null elements ghl.null, integral numbers within
-- +-(2^53 - 1) integers on 5.3+), number types included.

local h = require("helpers")
local ghl = require("ghl")

local cjson = h.json
local MAX_EXACT = 9007199254740991

-- What the module promises for cjson's value v (inside an object when
-- `member`): nil for a null member.
local function promised(v, member)
  if v == cjson.null then
    if member then return nil end
    return ghl.null
  end
  if type(v) == "number" and math.type and math.type(v) == "float"
    and v == math.floor(v) and math.abs(v) <= MAX_EXACT then
    return math.tointeger(v)
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = promised(x, type(k) == "string") end
  return out
end

local function number_type(v)
  return math.type and math.type(v) or "number"
end

-- The first difference between got and want, with its path, or nil.
local function difference(got, want, path)
  if type(got) ~= type(want) then
    return path .. ": " .. type(got) .. " " .. tostring(got) .. ", want " .. type(want) .. " " .. tostring(want)
  end
  if type(got) == "number" then
    if number_type(got) ~= number_type(want) or got ~= want then
      return path .. ": " .. number_type(got) .. " " .. string.format("%.17g", got)
        .. ", want " .. number_type(want) .. " " .. string.format("%.17g", want)
    end
    return nil
  end
  if type(got) ~= "table" then
    if got ~= want then return path .. ": " .. string.format("%q", tostring(got)) .. ", want " .. string.format("%q", tostring(want)) end
    return nil
  end
  for k, x in pairs(want) do
    local d = difference(got[k], x, path .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(got) do
    if want[k] == nil then return path .. "." .. tostring(k) .. ": present, want absent" end
  end
  return nil
end

-- The message {id, v = text} decoded by ghl, and what it must be.
local function both(text)
  local body = '{"message":{"id":"m1","v":' .. text .. '},"traceId":"t1"}'
  local msg, err = ghl.decode_message(body)
  return msg, err, promised(cjson.decode(body), false).message
end

---------------------------------------------------------------------------
-- Random JSON texts, the same for every runtime's run (a seeded generator of
-- our own: math.random's sequence differs between versions)

local function generator(seed)
  local x = seed
  return function(n) -- 1..n
    x = (x * 1103515245 + 12345) % 2147483648
    return x % n + 1
  end
end

local STRING_PIECES = {
  "a", "Z", "0", " ", "hello", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
  "\\u0041", "\\u00e9", "\\u20AC", "\\ud83d\\ude00", "\\uD834\\uDD1E", "\\u0000", "\\u001f",
  "é", "€", "😀", "日本", "'", "{", "]", ",", ":",
}

local NUMBERS = {
  "0", "-0", "1", "-1", "42", "1234567890", "-987654321", "9007199254740991", "-9007199254740991",
  "9007199254740992", "9007199254740993", "18446744073709551616", "123456789012345678901234567890",
  "1.5", "-0.25", "1.0", "0.1", "3.14159265358979", "1e3", "1E-2", "2.5e+10", "-1.25E2",
  "0.1e1", "1e22", "1e300", "5e-324", "2.2250738585072014e-308", "100000000000000000000",
  "0.000000000000000000000000000000000000000000000000000000000000000000000001",
}

local SPACES = { "", "", "", " ", "\n", "\t", "\r\n  " }

local function gen_string(rand)
  local parts = { '"' }
  for _ = 1, rand(6) - 1 do parts[#parts + 1] = STRING_PIECES[rand(#STRING_PIECES)] end
  parts[#parts + 1] = '"'
  return table.concat(parts)
end

local function gen_value(rand, depth)
  local sp = function() return SPACES[rand(#SPACES)] end
  local kind = rand(depth < 4 and 8 or 5)
  if kind == 1 then return gen_string(rand) end
  if kind == 2 then return NUMBERS[rand(#NUMBERS)] end
  if kind == 3 then return ({ "true", "false", "null" })[rand(3)] end
  if kind == 4 then return gen_string(rand) end
  if kind == 5 then return NUMBERS[rand(#NUMBERS)] end
  if kind == 6 or kind == 7 then
    local members, keys = {}, { '"a"', '"b"', '"id"', '"é"', '"\\u00e9"', '"1"', '""' }
    for _ = 1, rand(6) - 1 do
      members[#members + 1] = sp() .. keys[rand(#keys)] .. sp() .. ":" .. sp() .. gen_value(rand, depth + 1) .. sp()
    end
    return "{" .. sp() .. table.concat(members, ",") .. "}"
  end
  local elements = {}
  for _ = 1, rand(6) - 1 do elements[#elements + 1] = sp() .. gen_value(rand, depth + 1) .. sp() end
  return "[" .. sp() .. table.concat(elements, ",") .. "]"
end

describe("the JSON decoder", function()
  it("gives what lua-cjson gives, by the module's rules, for 3000 random texts", function()
    local rand = generator(20261201)
    for i = 1, 3000 do
      local text = gen_value(rand, 0)
      local msg, err, want = both(text)
      assert.is_nil(err, "text " .. i .. ": " .. text)
      local d = difference(msg, want, "message")
      assert.is_nil(d, "text " .. i .. ": " .. text .. ": " .. tostring(d))
    end
  end)

  it("reads every number form with the right value and type", function()
    for _, text in ipairs(NUMBERS) do
      local msg, err, want = both(text)
      assert.is_nil(err, text)
      assert.is_nil(difference(msg, want, text))
    end
    local msg = assert(ghl.decode_message('{"message":{"id":"m1","a":9007199254740991,"b":-9007199254740991,'
      .. '"c":9007199254740992,"d":1.0,"e":1e2,"f":-0,"g":0.5}}'))
    assert.is_true(h.is_integer(msg.a))
    assert.equal(9007199254740991, msg.a)
    assert.is_true(h.is_integer(msg.b))
    assert.equal(-9007199254740991, msg.b)
    assert.equal(9007199254740992, msg.c)
    if math.type then
      assert.equal("float", math.type(msg.c)) -- 2^53: beyond the exact integers
      assert.equal("integer", math.type(msg.d))
      assert.equal("integer", math.type(msg.e))
      assert.equal("integer", math.type(msg.f))
    end
    assert.equal(100, msg.e)
    assert.equal(0, msg.f)
    assert.equal(0.5, msg.g)
  end)

  it("decodes escapes and surrogate pairs to UTF-8, and keeps raw UTF-8 and \\u0000", function()
    local msg = assert(ghl.decode_message('{"message":{"id":"m1","s":"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t'
      .. '\\u0041\\u00e9\\u20ac\\ud83d\\ude00|\\u0000|é€😀"}}'))
    assert.equal('a"b\\c/d\b\f\n\r\tAé€😀|\0|é€😀', msg.s)
  end)

  it("leaves out null members, also one that repeats an earlier name, and keeps null elements", function()
    local msg = assert(ghl.decode_message('{"message":{"id":"m1","a":null,"b":1,"b":null,"c":[null,1,null],'
      .. '"d":{"x":null}}}'))
    assert.is_nil(msg.a)
    assert.is_nil(msg.b)
    assert.same({ ghl.null, 1, ghl.null }, msg.c)
    assert.same({}, msg.d)
    assert.is_nil(next(msg.d))
  end)

  it("takes the last of repeated member names, as lua-cjson does", function()
    local msg, _, want = both('{"k":1,"k":"two","k":[3]}')
    assert.same({ 3 }, msg.v.k)
    assert.is_nil(difference(msg, want, "message"))
  end)

  -- guards: members and elements wait on the stack in groups before their table is made
  it("gives what lua-cjson gives for objects and arrays of 0 to 100 items, repeated names across groups, 20 wide levels", function()
    for _, n in ipairs({ 0, 1, 31, 32, 33, 63, 64, 65, 100 }) do
      local members, elements = {}, {}
      for i = 1, n do
        members[#members + 1] = string.format('"k%d":%d', i % 40, i) -- names repeat past 40
        elements[#elements + 1] = i % 7 == 0 and "null" or tostring(i)
      end
      if n > 0 then members[#members + 1] = '"k1":null' end -- clears the earlier k1
      local text = '"o":{' .. table.concat(members, ",") .. '},"a":[' .. table.concat(elements, ",") .. "]"
      local msg, err, want = both("{" .. text .. "}")
      assert.is_nil(err, n)
      assert.is_nil(difference(msg, want, "message"), n)
      assert.equal(n, #msg.v.a)
      assert.is_nil(msg.v.o.k1, n)
    end
    -- 20 levels, each with 40 members before the next level and 40 elements after
    local open = {}
    for level = 1, 20 do
      local members = {}
      for i = 1, 40 do members[i] = string.format('"m%d":%d', i, level) end
      open[#open + 1] = "{" .. table.concat(members, ",") .. ',"next":['
    end
    local text = table.concat(open) .. "0" .. string.rep(string.rep(",1", 40) .. "]}", 20)
    local msg, err, want = both(text)
    assert.is_nil(err)
    assert.is_nil(difference(msg, want, "message"))
    assert.equal(1, msg.v.m40)
    assert.equal(41, #msg.v.next)
  end)

  it("refuses what is not JSON, as kind decode", function()
    local bad = {
      "[1,]", "[,1]", '{"a":1,}', "{,}", "01", "-01", "1.", ".5", "-", "1e", "1e+", "+1", "0x10", "-0x10",
      "NaN", "Infinity", "-Infinity", "tru", "nul", "falsey", "[", "]", "{", '{"a"}', '{"a" 1}', "{1:2}",
      "[1 2]", '"abc', '"\\x"', '"\\u12"', '"\\u12g4"', '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"',
      '"\\ud800x"', "'a'", "[1]]", "{}}", "", " ",
    }
    for _, text in ipairs(bad) do
      local body = '{"message":{"id":"m1","v":' .. text .. '}}'
      local msg, err, info = ghl.decode_message(body)
      assert.is_nil(msg, text)
      assert.equal("ghl: cannot decode the response: the body is not valid JSON", err, text)
      assert.equal("decode", info.kind, text)
    end
    for _, text in ipairs({ '{"a":1} x', "1 2", '{"message":{"id":"m"}}}', "\239\187\191{}" }) do
      local _, err = ghl.decode_message(text)
      assert.equal("ghl: cannot decode the response: the body is not valid JSON", err, text)
    end
  end)

  it("takes nesting 1000 deep and refuses 1001", function()
    local ok = ghl.decode_message('{"message":{"id":"m1","v":' .. string.rep("[", 998) .. string.rep("]", 998) .. "}}")
    assert.is_table(ok)
    local _, err = ghl.decode_message('{"message":{"id":"m1","v":' .. string.rep("[", 999) .. string.rep("]", 999) .. "}}")
    assert.equal("ghl: cannot decode the response: the body is not valid JSON", err)
  end)

  it("calls a number beyond a double out of range, once the text is known to be JSON", function()
    local _, err = ghl.decode_message('{"message":{"id":"m1","v":[1e400]}}')
    assert.equal("ghl: cannot decode the response: a number is out of range", err)
    _, err = ghl.decode_message('{"message":{"id":"m1","v":[1e400,]}}')
    assert.equal("ghl: cannot decode the response: the body is not valid JSON", err)
  end)

  -- Not under scripts/check-memory's wrapper interpreters (a script, "#!"):
  -- setlocale's own lasting allocations there read as leaks to the checker.
  local function wrapped()
    local f = io.open(h.lua_exe(), "rb")
    local magic = f and f:read(2) or ""
    if f then f:close() end
    return magic == "#!"
  end
  local locale_it = wrapped() and pending or it
  locale_it("reads numbers with '.' whatever the C library's LC_NUMERIC says", function()
    -- a locale whose decimal point is ',', built here (localedef) into a scratch directory
    local dir = h.temp_dir("ghl-locale")
    local built = os.execute("localedef -i de_DE -f UTF-8 " .. h.quote(dir .. "/de_DE.UTF-8") .. " >/dev/null 2>&1")
    assert.is_truthy(built == true or built == 0, "localedef could not build de_DE.UTF-8 (package locales)")
    local ok, out = h.run_lua([[
      assert(os.setlocale("de_DE.UTF-8", "numeric"), "setlocale")
      -- PUC Lua formats numbers with the C library (LuaJIT has its own)
      assert(jit or tostring(0.5) == "0,5", "the locale is not in effect: " .. tostring(0.5))
      local ghl = require("ghl")
      local m = assert(ghl.decode_message('{"message":{"id":"m1","a":1.5,"b":2.5e-3,"c":-12.75,"d":1.0000000000000002}}'))
      io.write((string.format("%.17g %.17g %.17g %.17g", m.a, m.b, m.c, m.d):gsub(",", ".")))
    ]], { LOCPATH = dir, LUA_CPATH = package.cpath, LUA_PATH = package.path }, 60)
    h.remove_dir(dir)
    assert.is_true(ok, out)
    assert.equal("1.5 0.0025000000000000001 -12.75 1.0000000000000002", out)
  end)
end)
