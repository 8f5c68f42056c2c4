#include "shape.h"

#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define REG_MESSAGE_TYPES "ghl.MESSAGE_TYPES"
#define REG_JSON_ARRAY_MT "ghl.json_array_mt"
#define REG_JSON_EMPTY_ARRAY_MT "ghl.json_empty_array_mt"
#define MAX_INFO_BODY (64 * 1024)
#define OUT_OF_RANGE "a number is out of range"
#define MAX_API_MESSAGE 300

/* The spec's messageType list, read in order from 1. */
static const char *const message_types[] = {
    "TYPE_CALL",
    "TYPE_SMS",
    "TYPE_EMAIL",
    "TYPE_SMS_REVIEW_REQUEST",
    "TYPE_WEBCHAT",
    "TYPE_SMS_NO_SHOW_REQUEST",
    "TYPE_CAMPAIGN_SMS",
    "TYPE_CAMPAIGN_CALL",
    "TYPE_CAMPAIGN_EMAIL",
    "TYPE_CAMPAIGN_VOICEMAIL",
    "TYPE_FACEBOOK",
    "TYPE_CAMPAIGN_FACEBOOK",
    "TYPE_CAMPAIGN_MANUAL_CALL",
    "TYPE_CAMPAIGN_MANUAL_SMS",
    "TYPE_GMB",
    "TYPE_CAMPAIGN_GMB",
    "TYPE_REVIEW",
    "TYPE_INSTAGRAM",
    "TYPE_WHATSAPP",
    "TYPE_CUSTOM_SMS",
    "TYPE_CUSTOM_EMAIL",
    "TYPE_CUSTOM_PROVIDER_SMS",
    "TYPE_CUSTOM_PROVIDER_EMAIL",
    "TYPE_IVR_CALL",
    "TYPE_ACTIVITY_CONTACT",
    "TYPE_ACTIVITY_INVOICE",
    "TYPE_ACTIVITY_PAYMENT",
    "TYPE_ACTIVITY_OPPORTUNITY",
    "TYPE_LIVE_CHAT",
    "TYPE_LIVE_CHAT_INFO_MESSAGE",
    "TYPE_ACTIVITY_APPOINTMENT",
    "TYPE_FACEBOOK_COMMENT",
    "TYPE_INSTAGRAM_COMMENT",
    "TYPE_CUSTOM_CALL",
};

void ghl_shape_open(lua_State *L) {
    int i, n = (int)(sizeof message_types / sizeof message_types[0]);

    /* ghl decodes on its own; the host's lua-cjson, where one loads, is
     * asked only for its array marks (OpenResty's cjson has them, Debian's
     * 2.1 not), so that an empty array decoded here is written back as []
     * by cjson.encode and by ghl's encoder. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "array_mt");
        if (lua_type(L, -1) != LUA_TTABLE)
            lua_pop(L, 1);
        else
            lua_setfield(L, LUA_REGISTRYINDEX, REG_JSON_ARRAY_MT);
        lua_getfield(L, -1, "empty_array_mt");
        if (lua_type(L, -1) != LUA_TTABLE)
            lua_pop(L, 1);
        else
            lua_setfield(L, LUA_REGISTRYINDEX, REG_JSON_EMPTY_ARRAY_MT);
    }
    lua_pop(L, 1); /* cjson, or why it did not load */

    lua_createtable(L, n, n);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, message_types[i]);
        lua_rawseti(L, -2, i + 1);
        lua_pushinteger(L, i + 1);
        lua_setfield(L, -2, message_types[i]);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_MESSAGE_TYPES);
}

int ghl_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c;
        size_t need, k;
        unsigned cp, min;
        /* most of a body is ASCII: skip it 32 bytes, then 8 bytes at a time */
        while (n - i >= 32) {
            uint64_t w[4];
            memcpy(w, s + i, 32);
            if ((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ULL) break;
            i += 32;
        }
        while (n - i >= 8) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (word & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return 0;
        if (n - i <= need) return 0;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += need + 1;
    }
    return 1;
}

int ghl_json_array_marked(lua_State *L, int idx) {
    int marked;
    if (!lua_getmetatable(L, idx)) return 0;
    lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_ARRAY_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_EMPTY_ARRAY_MT);
    marked = (!lua_isnil(L, -2) && lua_rawequal(L, -3, -2)) || (!lua_isnil(L, -1) && lua_rawequal(L, -3, -1));
    lua_pop(L, 3);
    return marked;
}

