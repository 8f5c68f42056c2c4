"""The rest of the Conversations API (CONTRACT.md section 2) for the spec server.

Imported by server.py, which hands it every request whose path is not a
get-message path (GET /conversations/messages/{id}); route() returns what
server.py needs to log and answer it.  Python 3 standard library only.

The scenario comes, as in server.py, from an id of the form "scenario--nonce":

    GET  /conversations/{conversationId}                  the conversation id
    GET  /conversations/{conversationId}/messages         the conversation id
    GET  /conversations/search?locationId=...             the locationId query parameter
    GET  /conversations/messages/email/{emailId}          the email id
    POST /conversations/messages                          the JSON body's contactId
    GET  /conversations/messages/{messageId}/locations/{locationId}/recording
                                                          the message id
    *    /spec/{array,empty,echo,text}[/{id}]             the optional id (none: "ok")

Any path may carry a prefix before /conversations (a base_url with a path).
Every endpoint answers its own scenarios (below), and every scenario of
server.py's table that is not its own (err_*, flaky_*, never_answer,
reset_mid_body, echo_auth_400, ...) as server.py does, with the endpoint's
success body in place of the SMS message wherever server.py would send that.
Unknown scenario: 404 {"message":"No such scenario: <name>"}; a path or method
this file does not know: 404 {"message":"Cannot <METHOD> <path>"}.

Endpoint scenarios (success bodies from spec/support/fixtures/)

  GET /conversations/{id}
    ok          200 conversation.json: flat, traceId "conv-trace-0001" beside
                its members, type 1 (a channel), integer dates, nulls
  GET /conversations/{id}/messages          (messages.json: 5 messages, newest first)
    ok          one page of all 5, nextPage false, lastMessageId the last id,
                traceId "list-ok"; the query is ignored
    pages       page size = query limit (default 2); a page starts after the
                message whose id is the query lastMessageId (none: the newest);
                400 err "lastMessageId ... was not handed out" for any other
                value; lastMessageId = the page's last id; nextPage false on the
                last page; traceId "list-pages-<n>" (n = 1, 2, 3 with limit 2)
    empty       {"messages":{"nextPage":false,"messages":[]},"traceId":"list-empty"}
    emptynext   no lastMessageId: the first 2 messages, nextPage true,
                traceId "list-emptynext-1"; with one: an empty page, nextPage true,
                lastMessageId as given, traceId "list-emptynext-2"
    failpage    no lastMessageId: the first 2 messages, nextPage true,
                traceId "list-failpage-1"; with one: 422 err_422.json
  GET /conversations/search                  (conversations.json: 5, newest first)
    no locationId  422 {"message":["locationId should not be empty", ...]}
    ok, pages   page size = query limit (default 20); a page starts after the item
                whose sort[0] is the query startAfterDate (an integer; none: the
                newest); 400 for any other value; total 5;
                traceId "search-<scenario>-<n>"
    exact       the same over the first 4 conversations (total 4): with limit 2,
                pages of 2, 2, then an empty page
  GET /conversations/messages/email/{id}
    ok          200 email_message.json ({"emailMessage":{..},"traceId":"email-trace-0001"})
    email_top   200 the emailMessage object alone, at the top level, no traceId
  POST /conversations/messages   (Content-Type application/json; the body must be
                a JSON object with a string contactId, else 400 / 422)
    ok          200 {"conversationId":"CoV0000000000000conv","messageId":"MsG00000000000sent01",
                "msg":"Message queued successfully.","traceId":"send-ok"}, plus
                "emailMessageId":"EmL00000000000sent01" when the body's type is "Email"
    reset       reads the whole request, then TCP RST, no response
    (flaky_503_1, flaky_429_1, never_answer, echo_auth_400, ... as in server.py)
  GET /conversations/messages/{id}/locations/{loc}/recording
    ok          200 recording.wav (RIFF/WAVE, 556 bytes, NUL and high bytes),
                Content-Type audio/x-wav (also after a flaky_* scenario's failures)
  POST /oauth/token   (a form with client_id, which carries the scenario; no Authorization)
    ok          200 {"access_token":"at-new-<refresh_token>","refresh_token":"rt-next-<refresh_token>",
                "expires_in":86399,...,"traceId":"oauth-ok"}
    echo_secrets 400 {"error":"invalid_grant","error_description": quoting refresh_token,
                client_id, client_secret and code, "refresh_token": <the one sent>}
    (flaky_503_1, flaky_429_1, never_answer, reset_mid_body, ... as in server.py)
  /spec/array   GET    200 [1,null,"two",{"three":3,"none":null},[4.5,-6]]
  /spec/empty   DELETE 204, no body
  /spec/echo    any    200 {"method":<method>,"json":<parsed body or null>,
                       "query":<raw query or null>,"traceId":"echo-<method lower>"}
  /spec/text    GET    200 text/plain "plain text\\n"

The log line of every request (server.py) carries "query" (raw, undecoded, or
null), "body" (the raw request body as text, or null when it had none) and
"json" (the body parsed as JSON, or null).
"""

