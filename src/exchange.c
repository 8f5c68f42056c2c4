#include "exchange.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arguments.h"
#include "retry.h"
#include "shape.h"

/* ---- life cycle ---- */

/* Empties a buffer that held the token, leaving no copy behind (what it
 * holds is always written from its start, so len covers every byte used). */
static void wipe(ghl_buffer *b) {
    if (b->data != NULL) memset(b->data, 0, b->len);
    b->len = 0;
}

/* The userdata is a handle: the exchange itself lives in C memory, so that
 * the collector, paced by the bytes Lua allocates, runs no more often for
 * it than for an 8-byte object (ghl.resty makes one per request). */
static ghl_exchange **exchange_handle(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, GHL_EXCHANGE_MT);
}

/* The exchanges of a Lua state that ended, kept for the next ones (an
 * upvalue of __gc and of the functions that make them): at some 7 KB an
 * exchange is past glibc's per-thread cache, and with hundreds of requests
 * in flight its large-chunk bins cost more than the rest of the setup. */
#define POOL_MAX 64
typedef struct exchange_pool {
    int count;
    int closed; /* its __gc ran (the state is closing): keep nothing more */
    ghl_exchange *free[POOL_MAX];
} exchange_pool;

static exchange_pool *pool_of(lua_State *L) {
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int pool_gc(lua_State *L) {
    exchange_pool *p = lua_touserdata(L, 1);
    while (p->count > 0) free(p->free[--p->count]);
    p->closed = 1;
    return 0;
}

/* Frees what the exchange behind handle owns (safe on one only partly
 * built) and keeps its memory for the next one in pool p (NULL: frees it);
 * the handle is then empty. */
static void release_exchange(exchange_pool *p, ghl_exchange **handle) {
    ghl_exchange *ex = *handle;
    if (ex == NULL) return;
    *handle = NULL;
    if (ex->secret_answer && ex->response.body.data != NULL) memset(ex->response.body.data, 0, ex->response.body.cap);
    ghl_response_free(&ex->response);
    ghl_http1_free(&ex->reader);
    wipe(&ex->scratch);
    ghl_buffer_free(&ex->scratch);
    ghl_buffer_free(&ex->target);
    if (ex->owned != NULL && ex->request.body != NULL) /* an oauth form's secrets */
        memset((char *)ex->request.body, 0, ex->request.body_len);
    if (!ghl_in_store(ex->owned, ex->store, sizeof ex->store)) free(ex->owned);
    ex->owned = NULL;
    ghl_secrets_free(&ex->secrets);
    ghl_options_free(&ex->options, ex->store, sizeof ex->store);
    if (p == NULL || p->closed || p->count == POOL_MAX)
        free(ex);
    else
        p->free[p->count++] = ex;
}

/* __gc */
static int exchange_gc(lua_State *L) {
    release_exchange(pool_of(L), exchange_handle(L, 1));
    return 0;
}

/* ex:release(): the exchange is over; what it holds is freed now, and the
 * empty handle may carry another request (ex:reuse), which spares the
 * collector a userdata and a finalizer per request. Called from Lua code
 * that runs inside one of the exchange's own methods (a finalizer, a hook),
 * it waits for that method to return; after a raise inside one (a raising
 * finalizer), the collector frees it. Returns whether the handle is empty. */
static int exchange_release(lua_State *L) {
    ghl_exchange **handle = exchange_handle(L, 1);
    if (*handle != NULL && (*handle)->busy > 0)
        (*handle)->release_pending = 1;
    else
        release_exchange(pool_of(L), handle);
    lua_pushboolean(L, *handle == NULL); /* false: not empty yet, not to be reused */
    return 1;
}

/* Around the part of a method (ex at 1) that makes Lua values while it
 * reads ex: what runs meanwhile cannot free ex. After a raise inside, ex
 * stays busy, and only the collector frees it. */
static void enter(ghl_exchange *ex) {
    ex->busy++;
}

static void leave(lua_State *L, ghl_exchange *ex) {
    if (--ex->busy == 0 && ex->release_pending) release_exchange(NULL, exchange_handle(L, 1));
}

/* Empties what the last attempt read, for the next one; the body goes
 * back to the exchange's own storage if it had outgrown it. */
static void start_attempt(ghl_exchange *ex) {
    ghl_response_reset(&ex->response, GHL_BUFFER_KEEP);
    if (ex->response.body.data == NULL)
        ghl_buffer_borrow(&ex->response.body, ex->body_storage, sizeof ex->body_storage);
    ghl_http1_start(&ex->reader);
    ex->answered = 0;
}

static ghl_exchange *check_exchange(lua_State *L) {
    ghl_exchange *ex = *exchange_handle(L, 1);
    if (ex == NULL) luaL_error(L, "ghl: the exchange is freed");
    return ex;
}

/* Copies the strings r points at (ids, path, query, body, version) into ex,
 * whose request then points at its own copies. Returns 0, or -1 when
 * memory runs out. */
static int own_request(ghl_exchange *ex, const ghl_request *r, const ghl_endpoint *own) {
    ghl_request *q = &ex->request;
    size_t total = 0;
    char *p;
    int i;
    *q = *r;
    if (r->endpoint == own) {
        ex->own = *own;
        q->endpoint = &ex->own;
    }
    for (i = 0; i < GHL_MAX_PATH_ARGS; i++) {
        if (r->args[i] == NULL) continue;
        memcpy(ex->args[i], r->args[i], r->arg_len[i]); /* checked: at most GHL_MAX_ID_LEN */
        ex->args[i][r->arg_len[i]] = '\0';
        q->args[i] = ex->args[i];
    }
    if (r->path != NULL) total += r->path_len + 1;
    if (r->query != NULL) total += r->query_len + 1;
    if (r->body != NULL) total += r->body_len + 1;
    if (r->version != NULL) total += strlen(r->version) + 1;
    if (total == 0) return 0;
    if (total <= sizeof ex->store - ex->store_used) {
        ex->owned = p = ex->store + ex->store_used;
        ex->store_used += total;
    } else if ((ex->owned = p = malloc(total)) == NULL) {
        return -1;
    }
#define OWN_COPY(field, n)      \
    if (r->field != NULL) {     \
        memcpy(p, r->field, n); \
        p[n] = '\0';            \
        q->field = p;           \
        p += (n) + 1;           \
    }
    OWN_COPY(path, r->path_len)
    OWN_COPY(query, r->query_len)
    OWN_COPY(body, r->body_len)
    OWN_COPY(version, strlen(r->version))
#undef OWN_COPY
    return 0;
}

/* Pushes an exchange for request r (its strings copied) with options o
 * (checked; the strings still on the stack), built into the empty handle at
 * handle_idx, or into a new one when 0; form: the index of an oauth form
 * whose secrets are cut out of what comes back, else 0. */
static ghl_exchange *push_exchange(lua_State *L, exchange_pool *pool, int handle_idx, const ghl_options *o,
                                   const ghl_request *r, const ghl_endpoint *own, int form) {
    ghl_exchange **handle, *ex;
    int i, ok, secrets_at = lua_gettop(L) + 1, nsecrets = 0;
    /* what must never come back: read as the form's body is (raw), before
     * the exchange exists, so that no Lua code runs once it does */
    luaL_checkstack(L, 8, "ghl: too many arguments");
    for (i = 0; form != 0 && ghl_oauth_secrets[i] != NULL; i++, nsecrets++) {
        lua_pushstring(L, ghl_oauth_secrets[i]);
        lua_rawget(L, form);
    }
    if (handle_idx) {
        lua_pushvalue(L, handle_idx);
        handle = exchange_handle(L, -1);
        /* not released, or filled by Lua code that ran while the arguments were read */
        if (*handle != NULL) luaL_error(L, "ghl: reuse of an exchange not released");
    } else {
        handle = lua_newuserdata(L, sizeof *handle);
        *handle = NULL; /* nothing to free until the exchange is there */
        luaL_setmetatable(L, GHL_EXCHANGE_MT);
    }
    ex = pool->count > 0 ? pool->free[--pool->count] : malloc(sizeof *ex);
    if (ex == NULL) luaL_error(L, "ghl: out of memory");
    memset(ex, 0, offsetof(ghl_exchange, secrets)); /* the secrets and ids are written as they come */
    ex->secrets.count = 0;
    *handle = ex;
    ex->options = *o;
    ex->options.token_fn = 0; /* a stack index of the caller's */
    ex->store_used = 0;
    ex->secret_answer = form != 0;
    ok = ghl_options_own(&ex->options, ex->store, sizeof ex->store, &ex->store_used) == 0 &&
         own_request(ex, r, own) == 0 && ghl_secrets_init(&ex->secrets, ex->options.token, ex->options.proxy) == 0;
    for (i = 0; ok && i < nsecrets; i++) {
        size_t len;
        const char *v = lua_type(L, secrets_at + i) == LUA_TSTRING ? lua_tolstring(L, secrets_at + i, &len) : NULL;
        if (v != NULL && ghl_secrets_add(&ex->secrets, v, len) != 0) ok = 0;
    }
    if (!ok) luaL_error(L, "ghl: out of memory"); /* __gc frees what was made */
    ex->response.max_body = o->max_body_size;
    ex->response.wants_content_type = ex->request.endpoint->unwrap == GHL_UNWRAP_BYTES;
    ghl_response_reset(&ex->response, 0);
    ghl_buffer_borrow(&ex->response.body, ex->body_storage, sizeof ex->body_storage);
    ghl_http1_start(&ex->reader);
    ex->rng = (unsigned long)time(NULL) ^ (unsigned long)(size_t)ex;
    return ex;
}

/* The token of a request: the string given (one a provider returned), else
 * the options' (GHL_TOKEN included); none while a provider has not been
 * asked. */
static void choose_token(lua_State *L, int idx, ghl_options *o, const ghl_request *r) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *tok = lua_tolstring(L, idx, &n);
        if (!ghl_token_valid(tok, n))
            luaL_error(L, "ghl: bad argument 'token' (an empty string or one with spaces or control characters)");
        o->token = tok;
        o->token_fn = 0;
        return;
    }
    if (!lua_isnoneornil(L, idx))
        luaL_error(L, "ghl: bad argument 'token' (string expected, got %s)", luaL_typename(L, idx));
    if (r->endpoint->no_auth) return;
    ghl_options_require_token(L, o); /* a provider's token comes later (ex:set_token) */
    if (o->token_fn) o->token = NULL;
}