/* Pushes the decoded body and returns NULL (with *out_of_range), or pushes
 * nothing and returns why the body is not JSON. */
static const char *decode_body(lua_State *L, const char *body, size_t len, int *out_of_range) {
    const char *why;
    int marks;
    if (len == 0) return "the body is empty";
    if (memchr(body, '\0', len) != NULL) return "the body is not valid JSON";
    if (!ghl_utf8_valid(body, len)) return "the body is not valid UTF-8";
    lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_ARRAY_MT);
    marks = lua_gettop(L);
    why = ghl_json_decode(L, body, len, lua_isnil(L, marks) ? 0 : marks, out_of_range);
    lua_remove(L, marks);
    return why;
}

const char *ghl_decode_json(lua_State *L, const char *body, size_t len) {
    int out_of_range = 0;
    const char *why = decode_body(L, body, len, &out_of_range);
    if (why == NULL && out_of_range) {
        lua_pop(L, 1);
        why = OUT_OF_RANGE;
    }
    return why;
}

/* The `type` rule: the message's own TYPE_* messageType, else the name
 * MESSAGE_TYPES gives the number, else the number stays. */
void ghl_convert_type(lua_State *L, int m) {
    lua_getfield(L, m, "type");
    if (lua_type(L, -1) != LUA_TNUMBER) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, m, "messageType");
    if (lua_type(L, -1) == LUA_TSTRING && strncmp(lua_tostring(L, -1), "TYPE_", 5) == 0) {
        lua_setfield(L, m, "type");
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_MESSAGE_TYPES);
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_setfield(L, m, "type");
    else
        lua_pop(L, 1);
    lua_pop(L, 2);
}

static const char *reason_phrase(long status) {
    switch (status) {
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 520: return "Web Server Returned an Unknown Error";
    case 521: return "Web Server Is Down";
    case 522: return "Connection Timed Out";
    case 523: return "Origin Is Unreachable";
    case 524: return "A Timeout Occurred";
    default: return NULL;
    }
}

static const char *const failure_kinds[] = {"", "network", "timeout", "tls", "decode", "network"};
static const char *const failure_labels[] = {
    "", "network error", "timeout", "TLS error", "cannot decode the response", "network error"};

/* Pushes s as one line: control characters become spaces, long text is cut. */
static void push_one_line(lua_State *L, const char *s, size_t n) {
    luaL_Buffer b;
    size_t i, keep = n > MAX_API_MESSAGE ? MAX_API_MESSAGE : n;
    luaL_buffinit(L, &b);
    for (i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        luaL_addchar(&b, (c < 0x20 || c == 0x7f) ? ' ' : (char)c);
    }
    if (keep < n) luaL_addstring(&b, "...");
    luaL_pushresult(&b);
}

/* The API's own text from a decoded error body at index t: `message` as a
 * string, or an array of strings joined with "; ". Pushes it or nothing. */
static int push_api_message(lua_State *L, int t) {
    int pushed = 0;
    lua_getfield(L, t, "message");
    if (lua_isnil(L, -1)) { /* an OAuth error: {"error": ..., "error_description": ...} */
        lua_pop(L, 1);
        lua_getfield(L, t, "error_description");
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            lua_getfield(L, t, "error");
        }
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        pushed = 1;
    } else if (lua_type(L, -1) == LUA_TTABLE) {
        luaL_Buffer b;
        int i, n = (int)lua_rawlen(L, -1), parts = 0, arr = lua_gettop(L);
        luaL_buffinit(L, &b);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, arr, i);
            if (lua_type(L, -1) != LUA_TSTRING) {
                lua_pop(L, 1);
                continue;
            }
            lua_pop(L, 1); /* the buffer owns the stack top while it is open */
            if (parts++ > 0) luaL_addlstring(&b, "; ", 2);
            lua_rawgeti(L, arr, i);
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        lua_remove(L, arr);
        if (parts > 0) return 1;
        lua_pop(L, 1);
        return 0;
    }
    if (!pushed) lua_pop(L, 1);
    return pushed;
}

static void set_trace_id(lua_State *L, int body, int info) {
    lua_getfield(L, body, "traceId");
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_setfield(L, info, "trace_id");
    else
        lua_pop(L, 1);
}

