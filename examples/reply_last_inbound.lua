-- Walks a conversation's messages (newest first), finds the last inbound
-- one, and replies to it on the same channel.
--   GHL_TOKEN=... lua examples/reply_last_inbound.lua <conversation-id> "<reply text>" [base_url [cainfo]]
-- Without a reply text it only prints what it would answer.
local ghl = require("ghl")

local function main(conversation_id, text, base_url, cainfo)
  local client = ghl.new({ base_url = base_url, cainfo = cainfo })
  local conversation, err = client:get_conversation(conversation_id)
  if not conversation then
    io.stderr:write(err, "\n")
    return 1
  end
  local last_inbound
  local seen = 0
  for message, err2 in client:each_message(conversation_id, { limit = 50 }) do
    if message == false then -- a page failed: the loop ends after this
      io.stderr:write(err2, "\n")
      return 1
    end
    seen = seen + 1
    if message.direction == "inbound" then
      last_inbound = message -- newest first: the first inbound one is the last one received
      break -- no further page is fetched
    end
  end
  if not last_inbound then
    print(string.format("no inbound message among %d in conversation %s", seen, conversation_id))
    return 0
  end
  print(string.format("last inbound: %s %s %q", last_inbound.type, tostring(last_inbound.dateAdded),
    tostring(last_inbound.body)))
  if not text then return 0 end
  -- reply on the message's channel: "TYPE_SMS" -> "SMS", "TYPE_EMAIL" -> "Email", ...
  local channel = ({ TYPE_SMS = "SMS", TYPE_EMAIL = "Email", TYPE_WHATSAPP = "WhatsApp",
    TYPE_FACEBOOK = "FB", TYPE_INSTAGRAM = "IG", TYPE_WEBCHAT = "Live_Chat" })[last_inbound.type] or "SMS"
  local body = { type = channel, contactId = conversation.contactId, message = text }
  if channel == "Email" then body.subject = "Re: " .. tostring(last_inbound.meta and last_inbound.meta.email
    and last_inbound.meta.email.subject or "your message") end
  local sent, err3, info = client:send_message(body)
  if not sent then
    -- never repeated after it may have arrived: info.attempts says how often it was sent
    io.stderr:write(err3, " (attempts: ", tostring(info.attempts), ")\n")
    return 1
  end
  print(string.format("sent: message %s in conversation %s", sent.messageId, sent.conversationId))
  client:close()
  return 0
end

if not arg[1] then
  io.stderr:write("usage: lua examples/reply_last_inbound.lua <conversation-id> [\"<reply text>\" [base_url [cainfo]]]\n")
  os.exit(2)
end
os.exit(main(arg[1], arg[2], arg[3], arg[4]))
