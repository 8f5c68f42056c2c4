-- ghl.verify_webhook: Ed25519 signatures in X-GHL-Signature, the legacy RSA
-- X-WH-Signature on request, the body decoded by the section-1 rules.
--
-- Keys are made at test time by the openssl CLI (Ed25519 and RSA 2048, in a
-- temp dir) and bodies signed with it: `pkeyutl -sign -rawin` for Ed25519,
-- `dgst -sha256 -sign` (PKCS#1 v1.5) for RSA.

local h = require("helpers")
local ghl = require("ghl")

local q = h.quote

-- HighLevel's published key (SPKI, base64): the built-in one.
local HIGHLEVEL_KEY = "MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="

local keys -- made once for the file: { dir, ed_pem, ed_spki, ed_private, rsa_pem, rsa_small_pem }

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  local ok
  if type(a) == "number" then ok = a == 0 else ok = a == true and (c == nil or c == 0) end
  assert(ok, "command failed: " .. cmd)
end

local function make_keys()
  if keys then return keys end
  local dir = h.temp_dir("ghl-webhook")
  local d = q(dir)
  local quiet = " 2>>" .. d .. "/openssl.err"
  sh("openssl genpkey -algorithm ed25519 -out " .. d .. "/ed.key" .. quiet)
  sh("openssl pkey -in " .. d .. "/ed.key -pubout -out " .. d .. "/ed.pub" .. quiet)
  sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. d .. "/rsa.key" .. quiet)
  sh("openssl pkey -in " .. d .. "/rsa.key -pubout -out " .. d .. "/rsa.pub" .. quiet)
  sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out " .. d .. "/rsa1024.key" .. quiet)
  sh("openssl pkey -in " .. d .. "/rsa1024.key -pubout -out " .. d .. "/rsa1024.pub" .. quiet)
  local ed_pem = h.read_file(dir .. "/ed.pub")
  keys = {
    dir = dir,
    ed_pem = ed_pem,
    ed_spki = (ed_pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", "")),
    ed_private = h.read_file(dir .. "/ed.key"),
    rsa_pem = h.read_file(dir .. "/rsa.pub"),
    rsa_small_pem = h.read_file(dir .. "/rsa1024.pub"),
  }
  return keys
end

local signed = 0

-- The base64 of the bytes in file path.
local function base64_file(path)
  return h.capture("base64 -w0 " .. q(path))
end

-- The base64 Ed25519 signature of body by the test key.
local function sign(body)
  local k = make_keys()
  signed = signed + 1
  local file, sig = k.dir .. "/body" .. signed, k.dir .. "/sig" .. signed
  h.write_file(file, body)
  sh("openssl pkeyutl -sign -rawin -inkey " .. q(k.dir .. "/ed.key") .. " -in " .. q(file) .. " -out " .. q(sig))
  local out = base64_file(sig)
  os.remove(file)
  os.remove(sig)
  return out
end

-- The base64 RSA PKCS#1 v1.5 SHA-256 signature of body by the test RSA key.
local function sign_rsa(body)
  local k = make_keys()
  signed = signed + 1
  local file, sig = k.dir .. "/body" .. signed, k.dir .. "/sig" .. signed
  h.write_file(file, body)
  sh("openssl dgst -sha256 -sign " .. q(k.dir .. "/rsa.key") .. " -out " .. q(sig) .. " " .. q(file))
  local out = base64_file(sig)
  os.remove(file)
  os.remove(sig)
  return out
end

-- The base64 of the bytes s.
local function base64(s)
  local path = make_keys().dir .. "/raw"
  h.write_file(path, s)
  local out = base64_file(path)
  os.remove(path)
  return out
end

-- The base64 of n bytes (a "signature" of the wrong length).
local function base64_of_length(n)
  local bytes = {}
  for i = 1, n do bytes[i] = string.char((i * 7) % 256) end
  return base64(table.concat(bytes))
end

local function from_hex(x)
  return (x:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

-- RFC 8032, section 7.1, TEST 1: the empty message (which the openssl CLI
-- cannot sign), as a public key in SPKI form and a signature.
local RFC8032_SPKI_PREFIX = "302a300506032b6570032100"
local RFC8032_TEST1 = {
  public_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
  signature = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
}

-- s with the byte at i replaced by c.
local function replace_at(s, i, c)
  return s:sub(1, i - 1) .. c .. s:sub(i + 1)
end

-- The error fn(...) raised, without the position luaL_error puts first.
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error to be raised")
  assert.is_string(err)
  return (err:gsub("^[^\n]-:%d+: ", ""))
end

local function with_key(extra)
  local o = { public_key = make_keys().ed_pem }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function assert_signature_failure(errmsg, algorithm, event, err, info)
  assert.is_nil(event)
  assert.equal(errmsg, err)
  assert.same({ kind = "signature", algorithm = algorithm }, info)
end

local BODY = '{"type":"InboundMessage","locationId":"loc1","messageId":"m1","n":3}'

describe("ghl.verify_webhook", function()
  lazy_teardown(function()
    if keys then h.remove_dir(keys.dir) end
  end)

  it("is a function of the module", function()
    assert.is_function(ghl.verify_webhook)
  end)

  describe("a valid signature", function()
    it("verifies with opts.public_key as PEM and returns the decoded body", function()
      local event, err, info = ghl.verify_webhook(BODY, { ["X-GHL-Signature"] = sign(BODY) }, with_key())
      assert.is_nil(err)
      assert.same({ type = "InboundMessage", locationId = "loc1", messageId = "m1", n = 3 }, event)
      assert.same({ algorithm = "ed25519" }, info)
    end)

    it("verifies with opts.public_key as base64 SubjectPublicKeyInfo", function()
      local k = make_keys()
      assert.equal(60, #k.ed_spki)
      local event, err, info = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sign(BODY) }, { public_key = k.ed_spki })
      assert.is_nil(err)
      assert.equal("m1", event.messageId)
      assert.same({ algorithm = "ed25519" }, info)
    end)

    it("accepts a key with surrounding white space and a PEM with text around it", function()
      local k = make_keys()
      local sig = sign(BODY)
      local event = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig }, { public_key = "\n  " .. k.ed_spki .. " \n" })
      assert.is_table(event)
      event = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig }, { public_key = "\n" .. k.ed_pem .. "\n\n" })
      assert.is_table(event)
    end)

    it("accepts the signature without its base64 padding", function()
      local sig = sign(BODY)
      assert.equal(88, #sig)
      assert.equal("==", sig:sub(-2))
      local event, err = ghl.verify_webhook(BODY, { ["X-GHL-Signature"] = sig:sub(1, 86) }, with_key())
      assert.is_nil(err)
      assert.equal(3, event.n)
    end)

    it("finds the header in any case", function()
      local sig = sign(BODY)
      for _, name in ipairs { "X-GHL-Signature", "x-ghl-signature", "X-GHL-SIGNATURE", "x-Ghl-sIGNATURE", "X-Ghl-Signature" } do
        local event, err, info = ghl.verify_webhook(BODY, { [name] = sig, ["Content-Type"] = "application/json" }, with_key())
        assert.is_nil(err, name)
        assert.equal("loc1", event.locationId, name)
        assert.same({ algorithm = "ed25519" }, info)
      end
    end)

    it("takes a list holding one value as that value (headers given as lists)", function()
      local event, err = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = { sign(BODY) } }, with_key())
      assert.is_nil(err)
      assert.equal("m1", event.messageId)
    end)

    it("decodes a real-shaped InboundMessage webhook with exact values", function()
      local body = h.fixture("webhook_inbound.json")
      local event, err, info = ghl.verify_webhook(body, { ["x-ghl-signature"] = sign(body) }, with_key())
      assert.is_nil(err)
      assert.same({ algorithm = "ed25519" }, info)
      assert.same({
        type = "InboundMessage",
        locationId = "ve9EPM428h8vShlRW1KT",
        attachments = {},
        body = "Hi, is my appointment still on for Tuesday at 3pm?",
        contactId = "nmFmQEsNgz6AVpgLVUJ0",
        contentType = "text/plain",
        conversationId = "ve9EPM428kjkvShlRW1KT",
        dateAdded = "2024-03-22T14:05:37.000Z",
        direction = "inbound",
        messageType = "SMS",
        messageId = "tBi0S2YmXc0QZ1s4yWfK",
        status = "delivered",
        webhookId = "b3f0f5e4-6a2d-4c39-9f1e-7d2a4a1c9e01",
        timestamp = "2024-03-22T14:05:38.112Z",
      }, event)
      assert.is_nil(event.conversationProviderId)
    end)

    it("decodes by the section-1 rules: integers, floats, nulls, nothing renamed", function()
      local body = '{"type":2,"messageType":"TYPE_SMS","count":42,"big":9007199254740991,"ratio":0.5,'
        .. '"exp":1e3,"gone":null,"list":[1,null,"x",2.5],"meta":{"callDuration":7,"none":null,"traceId":"t"},'
        .. '"traceId":"kept","flag":false}'
      local event, err = ghl.verify_webhook(body, { ["x-ghl-signature"] = sign(body) }, with_key())
      assert.is_nil(err)
      assert.same({
        type = 2, messageType = "TYPE_SMS", count = 42, big = 9007199254740991, ratio = 0.5, exp = 1000,
        list = { 1, ghl.null, "x", 2.5 }, meta = { callDuration = 7, traceId = "t" }, traceId = "kept", flag = false,
      }, event)
      assert.equal(2, event.type) -- not turned into "TYPE_SMS"
      assert.is_nil(event.gone)
      assert.is_nil(event.meta.none)
      assert.equal(ghl.null, event.list[2])
      assert.equal(4, #event.list)
      assert.is_true(h.is_integer(event.count))
      assert.is_true(h.is_integer(event.big))
      assert.is_true(h.is_integer(event.exp))
      assert.is_true(h.is_integer(event.meta.callDuration))
      assert.is_true(h.is_integer(event.list[1]))
      assert.is_true(h.is_float(event.ratio))
      assert.is_true(h.is_float(event.list[4]))
      if h.HAS_INTEGERS then
        assert.equal("integer", math.type(event.count))
        assert.equal("float", math.type(event.ratio))
      end
    end)

    it("returns an empty object as an empty table", function()
      local event, err, info = ghl.verify_webhook("{}", { ["x-ghl-signature"] = sign("{}") }, with_key())
      assert.is_nil(err)
      assert.same({}, event)
      assert.same({ algorithm = "ed25519" }, info)
    end)

    it("verifies a very large body (4 MiB) and refuses it with its last byte changed", function()
      local parts = {}
      for i = 1, 40000 do parts[i] = string.format('"k%05d":"%s"', i, string.rep("v", 90)) end
      local body = "{" .. table.concat(parts, ",") .. "}"
      assert.is_true(#body > 4 * 1000 * 1000)
      local sig = sign(body)
      local event, err = ghl.verify_webhook(body, { ["x-ghl-signature"] = sig }, with_key())
      assert.is_nil(err)
      assert.equal(string.rep("v", 90), event.k40000)
      local tampered = body:sub(1, -2) .. " "
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature does not verify", "ed25519",
        ghl.verify_webhook(tampered, { ["x-ghl-signature"] = sig }, with_key()))
    end)

    it("keeps working across many key texts (a per-state cache of parsed keys, bounded)", function()
      local k = make_keys()
      local sig = sign(BODY)
      for i = 1, 40 do -- 40 texts of the same key: the cache is emptied twice on the way
        local text = (i % 2 == 0 and k.ed_pem or k.ed_spki) .. string.rep(" ", i)
        local event, err = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig }, { public_key = text })
        assert.is_nil(err, "text " .. i)
        assert.equal("m1", event.messageId)
        event, err = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig }, { public_key = text }) -- luacheck: ignore 311
        assert.is_nil(err, "text " .. i .. ", again")
      end
      collectgarbage()
      assert.is_table(ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig }, { public_key = k.ed_spki .. " " }))
      -- a key text that raised once raises again: nothing of it was kept
      for _ = 1, 2 do
        assert.is_false((pcall(ghl.verify_webhook, BODY, {}, { public_key = k.rsa_pem })))
      end
    end)

    it("leaves the caller's tables as they were", function()
      local sig = sign(BODY)
      local headers = { ["X-GHL-Signature"] = sig, Host = "example.com" }
      local opts = with_key()
      local pem = opts.public_key
      ghl.verify_webhook(BODY, headers, opts)
      assert.same({ ["X-GHL-Signature"] = sig, Host = "example.com" }, headers)
      assert.same({ public_key = pem }, opts)
    end)

    it("reads the headers table raw: no __index or __pairs is called", function()
      local sig = sign(BODY)
      local called = false
      local headers = setmetatable({ ["x-ghl-signature"] = sig }, {
        __index = function() called = true end,
        __pairs = function() called = true; return next, {}, nil end,
      })
      local event = ghl.verify_webhook(BODY, headers, with_key())
      assert.is_table(event)
      assert.is_false(called)
    end)
  end)

  describe("a signature that fails", function()
    local NOT_VERIFY = "ghl: webhook signature: X-GHL-Signature does not verify"

    it("fails for a body with one byte changed", function()
      local sig = sign(BODY)
      local tampered = BODY:gsub('"n":3', '"n":4')
      assert.equal(#BODY, #tampered)
      assert_signature_failure(NOT_VERIFY, "ed25519", ghl.verify_webhook(tampered, { ["x-ghl-signature"] = sig }, with_key()))
    end)

    it("fails for a signature with one character changed", function()
      local sig = sign(BODY)
      local c = sig:sub(10, 10) == "A" and "B" or "A"
      assert_signature_failure(NOT_VERIFY, "ed25519",
        ghl.verify_webhook(BODY, { ["x-ghl-signature"] = replace_at(sig, 10, c) }, with_key()))
    end)

    it("fails for the signature of another body", function()
      assert_signature_failure(NOT_VERIFY, "ed25519",
        ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sign(BODY .. " ") }, with_key()))
    end)

    it("fails with the built-in key for a signature made by another key", function()
      assert_signature_failure(NOT_VERIFY, "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sign(BODY) }))
      assert_signature_failure(NOT_VERIFY, "ed25519",
        ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sign(BODY) }, { public_key = HIGHLEVEL_KEY }))
      assert_signature_failure(NOT_VERIFY, "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sign(BODY) }, {}))
    end)

    it("fails for a signature that is too short or too long", function()
      local k = with_key()
      for _, n in ipairs { 0, 1, 32, 63, 65, 66, 96, 128 } do
        local sig = base64_of_length(n)
        assert_signature_failure(
          "ghl: webhook signature: X-GHL-Signature decodes to " .. n .. " bytes, not the 64 of an Ed25519 signature",
          "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig }, k))
      end
      -- a valid signature with base64 text added or cut off
      local sig = sign(BODY)
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature decodes to 66 bytes, not the 64 of an Ed25519 signature",
        "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig:sub(1, 84) .. "AAAA" }, k))
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature decodes to 63 bytes, not the 64 of an Ed25519 signature",
        "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig:sub(1, 84) }, k))
    end)

    it("fails for a signature that is not base64", function()
      local sig = sign(BODY)
      local k = with_key()
      local BAD = {
        string.rep("!", 88),
        replace_at(sig, 5, "-"), -- the URL-safe alphabet
        replace_at(sig, 5, "_"),
        replace_at(sig, 5, " "),
        replace_at(sig, 5, "="), -- padding in the middle
        replace_at(sig, 5, "\0"),
        replace_at(sig, 5, "\195"),
        replace_at(sig, 86, sig:sub(86, 86) == "B" and "C" or "B"), -- unused bits set: not canonical
        sig:sub(1, 86) .. "=A", -- a character after the padding
        sig:sub(1, 86) .. "=", -- half the padding
        " " .. sig:sub(1, 86) .. " ", -- white space around it
        sig .. "\r\n",
        "!!!",
        "====",
        "A",
      }
      for i, bad in ipairs(BAD) do
        local event, err, info = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = bad }, k)
        assert.is_nil(event, "case " .. i)
        assert.equal("ghl: webhook signature: X-GHL-Signature is not valid base64", err, "case " .. i)
        assert.same({ kind = "signature", algorithm = "ed25519" }, info, "case " .. i)
      end
    end)

    it("fails when there is no signature header", function()
      for _, headers in ipairs { {}, { ["Content-Type"] = "application/json" }, { "x-ghl-signature" },
                                 { ["x-ghl-signature-2"] = sign(BODY) }, { [1] = sign(BODY) } } do
        local event, err, info = ghl.verify_webhook(BODY, headers, with_key())
        assert.is_nil(event)
        assert.equal("ghl: webhook signature: no X-GHL-Signature header", err)
        assert.same({ kind = "signature" }, info)
      end
    end)

    it("fails when the header is given more than once", function()
      local sig = sign(BODY)
      local MORE = "ghl: webhook signature: X-GHL-Signature given more than once"
      -- OpenResty's ngx.req.get_headers() gives a repeated header as a list
      assert_signature_failure(MORE, "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = { sig, sig } }, with_key()))
      assert_signature_failure(MORE, "ed25519", ghl.verify_webhook(BODY, { ["x-ghl-signature"] = {} }, with_key()))
      -- two spellings of the name
      assert_signature_failure(MORE, "ed25519",
        ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig, ["X-GHL-Signature"] = sig }, with_key()))
    end)

    it("puts no body in info", function()
      local _, _, info = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sign("{}") }, with_key())
      assert.is_nil(info.body)
      _, _, info = ghl.verify_webhook("nope", { ["x-ghl-signature"] = sign("nope") }, with_key())
      assert.equal("decode", info.kind)
      assert.is_nil(info.body)
    end)
  end)

  describe("a body that verifies but is not a JSON object", function()
    local CASES = {
      { "not json", "the body is not valid JSON" },
      { '{"a":1', "the body is not valid JSON" },
      { '{"a":1} x', "the body is not valid JSON" },
      { "[1,2,3]", "the body is not a JSON object" },
      { "[]", "the body is not a JSON object" },
      { " \n[{\"type\":\"InboundMessage\"}]", "the body is not a JSON object" },
      { '"InboundMessage"', "the body is not a JSON object" },
      { "42", "the body is not a JSON object" },
      { "null", "the body is not a JSON object" },
      { "true", "the body is not a JSON object" },
      { '{"a":NaN}', "the body is not valid JSON" },
      { '{"a":1e400}', "a number is out of range" },
      { '{"a":"\255"}', "the body is not valid UTF-8" },
      { '{"a":"x\0y"}', "the body is not valid JSON" },
      { '{"a":1}\0', "the body is not valid JSON" },
    }
    for _, case in ipairs(CASES) do
      it(("fails with kind decode for %q"):format(case[1]), function()
        local event, err, info = ghl.verify_webhook(case[1], { ["x-ghl-signature"] = sign(case[1]) }, with_key())
        assert.is_nil(event)
        assert.equal("ghl: cannot decode the webhook: " .. case[2], err)
        assert.same({ kind = "decode", algorithm = "ed25519" }, info)
      end)
    end

    it("fails with kind decode for an empty body (RFC 8032's test 1 signs it)", function()
      local key = base64(from_hex(RFC8032_SPKI_PREFIX .. RFC8032_TEST1.public_key))
      local sig = base64(from_hex(RFC8032_TEST1.signature))
      local event, err, info = ghl.verify_webhook("", { ["x-ghl-signature"] = sig }, { public_key = key })
      assert.is_nil(event)
      assert.equal("ghl: cannot decode the webhook: the body is empty", err)
      assert.same({ kind = "decode", algorithm = "ed25519" }, info)
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature does not verify", "ed25519",
        ghl.verify_webhook(" ", { ["x-ghl-signature"] = sig }, { public_key = key }))
    end)

    it("signs the whole body: a NUL byte does not end it", function()
      local body = '{"a":1}\0{"b":2}'
      local sig = sign(body)
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature does not verify", "ed25519",
        ghl.verify_webhook('{"a":1}\0{"b":3}', { ["x-ghl-signature"] = sig }, with_key()))
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature does not verify", "ed25519",
        ghl.verify_webhook('{"a":1}', { ["x-ghl-signature"] = sig }, with_key()))
      local _, err = ghl.verify_webhook(body, { ["x-ghl-signature"] = sig }, with_key())
      assert.equal("ghl: cannot decode the webhook: the body is not valid JSON", err)
    end)
  end)

  describe("the legacy RSA signature (X-WH-Signature)", function()
    it("is accepted with opts.legacy_rsa_key when there is no X-GHL-Signature", function()
      local k = make_keys()
      for _, name in ipairs { "X-WH-Signature", "x-wh-signature", "X-WH-SIGNATURE" } do
        local event, err, info = ghl.verify_webhook(BODY, { [name] = sign_rsa(BODY) }, { legacy_rsa_key = k.rsa_pem })
        assert.is_nil(err, name)
        assert.same({ type = "InboundMessage", locationId = "loc1", messageId = "m1", n = 3 }, event)
        assert.same({ algorithm = "rsa-sha256" }, info)
      end
    end)

    it("is refused without opts.legacy_rsa_key", function()
      local event, err, info = ghl.verify_webhook(BODY, { ["x-wh-signature"] = sign_rsa(BODY) })
      assert.is_nil(event)
      assert.equal("ghl: webhook signature: no X-GHL-Signature header (an X-WH-Signature is accepted only with opts.legacy_rsa_key)", err)
      assert.same({ kind = "signature" }, info)
      event = ghl.verify_webhook(BODY, { ["x-wh-signature"] = sign_rsa(BODY) }, with_key())
      assert.is_nil(event)
    end)

    it("is not looked at when there is an X-GHL-Signature, even one that fails", function()
      local k = make_keys()
      local headers = { ["x-ghl-signature"] = sign("{}"), ["x-wh-signature"] = sign_rsa(BODY) }
      assert_signature_failure("ghl: webhook signature: X-GHL-Signature does not verify", "ed25519",
        ghl.verify_webhook(BODY, headers, { public_key = k.ed_pem, legacy_rsa_key = k.rsa_pem }))
      headers["x-ghl-signature"] = sign(BODY)
      local event, err, info = ghl.verify_webhook(BODY, headers, { public_key = k.ed_pem, legacy_rsa_key = k.rsa_pem })
      assert.is_nil(err)
      assert.equal("m1", event.messageId)
      assert.same({ algorithm = "ed25519" }, info)
    end)

    it("fails for a changed body, a wrong length, bad base64, and a missing header", function()
      local k = { legacy_rsa_key = make_keys().rsa_pem }
      local sig = sign_rsa(BODY)
      assert.equal(344, #sig)
      assert_signature_failure("ghl: webhook signature: X-WH-Signature does not verify", "rsa-sha256",
        ghl.verify_webhook(BODY .. " ", { ["x-wh-signature"] = sig }, k))
      assert_signature_failure("ghl: webhook signature: X-WH-Signature decodes to 64 bytes, not the 256 of the RSA key's signature",
        "rsa-sha256", ghl.verify_webhook(BODY, { ["x-wh-signature"] = sign(BODY) }, k))
      assert_signature_failure("ghl: webhook signature: X-WH-Signature is not valid base64", "rsa-sha256",
        ghl.verify_webhook(BODY, { ["x-wh-signature"] = replace_at(sig, 100, "*") }, k))
      local event, err, info = ghl.verify_webhook(BODY, {}, k)
      assert.is_nil(event)
      assert.equal("ghl: webhook signature: no X-GHL-Signature or X-WH-Signature header", err)
      assert.same({ kind = "signature" }, info)
    end)
  end)

  describe("misuse raises", function()
    local function sig() return sign(BODY) end

    it("for a body that is not a string", function()
      for _, v in ipairs { 42, true, {}, function() end } do
        assert.equal("ghl: bad argument 'body' (string expected, got " .. type(v) .. ")",
          raised(ghl.verify_webhook, v, { ["x-ghl-signature"] = "x" }))
      end
      assert.equal("ghl: bad argument 'body' (string expected, got nil)", raised(ghl.verify_webhook))
    end)

    it("for headers that are not a table", function()
      for _, v in ipairs { "x-ghl-signature: abc", 42, true } do
        assert.equal("ghl: bad argument 'headers' (table expected, got " .. type(v) .. ")",
          raised(ghl.verify_webhook, BODY, v))
      end
      assert.equal("ghl: bad argument 'headers' (table expected, got nil)", raised(ghl.verify_webhook, BODY))
    end)

    it("for a signature header that is not a string", function()
      assert.equal("ghl: bad argument 'headers' (X-GHL-Signature must be a string, got number)",
        raised(ghl.verify_webhook, BODY, { ["X-GHL-Signature"] = 12 }))
      assert.equal("ghl: bad argument 'headers' (X-GHL-Signature must be a string, got boolean)",
        raised(ghl.verify_webhook, BODY, { ["x-ghl-signature"] = false }))
      assert.equal("ghl: bad argument 'headers' (X-GHL-Signature must be a string, got a table holding a number)",
        raised(ghl.verify_webhook, BODY, { ["x-ghl-signature"] = { 1 } }))
    end)

    it("for opts that are not a table, an unknown key or a value of the wrong type", function()
      local k = make_keys()
      assert.equal("ghl: options must be a table (got string)", raised(ghl.verify_webhook, BODY, {}, k.ed_pem))
      assert.equal("ghl: unknown option 'publickey'", raised(ghl.verify_webhook, BODY, {}, { publickey = k.ed_pem }))
      assert.equal("ghl: unknown option 'token'", raised(ghl.verify_webhook, BODY, {}, { token = "x" }))
      assert.equal("ghl: option names must be strings", raised(ghl.verify_webhook, BODY, {}, { k.ed_pem }))
      assert.equal("ghl: option 'public_key' must be a string (got number)",
        raised(ghl.verify_webhook, BODY, {}, { public_key = 1 }))
      assert.equal("ghl: option 'public_key' must be a string (got boolean)",
        raised(ghl.verify_webhook, BODY, {}, { public_key = false }))
      assert.equal("ghl: option 'legacy_rsa_key' must be a string (got table)",
        raised(ghl.verify_webhook, BODY, {}, { legacy_rsa_key = {} }))
    end)

    it("for a public_key that is not an Ed25519 public key", function()
      local k = make_keys()
      local function err_of(key)
        return raised(ghl.verify_webhook, BODY, { ["x-ghl-signature"] = sig() }, { public_key = key })
      end
      assert.equal("ghl: option 'public_key' is an RSA key, not an Ed25519 public key", err_of(k.rsa_pem))
      local rsa_spki = k.rsa_pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", "")
      assert.equal("ghl: option 'public_key' is an RSA key, not an Ed25519 public key", err_of(rsa_spki))
      assert.equal("ghl: option 'public_key' is not a PEM public key (-----BEGIN PUBLIC KEY-----)", err_of(k.ed_private))
      assert.equal("ghl: option 'public_key' is not a PEM public key (-----BEGIN PUBLIC KEY-----)",
        err_of("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"))
      assert.equal("ghl: option 'public_key' is not a PEM public key (-----BEGIN PUBLIC KEY-----)",
        err_of(k.ed_pem:sub(1, 40)))
      local NEITHER = "ghl: option 'public_key' is neither a PEM public key nor a base64 SubjectPublicKeyInfo"
      assert.equal(NEITHER, err_of("not a key"))
      assert.equal(NEITHER, err_of(k.ed_spki:sub(1, 40)))
      assert.equal(NEITHER, err_of(k.ed_spki .. "AAAA")) -- bytes after the key
      assert.equal(NEITHER, err_of("i2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=")) -- a raw key, not SPKI
      assert.equal("ghl: option 'public_key' is empty", err_of(""))
      assert.equal("ghl: option 'public_key' is empty", err_of(" \n"))
    end)

    it("for a legacy_rsa_key that is not a PEM RSA public key of 2048 to 8192 bits", function()
      local k = make_keys()
      local function err_of(key)
        return raised(ghl.verify_webhook, BODY, { ["x-wh-signature"] = "x" }, { legacy_rsa_key = key })
      end
      assert.equal("ghl: option 'legacy_rsa_key' is an Ed25519 key, not an RSA public key", err_of(k.ed_pem))
      assert.equal("ghl: option 'legacy_rsa_key' must be a PEM public key (-----BEGIN PUBLIC KEY-----)",
        err_of((k.rsa_pem:gsub("%-%-%-%-%-[^\n]*%-%-%-%-%-", ""):gsub("%s", ""))))
      assert.equal("ghl: option 'legacy_rsa_key' is an RSA key outside 2048 to 8192 bits", err_of(k.rsa_small_pem))
      assert.equal("ghl: option 'legacy_rsa_key' is not a PEM public key (-----BEGIN PUBLIC KEY-----)",
        err_of("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
    end)

    it("raises for a bad key even when no header would use it", function()
      assert.equal("ghl: option 'legacy_rsa_key' is not a PEM public key (-----BEGIN PUBLIC KEY-----)",
        raised(ghl.verify_webhook, BODY, {}, { legacy_rsa_key = "-----BEGIN PUBLIC KEY-----\n" }))
    end)

    it("keeps working after many raised calls (keys freed by their userdata)", function()
      local k = make_keys()
      for _ = 1, 200 do
        pcall(ghl.verify_webhook, BODY, {}, { public_key = k.rsa_pem })
        pcall(ghl.verify_webhook, BODY, { ["x-ghl-signature"] = 1 }, { public_key = k.ed_pem, legacy_rsa_key = k.rsa_pem })
      end
      collectgarbage()
      local event = ghl.verify_webhook(BODY, { ["x-ghl-signature"] = sig() }, with_key())
      assert.is_table(event)
    end)
  end)
end)
