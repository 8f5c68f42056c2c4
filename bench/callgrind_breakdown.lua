-- Where ghl's instructions go, from the callgrind.out files bench/run kept
-- (BENCH_CALLGRIND_KEEP), over HTTP:
--   1. callgrind_annotate's top 25 functions of the ghl run of N2 fetches, by
--      inclusive and by self instructions (the whole run, start-up included);
--   2. per fetch, (run of N2 - run of N1) / (N2 - N1), ghl next to the C floor:
--      the parts of a fetch (libcurl, cjson.decode for the floor, the rest), self
--      instructions by object, the calls out of ghl's code or the floor's, and
--      self instructions by function; largest differences first.
--   callgrind_breakdown.lua DIR N1 N2 [SCHEME]
package.path = "bench/?.lua;" .. package.path
local text_table = require("text_table")
local dir, n1, n2, scheme = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4] or "http"
local TOP = 25

local function file_of(prog, n) return string.format("%s/callgrind.out.%s.%s.%d", dir, prog, scheme, n) end

-- The Lua VM is linked into /usr/bin/lua5.4 and is liblua5.4.so in the floor:
-- one name for both, so the two can be compared.
local function object_name(path)
  local base = path:match("([^/]+)$") or path
  if base == "lua5.4" or base:match("^liblua5%.4%.so") then return "Lua 5.4 VM" end
  return (base:gsub("%.so[.%d]*$", ".so"))
end

-- Reads a callgrind.out file into tables keyed by "object: function":
-- self (instructions in the function itself), and calls[caller object][callee
-- "object: function"] (instructions of the calls from that object into a
-- function of another object, callees included); and self by object.
local function parse(path)
  local names = { ob = {}, fl = {}, fn = {} }
  local kind_of = { ob = "ob", cob = "ob", fl = "fl", fi = "fl", fe = "fl", cfi = "fl", cfl = "fl",
    fn = "fn", cfn = "fn" }
  local self, calls, by_object = {}, {}, {}
  local ob, fn, cob, cfn = "?", "?", nil, nil
  local call_pending = false
  local function name(kind, value)
    local id, rest = value:match("^%((%d+)%)%s*(.*)$")
    if not id then return value end
    -- "name'2": the function within a cycle of recursion; one name for both
    if rest ~= "" then names[kind][id] = kind == "fn" and rest:gsub("'%d+$", "") or rest end
    return names[kind][id] or ("(" .. id .. ")")
  end
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local c = line:byte(1)
    if c and (c >= 48 and c <= 57 or c == 43 or c == 45 or c == 42) then -- 0-9 + - *
      local cost = tonumber(line:match("^%S+%s+(%d+)")) or 0
      local o = object_name(ob)
      if call_pending then
        call_pending = false
        local co = object_name(cob or ob)
        if co ~= o and not cfn:match("^__libc_start_main") then -- the whole program
          calls[o] = calls[o] or {}
          local key = co .. ": " .. cfn
          calls[o][key] = (calls[o][key] or 0) + cost
        end
        cob = nil
      else
        local key = o .. ": " .. fn
        self[key] = (self[key] or 0) + cost
        by_object[o] = (by_object[o] or 0) + cost
      end
    else
      local k, v = line:match("^(%a+)=(.*)$")
      if k == "calls" then
        call_pending = true
      elseif k and kind_of[k] then
        local nm = name(kind_of[k], v)
        if k == "ob" then ob = nm
        elseif k == "fn" then fn = nm
        elseif k == "cob" then cob = nm
        elseif k == "cfn" then cfn = nm
        end
      end
    end
  end
  f:close()
  return { self = self, calls = calls, by_object = by_object }
end

-- Self instructions with the Lua VM's unnamed (internal) functions as one.
local function merge_unnamed(t)
  local out = {}
  for k, v in pairs(t) do
    if k:match("^Lua 5%.4 VM: 0x") then k = "Lua 5.4 VM: (internal functions, unnamed)" end
    out[k] = (out[k] or 0) + v
  end
  return out
end

