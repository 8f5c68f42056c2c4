---@meta ghl
-- LuaCATS stubs of require("ghl") for lua-language-server (completion, hover, type checks).
-- Declarations only: this file is never run. README.md is the manual; spec/08-stubs_spec.lua
-- fails when the module exports a function these stubs or the README leave out.

---@alias ghl.Kind "network"|"timeout"|"tls"|"http"|"decode"|"too_large"|"token"|"signature"|"host"

---The options of `ghl.new`, `ghl.get_message` and `ghl.get_message_request`. An unknown key, or a
---value of the wrong type or range, raises naming the key; the table is never changed.
---@class ghl.Options
---@field token? string|fun(failed?: string): string? Private Integration Token or access token, or a function returning one (default: `os.getenv("GHL_TOKEN")`; `""` counts as missing)
---@field base_url? string `http://` or `https://`, a host, an optional port and path prefix (default `ghl.BASE_URL`)
---@field version? string the `Version` header (default `ghl.API_VERSION`)
---@field timeout? number seconds (> 0) for one attempt, the whole transfer (default 30)
---@field connect_timeout? number seconds (> 0) to connect (default 10)
---@field retries? integer further attempts after a retryable failure, 0-10 (default 2)
---@field max_retry_delay? number seconds (>= 0), the cap on any one wait (default 30)
---@field ssl_verify? boolean verify the server's certificate and host name (default true)
---@field cainfo? string a CA bundle file (PEM) (default: libcurl's)
---@field proxy? string a proxy URL, credentials allowed (a secret like the token)
---@field user_agent? string the `User-Agent` header (default `"lua-ghl/<VERSION>"`)
---@field max_body_size? integer bytes (> 0); a longer response fails with kind `too_large` (default 8 MiB)
---@field convert_enums? boolean false leaves `type` as the number (default true)

---Per-call options of a client method: any other key raises.
---@class ghl.CallOptions
---@field timeout? number seconds (> 0) for one attempt
---@field connect_timeout? number seconds (> 0) to connect
---@field retries? integer 0-10

---Per-call options of `client:get_messages`.
---@class ghl.BatchOptions: ghl.CallOptions
---@field concurrency? integer requests in flight, 1-64 (default 8)

---The options of `ghl.oauth_token` (any other key raises).
---@class ghl.OAuthOptions
---@field base_url? string
---@field timeout? number
---@field connect_timeout? number
---@field retries? integer
---@field max_retry_delay? number
---@field ssl_verify? boolean
---@field cainfo? string
---@field proxy? string
---@field user_agent? string

---The last response's `X-RateLimit-*` figures; a field is absent when its header was.
---@class ghl.RateLimit
---@field max? integer `X-RateLimit-Max`
---@field remaining? integer `X-RateLimit-Remaining`
---@field interval_ms? integer `X-RateLimit-Interval-Milliseconds`
---@field daily_limit? integer `X-RateLimit-Limit-Daily`
---@field daily_remaining? integer `X-RateLimit-Daily-Remaining`

---What every call returns last, on success and on failure.
---@class ghl.Info
---@field kind? ghl.Kind failure only
---@field status? integer the HTTP status, when a response came
---@field message? string the API's own error text (an array joined with `"; "`)
---@field body? string failure with a body: the raw body, at most 64 KiB
---@field trace_id? string the body's `traceId`, error bodies included
---@field retry_after? number seconds, from `Retry-After`
---@field attempts? integer how many attempts were made
---@field curl_code? integer libcurl's `CURLcode`, for kinds network, timeout, tls
---@field rate_limit? ghl.RateLimit as `client:rate_limit()`
---@field content_type? string the response's type (`get_recording`, `request` with `raw`)
---@field algorithm? "ed25519"|"rsa-sha256" `ghl.verify_webhook`: the signature header used
---@field errmsg? string `get_messages` failures only: the error message

---A conversation message: the API's members under their JSON names, `type` named by the type rule.
---@class ghl.Message
---@field id string
---@field type string|integer `"TYPE_CALL"`, ...; the number when no name is known (or `convert_enums = false`)
---@field messageType? string
---@field direction? string
---@field status? string
---@field body? string
---@field contactId? string
---@field conversationId? string
---@field locationId? string
---@field dateAdded? string
---@field attachments? any[]
---@field meta? table
---@field [string] any

---A page of `client:list_messages`.
---@class ghl.MessagePage
---@field messages ghl.Message[]
---@field next_page boolean
---@field last_message_id? string

---A page of `client:search_conversations`.
---@class ghl.ConversationPage
---@field conversations table[]
---@field total integer
---@field next? any what to pass as `startAfterDate` for the next page; nil on the last page

---The arguments of `client:request`.
---@class ghl.RequestArgs
---@field query? table<string, string|integer|boolean|(string|integer|boolean)[]>
---@field json? any a value sent as the JSON body
---@field raw? boolean the body as a string, and `info.content_type`
---@field version? string this request's `Version` header

---What `ghl.get_message_request` returns.
---@class ghl.Request
---@field method "GET"
---@field url string
---@field headers table<string, string>

---The options of `ghl.verify_webhook` (any other key raises).
---@class ghl.WebhookOptions
---@field public_key? string an Ed25519 key, PEM or the base64 SPKI, instead of the built-in one
---@field legacy_rsa_key? string a PEM RSA key: also accept `X-WH-Signature` when there is no `X-GHL-Signature`

---What `ghl.build_info()` returns.
---@class ghl.BuildInfo
---@field version string the module's version, as `ghl.VERSION`
---@field lua string the Lua headers it was compiled with (`"Lua 5.1"` for LuaJIT hosts)
---@field libcurl string the libcurl it runs with, `"7.88.1"`
---@field tls? string libcurl's TLS library, `"OpenSSL/3.0.15"`
---@field http2 boolean whether that libcurl speaks HTTP/2

---A client made by `ghl.new`: its connections are reused by every call on it.
---@class ghl.Client
local Client = {}

---@class ghl
---@field VERSION string the module's version, `"MAJOR.MINOR.PATCH"`
---@field API_VERSION string `"2021-04-15"`, the default `Version` header
---@field BASE_URL string `"https://services.leadconnectorhq.com"`
---@field MESSAGE_TYPES table<integer|string, string|integer> code -> name and name -> code; may be extended
---@field null lightuserdata what a JSON `null` inside an array becomes (`cjson.null`, `ngx.null`)
local ghl = {}

---Fetches one message: `GET /conversations/messages/{id}`.
---@param id string 1-128 characters of `[A-Za-z0-9_-]`
---@param opts? ghl.Options
---@return ghl.Message? message
---@return string? errmsg
---@return ghl.Info info
function ghl.get_message(id, opts) end

---A client that keeps its connections (keep-alive, TLS session) between calls.
---@param opts? ghl.Options
---@return ghl.Client
function ghl.new(opts) end

---No network: the decoding and error mapping of `get_message`, for a body fetched elsewhere.
---@param body string
---@param status? integer the HTTP status (default 200)
---@return ghl.Message? message
---@return string? errmsg
---@return ghl.Info info
function ghl.decode_message(body, status) end

---No network: exactly what `get_message` would send.
---@param id string
---@param opts? ghl.Options
---@return ghl.Request
function ghl.get_message_request(id, opts) end

---Applies the `type` rule to a message table in place, with this state's `ghl.MESSAGE_TYPES`.
---@param message table
---@return table message
function ghl.convert_type(message) end

---Checks a webhook's `X-GHL-Signature` (Ed25519) over its raw body and decodes the body.
---@param body string the raw request body
---@param headers table<string, string|string[]> the request's headers, any case
---@param opts? ghl.WebhookOptions
---@return table? event
---@return string? errmsg
---@return ghl.Info info
function ghl.verify_webhook(body, headers, opts) end

---`POST /oauth/token` (no token needed); never repeated once it may have reached the API.
---@param form table<string, string> `client_id`, `client_secret`, `grant_type`, `refresh_token` or `code`, ...
---@param opts? ghl.OAuthOptions
---@return table? res `access_token`, `refresh_token`, `expires_in`, ...
---@return string? errmsg
---@return ghl.Info info
function ghl.oauth_token(form, opts) end

---What this ghl.so was built against and runs with (a new table each call).
---@return ghl.BuildInfo
function ghl.build_info() end

---Internal (may change in any release): one request done by a transport written in Lua.
---@param id string
---@param opts? ghl.Options
---@param batch? boolean accept `concurrency` too
---@return table exchange
function ghl._exchange(id, opts, batch) end

---Internal (may change in any release): a rate-limit window.
---@param max_retry_delay number
---@return table window
function ghl._window(max_retry_delay) end

---As `ghl.get_message`, on the client's connection.
---@param id string
---@param opts? ghl.CallOptions
---@return ghl.Message? message
---@return string? errmsg
---@return ghl.Info info
function Client:get_message(id, opts) end

---Many messages at once (libcurl multi, HTTP/2 where offered), within the rate limit.
---@param ids string[]
---@param opts? ghl.BatchOptions
---@return table<string, ghl.Message> messages keyed by id
---@return table<string, ghl.Info> failures keyed by id, each with `.errmsg`
function Client:get_messages(ids, opts) end

---`GET /conversations/messages/email/{email_id}`.
---@param email_id string
---@param opts? ghl.CallOptions
---@return table? email
---@return string? errmsg
---@return ghl.Info info
function Client:get_email(email_id, opts) end

---`GET /conversations/{conversation_id}`.
---@param conversation_id string
---@param opts? ghl.CallOptions
---@return table? conversation
---@return string? errmsg
---@return ghl.Info info
function Client:get_conversation(conversation_id, opts) end

---`GET /conversations/{conversation_id}/messages`: one page, newest first.
---@param conversation_id string
---@param query? table `limit`, `lastMessageId`, `type`, ...
---@param opts? ghl.CallOptions
---@return ghl.MessagePage? page
---@return string? errmsg
---@return ghl.Info info
function Client:list_messages(conversation_id, query, opts) end

---Every message of a conversation, page after page, for a generic `for`; a failed page gives
---`false, errmsg, info` once, then the loop ends.
---@param conversation_id string
---@param query? table
---@param opts? ghl.CallOptions
---@return fun(): (ghl.Message|false)?, string?, ghl.Info?
function Client:each_message(conversation_id, query, opts) end

---`GET /conversations/search`; `query.locationId` is required.
---@param query table
---@param opts? ghl.CallOptions
---@return ghl.ConversationPage? page
---@return string? errmsg
---@return ghl.Info info
function Client:search_conversations(query, opts) end

---Every conversation of a search, page after page, for a generic `for`.
---@param query table
---@param opts? ghl.CallOptions
---@return fun(): (table|false)?, string?, ghl.Info?
function Client:each_conversation(query, opts) end

---`POST /conversations/messages`; never sent twice.
---@param body table the API's request body; `type` and `contactId` are required
---@param opts? ghl.CallOptions
---@return table? sent `conversationId`, `messageId`, ...
---@return string? errmsg
---@return ghl.Info info
function Client:send_message(body, opts) end

---`GET /conversations/messages/{message_id}/locations/{location_id}/recording`: the raw bytes.
---@param message_id string
---@param location_id string
---@param opts? ghl.CallOptions
---@return string? wav
---@return string? errmsg
---@return ghl.Info info
function Client:get_recording(message_id, location_id, opts) end

---Any endpoint: the decoded JSON body (`true` for an empty 2xx body; a string with `args.raw`).
---@param method "GET"|"POST"|"PUT"|"PATCH"|"DELETE"
---@param path string starts with `/`
---@param args? ghl.RequestArgs
---@param opts? ghl.CallOptions
---@return any result
---@return string? errmsg
---@return ghl.Info info
function Client:request(method, path, args, opts) end

---The last response's rate-limit figures, or nil before any response and after one without them.
---@return ghl.RateLimit?
function Client:rate_limit() end

---Frees the connections; idempotent. Later calls raise.
function Client:close() end

return ghl
