-- The module table: constants, the message-type table, ghl.null, entry points.

local h = require("helpers")
local ghl = require("ghl")

-- The spec's messageType enum, read in order from code 1.
local NAMES = {
  "TYPE_CALL", "TYPE_SMS", "TYPE_EMAIL", "TYPE_SMS_REVIEW_REQUEST", "TYPE_WEBCHAT",
  "TYPE_SMS_NO_SHOW_REQUEST", "TYPE_CAMPAIGN_SMS", "TYPE_CAMPAIGN_CALL",
  "TYPE_CAMPAIGN_EMAIL", "TYPE_CAMPAIGN_VOICEMAIL", "TYPE_FACEBOOK",
  "TYPE_CAMPAIGN_FACEBOOK", "TYPE_CAMPAIGN_MANUAL_CALL", "TYPE_CAMPAIGN_MANUAL_SMS",
  "TYPE_GMB", "TYPE_CAMPAIGN_GMB", "TYPE_REVIEW", "TYPE_INSTAGRAM", "TYPE_WHATSAPP",
  "TYPE_CUSTOM_SMS", "TYPE_CUSTOM_EMAIL", "TYPE_CUSTOM_PROVIDER_SMS",
  "TYPE_CUSTOM_PROVIDER_EMAIL", "TYPE_IVR_CALL", "TYPE_ACTIVITY_CONTACT",
  "TYPE_ACTIVITY_INVOICE", "TYPE_ACTIVITY_PAYMENT", "TYPE_ACTIVITY_OPPORTUNITY",
  "TYPE_LIVE_CHAT", "TYPE_LIVE_CHAT_INFO_MESSAGE", "TYPE_ACTIVITY_APPOINTMENT",
  "TYPE_FACEBOOK_COMMENT", "TYPE_INSTAGRAM_COMMENT", "TYPE_CUSTOM_CALL",
}

describe("ghl module", function()
  it("is a table returned by require", function()
    assert.is_table(ghl)
    assert.equal(ghl, require("ghl"))
  end)

  it("has VERSION as MAJOR.MINOR.PATCH", function()
    assert.is_string(ghl.VERSION)
    assert.matches("^%d+%.%d+%.%d+$", ghl.VERSION)
  end)

  it("has API_VERSION 2021-04-15", function()
    assert.equal("2021-04-15", ghl.API_VERSION)
  end)

  it("has BASE_URL for LeadConnector", function()
    assert.equal("https://services.leadconnectorhq.com", ghl.BASE_URL)
  end)

  it("exposes the entry points as functions", function()
    assert.is_function(ghl.get_message)
    assert.is_function(ghl.new)
    assert.is_function(ghl.decode_message)
    assert.is_function(ghl.get_message_request)
  end)

  describe("MESSAGE_TYPES", function()
    local T = ghl.MESSAGE_TYPES

    it("is a table", function()
      assert.is_table(T)
    end)

    it("maps the confirmed codes", function()
      assert.equal("TYPE_CALL", T[1])
      assert.equal("TYPE_SMS", T[2])
      assert.equal("TYPE_EMAIL", T[3])
      assert.equal("TYPE_CAMPAIGN_VOICEMAIL", T[10])
      assert.equal("TYPE_WHATSAPP", T[19])
      assert.equal("TYPE_CUSTOM_CALL", T[34])
    end)

    it("maps every code 1-34 to the spec's list in order", function()
      for code, name in ipairs(NAMES) do
        assert.equal(name, T[code], "code " .. code)
      end
    end)

    it("maps names back to codes, as integers", function()
      for code, name in ipairs(NAMES) do
        assert.equal(code, T[name], name)
        assert.is_true(h.is_integer(T[name]), name .. " is an integer")
      end
      assert.equal(1, T.TYPE_CALL)
      assert.equal(3, T.TYPE_EMAIL)
      assert.equal(10, T.TYPE_CAMPAIGN_VOICEMAIL)
      assert.equal(19, T.TYPE_WHATSAPP)
      assert.equal(34, T.TYPE_CUSTOM_CALL)
    end)

    it("has nothing at 0, 35 and beyond, nor names whose codes are disputed", function()
      assert.is_nil(T[0])
      assert.is_nil(T[35])
      assert.is_nil(T[36])
      assert.is_nil(T[41])
      assert.is_nil(T.TYPE_INTERNAL_COMMENT)
      assert.is_nil(T.TYPE_ACTIVITY_EMPLOYEE_ACTION_LOG)
      assert.is_nil(T.TYPE_RCS)
    end)

    it("holds exactly 34 codes and 34 names", function()
      local codes, names = 0, 0
      for k, v in pairs(T) do
        if type(k) == "number" then
          codes = codes + 1
          assert.is_string(v)
        elseif type(k) == "string" then
          names = names + 1
          assert.is_number(v)
        else
          error("unexpected key type " .. type(k))
        end
      end
      assert.equal(34, codes)
      assert.equal(34, names)
    end)

    it("has a sequence part of length 34", function()
      assert.equal(34, #T)
    end)
  end)

  describe("null", function()
    it("is a non-nil sentinel distinct from false, numbers and strings", function()
      assert.is_not_nil(ghl.null)
      assert.is_not_false(ghl.null)
      assert.not_equal("string", type(ghl.null))
      assert.not_equal("number", type(ghl.null))
      assert.not_equal("boolean", type(ghl.null))
    end)

    it("is the same value each time", function()
      assert.equal(ghl.null, ghl.null)
      assert.equal(ghl.null, require("ghl").null)
    end)
  end)
end)
