#include "client.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "retry.h"

#define REG_CACHE "ghl.default_clients"
#define CACHE_MAX 16

double ghl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *copy_string(const char *s) {
    char *c;
    size_t n;
    if (s == NULL) return NULL;
    n = strlen(s) + 1;
    c = malloc(n);
    if (c != NULL) memcpy(c, s, n);
    return c;
}

static void release(ghl_client *c) {
    if (c->closed) return;
    c->closed = 1;
    ghl_batch_release(c);
    ghl_transfer_cleanup(&c->transfer);
    curl_slist_free_all(c->config.headers);
    free((char *)c->config.user_agent);
    free((char *)c->config.cainfo);
    free((char *)c->config.proxy);
    free(c->url);
    memset(&c->config, 0, sizeof c->config);
    c->url = NULL;
}

/* Appends "Name: value" to the header list; NULL when memory runs out
 * (the old list is then freed). */
static struct curl_slist *add_header(struct curl_slist *list, const char *name,
                                     const char *value, int *ok) {
    struct curl_slist *grown;
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line == NULL) {
        *ok = 0;
        return list;
    }
    strcpy(line, name);
    strcat(line, ": ");
    strcat(line, value);
    grown = curl_slist_append(list, line);
    /* the Authorization line holds the token: wipe the scratch copy */
    memset(line, 0, n);
    free(line);
    if (grown == NULL) *ok = 0;
    return grown ? grown : list;
}

ghl_client *ghl_client_new(lua_State *L, const ghl_options *o) {
    int ok = 1;
    char *auth;
    ghl_client *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->closed = 1; /* nothing to free until everything below is in place */
    luaL_setmetatable(L, GHL_CLIENT_MT);

    c->base_len = o->base_url_len;
    c->url = malloc(o->base_url_len + sizeof GHL_MESSAGE_PATH + GHL_MAX_ID_LEN + 1);
    c->config.user_agent = copy_string(o->user_agent);
    c->config.cainfo = copy_string(o->cainfo);
    c->config.proxy = copy_string(o->proxy);
    auth = malloc(strlen(o->token) + sizeof "Bearer ");
    if (auth != NULL) {
        strcpy(auth, "Bearer ");
        strcat(auth, o->token);
        c->config.headers = add_header(NULL, "Authorization", auth, &ok);
        memset(auth, 0, strlen(auth));
        free(auth);
    } else {
        ok = 0;
    }
    c->config.headers = add_header(c->config.headers, "Version", o->version, &ok);
    c->config.headers = add_header(c->config.headers, "Accept", "application/json", &ok);
    c->config.ssl_verify = o->ssl_verify;
    c->config.https = strncmp(o->base_url, "https://", 8) == 0;
    c->config.max_body = o->max_body_size;
    c->closed = 0;
    if (!ok || c->url == NULL || c->config.user_agent == NULL ||
        (o->cainfo && !c->config.cainfo) || (o->proxy && !c->config.proxy)) {
        release(c);
        luaL_error(L, "ghl: out of memory");
    }
    if (ghl_transfer_init(&c->transfer, &c->config) != 0) {
        release(c);
        luaL_error(L, "ghl: libcurl could not make a handle");
    }
    memcpy(c->url, o->base_url, o->base_url_len);
    memcpy(c->url + c->base_len, GHL_MESSAGE_PATH, sizeof GHL_MESSAGE_PATH);
    c->timeout = o->timeout;
    c->connect_timeout = o->connect_timeout;
    c->max_retry_delay = o->max_retry_delay;
    c->retries = o->retries;
    c->convert_enums = o->convert_enums;
    c->rng = (unsigned long)time(NULL) ^ (unsigned long)(size_t)c;
    return c;
}

ghl_client *ghl_client_check(lua_State *L, int idx) {
    ghl_client *c = luaL_checkudata(L, idx, GHL_CLIENT_MT);
    if (c->closed) luaL_error(L, "ghl: the client is closed");
    return c;
}

const char *ghl_client_url(ghl_client *c, const char *id, size_t idlen) {
    char *at = c->url + c->base_len + sizeof GHL_MESSAGE_PATH - 1;
    memcpy(at, id, idlen);
    at[idlen] = '\0';
    return c->url;
}