/* Reads (name, opts, token, batch, ...) from index base on and pushes their
 * exchange, built into the empty handle at handle_idx, or into a new one
 * when 0. */
static int build_exchange(lua_State *L, int base, int handle_idx) {
    const char *name = luaL_checkstring(L, base);
    int batch = lua_toboolean(L, base + 3), form = 0, call_opts = 0;
    int scopes = GHL_SCOPE_CALL | (batch ? GHL_SCOPE_BATCH : 0);
    ghl_options o;
    ghl_request r;
    ghl_endpoint own;
    memset(&r, 0, sizeof r);
    memset(&own, 0, sizeof own);
    if (strcmp(name, "oauth_token") == 0) {
        lua_settop(L, base + 4);
        form = base + 4;
        ghl_read_oauth_form(L, form, &r); /* the form first, as ghl.oauth_token */
        ghl_check_oauth_options(L, base + 1);
        ghl_options_defaults(&o);
        ghl_options_read(L, base + 1, &o, GHL_SCOPE_CLIENT | GHL_SCOPE_CALL);
    } else {
        call_opts = ghl_read_call(L, name, base + 4, &r, &own); /* the ids and strings stay on the stack */
        ghl_options_defaults(&o);
        ghl_options_read(L, base + 1, &o, GHL_SCOPE_CLIENT | scopes);
        ghl_options_read(L, call_opts, &o, scopes);
    }
    choose_token(L, base + 2, &o, &r);
    push_exchange(L, pool_of(L), handle_idx, &o, &r, &own, form);
    return 1;
}

