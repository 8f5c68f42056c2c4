-- Prints bench/run's instruction-count and batch-retry tables from its counts
-- file, whose lines are "cg.<program>.<scheme>.<fetches> <instructions>"
-- (callgrind totals) and "retry.<ids> us=<wall us per id> cpu=<CPU us per id>",
-- one of those per repetition: the median of each is reported.
--   report_counts.lua COUNTS N1 N2 CONC
package.path = "bench/?.lua;" .. package.path
local text_table = require("text_table")
local path, n1, n2, conc = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
local TARGET = 1.05

local cg, retry, sizes = {}, {}, {}
for line in io.lines(path) do
  local key, n, rest = line:match("^cg%.(%S+)%.(%d+) (%d+)$")
  if key then
    cg[key] = cg[key] or {}
    cg[key][tonumber(n)] = tonumber(rest)
  else
    local ids, us, cpu = line:match("^retry%.(%d+) us=(%S+) cpu=(%S+)$")
    if ids then
      ids = tonumber(ids)
      if not retry[ids] then
        retry[ids] = { us = {}, cpu = {} }
        sizes[#sizes + 1] = ids
      end
      table.insert(retry[ids].us, tonumber(us))
      table.insert(retry[ids].cpu, tonumber(cpu))
    end
  end
end

-- Instructions of one fetch: the difference of the two runs, start-up gone.
local function per_fetch(key)
  local t = cg[key]
  if not t or not t[n1] or not t[n2] then return nil end
  return (t[n2] - t[n1]) / (n2 - n1)
end

local thousands = text_table.thousands

local print_table = text_table.print

local SCHEME = { http = "HTTP", https = "HTTPS" }

if next(cg) then
  local rows, enc = {}, {}
  for _, s in ipairs({ "http", "https" }) do
    local g, f, fe = per_fetch("ghl." .. s), per_fetch("floor." .. s), per_fetch("floor_noenc." .. s)
    if g and f then
      local r = g / f
      rows[#rows + 1] = {
        "8 client:get_message Lua 5.4 vs C floor " .. SCHEME[s], thousands(g), thousands(f),
        string.format("%.3f", r), string.format("<= %.2f", TARGET), r <= TARGET and "met" or "not met",
      }
    end
    if f and fe then
      enc[#enc + 1] = {
        "8 C floor, CURLOPT_ACCEPT_ENCODING on vs off " .. SCHEME[s], thousands(f), thousands(fe),
        thousands(f - fe), string.format("%.1f%%", (f - fe) / f * 100),
      }
    end
  end
  print_table({ "row", "ghl instr/fetch", "floor instr/fetch", "ratio", "target", "result" }, rows,
    { [1] = true, [5] = true })
  print()
  print_table({ "row", "\"gzip, deflate\"", "unset", "instr/fetch it costs", "of the floor" }, enc,
    { [1] = true })
  print()
  print(string.format("row 8: instructions of the client process (callgrind; nginx is not counted),"
    .. " per fetch = (I(%d) - I(%d)) / %d:\neach program runs %d and %d fetches (after 10 warm-up"
    .. " fetches) and start-up cancels out. The floor is bench/floor.c.", n2, n1, n2 - n1, n1, n2))
end

local function median(t)
  table.sort(t)
  local m = #t // 2
  return #t % 2 == 1 and t[m + 1] or (t[m] + t[m + 1]) / 2
end

if #sizes > 0 then
  if next(cg) then print() end
  table.sort(sizes)
  local rows, reps = {}, #retry[sizes[1]].cpu
  local first = median(retry[sizes[1]].cpu)
  for _, ids in ipairs(sizes) do
    local r = retry[ids]
    local cpu = median(r.cpu)
    rows[#rows + 1] = {
      "9 client:get_messages, every id 503 once " .. thousands(ids) .. " ids",
      string.format("%.2f", cpu), string.format("%.3f", cpu / first),
      string.format("%.1f-%.1f", r.cpu[1], r.cpu[#r.cpu]), string.format("%.2f", median(r.us)),
    }
  end
  print_table({ "row", "cpu us/id", "cpu ratio", "cpu min-max", "wall us/id" }, rows, { [1] = true })
  print()
  print(string.format("row 9: one Lua 5.4 batch over HTTP at concurrency %s, retries = 1,"
    .. " max_retry_delay = 0, median of %d; cpu us/id:\nthe client's CPU time (os.clock) over the call,"
    .. " per id; cpu ratio: to the %s-id batch (linear: 1.00).", conc, reps, thousands(sizes[1])))
end
