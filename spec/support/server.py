#!/usr/bin/python3
"""Local stand-in for the LeadConnector endpoint GET /conversations/messages/{id}.

Python 3 standard library only.  Started by spec/helpers.lua, one instance per
test run; listens on 127.0.0.1 only, on four ephemeral ports:

    http    plain HTTP/1.1, keep-alive
    https   the same over TLS (--cert/--key, signed by the run's throw-away CA)
    other   plain HTTP; the target of cross-origin redirects.  It answers every
            request with the SMS message and checks no token, so a client that
            wrongly follows a redirect shows up in the log with its headers.
    proxy   a forward proxy that never forwards (see "Proxy listener" below).

The behaviour is chosen by the message id (last path segment; any prefix before
/conversations is ignored, the "http://host:port" of a request sent to a proxy
included).  An id may end in "--<nonce>": the nonce is dropped to find the
scenario, but attempt counters are kept per full id, so every test can use its
own id (e.g. "flaky_503_2--r1n7").  Ids are [A-Za-z0-9_-] only.

Unless a scenario says otherwise: a request whose Authorization is not
"Bearer <something>" gets 401 Invalid JWT; every response carries the
rate-limit headers (X-RateLimit-Max 100, X-RateLimit-Remaining counting down
from 99 to 1 and then back to 99, X-RateLimit-Interval-Milliseconds 10000,
X-RateLimit-Limit-Daily 200000, X-RateLimit-Daily-Remaining counting down) and
a Content-Length.  Bodies come from spec/support/fixtures/.

Scenario table (id without nonce -> response)

  success (200, body = fixture)
    sms                  TYPE_SMS (type 2), wrapped {"message":{..},"traceId":..}   sms.json
    call                 TYPE_CALL (type 1), status "completed", meta.call.*           call.json
    email                TYPE_EMAIL (type 3), meta.email.messageIds array              email.json
    top_level            message at the top level (no wrapper)                       top_level.json
    whatsapp_no_mt       type 19, no messageType                                      whatsapp_no_mt.json
    sms_mt_plain         type 2, messageType "SMS" (no TYPE_ prefix)                  sms_mt_plain.json
    unknown_type         type 99, no messageType                                      unknown_type.json
    type_string          type "7" (a string), no messageType                          type_string.json
    rcs                  type 41, messageType "TYPE_RCS"                              rcs.json
    nulls                null members, null array elements, nested                   nulls.json
    numbers              integers, negatives, 2^53-1, 2^53+1, 1.5, 1e3, -0, ...       numbers.json
    unicode              \\u00e9, surrogate-pair emoji, \\n, \\", raw UTF-8             unicode.json
    gzip_sms             sms.json, gzip-encoded when Accept-Encoding allows gzip
    deflate_sms          sms.json, deflate (zlib) when Accept-Encoding allows deflate
    message_string       {"message":"ok","traceId":..}                                 message_string.json
    no_ratelimit         sms.json without any X-RateLimit-* header
    open_sms             sms.json without checking Authorization
    authonly_<s>         the echo message, but only for a token that ends in "-<s>";
                         any other token gets 401 {"message":"Invalid JWT"}
    echo                 a TYPE_SMS message whose "id" and "body" are the requested
                         full id (nonce included), traceId "echo-<full id>": tells
                         apart the answers to different ids

  errors (always the same answer)
    err_400              400 JSON                                                     err_400.json
    err_401_jwt          401 {"message":"Invalid JWT"}                                err_401_jwt.json
    err_401_cto          401 {"message":"Command timed out"}                          err_401_cto.json
    err_403_json         403 JSON                                                     err_403_json.json
    err_403_html         403 CDN HTML page                                            err_403.html
    err_404              404 {"message":"Message not found"}                          err_404.json
    err_422              422, message is an array of strings                          err_422.json
    err_500              500 JSON                                                     err_500.json
    err_500_empty        500, empty body
    err_502_html         502 HTML page                                                err_502.html
    err_503              503 JSON                                                     err_503.json
    err_504              504 JSON                                                     err_504.json
    err_524_html         524 Cloudflare HTML page                                     err_524.html
    ra_secs_<n>          429 JSON with Retry-After: <n>                              err_429.json
    ra_date_<n>          429 JSON with Retry-After: HTTP-date <n> s ahead            err_429.json
    rl_zero_<ms>         429 JSON, X-RateLimit-Remaining: 0,
                         X-RateLimit-Interval-Milliseconds: <ms>, no Retry-After     err_429.json
    rlzero_ok_<ms>       200 sms.json, but X-RateLimit-Remaining: 0 and
                         X-RateLimit-Interval-Milliseconds: <ms> (X-RateLimit-Max 100)
    rlmax0_<ms>          200 sms.json with X-RateLimit-Max: 0, X-RateLimit-Remaining: 0,
                         X-RateLimit-Interval-Milliseconds: <ms>: a window that never
                         holds a request
    echo_auth_400        400 JSON whose "message" quotes the request's headers:
                         "Invalid request headers: Authorization: <Authorization>;
                         Version: <Version>", traceId "echo-auth-400"
    echo_auth_502_html   502 HTML page (text/html) that dumps the request:
                         <html>\r\n<head><title>502 Bad Gateway</title></head>\r\n
                         <body>\r\n<h1>502 Bad Gateway</h1>\r\n<pre>GET <path> HTTP/1.1\r\n
                         Authorization: <Authorization>\r\nVersion: <Version>\r\n</pre>\r\n
                         </body>\r\n</html>\r\n  (one string, no other white space)
    redirect_302_other   302, Location on the "other" listener (id sms--<nonce>-moved)
    redirect_301_same    301, Location on this listener (id sms--<nonce>-moved)

  flaky (attempt counter per full id; then the SMS message)
    flaky_<s>_<k>        status <s> for the first <k> attempts, then 200 sms.json;
                         <s> one of 429 500 502 503 504 524 cto (401 Command timed out)
    flaky_429ra_<n>_<k>  429 with Retry-After: <n> for <k> attempts, then 200
    flaky_429rl_<ms>_<k> 429 with Remaining 0 / Interval <ms> for <k> attempts, then 200

  rate-limit window (one counter per scenario name, shared by all its ids)
    rlwin_<n>_<ms>       a fixed window of <ms> ms opened by the first request after
                         the previous one ended; the first <n> requests in it get 200
                         sms.json with X-RateLimit-Max <n>, X-RateLimit-Remaining what
                         is left (<n>-1 down to 0), X-RateLimit-Interval-Milliseconds
                         <ms>; any further request in it gets 429 err_429.json with
                         Remaining 0 (and no Retry-After).  Logged with "window" (1, 2, ...)
    rlwin_<n>_<ms>_<lag> the same, but the first request of each window is answered
                         <lag> ms late (<= 30000), so later answers overtake it

  faults
    never_answer         reads the request, sends nothing, holds the connection <= 30 s
    stall_half           headers + half the body, then holds <= 30 s
    reset_mid_body       headers + half the body, then TCP RST (SO_LINGER 0)
    short_body           Content-Length 100 bytes more than sent, then closes
    slow_drip            sms.json a few bytes every 20 ms (under 2 s in all)
    huge_9mib            valid JSON message of 9 MiB; logs {"event":"client_gone"} with
                         bytes_sent if the client closes or stops reading, else
                         {"event":"body_complete"}
    empty_200            200 with an empty body
    not_json             200, Content-Type JSON, body not JSON
    json_array           200, a JSON array                                           json_array.json
    json_string          200, a JSON string                                          json_string.json
    deep_nesting         200, 100000 "[" then 100000 "]"
    invalid_utf8         200, message whose body holds the bytes 0xff 0xfe
    big_numbers          200, message with 2^64, 1e400, -1e400 in meta
    dup_keys             200, message with "body" twice ("first", then "second")
    no_message           200 {"traceId":..}                                          no_message.json
    gzip_corrupt         200, Content-Encoding: gzip, body garbage
    body_msg_array       200 {"message":[1,2,3]}
    body_array_of_msg    200 [{"id":"x"}]
    body_empty_array     200 []
    body_null_id         200 {"id":null,"body":"x"}
    body_msg_null_id     200 {"message":{"id":null}}
    body_nul_garbage     200 sms.json, then a NUL byte and "garbage"
    slow_ok_<ms>         sleeps <ms> (<= 30000), then 200 sms.json
    slow_echo_<ms>       sleeps <ms> (<= 30000), then the "echo" answer
    chunked_sms          sms.json with Transfer-Encoding: chunked (chunks of 100 bytes)
    chunked_huge         9 MiB message (as huge_9mib), chunked: no Content-Length
    sms_then_drop        sms.json on a kept-alive connection; the next request on the
                         same connection is read and the connection closed unanswered
                         (logged as the event "dropped", with its id and conn)

  anything else          404 {"message":"No such scenario: <name>"}

Every other path (the rest of the API, /spec/*) is served by api_server.py.

Proxy listener: reads one request (a GET with an absolute URL, or a CONNECT),
logs {"event":"proxy","t","conn","method","target","user"} (user: the user
name of a Basic Proxy-Authorization, or null) and, by that user name:
    reset                closes the connection with a TCP RST
    anything else        407 Proxy Authentication Required, Proxy-Authenticate:
                         Basic, Connection: close, a text/html page that echoes
                         the request line, every header and the decoded
                         credentials ("Credentials: <user>:<password>"), as a
                         proxy's debug page may

Log (--log): one JSON line per request, flushed before the answer is sent:
  {"seq","t","listener","conn","method","path","version","headers",
   "id","scenario","attempt","rate_limit","inflight","query","body","json"}
query is the raw query string (undecoded, without the "?") or null; body the
request body as text (read by Content-Length, or chunked) or null when it had
none; json that body parsed as JSON, or null.
rate_limit is what the answer carries ({max, remaining, interval_ms,
daily_limit, daily_remaining} or null).  inflight counts the requests for
the same scenario (nonce stripped) received and not yet being answered, this
one included (a request stops counting when its answer starts, after any
slow_ok_<ms> sleep).  Events: {"event","t","id",...}.

DNS listener (UDP, for nginx's resolver): every A query is answered 127.0.0.1,
except names ending in ".invalid" (NXDOMAIN); other types get no answer records.

Ready file (--ready-file), written atomically:
  {"pid": ..., "http": port, "https": port, "other": port, "proxy": port, "dns": port}
"""

