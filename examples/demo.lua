-- `make demo`: starts the project's local test server (the one the spec uses),
-- fetches a message from it over HTTPS with ghl.get_message, prints it, stops
-- the server.
local helpers = require("helpers")
local example = require("print_message")

local server = helpers.start()
-- the local server checks only that a token is present; this one is a dummy
local ok, code = pcall(function()
  local ghl = require("ghl")
  local message, err, info = ghl.get_message("call", {
    token = "demo-token", base_url = server.https_url, cainfo = server.cainfo,
  })
  if not message then error(err) end
  print("GET " .. ghl.get_message_request("call", { token = "demo-token", base_url = server.https_url }).url)
  print("message = " .. example.show(message))
  print(string.format("info: status %d, trace_id %s, attempts %d, rate limit %d/%d left",
    info.status, info.trace_id, info.attempts, info.rate_limit.remaining, info.rate_limit.max))
  return 0
end)
helpers.stop()
if not ok then
  io.stderr:write(tostring(code), "\n")
  os.exit(1)
end
print("\nAgainst the real API:")
print("  GHL_TOKEN=<your token> LUA_CPATH='build/lua5.4/?.so;;' lua5.4 examples/print_message.lua <message-id>")
