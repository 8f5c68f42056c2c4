-- A token function for ghl.resty clients of an OAuth app: the access and
-- refresh tokens live in a lua_shared_dict, so every worker uses the same
-- ones, and a refresh takes a lock in that dict, so that one worker at a
-- time refreshes (a refresh token works once: two refreshes at the same
-- time would lock the app out). Both new tokens are stored in one write.
--
--   lua_shared_dict ghl_tokens 1m;                     # nginx.conf, http block
--
--   local ghl_tokens = require("ghl_tokens")
--   ghl_tokens.store(access_token, refresh_token)      -- once, from the app's install
--   local client = require("ghl.resty").new({
--     token = ghl_tokens.provider({ client_id = CLIENT_ID, client_secret = CLIENT_SECRET }),
--   })
--
-- Within a worker, ghl.resty already makes every request that got a 401
-- wait for one call of the provider; the lock is for the other workers.
local ghl_resty = require("ghl.resty")
local ngx = ngx -- luacheck: ignore

local M = {}

local function dict_of(name)
  local dict = ngx.shared[name or "ghl_tokens"]
  if dict == nil then error("ghl_tokens: no lua_shared_dict " .. (name or "ghl_tokens") .. " in nginx.conf", 0) end
  return dict
end

-- The stored access and refresh tokens, or nil.
function M.load(dict_name)
  local both = dict_of(dict_name):get("tokens")
  if both == nil then return nil end
  return both:match("^(%S+) (%S+)$")
end

-- Stores both tokens at once.
function M.store(access, refresh, dict_name)
  local ok, err = dict_of(dict_name):set("tokens", access .. " " .. refresh)
  if not ok then error("ghl_tokens: cannot store the tokens: " .. tostring(err), 0) end
end

-- conf: client_id, client_secret, user_type ("Location"), dict ("ghl_tokens"),
-- oauth (the options of oauth_token: base_url, timeout, ...), wait (seconds
-- to wait for another worker's refresh, 15).
function M.provider(conf)
  local dict_name = conf.dict
  local dict = dict_of(dict_name)
  local wait = conf.wait or 15
  return function(failed)
    local access = M.load(dict_name)
    if access == nil then error("ghl_tokens: no tokens stored yet", 0) end
    if failed == nil or failed ~= access then return access end -- first use, or renewed already
    for _ = 1, math.ceil(wait / 0.05) do
      -- the lock outlives a refresh: oauth_token's attempts at most
      if dict:add("lock", true, 60) then
        local current, refresh = M.load(dict_name)
        if current ~= failed then -- another worker refreshed meanwhile
          dict:delete("lock")
          return current
        end
        local ok, res, err = pcall(ghl_resty.oauth_token, {
          client_id = conf.client_id, client_secret = conf.client_secret, grant_type = "refresh_token",
          refresh_token = refresh, user_type = conf.user_type or "Location",
        }, conf.oauth)
        if ok and res then M.store(res.access_token, res.refresh_token, dict_name) end
        dict:delete("lock")
        if not ok then error(res, 0) end
        if not res then error(err, 0) end -- err holds no secret
        return res.access_token
      end
      ngx.sleep(0.05) -- another worker refreshes: wait for its token
      local current = M.load(dict_name)
      if current ~= failed then return current end
    end
    error("ghl_tokens: another worker's refresh took more than " .. wait .. " s", 0)
  end
end

return M