import argparse
import base64
import email.utils
import gzip
import http.server
import json
import os
import re
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import zlib

import api_server

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

HOLD_SECONDS = 30
SOCKET_TIMEOUT = 40
# origin-form "/..." or, as a client sends it to a proxy, absolute-form "http://host:port/..."
PATH_RE = re.compile(r"^(?:https?://[^/?#]*)?(?:/[^?#]*)?/conversations/messages/([^/?#]*)(?:\?[^#]*)?$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")

_lock = threading.Lock()
_state = {
    "seq": 0,
    "conn": 0,
    "remaining": 99,
    "daily_remaining": 199999,
    "attempts": {},
    "inflight": {},
    "rlwin": {},
}
_log_file = None


def log_line(obj):
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n"
    with _lock:
        _log_file.write(data)
        _log_file.flush()


def log_event(event, ident, **fields):
    obj = {"event": event, "t": time.time(), "id": ident}
    obj.update(fields)
    log_line(obj)


def next_conn_id():
    with _lock:
        _state["conn"] += 1
        return _state["conn"]


def next_attempt(full_id):
    with _lock:
        n = _state["attempts"].get(full_id, 0) + 1
        _state["attempts"][full_id] = n
        return n


def next_rate_limit():
    with _lock:
        rl = {
            "max": 100,
            "remaining": _state["remaining"],
            "interval_ms": 10000,
            "daily_limit": 200000,
            "daily_remaining": _state["daily_remaining"],
        }
        _state["remaining"] -= 1
        if _state["remaining"] <= 0:
            _state["remaining"] = 99
        if _state["daily_remaining"] > 0:
            _state["daily_remaining"] -= 1
        return rl