void ghl_client_push_outcome(lua_State *L, ghl_client *c, ghl_transfer *t, CURLcode code,
                             int attempts, const char *path) {
    ghl_outcome o;
    int responded = t->status > 0;
    /* the last response's figures; one without the headers clears them */
    if (responded) {
        c->last_ratelimit = t->ratelimit;
        c->last_ratelimit_at = ghl_now();
    }
    if (t->out_of_memory) luaL_error(L, "ghl: out of memory");
    memset(&o, 0, sizeof o);
    o.code = code;
    o.too_large = t->too_large;
    o.max_body = t->max_body;
    o.status = t->status;
    o.body = t->body.data;
    o.body_len = t->body.len;
    o.curl_error = t->error;
    o.ratelimit = responded ? &t->ratelimit : NULL;
    o.retry_after = t->retry_after;
    o.attempts = attempts;
    o.path = path;
    o.convert_enums = c->convert_enums;
    ghl_push_outcome(L, &o);
}

/* The request with retries; pushes the three returns. */
static int fetch(lua_State *L, ghl_client *c, const char *id, size_t idlen,
                 const ghl_options *call) {
    const char *url = ghl_client_url(c, id, idlen);
    const char *path = url + c->base_len;
    long timeout_ms = ghl_ms(call->timeout), connect_ms = ghl_ms(call->connect_timeout);
    int attempt = 0;
    CURLcode code;
    for (;;) {
        attempt++;
        code = ghl_transfer_perform(&c->transfer, url, timeout_ms, connect_ms);
        if (attempt > call->retries || !ghl_retry_wanted(code, &c->transfer)) break;
        ghl_sleep(ghl_retry_delay(&c->transfer, attempt, c->max_retry_delay, &c->rng));
    }
    ghl_client_push_outcome(L, c, &c->transfer, code, attempt, path);
    return 3;
}

void ghl_client_call_options(lua_State *L, ghl_client *c, int idx, ghl_options *o, int allowed) {
    ghl_options_defaults(o);
    o->timeout = c->timeout;
    o->connect_timeout = c->connect_timeout;
    o->retries = c->retries;
    ghl_options_read(L, idx, o, allowed);
}

/* client:get_message(id [, opts]) */
static int client_get_message(lua_State *L) {
    ghl_client *c = ghl_client_check(L, 1);
    size_t idlen;
    const char *id = ghl_check_id(L, 2, &idlen);
    ghl_options call;
    ghl_client_call_options(L, c, 3, &call, GHL_OPT_PER_CALL);
    return fetch(L, c, id, idlen, &call);
}

/* client:rate_limit() */
static int client_rate_limit(lua_State *L) {
    ghl_client *c = ghl_client_check(L, 1);
    ghl_push_ratelimit(L, &c->last_ratelimit);
    return 1;
}

/* client:close(), __gc and __close: one idempotent function. */
static int client_close(lua_State *L) {
    ghl_client *c = luaL_checkudata(L, 1, GHL_CLIENT_MT);
    release(c);
    return 0;
}

static int client_tostring(lua_State *L) {
    ghl_client *c = luaL_checkudata(L, 1, GHL_CLIENT_MT);
    if (c->closed) {
        lua_pushfstring(L, "ghl.client (closed): %p", (void *)c);
    } else {
        lua_pushlstring(L, c->url, c->base_len);
        lua_pushfstring(L, "ghl.client (%s): %p", lua_tostring(L, -1), (void *)c);
    }
    return 1;
}

/* ghl.new(opts) */
static int ghl_new(lua_State *L) {
    ghl_options o;
    ghl_options_defaults(&o);
    ghl_options_read(L, 1, &o, GHL_OPT_CLIENT | GHL_OPT_PER_CALL);
    ghl_client_new(L, &o);
    return 1;
}

/* Pushes a string that is the same for equal options and differs otherwise:
 * the numbers' bytes, then each string option ended by a NUL (absent: \1). */