/* ghl._exchange_call(name, opts, token, batch, ...): the request the client
 * method `name` makes with the arguments `...` (its per-call options
 * last), with the client options opts, as ghl.new(opts):name(...) would;
 * token: a string in place of opts.token (nil: opts.token; for a provider,
 * ex:set_token later); batch: accept get_messages' keys. "oauth_token" takes
 * (form) and oauth_token's opts. Misuse raises. */
static int exchange_call(lua_State *L) {
    return build_exchange(L, 1, 0);
}

/* ghl._exchange(id, opts [, batch]): ghl._exchange_call("get_message",
 * opts, nil, batch, id). */
static int exchange_new(lua_State *L) {
    lua_settop(L, 3);
    lua_pushliteral(L, "get_message");
    lua_insert(L, 1);    /* name, id, opts, batch */
    lua_pushvalue(L, 2); /* name, id, opts, batch, id */
    lua_remove(L, 2);    /* name, opts, batch, id */
    lua_pushnil(L);
    lua_insert(L, 3); /* name, opts, nil, batch, id */
    return exchange_call(L);
}

/* ex:reuse(name, opts, token, batch, ...) -> ex: ghl._exchange_call's
 * exchange on a released handle (push_exchange checks that it is, once the
 * arguments are read). */
static int exchange_reuse(lua_State *L) {
    exchange_handle(L, 1);
    return build_exchange(L, 2, 1);
}

