-- With this repository on Neovim's runtimepath (a plugin manager, or
-- `vim.opt.runtimepath:append("/path/to/ghl")`), require("ghl") and require("ghl.nvim") find
-- the repository's build (`make build/luajit/ghl.so`) and src/ghl/*.lua, and `:checkhealth
-- ghl` finds lua/ghl/health.lua. The paths are added after the ones already set, so a ghl
-- installed elsewhere (luarocks, make install) that is on them already comes first.
if vim.g.loaded_ghl then return end
vim.g.loaded_ghl = true

local root = debug.getinfo(1, "S").source:sub(2):match("^(.*)/plugin/[^/]*$")
if root == nil then return end
if vim.loop.fs_stat(root .. "/src/ghl/nvim.lua") then
  package.path = package.path .. ";" .. root .. "/src/?.lua"
end
if vim.loop.fs_stat(root .. "/build/luajit/ghl.so") then
  package.cpath = package.cpath .. ";" .. root .. "/build/luajit/?.so"
end