static void push_cache_key(lua_State *L, const ghl_options *o) {
    struct {
        double timeout, connect_timeout, max_retry_delay, max_body_size;
        int retries, ssl_verify, convert_enums;
    } numbers;
    const char *strings[5];
    luaL_Buffer b;
    int i;
    memset(&numbers, 0, sizeof numbers); /* padding bytes too */
    numbers.timeout = o->timeout;
    numbers.connect_timeout = o->connect_timeout;
    numbers.max_retry_delay = o->max_retry_delay;
    numbers.max_body_size = (double)o->max_body_size;
    numbers.retries = o->retries;
    numbers.ssl_verify = o->ssl_verify;
    numbers.convert_enums = o->convert_enums;
    strings[0] = o->token;
    strings[1] = o->version;
    strings[2] = o->user_agent;
    strings[3] = o->cainfo;
    strings[4] = o->proxy;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, (const char *)&numbers, sizeof numbers);
    luaL_addlstring(&b, o->base_url, o->base_url_len);
    luaL_addchar(&b, '\0');
    for (i = 0; i < (int)(sizeof strings / sizeof strings[0]); i++) {
        if (strings[i] != NULL) luaL_addstring(&b, strings[i]);
        else luaL_addchar(&b, '\1');
        luaL_addchar(&b, '\0');
    }
    luaL_pushresult(&b);
}

/* Pushes a new, empty cache table, now the registry's; the clients of the
 * one it replaces are collected with it. */
static void push_new_cache(lua_State *L) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_CACHE);
}

/* The per-state client that ghl.get_message uses for these options, so a
 * loop of calls keeps its connection. Kept in the registry (freed with the
 * state), at most CACHE_MAX of them; the table's [0] counts them. */
static ghl_client *default_client(lua_State *L, const ghl_options *o) {
    ghl_client *c;
    int cache;
    lua_Integer n;
    lua_getfield(L, LUA_REGISTRYINDEX, REG_CACHE);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        push_new_cache(L);
    }
    cache = lua_gettop(L);
    push_cache_key(L, o);
    lua_pushvalue(L, -1);
    lua_rawget(L, cache);
    c = lua_touserdata(L, -1);
    if (c == NULL || c->closed) {
        lua_pop(L, 1);
        lua_rawgeti(L, cache, 0);
        n = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (n >= CACHE_MAX) { /* start afresh */
            push_new_cache(L);
            lua_replace(L, cache);
            n = 0;
        }
        c = ghl_client_new(L, o);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, cache);
        lua_pushinteger(L, n + 1);
        lua_rawseti(L, cache, 0);
    }
    lua_replace(L, cache); /* keep the client on the stack while it works */
    lua_pop(L, 1);
    return c;
}

/* ghl.get_message(id [, opts]) */
static int ghl_get_message(lua_State *L) {
    size_t idlen;
    const char *id = ghl_check_id(L, 1, &idlen);
    ghl_options o;
    ghl_client *c;
    ghl_options_defaults(&o);
    ghl_options_read(L, 2, &o, GHL_OPT_CLIENT | GHL_OPT_PER_CALL);
    c = default_client(L, &o);
    return fetch(L, c, id, idlen, &o);
}

/* ghl.get_message_request(id [, opts]) */
static int ghl_get_message_request(lua_State *L) {
    size_t idlen;
    const char *id = ghl_check_id(L, 1, &idlen);
    ghl_options o;
    ghl_options_defaults(&o);
    ghl_options_read(L, 2, &o, GHL_OPT_CLIENT | GHL_OPT_PER_CALL);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "GET");
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, o.base_url, o.base_url_len);
    lua_pushliteral(L, GHL_MESSAGE_PATH);
    lua_pushlstring(L, id, idlen);
    lua_concat(L, 3);
    lua_setfield(L, -2, "url");
    lua_createtable(L, 0, 5);
    lua_pushfstring(L, "Bearer %s", o.token);
    lua_setfield(L, -2, "Authorization");
    lua_pushstring(L, o.version);
    lua_setfield(L, -2, "Version");
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "Accept");
    lua_pushstring(L, o.user_agent);
    lua_setfield(L, -2, "User-Agent");
    lua_pushliteral(L, "gzip, deflate");
    lua_setfield(L, -2, "Accept-Encoding");
    lua_setfield(L, -2, "headers");
    return 1;
}

void ghl_client_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"get_message", client_get_message},
        {"get_messages", ghl_client_get_messages},
        {"rate_limit", client_rate_limit},
        {"close", client_close},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", client_close},
        {"__tostring", client_tostring},
#if LUA_VERSION_NUM >= 504
        {"__close", client_close},
#endif
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"new", ghl_new},
        {"get_message", ghl_get_message},
        {"get_message_request", ghl_get_message_request},
        {NULL, NULL},
    };
    luaL_newmetatable(L, GHL_CLIENT_MT);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, GHL_CLIENT_MT);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
}