def enter_flight(key):
    with _lock:
        n = _state["inflight"].get(key, 0) + 1
        _state["inflight"][key] = n
        return n


def leave_flight(key):
    with _lock:
        _state["inflight"][key] -= 1


def rlwin_take(scenario, n, ms):
    """One request against the scenario's window:
    (allowed, remaining, window number, first request of its window)."""
    with _lock:
        now = time.time()
        w = _state["rlwin"].get(scenario)
        if w is None or now >= w["start"] + ms / 1000.0:
            w = {"start": now, "used": 0, "window": w["window"] + 1 if w else 1}
            _state["rlwin"][scenario] = w
        if w["used"] >= n:
            return False, 0, w["window"], False
        w["used"] += 1
        return True, n - w["used"], w["window"], w["used"] == 1


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def split_id(full_id):
    if "--" in full_id:
        return full_id.split("--", 1)
    return full_id, ""


class Reply:
    """What to send: status, headers, body, plus how to send it."""

    def __init__(self, status, body=b"", ctype="application/json; charset=utf-8",
                 headers=None, mode="normal"):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = list(headers or [])
        self.mode = mode
        self.rate_limit = True
        self.rl_override = {}
        self.sleep_ms = 0
        self.log_extra = {}


def json_reply(status, name, **kw):
    return Reply(status, fixture(name), **kw)


def html_reply(status, name):
    return Reply(status, fixture(name), ctype="text/html; charset=utf-8")


SMS = "sms.json"

