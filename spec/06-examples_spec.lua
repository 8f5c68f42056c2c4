-- examples/print_message.lua, run as the README shows it, against the test server: over HTTPS
-- signed by the run's own CA, which it takes as its third argument or in GHL_CAINFO.

local h = require("helpers")

local ROOT = h.SPEC_DIR:gsub("/spec$", "")
local q = h.quote

local function print_message(args, env)
  local line = "cd " .. q(ROOT) .. " && env GHL_TOKEN=" .. q(h.TOKEN)
  for k, v in pairs(env or {}) do line = line .. " " .. q(k .. "=" .. v) end
  line = line .. " timeout -k 5 60 " .. q(h.lua_exe()) .. " examples/print_message.lua"
  for _, a in ipairs(args) do line = line .. " " .. q(a) end
  local out = h.capture(line .. " 2>&1; echo \"rc=$?\"")
  return tonumber(out:match("rc=(%d+)$")), h.hide_token(out)
end

describe("examples/print_message.lua", function()
  it("verifies a private CA given as its third argument", function()
    local id = h.fresh_id("sms")
    local rc, out = print_message({ id, h.https_url, h.cainfo })
    assert.equal(0, rc, out)
    assert.matches("message = {", out, 1, true)
    assert.matches('id = "Xq1sMs0000aaaa000001"', out, 1, true) -- the sms fixture's id
    assert.matches("status 200", out, 1, true)
    assert.is_nil(out:find("<TOKEN>", 1, true), "the example printed the token")
  end)

  it("takes the CA from GHL_CAINFO", function()
    local rc, out = print_message({ h.fresh_id("sms"), h.https_url }, { GHL_CAINFO = h.cainfo })
    assert.equal(0, rc, out)
    assert.matches("status 200", out, 1, true)
  end)

  it("fails over TLS without the CA, with kind tls's message", function()
    local rc, out = print_message({ h.fresh_id("sms"), h.https_url })
    assert.equal(1, rc, out)
    assert.matches("ghl: TLS error: ", out, 1, true)
  end)
end)
