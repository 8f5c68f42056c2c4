-- fork(): "After fork(), no connection made before it is used again, in
-- parent or child." A child interpreter (under the hang guard) makes a
-- connection, forks with lua-posix, and parent and child each fetch 40 ids of
-- the echo scenario at once; the child reports through a pipe, the parent
-- waits for it by its pid. The server's log then tells which connection each
-- request came on.
--
-- lua-posix (Debian's lua-posix, installed by scripts/install-deps) is built
-- for 5.1, 5.2, 5.3 and LuaJIT only: on a runtime where posix.unistd does not
-- load, each test is reported pending with that reason.

local h = require("helpers")

local TOKEN = h.TOKEN
local GUARD = 60

local HAS_POSIX, POSIX_ERR = pcall(require, "posix.unistd")
local WHY_NOT = "needs lua-posix (posix.unistd), which does not load on " .. _VERSION
  .. (jit and (" (" .. jit.version .. ")") or "") .. ": "
  .. (HAS_POSIX and "" or (tostring(POSIX_ERR):match("^[^\n]*"):gsub(":$", "")))

-- The code of the interpreter that forks: `setup` (Lua source) defines warm() (the fetches before
-- the fork, returning the ids it fetched) and fetch_all(ids) (returns a table
-- id -> message or nil).
local function child_code(setup)
  return [==[
    local unistd = require("posix.unistd")
    local wait = require("posix.sys.wait")
    local ghl = require("ghl")
    local BASE, TOKEN, NONCE = os.getenv("GHL_SPEC_URL"), os.getenv("GHL_SPEC_TOKEN"), os.getenv("GHL_SPEC_NONCE")
    local CAINFO = os.getenv("GHL_SPEC_CAINFO")
    local function opts(extra)
      local o = { token = TOKEN, base_url = BASE, retries = 0, timeout = 5 }
      for k, v in pairs(extra or {}) do o[k] = v end
      return o
    end
]==] .. setup .. [==[
    local warmed = warm()
    print("warm " .. warmed)
    -- side: "P" (parent) or "C" (child); 40 ids of its own
    local function run(side)
      local ids = {}
      for i = 1, 40 do ids[i] = "echo--" .. NONCE .. side .. i end
      local got = fetch_all(ids)
      local right, wrong, failed = 0, 0, 0
      for _, id in ipairs(ids) do
        local m = got[id]
        if m == nil then failed = failed + 1
        elseif type(m) == "table" and m.id == id then right = right + 1
        else wrong = wrong + 1 end
      end
      return string.format("right=%d wrong=%d failed=%d", right, wrong, failed)
    end
    io.stdout:flush()
    local r, w = unistd.pipe()
    local pid = unistd.fork()
    if pid == 0 then
      unistd.close(r)
      unistd.alarm(50) -- a child that hangs ends on its own
      local line = run("C")
      unistd.write(w, "child " .. line .. "\n")
      unistd.close(w)
      unistd._exit(0)
    end
    unistd.close(w)
    print("parent " .. run("P"))
    local report, chunk = "", nil
    for _ = 1, 1000 do
      chunk = unistd.read(r, 4096)
      if chunk == nil or chunk == "" then break end
      report = report .. chunk
    end
    unistd.close(r)
    io.write(report)
    local _, how, status = wait.wait(pid)
    print("child " .. tostring(how) .. " " .. tostring(status))
    print("END")
  ]==]
end

-- Runs a setup, checks both sides' answers and that no request of the child
-- went over a connection opened before the fork.
local function run_fork(setup, base_url, warm_count)
  local nonce = h.fresh_id("f"):gsub("^f%-%-", "")
  local env = {
    GHL_SPEC_URL = base_url or h.http_url, GHL_SPEC_TOKEN = TOKEN, GHL_SPEC_NONCE = nonce,
    GHL_SPEC_CAINFO = h.cainfo,
  }
  local ok, out, rc = h.run_lua(child_code(setup), env, GUARD)
  out = h.hide_token(out)
  assert.is_true(ok, "the child " .. ((rc == 124 or rc == 137) and "hung (killed by the hang guard)"
    or ("exited " .. tostring(rc))) .. ":\n" .. out)
  assert.equal(table.concat({
    "warm " .. warm_count,
    "parent right=40 wrong=0 failed=0",
    "child right=40 wrong=0 failed=0",
    "child exited 0",
    "END",
  }, "\n") .. "\n", out)

  local before, warm, parent, child = {}, 0, {}, {}
  local prefix = "echo--" .. nonce
  for _, r in ipairs(h.requests()) do
    if r.id and r.id:sub(1, #prefix) == prefix then
      local rest = r.id:sub(#prefix + 1)
      if rest:match("^W%d+$") then
        before[r.conn] = true
        warm = warm + 1
      elseif rest:match("^P%d+$") then parent[#parent + 1] = r
      elseif rest:match("^C%d+$") then child[#child + 1] = r end
    end
  end
  assert.equal(warm_count, warm)
  assert.equal(40, #parent)
  assert.equal(40, #child)
  -- the contract's "no connection made before it is used again": the child
  -- must not touch the parent's connections (the parent may keep them, as
  -- the child leaves them alone)
  local reused = 0
  for _, r in ipairs(child) do
    if before[r.conn] then reused = reused + 1 end
  end
  assert.equal(0, reused, "requests the child sent on a connection made before the fork")
end

local CASES = {
  {
    -- guards: the forked child sends on the client's kept-alive socket, which it shares with the parent (crossed answers, hangs)
    "a client that has a connection (ghl.new, client:get_message)", [==[
    local c = ghl.new(opts())
    function warm()
      assert(c:get_message("echo--" .. NONCE .. "W1"))
      return 1
    end
    function fetch_all(ids)
      local out = {}
      for _, id in ipairs(ids) do out[id] = c:get_message(id) end
      return out
    end
  ]==], nil, 1,
  },
  {
    -- guards: the same with the state's cached client behind ghl.get_message
    "the default client of ghl.get_message", [==[
    local o = opts()
    function warm()
      assert(ghl.get_message("echo--" .. NONCE .. "W1", o))
      return 1
    end
    function fetch_all(ids)
      local out = {}
      for _, id in ipairs(ids) do out[id] = ghl.get_message(id, o) end
      return out
    end
  ]==], nil, 1,
  },
  {
    -- guards: the same with the connections a batch's multi handle keeps
    "a client that ran get_messages", [==[
    local c = ghl.new(opts())
    function warm()
      local ids = { "echo--" .. NONCE .. "W1", "echo--" .. NONCE .. "W2", "echo--" .. NONCE .. "W3" }
      local messages = c:get_messages(ids, { concurrency = 3 })
      for _, id in ipairs(ids) do assert(messages[id]) end
      return 3
    end
    function fetch_all(ids)
      local messages = c:get_messages(ids, { concurrency = 4 })
      return messages
    end
  ]==], nil, 3,
  },
  {
    -- guards: the same over TLS, where two processes on one TLS session also break each other's records
    "a client that has a TLS connection", [==[
    local c = ghl.new(opts { cainfo = CAINFO })
    function warm()
      assert(c:get_message("echo--" .. NONCE .. "W1"))
      return 1
    end
    function fetch_all(ids)
      local out = {}
      for _, id in ipairs(ids) do out[id] = c:get_message(id) end
      return out
    end
  ]==], "https", 1,
  },
}

describe("fork()", function()
  for _, case in ipairs(CASES) do
    local name, setup, scheme, warm_count = case[1], case[2], case[3], case[4]
    local title = "after " .. name .. ": parent and child each get the answers to their own 40 ids, "
      .. "on connections made after the fork"
    if HAS_POSIX then
      it(title, function()
        run_fork(setup, scheme == "https" and h.https_url or h.http_url, warm_count)
      end)
    else
      pending(title .. " (" .. WHY_NOT .. ")")
    end
  end
end)
