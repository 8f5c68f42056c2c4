-- Handlers for examples/openresty/nginx.conf.
local cjson = require("cjson")
local ghl = require("ghl")
local ghl_resty = require("ghl.resty")

local M = {}

local function options()
  -- token: GHL_TOKEN (read by ghl itself when opts.token is absent);
  -- base_url: GHL_BASE_URL when set (a local stand-in server, say), else the
  -- $ghl_base_url setting of nginx.conf (the API)
  local base_url = os.getenv("GHL_BASE_URL")
  if base_url == nil or base_url == "" then base_url = ngx.var.ghl_base_url end
  return { base_url = base_url ~= "" and base_url or nil, timeout = 10, retries = 1 }
end

-- The HTTP status to answer with for a failed fetch.
local function status_for(info)
  if info.kind == "http" and (info.status == 404 or info.status == 422) then
    return info.status
  elseif info.kind == "timeout" then
    return ngx.HTTP_GATEWAY_TIMEOUT
  end
  return ngx.HTTP_BAD_GATEWAY
end

local function send_json(status, value)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(value))
end

-- GET /messages/<id>. The fetch yields this request only: other requests go
-- on being served while it is in flight.
function M.message(id)
  local msg, err, info = ghl_resty.get_message(id, options())
  if not msg then
    ngx.log(ngx.WARN, err)
    return send_json(status_for(info), { error = err, kind = info.kind, trace_id = info.trace_id })
  end
  -- A null inside an array is ghl.null, the same value as ngx.null and
  -- cjson.null, so cjson writes it back as null.
  local attachments = msg.attachments or {}
  local nulls = 0
  for _, a in ipairs(attachments) do
    if a == ngx.null then nulls = nulls + 1 end
  end
  ngx.header["X-Ghl-Null-Attachments"] = nulls
  ngx.header["X-Ghl-Type"] = tostring(msg.type)
  send_json(ngx.HTTP_OK, msg)
end

-- GET /messages?ids=a,b,c: {messages = {...}, failures = {id = errmsg}}.
function M.messages(ids_arg)
  local ids = {}
  for id in (ids_arg or ""):gmatch("[A-Za-z0-9_-]+") do ids[#ids + 1] = id end
  local messages, failures = ghl_resty.get_messages(ids, options())
  local errors = {}
  for id, info in pairs(failures) do errors[id] = info.errmsg end
  send_json(ngx.HTTP_OK, { messages = messages, failures = errors })
end

-- One client per worker, made on first use: every request of the worker
-- shares it (its calls run side by side, each in its request's own thread),
-- and with a token function (examples/openresty/ghl_tokens.lua) they share
-- one refresh.
local client
local function the_client()
  if client == nil then client = ghl_resty.new(options()) end
  return client
end

-- GET /conversations/<id>/messages: {messages = [...]} over every page, or
-- the error of the page that failed.
function M.conversation_messages(id)
  local out = {}
  for msg, err, info in the_client():each_message(id, { limit = 100 }) do
    if msg == false then
      ngx.log(ngx.WARN, err)
      return send_json(status_for(info), { error = err, kind = info.kind, trace_id = info.trace_id })
    end
    out[#out + 1] = msg
    if #out >= 10000 then break end -- bounded, whatever the conversation holds
  end
  send_json(ngx.HTTP_OK, { messages = out })
end

-- access_by_lua: let the request through only for an inbound message.
function M.require_inbound(id)
  local msg, err, info = ghl_resty.get_message(id, options())
  if not msg then
    ngx.log(ngx.WARN, err)
    return ngx.exit(status_for(info))
  end
  if msg.direction ~= "inbound" then
    return ngx.exit(ngx.HTTP_FORBIDDEN)
  end
end

-- What to do with a message a webhook announced: here, log it.
local function handle_message(msg)
  ngx.log(ngx.INFO, "ghl: ", tostring(msg.direction), " ", tostring(msg.type), " message ", msg.id,
    " in conversation ", tostring(msg.conversationId))
end

-- POST /webhook. HighLevel wants a quick 200; the fetch (with its retries)
-- runs after the answer, in a timer, where cosockets work too.
function M.webhook()
  local event, err, info = ghl_resty.verify_webhook()
  if not event then
    ngx.log(ngx.WARN, err)
    return send_json(info.kind == "signature" and ngx.HTTP_UNAUTHORIZED or ngx.HTTP_BAD_REQUEST,
      { error = err, kind = info.kind })
  end
  send_json(ngx.HTTP_OK, { ok = true })
  if (event.type == "InboundMessage" or event.type == "OutboundMessage") and type(event.messageId) == "string" then
    local opts = options()
    local ok, why = ngx.timer.at(0, function(premature)
      if premature then return end -- the worker is exiting
      local msg, ferr = ghl_resty.get_message(event.messageId, opts)
      if not msg then return ngx.log(ngx.ERR, "ghl: webhook fetch failed: ", ferr) end
      handle_message(msg)
    end)
    if not ok then ngx.log(ngx.ERR, "ghl: cannot start the fetch: ", why) end
  end
end

M.null = ghl.null

return M