void ghl_push_ratelimit(lua_State *L, const ghl_ratelimit *rl) {
    static const struct {
        unsigned bit;
        const char *name;
    } fields[] = {
        {GHL_RL_MAX, "max"},
        {GHL_RL_REMAINING, "remaining"},
        {GHL_RL_INTERVAL, "interval_ms"},
        {GHL_RL_DAILY_LIMIT, "daily_limit"},
        {GHL_RL_DAILY_REMAINING, "daily_remaining"},
    };
    const long values[] = {rl->max, rl->remaining, rl->interval_ms, rl->daily_limit, rl->daily_remaining};
    size_t i;
    if (rl->present == 0) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 5);
    for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!(rl->present & fields[i].bit)) continue;
        lua_pushinteger(L, (lua_Integer)values[i]);
        lua_setfield(L, -2, fields[i].name);
    }
}

/* Pushes the info table with what every outcome has: status, attempts,
 * retry_after, rate_limit. */
static int push_info(lua_State *L, const ghl_shape *s) {
    const ghl_response *r = s->response;
    lua_createtable(L, 0, 6);
    if (r->status > 0) {
        lua_pushinteger(L, (lua_Integer)r->status);
        lua_setfield(L, -2, "status");
    }
    if (s->attempts > 0) {
        lua_pushinteger(L, s->attempts);
        lua_setfield(L, -2, "attempts");
    }
    if (r->retry_after >= 0) {
        lua_pushinteger(L, (lua_Integer)r->retry_after); /* whole seconds, both forms */
        lua_setfield(L, -2, "retry_after");
    }
    if (r->status > 0 && r->ratelimit.present) {
        ghl_push_ratelimit(L, &r->ratelimit);
        lua_setfield(L, -2, "rate_limit");
    }
    return lua_gettop(L);
}

/* Pushes text with every secret replaced by GHL_REDACTED. */
static void push_redacted(lua_State *L, const char *p, size_t n, const ghl_secrets *secrets) {
    const char *end = p + n, *hit;
    int which;
    luaL_Buffer b;
    if (secrets == NULL || (hit = ghl_find_secret(secrets, p, end, &which)) == NULL) {
        lua_pushlstring(L, p, n);
        return;
    }
    luaL_buffinit(L, &b);
    do {
        luaL_addlstring(&b, p, (size_t)(hit - p));
        luaL_addstring(&b, GHL_REDACTED);
        p = hit + secrets->len[which];
    } while ((hit = ghl_find_secret(secrets, p, end, &which)) != NULL);
    luaL_addlstring(&b, p, (size_t)(end - p));
    luaL_pushresult(&b);
}

/* Finishes a failure: errmsg is on top, info at `info`; leaves nil, errmsg,
 * info in their place. */
static void push_failure(lua_State *L, const ghl_shape *s, int info, const char *kind) {
    const ghl_response *r = s->response;
    if (s->request != NULL) {
        char *path = lua_newuserdata(L, ghl_request_path_len(s->request) + 1);
        ghl_request_write_path(s->request, path);
        lua_pushfstring(L, " (%s %s)", s->request->endpoint->method, path);
        lua_remove(L, -2);
        lua_concat(L, 2);
    }
    lua_pushstring(L, kind);
    lua_setfield(L, info, "kind");
    if (r->body.len > 0 && !(s->request != NULL && s->request->endpoint->private_body)) {
        push_redacted(L, r->body.data, r->body.len > MAX_INFO_BODY ? MAX_INFO_BODY : r->body.len, s->secrets);
        lua_setfield(L, info, "body");
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushvalue(L, info);
    lua_remove(L, info);
}

/* No whole response: the transport's failure. */
static void push_transport_failure(lua_State *L, const ghl_shape *s, int info) {
    const ghl_response *r = s->response;
    lua_pushfstring(L, "ghl: %s: %s", failure_labels[r->failure], r->error);
    if (r->failure != GHL_FAIL_DECODE && r->transport_code != 0) {
        lua_pushinteger(L, r->transport_code);
        lua_setfield(L, info, "curl_code");
    }
    push_failure(L, s, info, failure_kinds[r->failure]);
}

/* A non-2xx answer: "ghl: HTTP 404 Not Found: <the API's message>". */
static void push_http_failure(lua_State *L, const ghl_shape *s, int info, int body) {
    long status = s->response->status;
    const char *reason = reason_phrase(status);
    lua_pushfstring(L, "ghl: HTTP %d", (int)status);
    if (reason != NULL) {
        lua_pushfstring(L, " %s", reason);
        lua_concat(L, 2);
    }
    if (body && push_api_message(L, body)) {
        size_t n;
        const char *text = lua_tolstring(L, -1, &n);
        lua_pushvalue(L, -1);
        lua_setfield(L, info, "message");
        lua_pushliteral(L, ": ");
        push_one_line(L, text, n);
        lua_remove(L, -3);
        lua_concat(L, 3);
    }
    if (body) lua_remove(L, body);
    push_failure(L, s, info, "http");
}

/* body[field] when it is an object with a string id, else the body itself
 * when it has one (a message, an email). Pushes it, or returns why (none). */
static const char *push_unwrapped(lua_State *L, int body, const char *field, const char *none) {
    int found;
    lua_getfield(L, body, field);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "id");
        found = lua_type(L, -1) == LUA_TSTRING;
        lua_pop(L, 1);
        if (found) return NULL;
    }
    lua_pop(L, 1);
    lua_getfield(L, body, "id");
    found = lua_type(L, -1) == LUA_TSTRING;
    lua_pop(L, 1);
    if (!found) return none;
    lua_pushvalue(L, body);
    return NULL;
}