/* ex:set_token(token): the token the next request bytes carry; the one it
 * replaces stays a secret to cut out. */
static void install_token(lua_State *L, ghl_exchange *ex, int idx) {
    size_t n;
    const char *tok = luaL_checklstring(L, idx, &n);
    char *copy, *old = (char *)ex->options.token;
    int ok;
    if (!ghl_token_valid(tok, n))
        luaL_error(L, "ghl: bad argument 'token' (an empty string or one with spaces or control characters)");
    if ((copy = malloc(n + 1)) == NULL) luaL_error(L, "ghl: out of memory");
    memcpy(copy, tok, n + 1);
    ex->options.token = copy;
    ghl_secrets_free(&ex->secrets);
    ok = ghl_secrets_init(&ex->secrets, copy, ex->options.proxy) == 0 &&
         (old == NULL || ghl_secrets_add(&ex->secrets, old, strlen(old)) == 0);
    if (old != NULL) {
        memset(old, 0, strlen(old));
        if (!ghl_in_store(old, ex->store, sizeof ex->store)) free(old);
    }
    if (!ok) luaL_error(L, "ghl: out of memory");
}

static int exchange_set_token(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    install_token(L, ex, 2);
    return 0;
}

/* ex:wants_token() -> whether the exchange ended with a 401 a new token may
 * cure (not the gateway's "Command timed out"; not after a renewal) */
static int exchange_wants_token(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    const ghl_response *r = &ex->response;
    lua_pushboolean(L, ex->done && !ex->renewed && r->status == 401 && !ghl_command_timed_out(r));
    return 1;
}

/* ex:renew(token): after wants_token, the request goes once more with the
 * new token, outside the retries count. */
static int exchange_renew(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    if (!ex->done || ex->renewed) luaL_error(L, "ghl: renew before the exchange ended with a 401");
    install_token(L, ex, 2);
    ex->renewed = 1;
    ex->done = 0;
    start_attempt(ex);
    return 0;
}

/* ex:token_answer(ok, value, renewal) -> "new", token | "same" | "failed",
 * errmsg: what a provider's pcall gave, judged by the token rule (renewal:
 * it was given the token that failed, the exchange's); a raised message has
 * the exchange's tokens cut out. */
