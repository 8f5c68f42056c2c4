-- luacheck over src/, spec/, examples/, bench/, lua/, plugin/, types/ (make lint)
std = "max"            -- the same file runs on Lua 5.1-5.4 and LuaJIT
max_line_length = 130    -- spec: 180, for literal bodies, keys and signatures
codes = true

files["src/ghl/resty.lua"] = { read_globals = { "ngx" } }
files["src/ghl/nvim.lua"] = { read_globals = { "vim" } }
files["examples/openresty"] = { globals = { "ngx" } }  -- ngx.status, ngx.header are set
files["examples/nvim"] = { globals = { "vim" } }       -- vim.g, vim.bo are set
files["lua"] = { globals = { "vim" } }
files["plugin"] = { globals = { "vim" } }
files["bench/openresty"] = { globals = { "ngx" } }
files["spec"] = { std = "+busted", read_globals = { "ngx", "vim" }, max_line_length = 180 }
-- LuaCATS stubs: declarations with empty bodies (unused arguments, tables only declared) and
-- long ---@field lines
files["types"] = { ignore = { "212", "241" }, max_line_length = 200 }
