-- The README's install blocks, run as they stand (each fenced block after an
-- <!-- install:NAME --> line), so that they cannot rot. Each runs in bash -e from the top of the
-- tree, bounded by `timeout`, with nothing fetched from the network:
-- - apt-get and sudo are stand-ins on PATH: apt-get update does nothing, apt-get install checks
--   that every package the block names is installed (scripts/install-deps core rocks installs
--   them), sudo runs its command;
-- - HOME is a scratch directory, so `--local` and PREFIX="$HOME/.local" land there;
-- - a block named *-root installs into the system's /usr/local as root would; here that /usr/local
--   is a scratch one: DESTDIR for make, LUAROCKS_CONFIG for luarocks' system tree, and Lua's
--   search paths mapped the same way (LUA_PATH, LUA_CPATH, and their _5_x forms).
-- After each block, every interpreter it ran must find ghl.so, ghl/resty.lua and ghl/nvim.lua
-- in the scratch directory, not anywhere else on the machine.
--
-- What is installed does not depend on the runtime busted runs on, and each block builds ghl, so
-- this file runs once, under GHL_RUNTIME=lua5.4, and is pending on the others.

local h = require("helpers")

if os.getenv("GHL_RUNTIME") ~= "lua5.4" then
  describe("the README's install blocks", function()
    pending("run once, under GHL_RUNTIME=lua5.4 (they build and install for their own Lua)")
  end)
  return
end
local ghl = require("ghl")

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local q = h.quote
local BLOCK_SECONDS = 300

local function blocks()
  local readme = assert(h.read_file(ROOT .. "/README.md"))
  local out = {}
  for name, code in readme:gmatch("<!%-%- install:([%w%-]+) %-%->\n```sh\n(.-)\n```") do
    out[#out + 1] = { name = name, code = code }
  end
  return out
end

local APT_GET = [[#!/bin/sh
# apt-get's stand-in: `update` does nothing; every package named after `install` must be
# installed already.
[ "$1" = update ] && [ $# -eq 1 ] && exit 0
[ "$1" = install ] || { echo "apt-get stand-in: only update and install are known" >&2; exit 2; }
shift
missing=""
for a in "$@"; do
  case "$a" in
    -*) ;;
    *) dpkg-query -W -f='${Status}' "$a" 2>/dev/null | grep -q "install ok installed" || missing="$missing $a" ;;
  esac
done
[ -z "$missing" ] || { echo "not installed:$missing (run scripts/install-deps core rocks)" >&2; exit 1; }
]]

local SUDO = "#!/bin/sh\nexec \"$@\"\n"

-- Lua code that prints where ghl.so, ghl/resty.lua and ghl/nvim.lua are found, as require would.
local WHERE = [[
local function find(name, search)
  local file = name:gsub("%.", "/")
  for pat in search:gmatch("[^;]+") do
    local path = pat:gsub("%?", file)
    local f = io.open(path)
    if f then f:close(); return path end
  end
  return "nowhere"
end
print(find("ghl", package.cpath)); print(find("ghl.resty", package.path)); print(find("ghl.nvim", package.path))
]]

