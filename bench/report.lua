-- Prints bench/run's table from its results file: the median of each row's
-- repetitions (wall time, and the measured process's own CPU time), the ratio
-- to the row it is held to, the target, PASS or MISS.
--   report.lua RESULTS N N_SPAWN N_SOCKET BATCH CONC RSS_N
package.path = "bench/?.lua;" .. package.path
local text_table = require("text_table")
local path, n, n_spawn, n_socket, batch, conc, rss_n = table.unpack(arg, 1, 7)

local wall, cpu, rss = {}, {}, {}
for line in io.lines(path) do
  local key, rest = line:match("^(%S+) (.*)$")
  if key:match("^rss%.") then
    rss[key] = tonumber(rest:match("per_fetch=(%S+)"))
  else
    wall[key] = wall[key] or {}
    table.insert(wall[key], tonumber(rest:match("us=(%S+)")))
    local c = tonumber(rest:match("cpu=(%S+)"))
    if c then
      cpu[key] = cpu[key] or {}
      table.insert(cpu[key], c)
    end
  end
end

local function median(set, key)
  local t = set[key]
  if not t or #t == 0 then return nil end
  table.sort(t)
  local m = #t // 2
  return #t % 2 == 1 and t[m + 1] or (t[m] + t[m + 1]) / 2
end

local function spread(key)
  local t = wall[key]
  table.sort(t)
  return string.format("%.1f-%.1f", t[1], t[#t])
end

local rows = {}
-- label, key measured, key it is held to (or nil), target text, check(ratio) or nil
local function row(label, key, base, target, check, ratio_of)
  local v = median(wall, key)
  local r, ok = "1.00", nil
  if base then
    local b = median(wall, base)
    local x = ratio_of == "times" and v / b or v / b
    r = string.format(ratio_of == "times" and "%.1f" or "%.3f", x)
    if check then ok = check(x) end
  end
  local c, cr = median(cpu, key), "-"
  if c and base and median(cpu, base) and ratio_of ~= "times" then
    cr = string.format("%.3f", c / median(cpu, base))
  elseif c and not base then
    cr = "1.00"
  end
  rows[#rows + 1] = {
    label, string.format("%.1f", v), r, target,
    ok == nil and "-" or (ok and "PASS" or "MISS"),
    c and string.format("%.1f", c) or "-", cr, spread(key),
  }
end

local RT = { lua54 = "Lua 5.4", luajit = "LuaJIT" }
local SCHEME = { http = "HTTP", https = "HTTPS" }
local function le(x) return function(r) return r <= x end end

for _, s in ipairs({ "http", "https" }) do
  row("1 C floor: easy handle + cjson " .. SCHEME[s], "floor." .. s, nil, "-")
  for _, rt in ipairs({ "lua54", "luajit" }) do
    row("2 client:get_message " .. RT[rt] .. " " .. SCHEME[s], "client." .. rt .. "." .. s,
      "floor." .. s, "<= 1.10 x row 1", le(1.10))
  end
  for _, rt in ipairs({ "lua54", "luajit" }) do
    row("3 ghl.get_message " .. RT[rt] .. " " .. SCHEME[s], "module." .. rt .. "." .. s,
      "client." .. rt .. "." .. s, "<= 1.25 x row 2", le(1.25))
  end
end
for _, s in ipairs({ "http", "https" }) do
  row("4 io.popen curl + cjson " .. SCHEME[s], "popen." .. s, "client.lua54." .. s,
    ">= 100 x row 2", function(r) return r >= 100 end, "times")
end
for _, s in ipairs({ "http", "https" }) do
  row("5 " .. (s == "http" and "socket.http" or "ssl.https") .. " + cjson " .. SCHEME[s],
    "socket." .. s, "client.lua54." .. s, "(x row 2)", nil, "times")
end
for _, s in ipairs({ "http", "https" }) do
  row("6 C floor: multi + cjson " .. SCHEME[s], "batch.cfloor." .. s, nil, "-")
  for _, rt in ipairs({ "lua54", "luajit" }) do
    row("6 client:get_messages " .. RT[rt] .. " " .. SCHEME[s], "batch." .. rt .. "." .. s,
      "batch.cfloor." .. s, "<= 1.15 x C multi", le(1.15))
  end
end
for _, s in ipairs({ "http", "https" }) do
  for _, kind in ipairs({ "client", "module" }) do
    local v = rss["rss." .. kind .. "." .. s]
    rows[#rows + 1] = {
      "7 RSS " .. (kind == "client" and "client:get_message" or "ghl.get_message") .. " "
        .. SCHEME[s], string.format("%.2f B", v), "-", "< 10 B/fetch",
      v < 10 and "PASS" or "MISS", "-", "-", "",
    }
  end
end

local head = { "row", "us/fetch", "ratio", "target", "result", "cpu us", "cpu ratio", "reps min-max" }
text_table.print(head, rows, { [1] = true, [4] = true, [8] = true })
print()
print(string.format("us/fetch: wall time, median of the repetitions (rows 1-5: each the median of"
  .. " 10 blocks). cpu us: the measured process's own CPU time (not nginx's; not curl's in row 4)."
  .. "\nrows 1-3: %s fetches per loop; row 4: %s; row 5: %s over HTTP, %d over HTTPS; row 6: %s ids"
  .. " at concurrency %s, 20 ms per response;\nrow 7: growth of RSS per fetch between fetch 2,000"
  .. " and %s. Rows 4 and 5: ratio = times slower than row 2 (Lua 5.4).", n, n_spawn, n_socket,
  math.floor(tonumber(n_socket) / 5), batch, conc, rss_n))
local pass, miss = 0, 0
for _, r in ipairs(rows) do
  if r[5] == "PASS" then pass = pass + 1 elseif r[5] == "MISS" then miss = miss + 1 end
end
print(string.format("targets: %d met, %d missed (a report: timing never fails the run)", pass, miss))
