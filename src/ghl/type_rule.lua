-- The message `type` rule of ghl's decoder, for the host adapters: their
-- fetches run in another Lua state (a pool thread's), while the names an
-- application adds to ghl.MESSAGE_TYPES live in the caller's state. So the
-- adapters fetch with convert_enums = false and apply the rule here, with the
-- caller's table: the message's own TYPE_* messageType, else the name
-- MESSAGE_TYPES gives the number, else the number stays.
local ghl = require("ghl")

return function(msg)
  if type(msg) ~= "table" or type(msg.type) ~= "number" then return end
  local mt = msg.messageType
  if type(mt) == "string" and mt:sub(1, 5) == "TYPE_" then
    msg.type = mt
    return
  end
  local name = rawget(ghl.MESSAGE_TYPES, msg.type)
  if type(name) == "string" then msg.type = name end
end
