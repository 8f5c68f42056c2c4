-- :GhlMessage <id>  fetches a HighLevel conversation message without freezing
-- the editor and shows it in a scratch buffer.
--
-- Needs ghl on package.path / package.cpath (see ../README.md). The token is
-- vim.g.ghl_token, else $GHL_TOKEN; vim.g.ghl_base_url overrides the API's
-- base URL (e.g. the spec's local stand-in server).

if vim.g.loaded_ghl_example then return end
vim.g.loaded_ghl_example = true

local function show(title, lines)
  vim.cmd("botright new")
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = "lua"
  pcall(vim.api.nvim_buf_set_name, buf, title)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
end

local function get_message(id)
  local ok_req, ghl_nvim = pcall(require, "ghl.nvim")
  if not ok_req then
    vim.notify("ghl: cannot load ghl.nvim: " .. tostring(ghl_nvim), vim.log.levels.ERROR)
    return
  end
  local null = require("ghl").null
  local opts = { token = vim.g.ghl_token, base_url = vim.g.ghl_base_url }
  -- Misuse (a bad id, a missing token) raises at once, before anything is sent.
  local ok, err = pcall(ghl_nvim.get_message, id, opts, function(msg, errmsg, info)
    -- On the main loop: any Neovim API may be used here.
    if not msg then
      vim.notify(errmsg, vim.log.levels.ERROR)
      return
    end
    -- vim.inspect shows the lightuserdata ghl.null as "userdata"; name it.
    local text = vim.inspect(msg, {
      process = function(item)
        if item == null then return "ghl.null" end
        return item
      end,
    })
    local lines = vim.split(text, "\n", { plain = true })
    table.insert(lines, 1, string.format("-- message %s (HTTP %s, trace %s)", id,
      tostring(info.status), tostring(info.trace_id)))
    show("ghl://" .. id, lines)
  end)
  if not ok then
    vim.notify(tostring(err), vim.log.levels.ERROR)
    return
  end
  vim.notify("ghl: fetching " .. id .. " ...", vim.log.levels.INFO)
end

vim.api.nvim_create_user_command("GhlMessage", function(cmd)
  get_message(cmd.args)
end, { nargs = 1, desc = "Show a HighLevel conversation message" })
