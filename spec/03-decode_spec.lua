-- ghl.decode_message: the decoding and error mapping, without the network.

local h = require("helpers")
local ghl = require("ghl")

local decode = ghl.decode_message

local function ok_decode(name, status)
  local body = h.fixture(name)
  local msg, err, info = decode(body, status)
  assert.is_nil(err)
  assert.is_table(msg)
  assert.is_table(info)
  return msg, info
end

local function failed_decode(body, status)
  local msg, err, info = decode(body, status)
  assert.is_nil(msg)
  assert.is_string(err)
  assert.is_table(info)
  assert.matches("^ghl: ", err)
  assert.is_nil(err:find("\n", 1, true), "errmsg is one line")
  assert.is_nil(err:find("(GET ", 1, true), "decode_message has no request to name")
  return err, info
end

local REASON_422 = { ["Unprocessable Entity"] = true, ["Unprocessable Content"] = true }

describe("ghl.decode_message", function()
  describe("unwrapping", function()
    it("takes the message object out of {message, traceId}", function()
      local msg, info = ok_decode("sms.json")
      assert.same(h.expected_message(ghl, "sms.json"), msg)
      assert.equal("Xq1sMs0000aaaa000001", msg.id)
      assert.is_nil(msg.message)
      assert.is_nil(msg.traceId)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000001", info.trace_id)
      assert.equal(200, info.status)
      assert.is_nil(info.kind)
    end)

    it("defaults status to 200", function()
      local a, ia = ok_decode("sms.json")
      local b, ib = ok_decode("sms.json", 200)
      assert.same(a, b)
      assert.equal(200, ia.status)
      assert.equal(200, ib.status)
    end)

    it("accepts any 2xx status", function()
      local msg, info = ok_decode("sms.json", 203)
      assert.equal("Xq1sMs0000aaaa000001", msg.id)
      assert.equal(203, info.status)
    end)

    it("takes a top-level body with id as the message", function()
      local msg, info = ok_decode("top_level.json")
      assert.same(h.expected_message(ghl, "top_level.json"), msg)
      assert.equal("Xq1tOp0000aaaa000004", msg.id)
      assert.equal("TYPE_SMS", msg.type)
      assert.is_nil(info.trace_id)
    end)

    it("fails with kind decode when message is a string and there is no id", function()
      local body = h.fixture("message_string.json")
      local err, info = failed_decode(body, 200)
      assert.equal("decode", info.kind)
      assert.equal(200, info.status)
      assert.equal(body, info.body)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000013", info.trace_id)
      assert.is_string(err)
    end)

    it("fails with kind decode when there is no message at all", function()
      local body = h.fixture("no_message.json")
      local _, info = failed_decode(body)
      assert.equal("decode", info.kind)
      assert.equal(200, info.status)
      assert.equal(body, info.body)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000014", info.trace_id)
    end)

    for _, case in ipairs {
      { "a JSON array", h.fixture("json_array.json") },
      { "a JSON string", h.fixture("json_string.json") },
      { "a JSON number", "42" },
      { "JSON true", "true" },
      { "JSON null", "null" },
      { "not JSON", "this is not JSON {\"message\": " },
      { "HTML", "<html><body>OK</body></html>" },
      { "empty", "" },
      { "truncated JSON", h.fixture("sms.json"):sub(1, 200) },
      { "JSON with trailing garbage", h.fixture("sms.json") .. "}x" },
    } do
      it("fails with kind decode on a 2xx body that is " .. case[1], function()
        local _, info = failed_decode(case[2], 200)
        assert.equal("decode", info.kind)
        assert.equal(200, info.status)
        if case[2] ~= "" then assert.equal(case[2], info.body) end
      end)
    end
  end)

  describe("type", function()
    it("becomes messageType when that starts with TYPE_", function()
      local msg = ok_decode("sms.json")
      assert.equal("TYPE_SMS", msg.type)
      assert.equal("TYPE_SMS", msg.messageType)
      msg = ok_decode("call.json")
      assert.equal("TYPE_CALL", msg.type)
      msg = ok_decode("email.json")
      assert.equal("TYPE_EMAIL", msg.type)
    end)

    it("takes the name from messageType even for a code the table lacks", function()
      local msg = ok_decode("rcs.json")
      assert.equal("TYPE_RCS", msg.type)
      assert.equal("TYPE_RCS", msg.messageType)
    end)

    it("comes from MESSAGE_TYPES when messageType is missing", function()
      local msg = ok_decode("whatsapp_no_mt.json")
      assert.equal("TYPE_WHATSAPP", msg.type)
      assert.is_nil(msg.messageType)
    end)

    it("comes from MESSAGE_TYPES when messageType lacks the TYPE_ prefix, which passes through", function()
      local msg = ok_decode("sms_mt_plain.json")
      assert.equal("TYPE_SMS", msg.type)
      assert.equal("SMS", msg.messageType)
    end)

    it("stays a number for an unknown code", function()
      local msg = ok_decode("unknown_type.json")
      assert.equal(99, msg.type)
      assert.is_true(h.is_integer(msg.type))
    end)

    it("is left as it is when not a number", function()
      local msg = ok_decode("type_string.json")
      assert.equal("7", msg.type)
    end)

    it("reads MESSAGE_TYPES at decode time, so a code can be added", function()
      ghl.MESSAGE_TYPES[99] = "TYPE_NINETY_NINE"
      ghl.MESSAGE_TYPES.TYPE_NINETY_NINE = 99
      local ok, msg = pcall(decode, h.fixture("unknown_type.json"))
      ghl.MESSAGE_TYPES[99] = nil
      ghl.MESSAGE_TYPES.TYPE_NINETY_NINE = nil
      assert.is_true(ok, msg)
      assert.equal("TYPE_NINETY_NINE", msg.type)
      assert.equal(99, ok_decode("unknown_type.json").type)
    end)

    it("prefers a TYPE_ messageType over the table", function()
      local body = h.fixture("sms.json"):gsub('"type": 2,', '"type": 1,')
      local msg = decode(body)
      assert.equal("TYPE_SMS", msg.type)
    end)

    it("takes the table's name when messageType is not a string", function()
      local body = h.fixture("sms.json"):gsub('"messageType": "TYPE_SMS"', '"messageType": 5')
      local msg = decode(body)
      assert.equal("TYPE_SMS", msg.type)
      assert.equal(5, msg.messageType)
    end)

    it("is the only member renamed: string enums pass through", function()
      local msg = ok_decode("call.json")
      assert.equal("completed", msg.status)
      assert.equal("inbound", msg.direction)
      assert.equal("app", msg.source)
      assert.equal("completed", msg.meta.callStatus)
      assert.equal("completed", msg.meta.call.status)
      msg = ok_decode("unknown_type.json")
      assert.equal("brand_new_status", msg.status)
      assert.equal("new_source", msg.source)
    end)
  end)

  describe("members", function()
    it("keeps every member under its JSON name, unknown ones included", function()
      local msg = ok_decode("sms.json")
      assert.equal("LoC0000000000000test", msg.locationId)
      assert.equal("CoN0000000000000test", msg.contactId)
      assert.equal("CoV0000000000000test", msg.conversationId)
      assert.equal("2024-03-27T18:13:49.000Z", msg.dateAdded)
      assert.equal("2024-03-27T18:13:51.120Z", msg.dateUpdated)
      assert.equal("SM00000000000000000000000000000001", msg.altId)
      assert.equal("PrV0000000000000test", msg.conversationProviderId)
      assert.equal("text/plain", msg.contentType)
    end)

    it("gives nested objects as tables and arrays as sequences", function()
      local msg = ok_decode("email.json")
      assert.same(h.expected_message(ghl, "email.json"), msg)
      assert.equal(2, #msg.attachments)
      assert.equal("https://example.invalid/files/invoice-0001.pdf", msg.attachments[1])
      assert.equal("https://example.invalid/files/terms.pdf", msg.attachments[2])
      assert.same({ "EmA0000000000000000a", "EmA0000000000000000b" }, msg.meta.email.messageIds)
      assert.equal(2, #msg.meta.email.messageIds)
    end)

    it("gives empty arrays and objects as empty tables", function()
      local msg = ok_decode("sms.json")
      assert.same({}, msg.attachments)
      assert.same({}, msg.meta)
    end)

    it("decodes the call's meta", function()
      local msg = ok_decode("call.json")
      assert.same(h.expected_message(ghl, "call.json"), msg)
      assert.equal(42, msg.meta.callDuration)
      assert.equal(42, msg.meta.call.duration)
      assert.is_true(h.is_integer(msg.meta.callDuration))
      assert.is_true(h.is_integer(msg.meta.call.duration))
    end)
  end)

  describe("null", function()
    local msg
    before_each(function() msg = ok_decode("nulls.json") end)

    it("drops object members that are null", function()
      assert.is_nil(msg.dateUpdated)
      assert.is_nil(msg.status)
      assert.is_nil(msg.userId)
      assert.is_nil(msg.meta.email)
      assert.is_nil(msg.meta.nested.inner)
      assert.is_nil(msg.meta.nested.deeper[2].x)
      assert.equal("yes", msg.meta.nested.keep)
      assert.equal(0, msg.meta.nested.deeper[2].y)
    end)

    it("gives null array elements as ghl.null, keeping positions", function()
      assert.equal(3, #msg.attachments)
      assert.equal(ghl.null, msg.attachments[1])
      assert.equal("https://example.invalid/a.png", msg.attachments[2])
      assert.equal(ghl.null, msg.attachments[3])
      assert.same({ 1, ghl.null, 3 }, msg.meta.list)
      assert.same({ ghl.null }, msg.meta.trailing)
      assert.same({ ghl.null }, msg.meta.nested.deeper[1])
    end)

    it("matches the fixture with nulls mapped", function()
      assert.same(h.expected_message(ghl, "nulls.json"), msg)
    end)
  end)

  describe("numbers", function()
    local m
    before_each(function() m = ok_decode("numbers.json").meta end)

    it("keep their values", function()
      assert.equal(120, m.callDuration)
      assert.equal(0, m.zero)
      assert.equal(-17, m.negative)
      assert.equal(9007199254740991, m.maxSafe)
      assert.equal(-9007199254740991, m.minSafe)
      assert.equal(2 ^ 53, m.beyondSafe)
      assert.equal(1.5, m.half)
      assert.equal(1000, m.exp)
      assert.equal(-0.0025, m.negExp)
      assert.equal(0, m.negZero)
      assert.equal(2, m.fracZero)
      assert.same({ 1, 2.25, -3, 400 }, m.list)
    end)

    it("are integers when integral within +-(2^53-1), on Lua 5.3+", function()
      if not h.HAS_INTEGERS then return end
      for _, k in ipairs { "callDuration", "zero", "negative", "maxSafe", "minSafe", "exp", "fracZero", "negZero" } do
        assert.equal("integer", math.type(m[k]), k)
      end
      assert.equal("integer", math.type(m.list[1]))
      assert.equal("integer", math.type(m.list[3]))
      assert.equal("integer", math.type(m.list[4]))
    end)

    it("are floats otherwise", function()
      if not h.HAS_INTEGERS then return end
      for _, k in ipairs { "beyondSafe", "half", "negExp" } do
        assert.equal("float", math.type(m[k]), k)
      end
      assert.equal("float", math.type(m.list[2]))
    end)

    it("give type as an integer on Lua 5.3+ when it stays a number", function()
      local body = h.fixture("numbers.json"):gsub('"messageType": "TYPE_CALL",', '')
      body = body:gsub('"type": 1,', '"type": 77,')
      local msg = decode(body)
      assert.equal(77, msg.type)
      assert.is_true(h.is_integer(msg.type))
    end)
  end)

  describe("strings", function()
    it("decode escapes, surrogate pairs and raw UTF-8 exactly", function()
      local msg = ok_decode("unicode.json")
      assert.equal("caf\195\169 \240\159\152\128 line1\nline2 \"quoted\" back\\slash tab\t slash/ raw \195\169 \230\151\165\230\156\172", msg.body)
      assert.equal("\240\159\145\141", msg.meta.emoji)
      assert.equal("AA\195\159", msg.meta.nul_free)
      assert.same(h.expected_message(ghl, "unicode.json"), msg)
    end)

    it("keep an escaped NUL inside the string", function()
      local body = h.fixture("sms.json"):gsub('"body": "[^"]*"', '"body": "a\\u0000b"')
      local msg = decode(body)
      assert.equal("a\0b", msg.body)
      assert.equal(3, #msg.body)
    end)
  end)

  describe("error statuses", function()
    local function http_error(name, status)
      local body = h.fixture(name)
      local err, info = failed_decode(body, status)
      assert.equal("http", info.kind)
      assert.equal(status, info.status)
      assert.equal(body, info.body)
      return err, info, body
    end

    it("401 Invalid JWT", function()
      local err, info = http_error("err_401_jwt.json", 401)
      assert.equal("ghl: HTTP 401 Unauthorized: Invalid JWT", err)
      assert.equal("Invalid JWT", info.message)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000401", info.trace_id)
    end)

    it("401 Command timed out", function()
      local err, info = http_error("err_401_cto.json", 401)
      assert.equal("ghl: HTTP 401 Unauthorized: Command timed out", err)
      assert.equal("Command timed out", info.message)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000004011", info.trace_id)
    end)

    it("400", function()
      local err, info = http_error("err_400.json", 400)
      assert.equal("ghl: HTTP 400 Bad Request: Bad Request", err)
      assert.equal("Bad Request", info.message)
    end)

    it("403 JSON", function()
      local err, info = http_error("err_403_json.json", 403)
      assert.equal("ghl: HTTP 403 Forbidden: The token does not have access to this location.", err)
      assert.equal("The token does not have access to this location.", info.message)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000403", info.trace_id)
    end)

    it("404", function()
      local err, info = http_error("err_404.json", 404)
      assert.equal("ghl: HTTP 404 Not Found: Message not found", err)
      assert.equal("Message not found", info.message)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000404", info.trace_id)
    end)

    it("422 with an array message, joined with '; '", function()
      local err, info = http_error("err_422.json", 422)
      local joined = "id must be a string; id must be longer than or equal to 20 characters"
      assert.equal(joined, info.message)
      local reason = err:match("^ghl: HTTP 422 ([^:]+): ")
      assert.is_truthy(REASON_422[reason], err)
      assert.equal("ghl: HTTP 422 " .. reason .. ": " .. joined, err)
    end)

    it("429", function()
      local err, info = http_error("err_429.json", 429)
      assert.equal("ghl: HTTP 429 Too Many Requests: Too Many Requests", err)
      assert.equal("Too Many Requests", info.message)
    end)

    it("500, 503 and 504 JSON", function()
      local err = http_error("err_500.json", 500)
      assert.equal("ghl: HTTP 500 Internal Server Error: Internal server error", err)
      err = http_error("err_503.json", 503)
      assert.equal("ghl: HTTP 503 Service Unavailable: Service temporarily unavailable", err)
      err = http_error("err_504.json", 504)
      assert.equal("ghl: HTTP 504 Gateway Timeout: Upstream request timed out", err)
    end)

    it("HTML error pages have no API message", function()
      local err, info = http_error("err_403.html", 403)
      assert.equal("ghl: HTTP 403 Forbidden", err)
      assert.is_nil(info.message)
      assert.is_nil(info.trace_id)
      err, info = http_error("err_502.html", 502)
      assert.equal("ghl: HTTP 502 Bad Gateway", err)
      assert.is_nil(info.message)
      err, info = http_error("err_524.html", 524)
      assert.matches("^ghl: HTTP 524", err)
      assert.is_nil(err:find(":", #"ghl: HTTP 524", true), "no API message: " .. err)
      assert.is_nil(info.message)
    end)

    it("an empty error body", function()
      local err, info = failed_decode("", 500)
      assert.equal("ghl: HTTP 500 Internal Server Error", err)
      assert.equal("http", info.kind)
      assert.equal(500, info.status)
      assert.is_nil(info.message)
      assert.is_true(info.body == nil or info.body == "")
    end)

    it("a 3xx is an http failure even with a message body", function()
      local err, info = failed_decode(h.fixture("sms.json"), 302)
      assert.equal("http", info.kind)
      assert.equal(302, info.status)
      assert.matches("^ghl: HTTP 302 Found", err)
    end)

    it("an error status with a success-shaped body is still an error", function()
      local _, info = failed_decode(h.fixture("sms.json"), 500)
      assert.equal("http", info.kind)
      assert.equal(500, info.status)
      assert.equal("7c1d2e3f-0a1b-4c5d-8e9f-000000000001", info.trace_id)
    end)

    it("keeps at most 64 KiB of the body", function()
      local body = '{"message":"' .. string.rep("x", 100000) .. '"}'
      local _, info = failed_decode(body, 500)
      assert.is_true(#info.body <= 65536, "body kept: " .. #info.body)
      assert.is_true(#info.body > 0)
      assert.equal(body:sub(1, #info.body), info.body)
    end)
  end)

  describe("misuse", function()
    it("raises when body is not a string", function()
      assert.has_error(function() decode(nil) end)
      assert.has_error(function() decode({}) end)
    end)
  end)
end)
