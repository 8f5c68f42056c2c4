---@meta ghl.nvim
-- LuaCATS stubs of require("ghl.nvim") (Neovim: fetches on the main loop, results through
-- callbacks called there). Declarations only.

---@alias ghl.nvim.Callback fun(result: any, errmsg: string?, info: ghl.Info)

---@class ghl.nvim
local ghl_nvim = {}

---Fetches one message without blocking the editor; `callback` runs once, on the main loop.
---@param id string
---@param opts ghl.Options?
---@param callback fun(message: ghl.Message?, errmsg: string?, info: ghl.Info)
function ghl_nvim.get_message(id, opts, callback) end

---A client of its own: every method of a C client, with a callback last.
---@param opts? ghl.Options
---@return ghl.nvim.Client
function ghl_nvim.new(opts) end

---@class ghl.nvim.Client
local NvimClient = {}

---@param id string
---@param opts ghl.CallOptions?
---@param callback fun(message: ghl.Message?, errmsg: string?, info: ghl.Info)
function NvimClient:get_message(id, opts, callback) end

---@param ids string[]
---@param opts ghl.BatchOptions?
---@param callback fun(messages: table<string, ghl.Message>, failures: table<string, ghl.Info>)
function NvimClient:get_messages(ids, opts, callback) end

---@param email_id string
---@param opts ghl.CallOptions?
---@param callback ghl.nvim.Callback
function NvimClient:get_email(email_id, opts, callback) end

---@param conversation_id string
---@param opts ghl.CallOptions?
---@param callback ghl.nvim.Callback
function NvimClient:get_conversation(conversation_id, opts, callback) end

---@param conversation_id string
---@param query table?
---@param opts ghl.CallOptions?
---@param callback fun(page: ghl.MessagePage?, errmsg: string?, info: ghl.Info)
function NvimClient:list_messages(conversation_id, query, opts, callback) end

---@param query table
---@param opts ghl.CallOptions?
---@param callback fun(page: ghl.ConversationPage?, errmsg: string?, info: ghl.Info)
function NvimClient:search_conversations(query, opts, callback) end

---@param body table
---@param opts ghl.CallOptions?
---@param callback ghl.nvim.Callback
function NvimClient:send_message(body, opts, callback) end

---@param message_id string
---@param location_id string
---@param opts ghl.CallOptions?
---@param callback fun(wav: string?, errmsg: string?, info: ghl.Info)
function NvimClient:get_recording(message_id, location_id, opts, callback) end

---@param method "GET"|"POST"|"PUT"|"PATCH"|"DELETE"
---@param path string
---@param args ghl.RequestArgs?
---@param opts ghl.CallOptions?
---@param callback ghl.nvim.Callback
function NvimClient:request(method, path, args, opts, callback) end

---Walks every page: `on_item(message, info)` for each (return false to stop), then
---`on_done(true, nil, info)`, or `on_done(nil, errmsg, info)` when a page failed.
---@param conversation_id string
---@param query table?
---@param opts ghl.CallOptions?
---@param on_item fun(message: ghl.Message, info: ghl.Info): boolean?
---@param on_done fun(ok: true?, errmsg: string?, info: ghl.Info)
function NvimClient:each_message(conversation_id, query, opts, on_item, on_done) end

---@param query table
---@param opts ghl.CallOptions?
---@param on_item fun(conversation: table, info: ghl.Info): boolean?
---@param on_done fun(ok: true?, errmsg: string?, info: ghl.Info)
function NvimClient:each_conversation(query, opts, on_item, on_done) end

---Returns at once, as the C method does.
---@return ghl.RateLimit?
function NvimClient:rate_limit() end

---Drops what is in flight (no callback is called for it) and frees the connections.
function NvimClient:close() end

return ghl_nvim
