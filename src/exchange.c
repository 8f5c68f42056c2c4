#include "exchange.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "retry.h"
#include "shape.h"

/* ---- life cycle ---- */

/* Empties a buffer that held the token, leaving no copy behind (what it
 * holds is always written from its start, so len covers every byte used). */
static void wipe(ghl_buffer *b) {
    if (b->data != NULL) memset(b->data, 0, b->len);
    b->len = 0;
}

/* Frees what the exchange owns; safe on one only partly built. __gc. */
static int exchange_gc(lua_State *L) {
    ghl_exchange *ex = luaL_checkudata(L, 1, GHL_EXCHANGE_MT);
    if (!ex->live) return 0;
    ex->live = 0;
    ghl_response_free(&ex->response);
    wipe(&ex->scratch);
    ghl_buffer_free(&ex->scratch);
    ghl_buffer_free(&ex->target);
    ghl_secrets_free(&ex->secrets);
    ghl_options_free(&ex->options);
    return 0;
}

static ghl_exchange *check_exchange(lua_State *L) {
    ghl_exchange *ex = luaL_checkudata(L, 1, GHL_EXCHANGE_MT);
    if (!ex->live) luaL_error(L, "ghl: the exchange is freed");
    return ex;
}

/* ghl._exchange(id, opts [, batch]) */
static int exchange_new(lua_State *L) {
    ghl_options o;
    ghl_exchange *ex;
    size_t len;
    const char *id = ghl_check_id(L, 1, &len);
    int scopes = GHL_SCOPE_CLIENT | GHL_SCOPE_CALL | (lua_toboolean(L, 3) ? GHL_SCOPE_BATCH : 0);
    lua_settop(L, 2);
    ghl_options_defaults(&o);
    ghl_options_read(L, 2, &o, scopes); /* the strings stay on the stack until owned */
    ghl_options_require_token(L, &o);
    /* a provider is called when a client first needs the token, in the
     * client's own call; no exchange does that yet */
    if (o.token_fn || o.token == NULL)
        luaL_error(L,
                   "ghl: option 'token' must be a string here (a token function is not supported by this transport)");
    ex = lua_newuserdata(L, sizeof *ex);
    memset(ex, 0, sizeof *ex); /* live is 0: nothing to free until the metatable is set */
    luaL_setmetatable(L, GHL_EXCHANGE_MT);
    ex->live = 1;
    ex->options = o;
    memcpy(ex->id, id, len);
    ex->id[len] = '\0';
    ex->request.endpoint = &ghl_get_message_endpoint;
    ex->request.args[0] = ex->id;
    ex->request.arg_len[0] = len;
    ex->response.max_body = o.max_body_size;
    ghl_response_reset(&ex->response, 0);
    ex->rng = (unsigned long)time(NULL) ^ (unsigned long)(size_t)ex;
    if (ghl_options_own(&ex->options) != 0 || ghl_secrets_init(&ex->secrets, ex->options.token, ex->options.proxy) != 0)
        luaL_error(L, "ghl: out of memory"); /* __gc frees what was made */
    return 1;
}

/* ---- where to, and what to send ---- */

/* The parts of base_url (checked by options.c): host (an IPv6 literal keeps
 * its brackets), port, and the path prefix. */
typedef struct target {
    int https;
    const char *host, *prefix;
    size_t host_len, prefix_len;
    long port;
    int default_port;
} target;

static void split_base_url(const ghl_options *o, target *t) {
    const char *u = o->base_url, *end = u + o->base_url_len, *p;
    t->https = strncmp(u, "https://", 8) == 0;
    t->host = p = u + (t->https ? 8 : 7);
    if (*p == '[') {
        while (p < end && *p != ']') p++;
        if (p < end) p++;
    } else {
        while (p < end && *p != ':' && *p != '/') p++;
    }
    t->host_len = (size_t)(p - t->host);
    t->port = t->https ? 443 : 80;
    t->default_port = 1;
    if (p < end && *p == ':') {
        long port = 0;
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) port = port * 10 + (*p - '0');
        t->default_port = port == t->port;
        t->port = port;
    }
    t->prefix = p;
    t->prefix_len = (size_t)(end - p);
}

/* ex:target() -> scheme, host, port, server_name, pool_key */
static int exchange_target(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    target t;
    split_base_url(&ex->options, &t);
    lua_pushstring(L, t.https ? "https" : "http");
    lua_pushlstring(L, t.host, t.host_len);
    lua_pushinteger(L, (lua_Integer)t.port);
    if (t.host_len >= 2 && t.host[0] == '[')
        lua_pushlstring(L, t.host + 1, t.host_len - 2);
    else
        lua_pushlstring(L, t.host, t.host_len);
    /* connections are shared only between exchanges that would make the same one */
    lua_pushfstring(L, "ghl:%s:%s:%d:%s", t.https ? "https" : "http", lua_tostring(L, -3), (int)t.port,
                    t.https ? (ex->options.ssl_verify ? "verify" : "noverify") : "");
    return 5;
}

