-- Prints bench/run's table from its results file: the median of each row's
-- repetitions, its ratio to the row it is held to, the target, PASS or MISS.
--   report.lua RESULTS N N_SPAWN N_SOCKET BATCH CONC RSS_N
local path, n, n_spawn, n_socket, batch, conc, rss_n = table.unpack(arg, 1, 7)

local samples, rss = {}, {}
for line in io.lines(path) do
  local key, rest = line:match("^(%S+) (.*)$")
  if key:match("^rss%.") then
    rss[key] = tonumber(rest:match("per_fetch=(%S+)"))
  else
    samples[key] = samples[key] or {}
    table.insert(samples[key], tonumber(rest))
  end
end

local function median(key)
  local t = samples[key]
  if not t or #t == 0 then return nil end
  table.sort(t)
  local m = #t // 2
  return #t % 2 == 1 and t[m + 1] or (t[m] + t[m + 1]) / 2
end

local function spread(key)
  local t = samples[key]
  return string.format("%.1f-%.1f", t[1], t[#t])
end

local rows = {}
local function row(label, key, value, ratio, target, ok, note)
  rows[#rows + 1] = { label, value, ratio, target, ok == nil and "-" or (ok and "PASS" or "MISS"), note or "" }
end

local RT = { lua54 = "Lua 5.4", luajit = "LuaJIT" }
local SCHEME = { http = "HTTP", https = "HTTPS" }

for _, s in ipairs({ "http", "https" }) do
  local floor = median("floor." .. s)
  row("1 C floor (easy + cjson) " .. SCHEME[s], nil, string.format("%.1f", floor), "1.00", "-", nil,
    spread("floor." .. s))
  for _, rt in ipairs({ "lua54", "luajit" }) do
    local k = "client." .. rt .. "." .. s
    local v = median(k)
    row("2 client:get_message " .. RT[rt] .. " " .. SCHEME[s], k, string.format("%.1f", v),
      string.format("%.3f", v / floor), "<= 1.10 x floor", v / floor <= 1.10, spread(k))
  end
  for _, rt in ipairs({ "lua54", "luajit" }) do
    local k = "module." .. rt .. "." .. s
    local v, c = median(k), median("client." .. rt .. "." .. s)
    row("3 ghl.get_message " .. RT[rt] .. " " .. SCHEME[s], k, string.format("%.1f", v),
      string.format("%.3f", v / c), "<= 1.25 x row 2", v / c <= 1.25, spread(k))
  end
end
for _, s in ipairs({ "http", "https" }) do
  local k, c = "popen." .. s, median("client.lua54." .. s)
  local v = median(k)
  row("4 io.popen curl + cjson " .. SCHEME[s], k, string.format("%.1f", v),
    string.format("%.1f", v / c), ">= 100 x row 2", v / c >= 100, spread(k))
end
for _, s in ipairs({ "http", "https" }) do
  local k, c = "socket." .. s, median("client.lua54." .. s)
  local v = median(k)
  row("5 " .. (s == "http" and "socket.http" or "ssl.https") .. " + cjson " .. SCHEME[s], k,
    string.format("%.1f", v), string.format("%.1f", v / c), "(x row 2)", nil, spread(k))
end
for _, s in ipairs({ "http", "https" }) do
  local f = median("batch.cfloor." .. s)
  row("6 C multi floor " .. SCHEME[s], nil, string.format("%.1f", f), "1.00", "-", nil,
    spread("batch.cfloor." .. s))
  for _, rt in ipairs({ "lua54", "luajit" }) do
    local k = "batch." .. rt .. "." .. s
    local v = median(k)
    row("6 get_messages " .. RT[rt] .. " " .. SCHEME[s], k, string.format("%.1f", v),
      string.format("%.3f", v / f), "<= 1.15 x C multi", v / f <= 1.15, spread(k))
  end
end
for _, s in ipairs({ "http", "https" }) do
  for _, kind in ipairs({ "client", "module" }) do
    local v = rss["rss." .. kind .. "." .. s]
    row("7 RSS " .. (kind == "client" and "client:get_message" or "ghl.get_message") .. " "
      .. SCHEME[s], nil, string.format("%.2f B", v), "-", "< 10 B/fetch", v < 10, "")
  end
end

local head = { "row", "us/fetch", "ratio", "target", "result", "reps min-max" }
local width = {}
for i, h in ipairs(head) do width[i] = #h end
for _, r in ipairs(rows) do
  for i, cell in ipairs(r) do width[i] = math.max(width[i], #cell) end
end
local function line(cells)
  local out = {}
  for i, cell in ipairs(cells) do
    out[i] = (i == 1 or i == 4 or i == 6) and cell .. string.rep(" ", width[i] - #cell)
      or string.rep(" ", width[i] - #cell) .. cell
  end
  print((table.concat(out, "  "):gsub("%s+$", "")))
end
line(head)
local rule = {}
for i = 1, #head do rule[i] = string.rep("-", width[i]) end
line(rule)
for _, r in ipairs(rows) do line(r) end
print()
print(string.format("rows 1-3: %s fetches per loop; row 4: %s; row 5: %s; row 6: %s ids at"
  .. " concurrency %s, 20 ms per response; row 7: bytes of RSS per fetch between fetch 2,000"
  .. " and %s. Medians of the repetitions; row 4's and 5's ratios are how many times slower"
  .. " than row 2 (Lua 5.4).", n, n_spawn, n_socket, batch, conc, rss_n))
local pass, miss = 0, 0
for _, r in ipairs(rows) do
  if r[5] == "PASS" then pass = pass + 1 elseif r[5] == "MISS" then miss = miss + 1 end
end
print(string.format("targets: %d met, %d missed (a report: timing never fails the run)", pass, miss))