FLAKY_STATUS = {
    "429": (429, "err_429.json"),
    "500": (500, "err_500.json"),
    "502": (502, "err_502.html"),
    "503": (503, "err_503.json"),
    "504": (504, "err_504.json"),
    "524": (524, "err_524.html"),
    "cto": (401, "err_401_cto.json"),
}

SIMPLE = {
    "sms": (200, SMS),
    "call": (200, "call.json"),
    "email": (200, "email.json"),
    "top_level": (200, "top_level.json"),
    "whatsapp_no_mt": (200, "whatsapp_no_mt.json"),
    "sms_mt_plain": (200, "sms_mt_plain.json"),
    "unknown_type": (200, "unknown_type.json"),
    "type_string": (200, "type_string.json"),
    "rcs": (200, "rcs.json"),
    "nulls": (200, "nulls.json"),
    "numbers": (200, "numbers.json"),
    "unicode": (200, "unicode.json"),
    "message_string": (200, "message_string.json"),
    "no_message": (200, "no_message.json"),
    "json_array": (200, "json_array.json"),
    "json_string": (200, "json_string.json"),
    "err_400": (400, "err_400.json"),
    "err_401_jwt": (401, "err_401_jwt.json"),
    "err_401_cto": (401, "err_401_cto.json"),
    "err_403_json": (403, "err_403_json.json"),
    "err_403_html": (403, "err_403.html"),
    "err_404": (404, "err_404.json"),
    "err_422": (422, "err_422.json"),
    "err_500": (500, "err_500.json"),
    "err_502_html": (502, "err_502.html"),
    "err_503": (503, "err_503.json"),
    "err_504": (504, "err_504.json"),
    "err_524_html": (524, "err_524.html"),
}

MESSAGE_HEAD = (
    '{"message":{"id":"Xq1fLt0000aaaa000099","type":2,"messageType":"TYPE_SMS",'
    '"locationId":"LoC0000000000000test","contactId":"CoN0000000000000test",'
    '"conversationId":"CoV0000000000000test","dateAdded":"2024-03-27T18:13:49.000Z",'
    '"direction":"inbound","contentType":"text/plain",'
)
MESSAGE_TAIL = ',"attachments":[],"meta":{}},"traceId":"7c1d2e3f-0a1b-4c5d-8e9f-000000000099"}'


def fault_body(name):
    if name == "invalid_utf8":
        return MESSAGE_HEAD.encode() + b'"body":"ab\xff\xfecd"' + MESSAGE_TAIL.encode()
    if name == "big_numbers":
        return (MESSAGE_HEAD + '"body":"big","meta2":{"u64":18446744073709551616,'
                '"huge":1e400,"neg_huge":-1e400}' + MESSAGE_TAIL).encode()
    if name == "dup_keys":
        return (MESSAGE_HEAD + '"body":"first","status":"sent","body":"second"'
                + MESSAGE_TAIL).encode()
    if name == "deep_nesting":
        return b"[" * 100000 + b"]" * 100000
    if name == "not_json":
        return b"this is not JSON {\"message\": "
    if name == "huge_9mib":
        head = (MESSAGE_HEAD + '"body":"').encode()
        tail = ('"' + MESSAGE_TAIL).encode()
        fill = 9 * 1024 * 1024 - len(head) - len(tail)
        return head + b"a" * fill + tail
    return None


def echo_body(full_id):
    """A wrapped TYPE_SMS message whose id and body are the requested id."""
    return json.dumps({
        "message": {"id": full_id, "type": 2, "messageType": "TYPE_SMS",
                    "locationId": "LoC0000000000000test", "contactId": "CoN0000000000000test",
                    "conversationId": "CoV0000000000000test",
                    "dateAdded": "2024-03-27T18:13:49.000Z", "direction": "inbound",
                    "contentType": "text/plain", "body": full_id, "attachments": [],
                    "meta": {}},
        "traceId": "echo-" + full_id,
    }, separators=(",", ":")).encode()


NOT_MESSAGE_BODIES = {
    "body_msg_array": b'{"message":[1,2,3]}',
    "body_array_of_msg": b'[{"id":"x"}]',
    "body_empty_array": b'[]',
    "body_null_id": b'{"id":null,"body":"x"}',
    "body_msg_null_id": b'{"message":{"id":null}}',
}