-- The interpreter's default search path with /usr/local/ moved into `root`.
local function mapped(lua, which, root)
  local p = assert(io.popen("env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_2 -u LUA_CPATH_5_2 -u LUA_PATH_5_3"
    .. " -u LUA_CPATH_5_3 -u LUA_PATH_5_4 -u LUA_CPATH_5_4 " .. lua .. " -e " .. q("io.write(package." .. which .. ")")))
  local search = p:read("*a")
  p:close()
  local out = {}
  for entry in search:gmatch("[^;]+") do
    if entry:sub(1, 11) == "/usr/local/" then out[#out + 1] = root .. entry end
  end
  return table.concat(out, ";") .. ";;"
end

local UNSET = { "LUA_PATH", "LUA_CPATH", "LUA_PATH_5_2", "LUA_CPATH_5_2", "LUA_PATH_5_3", "LUA_CPATH_5_3",
  "LUA_PATH_5_4", "LUA_CPATH_5_4", "LUAROCKS_CONFIG", "DESTDIR", "PREFIX", "LUA_VERSION", "LUA" }

local function run_block(block)
  local dir = h.temp_dir("ghl-readme")
  local scratch = dir .. "/root"
  assert(os.execute("mkdir -p " .. q(dir .. "/bin") .. " " .. q(dir .. "/home") .. " " .. q(scratch)))
  h.write_file(dir .. "/bin/apt-get", APT_GET)
  h.write_file(dir .. "/bin/sudo", SUDO)
  h.write_file(dir .. "/where.lua", WHERE)
  assert(os.execute("chmod +x " .. q(dir .. "/bin/apt-get") .. " " .. q(dir .. "/bin/sudo")))
  local env = "env"
  for _, k in ipairs(UNSET) do env = env .. " -u " .. k end
  env = env .. " PATH=" .. q(dir .. "/bin:" .. os.getenv("PATH")) .. " HOME=" .. q(dir .. "/home")
  if block.name:match("%-root$") then
    h.write_file(dir .. "/luarocks.lua",
      "rocks_trees = { { name = \"system\", root = " .. string.format("%q", scratch .. "/usr/local") .. " } }\n")
    env = env .. " DESTDIR=" .. q(scratch) .. " LUAROCKS_CONFIG=" .. q(dir .. "/luarocks.lua")
      .. " LUA_PATH=" .. q(mapped("lua5.1", "path", scratch)) .. " LUA_CPATH=" .. q(mapped("lua5.1", "cpath", scratch))
    for _, v in ipairs({ "5.2", "5.3", "5.4" }) do
      local u = v:gsub("%.", "_")
      env = env .. " LUA_PATH_" .. u .. "=" .. q(mapped("lua" .. v, "path", scratch))
        .. " LUA_CPATH_" .. u .. "=" .. q(mapped("lua" .. v, "cpath", scratch))
    end
    -- luarocks' system tree must be the scratch one before anything is installed
    local tree = h.capture(env .. " luarocks --lua-version=5.4 config deploy_lib_dir")
    assert(tree:sub(1, #scratch) == scratch, "luarocks' system tree is " .. tree .. ", not the scratch one")
  end
  -- after the block, in the same shell: where each interpreter it ran finds ghl
  local after = ""
  local seen = {}
  for lua in block.code:gmatch("\n(lua5%.%d) %-e") do
    if not seen[lua] then
      seen[lua] = true
      after = after .. "\necho \"where " .. lua .. "\"; " .. lua .. " " .. q(dir .. "/where.lua")
    end
  end
  local script = "set -euo pipefail\n" .. block.code .. "\n" .. after .. "\n"
  h.write_file(dir .. "/block.sh", script)
  local cmd = "cd " .. q(ROOT) .. " && " .. env .. " timeout -k 5 " .. BLOCK_SECONDS .. " bash "
    .. q(dir .. "/block.sh") .. " >" .. q(dir .. "/out") .. " 2>&1; echo $?"
  local rc = h.capture(cmd)
  local out = h.read_file(dir .. "/out") or ""
  return rc, out, dir, seen
end

describe("the README's install blocks", function()
  local all = blocks()

  it("are there: with the Makefile and with luarocks, for root and for a user", function()
    local names = {}
    for _, b in ipairs(all) do names[b.name] = true end
    for _, n in ipairs({ "make-root", "make-user", "luajit-root", "rock-root", "rock-user", "src-rock-user" }) do
      assert.is_true(names[n], "no install:" .. n .. " block")
    end
  end)

  assert(h.capture("command -v luarocks"):match("luarocks"), "luarocks not found: run scripts/install-deps rocks")

  for _, block in ipairs(all) do
    it(block.name .. " gives a loadable ghl with its adapters", function()
      local ok, rc, out, dir, interpreters = pcall(run_block, block)
      finally(function()
        os.execute("rm -rf " .. q(ROOT .. "/build/rock") .. " " .. q(ROOT .. "/build/dist"))
        if dir then h.remove_dir(dir) end
      end)
      assert.is_true(ok, tostring(rc))
      assert.equal("0", rc, block.name .. " failed:\n" .. out)
      -- each check line of the block printed the version
      local checks, printed = 0, 0
      for _ in block.code:gmatch('print%(require%("ghl"%)%.VERSION%)') do checks = checks + 1 end
      for line in out:gmatch("[^\n]+") do if line == ghl.VERSION then printed = printed + 1 end end
      assert.is_true(checks > 0, "the block loads nothing")
      assert.equal(checks, printed, out)
      -- and found it in the scratch directory
      for lua in pairs(interpreters) do
        local where = out:match("where " .. lua:gsub("%.", "%%.") .. "\n([^\n]*\n[^\n]*\n[^\n]*)")
        assert.is_string(where, out)
        for path in where:gmatch("[^\n]+") do
          assert.equal(dir, path:sub(1, #dir), lua .. " finds " .. path .. ", not the block's install")
        end
      end
    end)
  end
end)