import json
import re
import urllib.parse

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
PREFIX = r"^(?:/[^?#]*?)?"
ROUTES = [
    ("search", ("GET", "HEAD"), re.compile(PREFIX + r"/conversations/search$")),
    ("send", ("POST",), re.compile(PREFIX + r"/conversations/messages$")),
    ("email", ("GET", "HEAD"), re.compile(PREFIX + r"/conversations/messages/email/([^/]+)$")),
    ("recording", ("GET", "HEAD"),
     re.compile(PREFIX + r"/conversations/messages/([^/]+)/locations/([^/]+)/recording$")),
    ("list", ("GET", "HEAD"), re.compile(PREFIX + r"/conversations/([^/]+)/messages$")),
    ("conversation", ("GET", "HEAD"), re.compile(PREFIX + r"/conversations/([^/]+)$")),
    ("oauth", ("POST",), re.compile(PREFIX + r"/oauth/token$")),
    ("spec_array", ("GET", "HEAD"), re.compile(r"^/spec/array(?:/([^/]+))?$")),
    ("spec_empty", ("DELETE",), re.compile(r"^/spec/empty(?:/([^/]+))?$")),
    ("spec_echo", ("GET", "POST", "PUT", "PATCH", "DELETE"), re.compile(r"^/spec/echo(?:/([^/]+))?$")),
    ("spec_text", ("GET", "HEAD"), re.compile(r"^/spec/text(?:/([^/]+))?$")),
]

# server.py's scenarios that this file answers itself, per endpoint
OWN = {
    "conversation": ("ok",),
    "list": ("ok", "pages", "empty", "emptynext", "failpage"),
    "search": ("ok", "pages", "exact"),
    "email": ("ok", "email_top"),
    "send": ("ok", "reset"),
    "recording": ("ok",),
    "oauth": ("ok", "echo_secrets"),
    "spec_array": ("ok",),
    "spec_empty": ("ok",),
    "spec_echo": ("ok",),
    "spec_text": ("ok",),
}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def split_target(target):
    """(path, raw query or None) of a request target; absolute-form host dropped."""
    m = re.match(r"^https?://[^/?#]*", target)
    if m:
        target = target[m.end():] or "/"
    target = target.split("#", 1)[0]
    if "?" in target:
        path, query = target.split("?", 1)
        return path, query
    return target, None


def parse_query(raw):
    """name -> value (percent-decoded, '+' kept); the last value of a repeated name."""
    out = {}
    if not raw:
        return out
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        out[urllib.parse.unquote(name)] = urllib.parse.unquote(value)
    return out


def request_json(handler):
    """The request body parsed as JSON, or None."""
    raw = getattr(handler, "req_body", None)
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def error_reply(core, status, message, error, trace):
    return core.Reply(status, dumps({"statusCode": status, "message": message, "error": error,
                                     "traceId": trace}))


def not_found(core, handler):
    return core.Reply(404, dumps({"statusCode": 404, "message": "Cannot %s %s" % (handler.command, handler.path),
                                  "error": "Not Found"}))


def fixture_json(core, name):
    return json.loads(core.fixture(name).decode("utf-8"))


