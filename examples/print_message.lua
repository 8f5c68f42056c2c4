-- Fetches one message and prints it readably.
--   GHL_TOKEN=... lua examples/print_message.lua <message-id> [base_url [ca_file]]
-- The token comes from GHL_TOKEN (ghl reads it when opts.token is absent). ca_file (or the
-- GHL_CAINFO environment variable) is a PEM bundle that verifies the server, for an HTTPS
-- base_url signed by a private CA (ghl's cainfo option).
local ghl = require("ghl")

local function show(value, indent)
  indent = indent or ""
  if value == ghl.null then return "null" end
  if type(value) == "string" then return string.format("%q", value) end
  if type(value) ~= "table" then return tostring(value) end
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  if #keys == 0 then return "{}" end
  local lines = {}
  for _, k in ipairs(keys) do
    local name = type(k) == "number" and ("[" .. k .. "]") or k
    lines[#lines + 1] = indent .. "  " .. name .. " = " .. show(value[k], indent .. "  ")
  end
  return "{\n" .. table.concat(lines, ",\n") .. "\n" .. indent .. "}"
end

local function main(id, base_url, cainfo)
  local message, err, info = ghl.get_message(id, { base_url = base_url, cainfo = cainfo })
  if not message then
    io.stderr:write(err, "\n")
    return 1
  end
  print("message = " .. show(message))
  print(string.format("status %d, trace_id %s, attempts %d", info.status,
    tostring(info.trace_id), info.attempts))
  if info.rate_limit then
    print(string.format("rate limit: %d of %d left in this window, %d today",
      info.rate_limit.remaining or -1, info.rate_limit.max or -1, info.rate_limit.daily_remaining or -1))
  end
  return 0
end

if ... == "print_message" then
  return { show = show, main = main } -- used by the demo
end
local id = arg[1] or error("usage: lua examples/print_message.lua <message-id> [base_url [ca_file]]")
local cainfo = arg[3] or os.getenv("GHL_CAINFO")
os.exit(main(id, arg[2], cainfo ~= "" and cainfo or nil))
