-- Reading an HTTP/1.1 response from bytes (src/http1.c), as ghl.resty's
-- cosockets hand them over: through the internal ghl._exchange interface,
-- without nginx, so every runtime (and valgrind, ASan) runs it. The bytes
-- come whole, one at a time, and split at every point.

local ghl = require("ghl")

local BODY = '{"message":{"id":"m1","type":2,"messageType":"TYPE_SMS","body":"hi"},"traceId":"t1"}'

local function exchange(extra)
  local opts = { token = "spec-token-http1", base_url = "http://127.0.0.1:9", retries = 0 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return ghl._exchange("m1", opts)
end

-- Feeds the pieces; returns what the last feed returned (packed), and how
-- many feeds returned before the end.
local function feed(ex, pieces)
  for i, piece in ipairs(pieces) do
    local r = { ex:feed(piece) }
    if r[1] ~= nil then return r, i end
  end
  return {}, #pieces
end

local function result(ex)
  assert.is_nil(ex:next_attempt())
  return ex:result()
end

local function head(status, headers)
  return "HTTP/1.1 " .. status .. "\r\n" .. table.concat(headers or {}, "\r\n") .. (headers and "\r\n" or "") .. "\r\n"
end

local function with_length(body, extra)
  local h = { "Content-Type: application/json", "Content-Length: " .. #body }
  for _, x in ipairs(extra or {}) do h[#h + 1] = x end
  return head("200 OK", h) .. body
end

local function chunked(body, sizes)
  local out, pos = {}, 1
  for _, n in ipairs(sizes) do
    local piece = body:sub(pos, pos + n - 1)
    if piece == "" then break end
    out[#out + 1] = string.format("%x;ext=1\r\n%s\r\n", #piece, piece)
    pos = pos + #piece
  end
  if pos <= #body then out[#out + 1] = string.format("%X\r\n%s\r\n", #body - pos + 1, body:sub(pos)) end
  return head("200 OK", { "Transfer-Encoding: chunked", "Content-Type: application/json" })
    .. table.concat(out) .. "0\r\nX-Trailer: 1\r\n\r\n"
end

-- The ways to cut s into pieces: whole, a byte at a time, and in two at
-- every point.
local function splits(s)
  local out = { { s } }
  local bytes = {}
  for i = 1, #s do bytes[i] = s:sub(i, i) end
  out[#out + 1] = bytes
  for i = 1, #s - 1 do out[#out + 1] = { s:sub(1, i), s:sub(i + 1) } end
  return out
end

local function assert_message(ex)
  local msg, err, info = result(ex)
  assert.is_nil(err)
  assert.equal("m1", msg.id)
  assert.equal("TYPE_SMS", msg.type)
  assert.equal("hi", msg.body)
  assert.equal(200, info.status)
  assert.equal("t1", info.trace_id)
end

describe("reading an HTTP/1.1 response from bytes", function()
  it("takes a Content-Length body however the bytes are cut, and keeps the connection", function()
    for _, pieces in ipairs(splits(with_length(BODY))) do
      local ex = exchange()
      local r, used = feed(ex, pieces)
      assert.same({ true, true }, r)
      assert.equal(#pieces, used)
      assert_message(ex)
    end
  end)

  it("takes a chunked body with extensions and trailers however the bytes are cut", function()
    for _, pieces in ipairs(splits(chunked(BODY, { 1, 7, 30 }))) do
      local ex = exchange()
      local r = feed(ex, pieces)
      assert.same({ true, true }, r)
      assert_message(ex)
    end
  end)

  it("skips a 100 Continue before the answer", function()
    local ex = exchange()
    assert.same({ true, true }, feed(ex, { head("100 Continue") .. with_length(BODY) }))
    assert_message(ex)
  end)

  it("ends a 204 at its head, and a body without framing at the end of the connection", function()
    local ex = exchange()
    assert.same({ true, true }, feed(ex, { head("204 No Content", { "X-A: 1" }) }))
    ex = exchange()
    assert.same({}, feed(ex, { head("200 OK", { "Content-Type: application/json" }), BODY:sub(1, 10), BODY:sub(11) }))
    assert.is_true(ex:closed())
    assert_message(ex)
  end)

  it("does not keep a connection the server closes, or one with bytes after the answer", function()
    local ex = exchange()
    assert.same({ true, false }, feed(ex, { with_length(BODY, { "Connection: close" }) }))
    assert_message(ex)
    ex = exchange()
    assert.same({ true, false }, feed(ex, { with_length(BODY) .. "HTTP/1.1 200 OK\r\n" }))
    assert_message(ex)
    ex = exchange()
    assert.same({ true, false }, feed(ex, { "HTTP/1.0 200 OK\r\nContent-Length: " .. #BODY .. "\r\n\r\n" .. BODY }))
  end)

  local function broken(pieces, closed, curl_code, text)
    local ex = exchange()
    local r = feed(ex, pieces)
    if closed then
      assert.same({}, r)
      assert.is_false(ex:closed())
    else
      assert.same({ false }, r)
    end
    local msg, err, info = result(ex)
    assert.is_nil(msg)
    assert.equal("network", info.kind)
    assert.equal(curl_code, info.curl_code)
    assert.equal(1, info.attempts)
    assert.truthy(err:find(text, 1, true), err)
  end

  it("calls what is not HTTP a protocol error (curl_code 8)", function()
    broken({ "HTTP/2 200\r\n\r\n" }, false, 8, "bad status line")
    broken({ "hello\r\n\r\n" }, false, 8, "bad status line")
    broken({ head("200 OK", { "Content-Length: 12x" }) }, false, 8, "bad Content-Length")
    broken({ head("200 OK", { "Transfer-Encoding: chunked" }) .. "zz\r\n" }, false, 8, "bad chunk size line")
    broken({ head("200 OK", { "Transfer-Encoding: chunked" }) .. "3\r\nabcX\r\n" }, false, 8, "bad chunk end")
    broken({ "HTTP/1.1 200 OK\r\n" .. string.rep("X-Long: " .. string.rep("a", 1000) .. "\r\n", 70) }, false, 8,
      "response head over 64 KiB")
  end)

  it("calls a response cut short by the end of the connection a partial answer (curl_code 18)", function()
    broken({ head("200 OK", { "Content-Length: 1000" }) .. "abc" }, true, 18,
      "transfer closed with 997 bytes remaining to read")
    broken({ head("200 OK", { "Transfer-Encoding: chunked" }) .. "10\r\nabc" }, true, 18,
      "the connection closed inside the chunked body")
  end)

  it("stops at max_body_size, by Content-Length or as the body grows", function()
    local ex = exchange({ max_body_size = 16 })
    assert.same({ false }, feed(ex, { head("200 OK", { "Content-Length: 17" }) }))
    local msg, err, info = result(ex)
    assert.is_nil(msg)
    assert.equal("too_large", info.kind)
    assert.truthy(err:find("more than 16 bytes", 1, true), err)
    ex = exchange({ max_body_size = 16 })
    assert.same({ false }, feed(ex, { head("200 OK", { "Transfer-Encoding: chunked" }), "9\r\n123456789\r\n",
      "9\r\n123456789\r\n" }))
    local _, _, info2 = result(ex)
    assert.equal("too_large", info2.kind)
  end)
end)