class Route:
    """What server.py needs: the id and scenario to log, the attempt number, and choose()."""

    def __init__(self, full_id, scenario, attempt, choose):
        self.full_id = full_id
        self.scenario = scenario
        self.attempt = attempt
        self.choose = choose


def route(handler, listener, core):
    path, query = split_target(handler.path)
    name, groups = None, None
    for rname, methods, rx in ROUTES:
        m = rx.match(path)
        if m:
            if handler.command in methods:
                name, groups = rname, m.groups()
            break
    if name is None:
        return Route(None, None, None, lambda: not_found(core, handler))

    params = parse_query(query)
    if name == "search":
        full_id = params.get("locationId")
        if full_id is None:
            return Route(None, None, None, lambda: error_reply(
                core, 422, ["locationId should not be empty", "locationId must be a string"],
                "Unprocessable Entity", "search-no-location"))
    elif name == "send":
        body = request_json(handler)
        ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return Route(None, None, None, lambda: error_reply(
                core, 400, "Content-Type must be application/json", "Bad Request", "send-ctype"))
        if not isinstance(body, dict) or not isinstance(body.get("contactId"), str):
            return Route(None, None, None, lambda: error_reply(
                core, 422, ["contactId must be a string"], "Unprocessable Entity", "send-no-contact"))
        full_id = body["contactId"]
    elif name == "oauth":
        ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form = parse_query((getattr(handler, "req_body", None) or b"").decode("utf-8", "replace"))
        if ctype != "application/x-www-form-urlencoded" or "client_id" not in form:
            return Route(None, None, None, lambda: core.Reply(400, dumps(
                {"error": "invalid_request", "error_description": "a form with client_id is required"})))
        full_id = form["client_id"]
    elif name.startswith("spec_"):
        full_id = groups[0] if groups else None
        if full_id is None:
            return Route(None, "ok", None, lambda: spec_reply(core, handler, name, query))
    else:
        full_id = urllib.parse.unquote(groups[0])

    if not ID_RE.match(full_id):
        return Route(full_id, None, None, lambda: not_found(core, handler))
    scenario = core.split_id(full_id)[0]
    attempt = core.next_attempt(listener + " " + full_id if listener == "other" else full_id)

    def choose():
        auth = handler.headers.get("Authorization", "")
        if name == "oauth":
            handler.takes_no_token = True
            if auth:  # the token endpoint takes none
                return core.Reply(400, dumps({"error": "invalid_request",
                                              "error_description": "no Authorization header expected"}))
        elif not (auth.startswith("Bearer ") and len(auth) > len("Bearer ")):
            return core.json_reply(401, "err_401_jwt.json")
        if scenario in OWN[name]:
            return own_reply(core, handler, name, scenario, params, query)
        # server.py's table, with this endpoint's success body for the SMS message
        reply = core.choose(handler, listener, full_id, scenario, attempt)
        if reply.body == core.fixture(core.SMS):
            ok = own_reply(core, handler, name, "ok", params, query)
            reply.body = ok.body
            if reply.status < 300 or reply.mode != "normal":
                reply.ctype = ok.ctype
        return reply

    return Route(full_id, scenario, attempt, choose)


def own_reply(core, handler, name, scenario, params, query):
    if name == "conversation":
        return core.json_reply(200, "conversation.json")
    if name == "list":
        return list_reply(core, scenario, params)
    if name == "search":
        return search_reply(core, scenario, params)
    if name == "email":
        doc = fixture_json(core, "email_message.json")
        if scenario == "email_top":
            return core.Reply(200, dumps(doc["emailMessage"]))
        return core.json_reply(200, "email_message.json")
    if name == "send":
        if scenario == "reset":
            return core.Reply(200, b"", mode="reset")
        out = {"conversationId": "CoV0000000000000conv", "messageId": "MsG00000000000sent01",
               "msg": "Message queued successfully.", "traceId": "send-ok"}
        body = request_json(handler)
        if body.get("type") == "Email":
            out["emailMessageId"] = "EmL00000000000sent01"
        return core.Reply(200, dumps(out))
    if name == "recording":
        return core.Reply(200, core.fixture("recording.wav"), ctype="audio/x-wav")
    if name == "oauth":
        form = parse_query((getattr(handler, "req_body", None) or b"").decode("utf-8", "replace"))
        if scenario == "echo_secrets":  # an error page that quotes every secret it got
            return core.Reply(400, dumps({
                "error": "invalid_grant",
                "error_description": "refresh token %s of client %s (secret %s, code %s) is invalid" % (
                    form.get("refresh_token"), form.get("client_id"), form.get("client_secret"),
                    form.get("code")),
                "refresh_token": form.get("refresh_token")}))
        return core.Reply(200, dumps({
            "access_token": "at-new-" + form.get("refresh_token", "none"), "token_type": "Bearer",
            "expires_in": 86399, "refresh_token": "rt-next-" + form.get("refresh_token", "none"),
            "scope": "conversations.readonly conversations/message.readonly", "userType": "Location",
            "locationId": "LoC0000000000000test", "traceId": "oauth-ok"}))
    return spec_reply(core, handler, name, query)