-- Instructions spent in calls from any other object into object o.
local function entered(calls, o, from)
  local sum = 0
  for caller, t in pairs(calls) do
    if from == nil or caller == from then
      for k, v in pairs(t) do
        if k:sub(1, #o + 2) == o .. ": " then sum = sum + v end
      end
    end
  end
  return sum
end

-- Per fetch: (b - a) / (n2 - n1) for every key of either table.
local function per_fetch(a, b)
  local out = {}
  for k, v in pairs(b) do out[k] = (v - (a[k] or 0)) / (n2 - n1) end
  for k, v in pairs(a) do if out[k] == nil then out[k] = -v / (n2 - n1) end end
  return out
end

local thousands = text_table.thousands

local print_table = text_table.print

-- Rows "key, ghl, floor, ghl - floor", largest |ghl - floor| first, at most
-- limit of them and none under min; also the totals of both columns.
local function diff_rows(g, f, limit, min)
  local keys = {}
  for k in pairs(g) do keys[#keys + 1] = k end
  for k in pairs(f) do if g[k] == nil then keys[#keys + 1] = k end end
  local function d(k) return (g[k] or 0) - (f[k] or 0) end
  table.sort(keys, function(a, b)
    local x, y = math.abs(d(a)), math.abs(d(b))
    if x ~= y then return x > y end
    return a < b
  end)
  local rows, tg, tf = {}, 0, 0
  for _, k in ipairs(keys) do
    tg, tf = tg + (g[k] or 0), tf + (f[k] or 0)
    if #rows < limit and math.abs(d(k)) >= min then
      rows[#rows + 1] = { k, thousands(g[k] or 0), thousands(f[k] or 0), thousands(d(k)) }
    end
  end
  return rows, tg, tf
end

-- 1. callgrind_annotate on the long ghl run
local function annotate(path, inclusive)
  local p = assert(io.popen(string.format("callgrind_annotate --auto=no --threshold=100%s '%s'",
    inclusive and " --inclusive=yes" or "", path)))
  local text = p:read("a")
  p:close()
  local out, seen = {}, false
  for line in text:gmatch("[^\n]*") do
    if seen and line:match("^%s*[%d,]+ %(") then
      out[#out + 1] = line
      if #out == TOP then break end
    elseif line:match("file:function") then
      seen = true
    end
  end
  return out
end

local ghl_n2 = file_of("ghl", n2)
for _, inclusive in ipairs({ true, false }) do
  print(string.format("ghl %s, %d fetches, whole run: top %d by %s instructions (callgrind_annotate%s %s)",
    scheme:upper(), n2, TOP, inclusive and "inclusive" or "self", inclusive and " --inclusive=yes" or "",
    ghl_n2))
  for _, l in ipairs(annotate(ghl_n2, inclusive)) do print(l) end
  print()
end

-- 2. per fetch, against the floor
local g1, g2 = parse(file_of("ghl", n1)), parse(ghl_n2)
local f1, f2 = parse(file_of("floor", n1)), parse(file_of("floor", n2))
-- the same runs with Lua's garbage collector stopped: each call's own work
local gn1, gn2 = parse(file_of("ghl_nogc", n1)), parse(file_of("ghl_nogc", n2))
local fn1, fn2 = parse(file_of("floor_nogc", n1)), parse(file_of("floor_nogc", n2))
local function total(t) local x = 0 for _, v in pairs(t) do x = x + v end return x end
local function pf(a, b) return (b - a) / (n2 - n1) end

print(string.format("per fetch, %s: (I(%d) - I(%d)) / %d; ghl = client:get_message on Lua 5.4,"
  .. " floor = bench/floor.c", scheme:upper(), n2, n1, n2 - n1))
print()
-- where a fetch goes, in parts both programs have, measured with the GC
-- stopped, and the GC as the difference the collector makes. The caller's
-- loop is what runs outside client:get_message for ghl, and all but libcurl
-- and cjson for the floor.
local function parts(r, rn, host)
  local t = {}
  t.total = total(r.by_object)
  t.gc = t.total - total(rn.by_object)
  t.curl = entered(rn.calls, "libcurl.so", host)
  t.callbacks = entered(rn.calls, host, "libcurl.so")
  t.cjson = entered(rn.calls, "liblua5.4-cjson.so")
  t.host = host == "ghl.so" and entered(rn.calls, host, "Lua 5.4 VM") - t.curl - t.cjson or 0
  t.loop = t.total - t.gc - t.curl - t.cjson - t.host
  return t
end
local gp1, gp2 = parts(g1, gn1, "ghl.so"), parts(g2, gn2, "ghl.so")
local fp1, fp2 = parts(f1, fn1, "floor"), parts(f2, fn2, "floor")
local rows = {}
local function part_row(label, fn)
  local g, f = pf(fn(gp1), fn(gp2)), pf(fn(fp1), fn(fp2))
  rows[#rows + 1] = { label, thousands(g), thousands(f), thousands(g - f) }
end
part_row("in libcurl (curl_easy_* calls, callbacks included)", function(t) return t.curl end)
part_row("  of which ghl's or the floor's write/header callbacks", function(t) return t.callbacks end)
part_row("in cjson.decode (the floor; ghl decodes in its own code, the next row)", function(t) return t.cjson end)
part_row("ghl's own work in client:get_message", function(t) return t.host end)
part_row("the caller's loop (fetch.lua; the floor's main)", function(t) return t.loop end)
part_row("Lua's garbage collector (run with it - run without)", function(t) return t.gc end)
part_row("total", function(t) return t.total end)
print_table({ "part of one fetch", "ghl", "floor", "ghl - floor" }, rows)
print("(all but the GC row: measured with the GC stopped, where memory is never reused)")
print()

local g_obj, f_obj = per_fetch(g1.by_object, g2.by_object), per_fetch(f1.by_object, f2.by_object)
local tg, tf
rows, tg, tf = diff_rows(g_obj, f_obj, math.huge, 50)
rows[#rows + 1] = { "total", thousands(tg), thousands(tf), thousands(tg - tf) }
print("self instructions by object (GC running)")
print_table({ "object", "ghl", "floor", "ghl - floor" }, rows)
print()

-- calls the host code (ghl.so, or the floor's main) makes into other objects
local function host_calls(r, host) return r.calls[host] or {} end
local g_calls = per_fetch(host_calls(gn1, "ghl.so"), host_calls(gn2, "ghl.so"))
local f_calls = per_fetch(host_calls(fn1, "floor"), host_calls(fn2, "floor"))
rows = diff_rows(g_calls, f_calls, TOP, 1)
print(string.format("top %d calls out of ghl.so (ghl) or the floor's code (floor), by |ghl - floor|:"
  .. " instructions in the callee\nand below, GC stopped", TOP))
print_table({ "callee", "ghl", "floor", "ghl - floor" }, rows)
print()

local g_self = merge_unnamed(per_fetch(g1.self, g2.self))
local f_self = merge_unnamed(per_fetch(f1.self, f2.self))
rows = diff_rows(g_self, f_self, TOP, 1)
print(string.format("top %d functions by |ghl - floor| of self instructions, GC running (\"0x...\":"
  .. " a function the stripped\nlibrary does not name)", TOP))
print_table({ "object: function", "ghl", "floor", "ghl - floor" }, rows)