/* ex:request() -> the bytes to send: request line, Host, the headers every
 * request carries (ghl_request_headers), asking for an identity body: the
 * Lua transport does not decode gzip or deflate. */
static int exchange_request(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    ghl_header h[GHL_MAX_HEADERS];
    char port[16];
    target t;
    ghl_buffer *b = &ex->scratch;
    int i, n, ok;
    wipe(b);
    split_base_url(&ex->options, &t);
    snprintf(port, sizeof port, ":%ld", t.port);
    /* the request target: base_url's path prefix, the path and its query */
    ok = ghl_request_url(&ex->request, t.prefix, t.prefix_len, &ex->target) == 0 &&
         ghl_buffer_append(b, ex->request.endpoint->method, strlen(ex->request.endpoint->method)) == 0 &&
         ghl_buffer_append(b, " ", 1) == 0 && ghl_buffer_append(b, ex->target.data, ex->target.len) == 0 &&
         ghl_buffer_append(b, " HTTP/1.1\r\nHost: ", 17) == 0 && ghl_buffer_append(b, t.host, t.host_len) == 0 &&
         (t.default_port || ghl_buffer_append(b, port, strlen(port)) == 0) && ghl_buffer_append(b, "\r\n", 2) == 0;
    n = ghl_request_headers(&ex->options, &ex->request, h);
    for (i = 0; ok && i < n; i++) {
        const char *value = strcmp(h[i].name, "Accept-Encoding") == 0 ? "identity" : h[i].value;
        ok = ghl_buffer_append(b, h[i].name, strlen(h[i].name)) == 0 && ghl_buffer_append(b, ": ", 2) == 0 &&
             ghl_buffer_append(b, h[i].prefix, strlen(h[i].prefix)) == 0 &&
             ghl_buffer_append(b, value, strlen(value)) == 0 && ghl_buffer_append(b, "\r\n", 2) == 0;
    }
    ok = ok && ghl_buffer_append(b, "\r\n", 2) == 0;
    if (ok) lua_pushlstring(L, b->data, b->len); /* on out of memory, __gc still frees b */
    wipe(b);                                     /* it holds the token */
    if (!ok) luaL_error(L, "ghl: out of memory");
    return 1;
}

/* ex:timeouts() -> connect_timeout, timeout (seconds, one attempt) */
static int exchange_timeouts(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    lua_pushnumber(L, ex->options.connect_timeout);
    lua_pushnumber(L, ex->options.timeout);
    return 2;
}

/* ex:batch() -> concurrency, max_retry_delay (get_messages' settings) */
static int exchange_batch(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    lua_pushinteger(L, ex->options.concurrency);
    lua_pushnumber(L, ex->options.max_retry_delay);
    return 2;
}

/* ---- what came back ---- */

/* ex:status(code): a status line; a new response starts (its own figures). */
static int exchange_status(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    lua_Number code = luaL_checknumber(L, 2);
    if (code < 100 || code > 999 || code != (lua_Number)(long)code)
        luaL_error(L, "ghl: bad argument 'code' (an HTTP status from 100 to 999 expected)");
    ex->response.status = (long)code;
    memset(&ex->response.ratelimit, 0, sizeof ex->response.ratelimit);
    ex->response.retry_after = -1;
    ex->answered = 1;
    return 0;
}

/* Whether [p, p + n) starts with the lower-case name (':' included), in any case. */
static int has_name(const char *p, size_t n, const char *name) {
    size_t i, len = strlen(name);
    if (n < len) return 0;
    for (i = 0; i < len; i++)
        if (p[i] != name[i] && !(p[i] >= 'A' && p[i] <= 'Z' && p[i] + 32 == name[i])) return 0;
    return 1;
}

/* Whether [p, p + n) holds the lower-case word, in any case. */
static int holds_word(const char *p, size_t n, const char *word) {
    size_t len = strlen(word);
    for (; n >= len; p++, n--)
        if (has_name(p, len, word)) return 1;
    return 0;
}

/* ex:head(block): the status line and the header lines of one response, as
 * read up to the empty line. Reads them as status() and header() would, and
 * returns what the transport needs to read the body: status, length (-1:
 * none), chunked, keep (the connection may be kept); or false when the body
 * would be too large; or nil and why when the block is not a response head. */