static int push_token_answer(lua_State *L, ghl_exchange *ex) {
    int renewal = lua_toboolean(L, 4);
    size_t n;
    const char *tok;
    lua_settop(L, 3);
    if (!lua_toboolean(L, 2)) {
        ghl_buffer *b = &ex->scratch;
        const char *why =
            lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER ? lua_tolstring(L, 3, &n) : NULL;
        int ok;
        if (why == NULL) why = "(an error that is not a string)", n = strlen(why);
        wipe(b);
        ok = ghl_buffer_append(b, "ghl: token provider failed: ", 28) == 0 && ghl_buffer_append(b, why, n) == 0 &&
             ghl_redact_buffer(b, &ex->secrets) == 0;
        lua_pushliteral(L, "failed");
        if (ok) lua_pushlstring(L, b->data, b->len); /* on out of memory, __gc still frees b */
        wipe(b);
        if (!ok) luaL_error(L, "ghl: out of memory");
        return 2;
    }
    if (lua_isnil(L, 3) && renewal) {
        lua_pushliteral(L, "same");
        return 1;
    }
    tok = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &n) : NULL;
    if (tok == NULL || !ghl_token_valid(tok, n)) {
        const char *what =
            tok != NULL ? "an empty string or one with spaces or control characters" : luaL_typename(L, 3);
        lua_pushliteral(L, "failed");
        lua_pushfstring(L, "ghl: token provider failed: it returned %s, not a token", what);
        return 2;
    }
    if (renewal && ex->options.token != NULL && strcmp(tok, ex->options.token) == 0) {
        lua_pushliteral(L, "same");
        return 1;
    }
    lua_pushliteral(L, "new");
    lua_pushvalue(L, 3);
    return 2;
}

static int exchange_token_answer(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    int n;
    enter(ex);
    n = push_token_answer(L, ex);
    leave(L, ex);
    return n;
}

/* ex:attempts() -> the attempts finished */
static int exchange_attempts(lua_State *L) {
    lua_pushinteger(L, check_exchange(L)->attempts);
    return 1;
}

/* ex:rate_limit() -> true and the figures of the last response (nil when it
 * had none), or nothing when no response came */