/* Whether the table at idx came from a JSON array (keys 1..n; an
 * empty one cannot be told from {}, and counts as an object). */
static int is_json_array(lua_State *L, int idx) {
    return lua_rawlen(L, idx) > 0;
}

/* The body itself, an object, with its traceId taken out (it is in info). */
static const char *push_object(lua_State *L, int body, int arrays_too) {
    if (is_json_array(L, body)) {
        if (!arrays_too) return "the body is not a JSON object";
    } else {
        lua_pushnil(L);
        lua_setfield(L, body, "traceId");
    }
    lua_pushvalue(L, body);
    return NULL;
}

/* A page of a conversation's messages: {messages, next_page,
 * last_message_id} from {"messages": {"messages": [...], "nextPage",
 * "lastMessageId"}} (the real API's double wrap) or {"messages": [...],
 * "nextPage", "lastMessageId"}. */
static const char *push_message_page(lua_State *L, int body, int convert) {
    int wrapper, list, i, n;
    lua_getfield(L, body, "messages");
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return "no messages in the body";
    }
    lua_getfield(L, -1, "messages");
    if (lua_type(L, -1) == LUA_TTABLE) {
        wrapper = lua_gettop(L) - 1;
    } else {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushvalue(L, body);
        lua_replace(L, -3);
        wrapper = lua_gettop(L) - 1; /* the body holds nextPage and lastMessageId */
    }
    list = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, list);
    lua_setfield(L, -2, "messages");
    lua_getfield(L, wrapper, "nextPage");
    lua_pushboolean(L, lua_toboolean(L, -1) && lua_type(L, -1) == LUA_TBOOLEAN);
    lua_setfield(L, -3, "next_page");
    lua_pop(L, 1);
    lua_getfield(L, wrapper, "lastMessageId");
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_setfield(L, -2, "last_message_id");
    else
        lua_pop(L, 1);
    if (convert) {
        n = (int)lua_rawlen(L, list);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            if (lua_type(L, -1) == LUA_TTABLE) ghl_convert_type(L, lua_gettop(L));
            lua_pop(L, 1);
        }
    }
    lua_replace(L, wrapper);
    lua_settop(L, wrapper);
    return NULL;
}

/* A page of a search: {conversations, total, next}, next being the last
 * item's sort[1] when the page is full (page_size items), else nil. */