def spec_reply(core, handler, name, query):
    if name == "spec_array":
        return core.Reply(200, b'[1,null,"two",{"three":3,"none":null},[4.5,-6]]')
    if name == "spec_empty":
        return core.Reply(204, b"", ctype=None)
    if name == "spec_text":
        return core.Reply(200, b"plain text\n", ctype="text/plain; charset=utf-8")
    return core.Reply(200, dumps({"method": handler.command, "json": request_json(handler), "query": query,
                                  "traceId": "echo-" + handler.command.lower()}))


def list_body(page, next_page, last_id, trace):
    inner = {"nextPage": next_page, "messages": page}
    if last_id is not None:
        inner["lastMessageId"] = last_id
    return dumps({"messages": inner, "traceId": trace})


def int_param(params, name, default):
    v = params.get(name)
    if v is None:
        return default
    if not re.match(r"^[0-9]{1,15}$", v):
        return None
    return int(v)


def list_reply(core, scenario, params):
    msgs = fixture_json(core, "messages.json")
    if scenario == "ok":
        return core.Reply(200, list_body(msgs, False, msgs[-1]["id"], "list-ok"))
    if scenario == "empty":
        return core.Reply(200, list_body([], False, None, "list-empty"))
    after = params.get("lastMessageId")
    if scenario in ("emptynext", "failpage"):
        if after is None:
            return core.Reply(200, list_body(msgs[:2], True, msgs[1]["id"], "list-%s-1" % scenario))
        if scenario == "failpage":
            return core.json_reply(422, "err_422.json")
        return core.Reply(200, list_body([], True, after, "list-emptynext-2"))
    # pages
    limit = int_param(params, "limit", 2)
    if not limit:
        return error_reply(core, 422, ["limit must be a positive integer"], "Unprocessable Entity",
                           "list-pages-bad-limit")
    start = 0
    if after is not None:
        ids = [m["id"] for m in msgs]
        if after not in ids:
            return error_reply(core, 400, "lastMessageId %s was not handed out" % after, "Bad Request",
                               "list-pages-bad-cursor")
        start = ids.index(after) + 1
    page = msgs[start:start + limit]
    end = start + len(page)
    return core.Reply(200, list_body(page, end < len(msgs), page[-1]["id"] if page else None,
                                     "list-pages-%d" % (start // limit + 1)))


def search_reply(core, scenario, params):
    convs = fixture_json(core, "conversations.json")
    if scenario == "exact":
        convs = convs[:4]
    limit = int_param(params, "limit", 20)
    if not limit:
        return error_reply(core, 422, ["limit must be a positive integer"], "Unprocessable Entity",
                           "search-bad-limit")
    start = 0
    after = params.get("startAfterDate")
    if after is not None:
        sorts = [str(c["sort"][0]) for c in convs]
        if after not in sorts:
            return error_reply(core, 400, "startAfterDate %s was not handed out" % after, "Bad Request",
                               "search-bad-cursor")
        start = sorts.index(after) + 1
    page = convs[start:start + limit]
    return core.Reply(200, dumps({"conversations": page, "total": len(convs),
                                  "traceId": "search-%s-%d" % (scenario, start // limit + 1)}))