static int exchange_rate_limit(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    if (!ex->had_response) return 0;
    lua_pushboolean(L, 1);
    enter(ex);
    ghl_push_ratelimit(L, &ex->last_ratelimit);
    leave(L, ex);
    return 2;
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

/* n in decimal, written into out (at least 21 bytes); returns where it starts. */
static const char *format_number(char *out, size_t n) {
    char *p = out + 21;
    *p = '\0';
    do *--p = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    return p;
}

/* ex:request() -> the bytes to send: request line, Host, the headers every
 * request carries (ghl_request_headers), asking for an identity body (the
 * Lua transport does not decode gzip or deflate), Content-Length and the
 * body, if any. */
static int exchange_request(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    ghl_header h[GHL_MAX_HEADERS];
    /* most requests fit here, and need no allocation */
    char bytes[2048], url[1024], length_digits[24], port_digits[24];
    target t;
    ghl_buffer *b = &ex->scratch;
    const ghl_request *r = &ex->request;
    const char *length = NULL;
    size_t len;
    char *data;
    int i, n, ok, on_stack;
    if (ex->options.token == NULL && !r->endpoint->no_auth)
        luaL_error(L, "ghl: the exchange has no token yet (ex:set_token)");
    wipe(b);
    ghl_buffer_free(b);
    ghl_buffer_borrow(b, bytes, sizeof bytes);
    ghl_buffer_borrow(&ex->target, url, sizeof url);
    split_base_url(&ex->options, &t);
    /* a body's length; a POST, PUT or PATCH without one says 0 */
    if (r->body != NULL)
        length = format_number(length_digits, r->body_len);
    else if (strcmp(r->endpoint->method, "GET") != 0 && strcmp(r->endpoint->method, "DELETE") != 0)
        length = "0";
    /* the request target: base_url's path prefix, the path and its query */
    ok = ghl_request_url(&ex->request, t.prefix, t.prefix_len, &ex->target) == 0 &&
         ghl_buffer_append(b, r->endpoint->method, strlen(r->endpoint->method)) == 0 &&
         ghl_buffer_append(b, " ", 1) == 0 && ghl_buffer_append(b, ex->target.data, ex->target.len) == 0 &&
         ghl_buffer_append(b, " HTTP/1.1\r\nHost: ", 17) == 0 && ghl_buffer_append(b, t.host, t.host_len) == 0;
    ghl_buffer_free(&ex->target); /* no pointer into this frame outlives it */
    if (ok && !t.default_port) {
        const char *port = format_number(port_digits, (size_t)t.port);
        ok = ghl_buffer_append(b, ":", 1) == 0 && ghl_buffer_append(b, port, strlen(port)) == 0;
    }
    ok = ok && ghl_buffer_append(b, "\r\n", 2) == 0;
    n = ghl_request_headers(&ex->options, &ex->request, h);
    for (i = 0; ok && i < n; i++) {
        const char *value = strcmp(h[i].name, "Accept-Encoding") == 0 ? "identity" : h[i].value;
        ok = ghl_buffer_append(b, h[i].name, strlen(h[i].name)) == 0 && ghl_buffer_append(b, ": ", 2) == 0 &&
             ghl_buffer_append(b, h[i].prefix, strlen(h[i].prefix)) == 0 &&
             ghl_buffer_append(b, value, strlen(value)) == 0 && ghl_buffer_append(b, "\r\n", 2) == 0;
    }
    if (ok && length != NULL)
        ok = ghl_buffer_append(b, "Content-Length: ", 16) == 0 && ghl_buffer_append(b, length, strlen(length)) == 0 &&
             ghl_buffer_append(b, "\r\n", 2) == 0;
    ok = ok && ghl_buffer_append(b, "\r\n", 2) == 0 &&
         (r->body == NULL || ghl_buffer_append(b, r->body, r->body_len) == 0);
    data = b->data;
    len = b->len;
    on_stack = b->borrowed;
    if (on_stack) ghl_buffer_free(b); /* ex keeps no pointer into this frame; a large one is ex's until wiped */
    enter(ex);
    if (ok) lua_pushlstring(L, data, len); /* on out of memory, __gc still frees a large one */
    memset(data, 0, len);                  /* it holds the token */
    if (!on_stack) ghl_buffer_free(b);
    leave(L, ex);
    if (!ok) luaL_error(L, "ghl: out of memory");
    return 1;
}

/* "ghl:<scheme>:<host>:<port>:<verify|noverify|>": connections are shared
 * only between exchanges that would make the same one. */
static void push_pool_key(lua_State *L, const target *t, int verify) {
    char key[GHL_MAX_BASE_URL + 64], digits[24], *k = key;
    const char *scheme = t->https ? "ghl:https:" : "ghl:http:", *tls = t->https ? (verify ? "verify" : "noverify") : "",
               *port = format_number(digits, (size_t)t->port);
    memcpy(k, scheme, strlen(scheme));
    k += strlen(scheme);
    memcpy(k, t->host, t->host_len); /* within base_url, at most GHL_MAX_BASE_URL */
    k += t->host_len;
    *k++ = ':';
    memcpy(k, port, strlen(port));
    k += strlen(port);
    *k++ = ':';
    memcpy(k, tls, strlen(tls));
    k += strlen(tls);
    lua_pushlstring(L, key, (size_t)(k - key));
}

/* ex:target() -> scheme, host, port, server_name, pool_key, repeat_safe,
 * connect_timeout, timeout, request (what ex:request() gives): all a first
 * attempt needs, in one call */
static int exchange_target(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    target t;
    split_base_url(&ex->options, &t);
    enter(ex); /* t points into ex */
    lua_pushstring(L, t.https ? "https" : "http");
    lua_pushlstring(L, t.host, t.host_len);
    lua_pushinteger(L, (lua_Integer)t.port);
    if (t.host_len >= 2 && t.host[0] == '[')
        lua_pushlstring(L, t.host + 1, t.host_len - 2);
    else
        lua_pushlstring(L, t.host, t.host_len);
    push_pool_key(L, &t, ex->options.ssl_verify);
    lua_pushboolean(L, ex->request.endpoint->repeat_safe);
    lua_pushnumber(L, ex->options.connect_timeout);
    lua_pushnumber(L, ex->options.timeout);
    exchange_request(L); /* ex is at 1 */
    leave(L, ex);
    return 9;
}

/* ex:batch() -> concurrency, max_retry_delay (get_messages' settings) */
static int exchange_batch(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    lua_pushinteger(L, ex->options.concurrency);
    lua_pushnumber(L, ex->options.max_retry_delay);
    return 2;
}

/* ---- what came back ---- */

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

/* The row of failures[] for what, or -1. */
static int failure_row(const char *what) {
    int i, n = (int)(sizeof failures / sizeof failures[0]);
    for (i = 0; i < n; i++)
        if (strcmp(failures[i].what, what) == 0) return i;
    return -1;
}

/* Records the attempt's failure: row i of failures[], and its text with the secrets cut out. */
static void fail_attempt(ghl_exchange *ex, int i, const char *text) {
    ghl_response *r = &ex->response;
    r->failure = failures[i].failure;
    r->transport_code = failures[i].code;
    r->retryable = failures[i].retryable;
    r->unsent = failures[i].unsent;
    if (failures[i].code == 52 && ex->answered) r->transport_code = 18; /* CURLE_PARTIAL_FILE */
    snprintf(r->error, sizeof r->error, "%s", text);
    ghl_redact_string(r->error, sizeof r->error, &ex->secrets);
}

/* ex:fail(what, text): the attempt got no whole response. */
static int exchange_fail(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    const char *what = luaL_checkstring(L, 2);
    const char *text = luaL_optstring(L, 3, "");
    int i = failure_row(what);
    if (i < 0) luaL_error(L, "ghl: bad argument 'what' (unknown failure '%s')", what);
    fail_attempt(ex, i, text);
    return 0;
}

/* ex:feed(bytes) -> nil | true, keep | false */
static int exchange_feed(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    size_t len;
    const char *bytes = luaL_checklstring(L, 2, &len);
    ghl_http1_result res = ghl_http1_feed(&ex->reader, &ex->response, bytes, len);
    if (ex->reader.answered) ex->answered = 1;
    switch (res) {
    case GHL_HTTP1_MORE: return 0;
    case GHL_HTTP1_DONE:
        lua_pushboolean(L, 1);
        lua_pushboolean(L, ghl_http1_keep(&ex->reader));
        return 2;
    case GHL_HTTP1_BROKEN: fail_attempt(ex, failure_row("protocol"), ex->reader.why); break;
    default: /* too large: the response says so already */ break;
    }
    lua_pushboolean(L, 0);
    return 1;
}

/* ex:closed() -> true | false */
static int exchange_closed(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    if (ghl_http1_end(&ex->reader) == GHL_HTTP1_DONE) {
        lua_pushboolean(L, 1);
        return 1;
    }
    fail_attempt(ex, failure_row("closed"), ex->reader.why);
    lua_pushboolean(L, 0);
    return 1;
}

/* Pushes the exchange's three returns (ex is at 1 and stays there while
 * Lua code may run). */
static void push_result(lua_State *L, ghl_exchange *ex) {
    enter(ex);
    ghl_shape_push_answer(L, &ex->request, &ex->response, ex->attempts, ex->options.convert_enums, &ex->secrets);
    leave(L, ex); /* ex may be freed now */
}

/* ex:result() -> message, nil, info  or  nil, errmsg, info */
static int exchange_result(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    if (!ex->done) luaL_error(L, "ghl: result before next_attempt said the exchange is done");
    lua_settop(L, 1);
    push_result(L, ex);
    return 3;
}

/* ex:next_attempt([with_result]) -> seconds to wait before the next
 * attempt, or nil; with with_result, nil and ex:result()'s three returns
 * when done (one call less for a transport without a token function) */
static int exchange_next_attempt(lua_State *L) {
    ghl_exchange *ex = check_exchange(L);
    ghl_response *r = &ex->response;
    if (ex->done) luaL_error(L, "ghl: the exchange is done");
    if (!ex->answered && r->failure == GHL_FAIL_NONE)
        luaL_error(L, "ghl: next_attempt before the attempt got a status or a failure");
    ex->attempts++;
    if (ex->answered) {
        ex->last_ratelimit = r->ratelimit;
        ex->had_response = 1;
    }
    if (ex->attempts - ex->renewed <= ex->options.retries && ghl_retry_wanted(r, ex->request.endpoint->repeat_safe)) {
        double delay = ghl_retry_delay(r, ex->attempts, ex->options.max_retry_delay, &ex->rng);
        start_attempt(ex);
        lua_pushnumber(L, delay);
        return 1;
    }
    ex->done = 1;
    if (!lua_toboolean(L, 2)) return 0;
    lua_settop(L, 1);
    lua_pushnil(L);
    push_result(L, ex);
    return 4;
}

static int exchange_tostring(lua_State *L) {
    ghl_exchange *ex = *exchange_handle(L, 1);
    if (ex == NULL) {
        lua_pushliteral(L, "ghl.exchange (freed)");
        return 1;
    }
    lua_pushfstring(L, "ghl.exchange (%s, %d attempts%s): %p", ex->request.endpoint->name, ex->attempts,
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
    ghl_exchange *ex = *exchange_handle(L, 2);
    if (ex != NULL && ex->response.status > 0)
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
        {"target", exchange_target},
        {"request", exchange_request},
        {"batch", exchange_batch},
        {"feed", exchange_feed},
        {"closed", exchange_closed},
        {"fail", exchange_fail},
        {"next_attempt", exchange_next_attempt},
        {"result", exchange_result},
        {"set_token", exchange_set_token},
        {"wants_token", exchange_wants_token},
        {"renew", exchange_renew},
        {"token_answer", exchange_token_answer},
        {"attempts", exchange_attempts},
        {"rate_limit", exchange_rate_limit},
        {NULL, NULL},
    };
    static const luaL_Reg window_methods[] = {
        {"take", window_take},
        {"room", window_room},
        {NULL, NULL},
    };
    exchange_pool *pool = lua_newuserdata(L, sizeof *pool);
    pool->count = pool->closed = 0;
    lua_newtable(L);
    lua_pushcfunction(L, pool_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    luaL_newmetatable(L, GHL_EXCHANGE_MT);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, exchange_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, exchange_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, GHL_EXCHANGE_MT);
    lua_setfield(L, -2, "__metatable"); /* no Lua code can reach __gc (ex:release waits for a method in progress) */
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, exchange_release, 1);
    lua_setfield(L, -2, "release");
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, exchange_reuse, 1);
    lua_setfield(L, -2, "reuse");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, GHL_WINDOW_MT);
    lua_pushliteral(L, GHL_WINDOW_MT);
    lua_setfield(L, -2, "__metatable");
    lua_newtable(L);
    luaL_setfuncs(L, window_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_pushvalue(L, -1); /* the pool */
    lua_pushcclosure(L, exchange_new, 1);
    lua_setfield(L, -3, "_exchange");
    lua_pushcclosure(L, exchange_call, 1);
    lua_setfield(L, -2, "_exchange_call");
    lua_pushcfunction(L, window_new);
    lua_setfield(L, -2, "_window");
}