static int exchange_head(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    size_t len;
    const char *p = luaL_checklstring(L, 2, &len), *end = p + len, *eol;
    long status, length = -1;
    int chunked = 0, keep;
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' || p[9] < '1' ||
        p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') {
        lua_pushnil(L);
        lua_pushliteral(L, "bad status line");
        return 2;
    }
    keep = p[7] == '1';
    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    ex->response.status = status;
    memset(&ex->response.ratelimit, 0, sizeof ex->response.ratelimit);
    ex->response.retry_after = -1;
    ex->answered = 1;
    for (p = memchr(p, '\n', len); p != NULL && ++p < end; p = eol) {
        size_t n;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) eol = end;
        n = (size_t)(eol - p);
        if (ghl_response_header(&ex->response, p, n) != 0) {
            lua_pushboolean(L, 0);
            return 1;
        }
        if (has_name(p, n, "content-length:")) {
            const char *v = p + 15;
            long x = 0;
            int digits = 0;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            for (; v < eol && *v >= '0' && *v <= '9' && digits < 16; v++, digits++) x = x * 10 + (*v - '0');
            while (v < eol && (*v == ' ' || *v == '\t' || *v == '\r')) v++;
            if (digits == 0 || v != eol) {
                lua_pushnil(L);
                lua_pushliteral(L, "bad Content-Length");
                return 2;
            }
            length = x;
        } else if (has_name(p, n, "transfer-encoding:")) {
            chunked = holds_word(p + 18, n - 18, "chunked");
        } else if (has_name(p, n, "connection:")) {
            if (holds_word(p + 11, n - 11, "close")) keep = 0;
        }
    }
    if (chunked) length = -1;
    lua_pushinteger(L, status);
    lua_pushinteger(L, length);
    lua_pushboolean(L, chunked);
    lua_pushboolean(L, keep);
    return 4;
}

/* ex:header(line) -> false when Content-Length says the body is too large */
static int exchange_header(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    size_t len;
    const char *line = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, ghl_response_header(&ex->response, line, len) == 0);
    return 1;
}

/* ex:body(chunk) -> false when max_body_size is passed: stop reading */
static int exchange_body(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    size_t len;
    const char *chunk = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, ghl_response_body(&ex->response, chunk, len) == 0);
    return 1;
}

/* The transport failures a Lua transport reports, each as libcurl's path
 * would: the same kind, retry rule and CURLcode number (info.curl_code). */
static const struct {
    const char *what;
    ghl_failure failure;
    int code; /* the CURLcode libcurl gives for the same failure */
    int retryable;
    int unsent; /* the request provably never left */
} failures[] = {
    {"resolve", GHL_FAIL_NETWORK, 6, 1, 1},          /* CURLE_COULDNT_RESOLVE_HOST */
    {"connect", GHL_FAIL_NETWORK, 7, 1, 1},          /* CURLE_COULDNT_CONNECT */
    {"connect_timeout", GHL_FAIL_TIMEOUT, 28, 1, 1}, /* CURLE_OPERATION_TIMEDOUT */
    {"timeout", GHL_FAIL_TIMEOUT, 28, 1, 0},
    {"send", GHL_FAIL_NETWORK, 55, 1, 0},    /* CURLE_SEND_ERROR */
    {"recv", GHL_FAIL_NETWORK, 56, 1, 0},    /* CURLE_RECV_ERROR */
    {"closed", GHL_FAIL_NETWORK, 52, 1, 0},  /* CURLE_GOT_NOTHING; 18 once answered */
    {"tls", GHL_FAIL_TLS, 35, 0, 0},         /* CURLE_SSL_CONNECT_ERROR */
    {"verify", GHL_FAIL_TLS, 60, 0, 0},      /* CURLE_PEER_FAILED_VERIFICATION */
    {"protocol", GHL_FAIL_NETWORK, 8, 0, 0}, /* CURLE_WEIRD_SERVER_REPLY */
};

/* ex:fail(what, text): the attempt got no whole response. */
static int exchange_fail(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    const char *what = luaL_checkstring(L, 2);
    const char *text = luaL_optstring(L, 3, "");
    ghl_response *r = &ex->response;
    size_t i, n = sizeof failures / sizeof failures[0];
    for (i = 0; i < n && strcmp(failures[i].what, what) != 0; i++) {
    }
    if (i == n) luaL_error(L, "ghl: bad argument 'what' (unknown failure '%s')", what);
    r->failure = failures[i].failure;
    r->transport_code = failures[i].code;
    r->retryable = failures[i].retryable;
    r->unsent = failures[i].unsent;
    if (failures[i].code == 52 && ex->answered) r->transport_code = 18; /* CURLE_PARTIAL_FILE */
    snprintf(r->error, sizeof r->error, "%s", text);
    ghl_redact_string(r->error, sizeof r->error, &ex->secrets);
    return 0;
}

