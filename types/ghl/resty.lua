---@meta ghl.resty
-- LuaCATS stubs of require("ghl.resty") (OpenResty, nginx cosockets). Declarations only.
-- The functions under "ghl_resty.new clients" below are those of ghl_resty.new(opts) clients
-- (the contract's section 5); spec/08-stubs_spec.lua checks them against the module.

---The options of `ghl.get_message` (`cainfo` and `proxy` raise here; a `token` function runs in
---the light thread of the request that needs it, one call at a time per client), and the
---worker's pool size.
---@class ghl.resty.Options: ghl.Options
---@field pool_size? integer idle connections kept per pool (default 512, `ghl_resty.POOL_SIZE`)

---@class ghl.resty
---@field POOL_SIZE integer the default `pool_size`, 512
---@field KEEPALIVE_TIMEOUT number seconds an idle connection stays in the worker's pool, 60
---@field TOKEN_WAIT number seconds a request waits for another request's call of the client's token function, 60
---@field null lightuserdata `ghl.null`, the same value as `ngx.null` and `cjson.null`
---@field _verify_failed_at_once integer Internal (may change in any release): handshakes of the worker whose failed verification nginx reported by a raise
local ghl_resty = {}

---As `ghl.get_message`, on nginx cosockets, never blocking the worker's event loop.
---@param id string
---@param opts? ghl.resty.Options
---@return ghl.Message? message
---@return string? errmsg
---@return ghl.Info info
function ghl_resty.get_message(id, opts) end

---As `client:get_messages`: at most `opts.concurrency` light threads in flight.
---@param ids string[]
---@param opts? ghl.resty.Options|ghl.BatchOptions
---@return table<string, ghl.Message> messages
---@return table<string, ghl.Info> failures
function ghl_resty.get_messages(ids, opts) end

---`ghl.verify_webhook` over the current request's raw body and headers.
---@param opts? ghl.WebhookOptions
---@return table? event
---@return string? errmsg
---@return ghl.Info info
function ghl_resty.verify_webhook(opts) end

-- ghl_resty.new clients ----------------------------------------------------------------------

---A client of `ghl_resty.new`: every method of a C client, on cosockets.
---@class ghl.resty.Client
local RestyClient = {}

---A client with the methods of `ghl.new`'s, on nginx cosockets.
---@param opts? ghl.resty.Options
---@return ghl.resty.Client
function ghl_resty.new(opts) end

---`ghl.oauth_token` on cosockets.
---@param form table<string, string>
---@param opts? ghl.OAuthOptions
---@return table? res
---@return string? errmsg
---@return ghl.Info info
function ghl_resty.oauth_token(form, opts) end

---@param id string
---@param opts? ghl.CallOptions
---@return ghl.Message? message
---@return string? errmsg
---@return ghl.Info info
function RestyClient:get_message(id, opts) end

---@param ids string[]
---@param opts? ghl.BatchOptions
---@return table<string, ghl.Message> messages
---@return table<string, ghl.Info> failures
function RestyClient:get_messages(ids, opts) end

---@param email_id string
---@param opts? ghl.CallOptions
---@return table? email
---@return string? errmsg
---@return ghl.Info info
function RestyClient:get_email(email_id, opts) end

---@param conversation_id string
---@param opts? ghl.CallOptions
---@return table? conversation
---@return string? errmsg
---@return ghl.Info info
function RestyClient:get_conversation(conversation_id, opts) end

---@param conversation_id string
---@param query? table
---@param opts? ghl.CallOptions
---@return ghl.MessagePage? page
---@return string? errmsg
---@return ghl.Info info
function RestyClient:list_messages(conversation_id, query, opts) end

---@param query table
---@param opts? ghl.CallOptions
---@return ghl.ConversationPage? page
---@return string? errmsg
---@return ghl.Info info
function RestyClient:search_conversations(query, opts) end

---@param body table
---@param opts? ghl.CallOptions
---@return table? sent
---@return string? errmsg
---@return ghl.Info info
function RestyClient:send_message(body, opts) end

---@param message_id string
---@param location_id string
---@param opts? ghl.CallOptions
---@return string? wav
---@return string? errmsg
---@return ghl.Info info
function RestyClient:get_recording(message_id, location_id, opts) end

---@param method "GET"|"POST"|"PUT"|"PATCH"|"DELETE"
---@param path string
---@param args? ghl.RequestArgs
---@param opts? ghl.CallOptions
---@return any result
---@return string? errmsg
---@return ghl.Info info
function RestyClient:request(method, path, args, opts) end

---@param conversation_id string
---@param query? table
---@param opts? ghl.CallOptions
---@return fun(): (ghl.Message|false)?, string?, ghl.Info?
function RestyClient:each_message(conversation_id, query, opts) end

---@param query table
---@param opts? ghl.CallOptions
---@return fun(): (table|false)?, string?, ghl.Info?
function RestyClient:each_conversation(query, opts) end

---@return ghl.RateLimit?
function RestyClient:rate_limit() end

---Lets the client go (its connections stay in the worker's pool).
function RestyClient:close() end

return ghl_resty