static const char *push_search_page(lua_State *L, int body, long page_size) {
    int list, n;
    lua_getfield(L, body, "conversations");
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return "no conversations in the body";
    }
    list = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, list);
    lua_setfield(L, -2, "conversations");
    lua_getfield(L, body, "total");
    if (lua_type(L, -1) == LUA_TNUMBER)
        lua_setfield(L, -2, "total");
    else
        lua_pop(L, 1);
    n = (int)lua_rawlen(L, list);
    if (n > 0 && n >= page_size) {
        lua_rawgeti(L, list, n);
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_getfield(L, -1, "sort");
            if (lua_type(L, -1) == LUA_TTABLE) {
                lua_rawgeti(L, -1, 1);
                lua_setfield(L, -4, "next");
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_remove(L, list);
    return NULL;
}

/* The body as it came (a recording), with its Content-Type in info. */
static void push_bytes(lua_State *L, const ghl_response *r, int info) {
    if (r->content_type[0] != '\0') {
        lua_pushstring(L, r->content_type);
        lua_setfield(L, info, "content_type");
    }
    lua_pushlstring(L, r->body.len ? r->body.data : "", r->body.len);
    lua_pushnil(L);
    lua_pushvalue(L, info);
    lua_remove(L, info);
}

/* The result of a decoded 2xx body at `body`, by the endpoint's unwrap rule.
 * Pushes it, or returns why there is none. */
static const char *push_result(lua_State *L, const ghl_shape *s, ghl_unwrap unwrap, int body) {
    const char *why;
    switch (unwrap) {
    case GHL_UNWRAP_MESSAGE_PAGE: return push_message_page(L, body, s->convert_enums);
    case GHL_UNWRAP_SEARCH_PAGE: return push_search_page(L, body, s->request->page_size);
    case GHL_UNWRAP_EMAIL: why = push_unwrapped(L, body, "emailMessage", "no object with an id in the body"); break;
    case GHL_UNWRAP_OBJECT:
    case GHL_UNWRAP_ANY: why = push_object(L, body, unwrap == GHL_UNWRAP_ANY); break;
    default:
        why = push_unwrapped(L, body, "message", "no message in the body");
        if (why == NULL && s->convert_enums) ghl_convert_type(L, lua_gettop(L));
        return why;
    }
    return why;
}

void ghl_shape_push(lua_State *L, const ghl_shape *s) {
    const ghl_response *r = s->response;
    ghl_unwrap unwrap = s->request != NULL ? s->request->endpoint->unwrap : GHL_UNWRAP_MESSAGE;
    int info, body = 0, out_of_range = 0, ok = r->status >= 200 && r->status <= 299;
    const char *why;

    luaL_checkstack(L, 12, "ghl");
    info = push_info(L, s);
    if (r->too_large) {
        char limit[32]; /* %f would print "8388608.0" on 5.3+ */
        snprintf(limit, sizeof limit, "%lu", (unsigned long)r->max_body);
        lua_pushfstring(L, "ghl: response too large: more than %s bytes (max_body_size)", limit);
        push_failure(L, s, info, "too_large");
        return;
    }
    if (r->failure != GHL_FAIL_NONE) {
        push_transport_failure(L, s, info);
        return;
    }
    if (ok && unwrap == GHL_UNWRAP_BYTES) {
        push_bytes(L, r, info);
        return;
    }
    if (ok && unwrap == GHL_UNWRAP_ANY && r->body.len == 0) { /* 204 and the like */
        lua_pushboolean(L, 1);
        lua_pushnil(L);
        lua_pushvalue(L, info);
        lua_remove(L, info);
        return;
    }

    why = decode_body(L, r->body.data, r->body.len, &out_of_range);
    if (why == NULL && lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        why = "the body is not a JSON object";
    }
    if (why == NULL) {
        body = lua_gettop(L);
        set_trace_id(L, body, info);
    }
    if (!ok) {
        push_http_failure(L, s, info, body);
        return;
    }
    if (why == NULL) why = out_of_range ? OUT_OF_RANGE : push_result(L, s, unwrap, body);
    if (why != NULL) {
        if (body) lua_remove(L, body);
        lua_pushfstring(L, "ghl: cannot decode the response: %s", why);
        push_failure(L, s, info, "decode");
        return;
    }
    lua_remove(L, body); /* result, then nil and info */
    lua_pushnil(L);
    lua_pushvalue(L, info);
    lua_remove(L, info);
}

void ghl_shape_push_answer(lua_State *L, const ghl_request *req, ghl_response *r, int attempts, int convert_enums,
                           const ghl_secrets *secrets) {
    ghl_shape s;
    if (r->out_of_memory || ((r->status < 200 || r->status > 299) && ghl_redact_buffer(&r->body, secrets) != 0))
        luaL_error(L, "ghl: out of memory");
    s.request = req;
    s.response = r;
    s.attempts = attempts;
    s.convert_enums = convert_enums;
    s.secrets = secrets;
    ghl_shape_push(L, &s);
}