/* ex:next_attempt() -> seconds to wait before the next attempt, or nil */
static int exchange_next_attempt(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    ghl_response *r = &ex->response;
    if (ex->done) luaL_error(L, "ghl: the exchange is done");
    if (!ex->answered && r->failure == GHL_FAIL_NONE)
        luaL_error(L, "ghl: next_attempt before the attempt got a status or a failure");
    ex->attempts++;
    if (ex->attempts <= ex->options.retries && ghl_retry_wanted(r, ex->request.endpoint->repeat_safe)) {
        double delay = ghl_retry_delay(r, ex->attempts, ex->options.max_retry_delay, &ex->rng);
        ghl_response_reset(r, GHL_BUFFER_KEEP);
        ex->answered = 0;
        lua_pushnumber(L, delay);
        return 1;
    }
    ex->done = 1;
    return 0;
}

/* ex:result() -> message, nil, info  or  nil, errmsg, info */
static int exchange_result(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    ghl_response *r = &ex->response;
    ghl_shape s;
    if (!ex->done) luaL_error(L, "ghl: result before next_attempt said the exchange is done");
    /* an error body reaches errmsg and info.message: cut the secrets out
     * before it is decoded (client.c does the same) */
    if (r->out_of_memory || ((r->status < 200 || r->status > 299) && ghl_redact_buffer(&r->body, &ex->secrets) != 0))
        luaL_error(L, "ghl: out of memory");
    lua_settop(L, 1); /* ex stays on the stack while Lua code may run */
    s.request = &ex->request;
    s.response = r;
    s.attempts = ex->attempts;
    s.convert_enums = ex->options.convert_enums;
    s.secrets = &ex->secrets;
    ghl_shape_push(L, &s);
    return 3;
}

static int exchange_tostring(lua_State *L) {
    ghl_exchange *ex = luaL_checkudata(L, 1, GHL_EXCHANGE_MT);
    lua_pushfstring(L, "ghl.exchange (%s, %d attempts%s): %p", ex->live ? ex->id : "freed", ex->attempts,
                    ex->done ? ", done" : "", (void *)ex);
    return 1;
}

/* ---- the rate-limit window ---- */

typedef struct lua_window {
    ghl_window window;
    double max_delay;
} lua_window;

/* ghl._window(max_retry_delay) */
static int window_new(lua_State *L) {
    double max_delay = luaL_checknumber(L, 1);
    lua_window *w = lua_newuserdata(L, sizeof *w);
    ghl_window_init(&w->window);
    w->max_delay = max_delay >= 0 ? max_delay : 0;
    luaL_setmetatable(L, GHL_WINDOW_MT);
    return 1;
}

/* w:take(ex): the figures of ex's last response, if one came */
static int window_take(lua_State *L) {
    lua_window *w = luaL_checkudata(L, 1, GHL_WINDOW_MT);
    ghl_exchange *ex = luaL_checkudata(L, 2, GHL_EXCHANGE_MT);
    if (ex->live && ex->response.status > 0)
        ghl_window_take(&w->window, &ex->response.ratelimit, ghl_now(), w->max_delay);
    return 0;
}

/* w:room(running) -> true, or false and the seconds to wait before asking again */
static int window_room(lua_State *L) {
    lua_window *w = luaL_checkudata(L, 1, GHL_WINDOW_MT);
    int running = (int)luaL_checkinteger(L, 2);
    double now = ghl_now();
    ghl_window_turn_over(&w->window, now);
    if (ghl_window_has_room(&w->window, running)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    /* paused: until the pause ends; else a running request must end first */
    lua_pushnumber(L, w->window.paused_until > now ? w->window.paused_until - now : 0.01);
    return 2;
}

void ghl_exchange_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"target", exchange_target},     {"request", exchange_request},
        {"timeouts", exchange_timeouts}, {"batch", exchange_batch},
        {"status", exchange_status},     {"header", exchange_header},
        {"head", exchange_head},         {"body", exchange_body},
        {"fail", exchange_fail},         {"next_attempt", exchange_next_attempt},
        {"result", exchange_result},     {NULL, NULL},
    };
    static const luaL_Reg window_methods[] = {
        {"take", window_take},
        {"room", window_room},
        {NULL, NULL},
    };
    luaL_newmetatable(L, GHL_EXCHANGE_MT);
    lua_pushcfunction(L, exchange_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, exchange_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, GHL_EXCHANGE_MT);
    lua_setfield(L, -2, "__metatable"); /* no Lua code can reach __gc and free it mid-use */
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, GHL_WINDOW_MT);
    lua_pushliteral(L, GHL_WINDOW_MT);
    lua_setfield(L, -2, "__metatable");
    lua_newtable(L);
    luaL_setfuncs(L, window_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_pushcfunction(L, exchange_new);
    lua_setfield(L, -2, "_exchange");
    lua_pushcfunction(L, window_new);
    lua_setfield(L, -2, "_window");
}