def echo_auth_reply(handler, scenario):
    auth = handler.headers.get("Authorization", "")
    version = handler.headers.get("Version", "")
    if scenario == "echo_auth_400":
        body = json.dumps({
            "statusCode": 400,
            "message": "Invalid request headers: Authorization: %s; Version: %s" % (auth, version),
            "error": "Bad Request",
            "traceId": "echo-auth-400",
        }, separators=(",", ":")).encode()
        return Reply(400, body)
    page = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<h1>502 Bad Gateway</h1>\r\n<pre>GET %s HTTP/1.1\r\nAuthorization: %s\r\n"
            "Version: %s\r\n</pre>\r\n</body>\r\n</html>\r\n") % (handler.path, auth, version)
    return Reply(502, page.encode(), ctype="text/html; charset=utf-8")


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def choose(handler, listener, full_id, scenario, attempt):
    """Map a request to a Reply."""
    auth = handler.headers.get("Authorization", "")
    if listener == "other":
        return json_reply(200, SMS)
    checks_auth = scenario != "open_sms" and not getattr(handler, "takes_no_token", False)
    if checks_auth and not (auth.startswith("Bearer ") and len(auth) > len("Bearer ")):
        return json_reply(401, "err_401_jwt.json")

    if scenario in SIMPLE:
        status, name = SIMPLE[scenario]
        if name.endswith(".html"):
            return html_reply(status, name)
        return json_reply(status, name)

    if scenario == "open_sms":
        return json_reply(200, SMS)
    if scenario.startswith("authonly_"):
        # 200 only for a token that ends in "-<suffix>"; else 401 Invalid JWT
        if auth.endswith("-" + scenario[len("authonly_"):]):
            return Reply(200, echo_body(full_id))
        return json_reply(401, "err_401_jwt.json")
    if scenario == "echo":
        return Reply(200, echo_body(full_id))
    if scenario == "no_ratelimit":
        r = json_reply(200, SMS)
        r.rate_limit = False
        return r
    if scenario in ("gzip_sms", "deflate_sms"):
        r = json_reply(200, SMS)
        accepted = [p.split(";")[0].strip().lower()
                    for p in handler.headers.get("Accept-Encoding", "").split(",")]
        if scenario == "gzip_sms" and "gzip" in accepted:
            r.body = gzip.compress(r.body)
            r.headers.append(("Content-Encoding", "gzip"))
        elif scenario == "deflate_sms" and "deflate" in accepted:
            r.body = zlib.compress(r.body)
            r.headers.append(("Content-Encoding", "deflate"))
        r.headers.append(("Vary", "Accept-Encoding"))
        return r
    if scenario == "gzip_corrupt":
        r = Reply(200, b"\x1f\x8b\x08\x00garbage-that-is-not-deflate-data" * 4)
        r.headers.append(("Content-Encoding", "gzip"))
        return r
    if scenario in NOT_MESSAGE_BODIES:
        return Reply(200, NOT_MESSAGE_BODIES[scenario])
    if scenario == "body_nul_garbage":
        return Reply(200, fixture(SMS) + b"\0garbage")
    if scenario in ("echo_auth_400", "echo_auth_502_html"):
        return echo_auth_reply(handler, scenario)
    if scenario == "err_500_empty":
        return Reply(500, b"", ctype=None)
    if scenario == "empty_200":
        return Reply(200, b"")
    if scenario in ("invalid_utf8", "big_numbers", "dup_keys", "deep_nesting", "not_json"):
        return Reply(200, fault_body(scenario))
    if scenario == "huge_9mib":
        return Reply(200, fault_body(scenario), mode="huge")
    if scenario in ("never_answer", "stall_half", "reset_mid_body", "short_body", "slow_drip"):
        return Reply(200, fixture(SMS), mode=scenario)
    if scenario in ("chunked_sms", "chunked_huge"):
        body = fixture(SMS) if scenario == "chunked_sms" else fault_body("huge_9mib")
        return Reply(200, body, mode="chunked")
    if scenario == "sms_then_drop":
        handler.drop_next = True
        return json_reply(200, SMS)
    if scenario in ("redirect_302_other", "redirect_301_same"):
        _, nonce = split_id(full_id)
        target_id = "sms--" + (nonce + "-moved" if nonce else "moved")
        if scenario == "redirect_302_other":
            port = handler.server.ports["other"]
            loc = "http://127.0.0.1:%d/conversations/messages/%s" % (port, target_id)
            status = 302
        else:
            loc = "/conversations/messages/%s" % target_id
            status = 301
        body = json.dumps({"statusCode": status, "message": "Moved", "location": loc}).encode()
        return Reply(status, body, headers=[("Location", loc)])

    m = re.match(r"^slow_ok_(\d{1,5})$", scenario)
    if m:
        r = json_reply(200, SMS)
        r.sleep_ms = min(int(m.group(1)), HOLD_SECONDS * 1000)
        return r
    m = re.match(r"^slow_echo_(\d{1,5})$", scenario)
    if m:
        r = Reply(200, echo_body(full_id))
        r.sleep_ms = min(int(m.group(1)), HOLD_SECONDS * 1000)
        return r
    m = re.match(r"^ra_secs_(\d{1,4})$", scenario)
    if m:
        return json_reply(429, "err_429.json", headers=[("Retry-After", m.group(1))])
    m = re.match(r"^ra_date_(\d{1,4})$", scenario)
    if m:
        when = http_date(time.time() + int(m.group(1)))
        return json_reply(429, "err_429.json", headers=[("Retry-After", when)])
    m = re.match(r"^rl_zero_(\d{1,7})$", scenario)
    if m:
        r = json_reply(429, "err_429.json")
        r.rl_override = {"remaining": 0, "interval_ms": int(m.group(1))}
        return r
    m = re.match(r"^rlzero_ok_(\d{1,7})$", scenario)
    if m:
        r = json_reply(200, SMS)
        r.rl_override = {"remaining": 0, "interval_ms": int(m.group(1))}
        return r
    m = re.match(r"^rlmax0_(\d{1,7})$", scenario)
    if m:
        r = json_reply(200, SMS)
        r.rl_override = {"max": 0, "remaining": 0, "interval_ms": int(m.group(1))}
        return r
    m = re.match(r"^rlwin_(\d{1,3})_(\d{1,6})(?:_(\d{1,5}))?$", scenario)
    if m:
        n, ms = int(m.group(1)), int(m.group(2))
        allowed, remaining, window, first = rlwin_take(scenario, n, ms)
        r = json_reply(200, SMS) if allowed else json_reply(429, "err_429.json")
        if first and m.group(3):
            r.sleep_ms = min(int(m.group(3)), HOLD_SECONDS * 1000)
        r.rl_override = {"max": n, "remaining": remaining, "interval_ms": ms}
        r.log_extra = {"window": window}
        return r
    m = re.match(r"^flaky_(429|500|502|503|504|524|cto)_(\d{1,2})$", scenario)
    if m:
        if attempt <= int(m.group(2)):
            status, name = FLAKY_STATUS[m.group(1)]
            return html_reply(status, name) if name.endswith(".html") else json_reply(status, name)
        return json_reply(200, SMS)
    m = re.match(r"^flaky_429ra_(\d{1,4})_(\d{1,2})$", scenario)
    if m:
        if attempt <= int(m.group(2)):
            return json_reply(429, "err_429.json", headers=[("Retry-After", m.group(1))])
        return json_reply(200, SMS)
    m = re.match(r"^flaky_429rl_(\d{1,7})_(\d{1,2})$", scenario)
    if m:
        if attempt <= int(m.group(2)):
            r = json_reply(429, "err_429.json")
            r.rl_override = {"remaining": 0, "interval_ms": int(m.group(1))}
            return r
        return json_reply(200, SMS)

    body = json.dumps({"statusCode": 404, "message": "No such scenario: " + scenario,
                       "error": "Not Found"}).encode()
    return Reply(404, body)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ghl-spec-server"
    sys_version = ""

    def version_string(self):
        return self.server_version
    timeout = SOCKET_TIMEOUT

    def setup(self):
        self.conn_id = next_conn_id()
        # headers and body go out in separate writes: without this, Nagle holds
        # the body back until the client's delayed ACK (~40 ms per request on
        # a kept-alive connection)
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        ctx = self.server.ssl_context
        if ctx is not None:
            self.request.settimeout(10)
            try:
                self.request = ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log_line({"event": "tls_failed", "t": time.time(), "conn": self.conn_id,
                          "listener": self.server.listener, "error": str(e)})
                self.request.close()
                raise
            self.connection = self.request
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.serve()

    def do_HEAD(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def do_PUT(self):
        self.serve()

    def do_DELETE(self):
        self.serve()

    def do_PATCH(self):
        self.serve()

    def read_body(self):
        """The request body (Content-Length or chunked), or None when it has none."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data or None
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else None

    def serve(self):
        listener = self.server.listener
        if getattr(self, "drop_next", False):
            m = PATH_RE.match(self.path)
            log_event("dropped", m.group(1) if m else "", conn=self.conn_id, path=self.path)
            self.close_connection = True
            return
        self.req_body = self.read_body()
        m = PATH_RE.match(self.path)
        full_id = m.group(1) if m else None
        scenario = None
        attempt = None
        self.api = None
        if m is None:
            # the rest of the API: spec/support/api_server.py
            self.api = api_server.route(self, listener, sys.modules[__name__])
            full_id, scenario, attempt = self.api.full_id, self.api.scenario, self.api.attempt
        elif full_id is not None and ID_RE.match(full_id):
            scenario = split_id(full_id)[0]
            attempt = next_attempt(listener + " " + full_id if listener == "other" else full_id)

        flight_key = scenario or ""
        inflight = enter_flight(flight_key)
        try:
            reply = self.reply_for(listener, full_id, scenario, attempt, inflight)
        finally:
            leave_flight(flight_key)
        self.send(reply, reply.rl, full_id)

    def reply_for(self, listener, full_id, scenario, attempt, inflight):
        """Chooses and logs the answer, and sleeps as it says; does not send it."""
        if self.api is not None:
            reply = self.api.choose()
        elif self.command not in ("GET",) or scenario is None:
            body = json.dumps({"statusCode": 404, "message": "Cannot %s %s" % (self.command, self.path),
                               "error": "Not Found"}).encode()
            reply = Reply(404, body)
        else:
            reply = choose(self, listener, full_id, scenario, attempt)

        rl = None
        if reply.rate_limit:
            rl = next_rate_limit()
            rl.update(reply.rl_override)

        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        line = {
            "seq": self.next_seq(), "t": time.time(), "listener": listener,
            "conn": self.conn_id, "method": self.command, "path": self.path,
            "version": self.request_version, "headers": headers,
            "id": full_id, "scenario": scenario, "attempt": attempt,
            "status": reply.status, "rate_limit": rl, "inflight": inflight,
            "query": self.path.split("?", 1)[1].split("#", 1)[0] if "?" in self.path else None,
            "body": self.req_body.decode("utf-8", "replace") if self.req_body is not None else None,
            "json": api_server.request_json(self),
        }
        line.update(reply.log_extra)
        log_line(line)

        if reply.sleep_ms:
            time.sleep(reply.sleep_ms / 1000.0)
        reply.rl = rl
        return reply

    @staticmethod
    def next_seq():
        with _lock:
            _state["seq"] += 1
            return _state["seq"]

    def send(self, reply, rl, full_id):
        mode = reply.mode
        if mode == "never_answer":
            self.hold(HOLD_SECONDS)
            self.close_connection = True
            return
        if mode == "reset":
            self.reset()
            return

        body = reply.body
        self.send_response(reply.status)
        if reply.ctype:
            self.send_header("Content-Type", reply.ctype)
        for k, v in reply.headers:
            self.send_header(k, v)
        if rl is not None:
            self.send_header("X-RateLimit-Max", str(rl["max"]))
            self.send_header("X-RateLimit-Remaining", str(rl["remaining"]))
            self.send_header("X-RateLimit-Interval-Milliseconds", str(rl["interval_ms"]))
            self.send_header("X-RateLimit-Limit-Daily", str(rl["daily_limit"]))
            self.send_header("X-RateLimit-Daily-Remaining", str(rl["daily_remaining"]))
        if mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            length = len(body) + (100 if mode == "short_body" else 0)
            self.send_header("Content-Length", str(length))
        if mode in ("stall_half", "reset_mid_body", "short_body"):
            self.send_header("Connection", "close")
        self.end_headers()

        if self.command == "HEAD":
            self.wfile.flush()
            return
        half = len(body) // 2
        if mode == "normal":
            self.wfile.write(body)
        elif mode == "stall_half":
            self.wfile.write(body[:half])
            self.wfile.flush()
            self.hold(HOLD_SECONDS)
            self.close_connection = True
        elif mode == "reset_mid_body":
            self.wfile.write(body[:half])
            self.wfile.flush()
            time.sleep(0.05)
            self.reset()
        elif mode == "short_body":
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
        elif mode == "slow_drip":
            self.wfile.flush()
            step = max(1, -(-len(body) // 80))
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(0.02)
        elif mode == "huge":
            self.send_huge(body, full_id)
        elif mode == "chunked":
            try:
                step = 100 if len(body) < 65536 else 65536
                for i in range(0, len(body), step):
                    piece = body[i:i + step]
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except (OSError, ssl.SSLError) as e:
                log_event("client_gone", full_id, reason=str(e), conn=self.conn_id)
                self.close_connection = True
                return
        self.wfile.flush()

    def send_huge(self, body, full_id):
        self.wfile.flush()
        sent = 0
        chunk = 64 * 1024
        self.connection.settimeout(10)
        try:
            while sent < len(body):
                n = self.connection.send(body[sent:sent + chunk])
                if n <= 0:
                    raise ConnectionError("send returned %d" % n)
                sent += n
        except (OSError, ssl.SSLError) as e:
            log_event("client_gone", full_id, bytes_sent=sent, total=len(body), reason=str(e),
                      conn=self.conn_id)
            self.close_connection = True
            return
        finally:
            self.connection.settimeout(SOCKET_TIMEOUT)
        log_event("body_complete", full_id, bytes_sent=sent, total=len(body), conn=self.conn_id)

    def hold(self, seconds):
        """Keep the connection open, sending nothing, until the peer goes or time is up."""
        self.wfile.flush()
        deadline = time.time() + seconds
        sock = self.connection
        while True:
            left = deadline - time.time()
            if left <= 0:
                return
            try:
                readable, _, _ = select.select([sock], [], [], min(left, 0.5))
                if readable:
                    data = sock.recv(4096)
                    if not data:
                        return
            except (OSError, ValueError, ssl.SSLError):
                return

    def reset(self):
        sock = self.connection
        raw = sock
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            raw.close()
        except OSError:
            pass

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError, ssl.SSLError):
            pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError, ValueError):
            pass


class ProxyHandler(socketserver.StreamRequestHandler):
    """A forward proxy that never forwards: 407 with an echo page, or a reset."""

    timeout = SOCKET_TIMEOUT

    def handle(self):
        conn_id = next_conn_id()
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            lines = text.split("\r\n")
            parts = lines[0].split(" ")
            method = parts[0] if parts else ""
            target = parts[1] if len(parts) > 1 else ""
            user, creds = None, None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "proxy-authorization":
                    scheme, _, token = value.strip().partition(" ")
                    if scheme.lower() == "basic":
                        try:
                            creds = base64.b64decode(token.strip()).decode("latin-1")
                        except (ValueError, UnicodeDecodeError):
                            creds = None
                        if creds is not None:
                            user = creds.split(":", 1)[0]
            log_line({"event": "proxy", "t": time.time(), "id": None, "conn": conn_id,
                      "method": method, "target": target, "user": user})
            if user == "reset":
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.request.close()
                return
            page = ("<html><head><title>407 Proxy Authentication Required</title></head><body>\n"
                    "<h1>407 Proxy Authentication Required</h1>\n<pre>\n" + "\n".join(lines)
                    + "\nCredentials: " + (creds or "") + "\n</pre></body></html>\n").encode("latin-1")
            self.request.sendall((
                "HTTP/1.1 407 Proxy Authentication Required\r\n"
                "Proxy-Authenticate: Basic realm=\"ghl-spec\"\r\n"
                "Content-Type: text/html; charset=utf-8\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(page)).encode() + page)
        except (OSError, ValueError):
            pass


class ProxyServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    def handle_error(self, request, client_address):
        pass


def dns_answer(query):
    """The answer to one DNS query (see "DNS listener"), or None."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    i, labels = 12, []
    while i < len(query) and query[i] != 0:
        n = query[i]
        labels.append(query[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    question_end = i + 5
    if question_end > len(query):
        return None
    qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
    name = ".".join(labels).lower()
    rcode, answers = 0, b""
    if name.endswith(".invalid"):
        rcode = 3
    elif qtype == 1:
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    head = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1,
                       1 if answers else 0, 0, 0)
    return head + query[12:question_end] + answers


def serve_dns(sock):
    while True:
        try:
            query, peer = sock.recvfrom(512)
            answer = dns_answer(query)
            if answer:
                sock.sendto(answer, peer)
        except OSError:
            return


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, listener, ssl_context, ports):
        self.listener = listener
        self.ssl_context = ssl_context
        self.ports = ports
        super().__init__(("127.0.0.1", 0), Handler)

    def handle_error(self, request, client_address):
        pass


def main():
    global _log_file
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--parent-pid", type=int, default=0)
    args = ap.parse_args()

    _log_file = open(args.log, "a", encoding="ascii")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])

    ports = {}
    servers = {
        "http": Server("http", None, ports),
        "https": Server("https", ctx, ports),
        "other": Server("other", None, ports),
    }
    servers["proxy"] = ProxyServer()
    for name, srv in servers.items():
        ports[name] = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()

    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    ports["dns"] = dns.getsockname()[1]
    threading.Thread(target=serve_dns, args=(dns,), daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())

    ready = {"pid": os.getpid(), "http": ports["http"], "https": ports["https"],
             "other": ports["other"], "proxy": ports["proxy"], "dns": ports["dns"]}
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ready, f)
    os.rename(tmp, args.ready_file)

    deadline = time.time() + args.max_seconds
    while not stop.is_set() and time.time() < deadline:
        stop.wait(0.5)
        if args.parent_pid:
            try:
                os.kill(args.parent_pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
    _log_file.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
