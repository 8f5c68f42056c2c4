#include "options.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STRING, T_SECONDS, T_SECONDS_OR_ZERO, T_COUNT, T_SIZE, T_BOOL, T_CONCURRENCY } opt_type;

typedef struct opt_spec {
    const char *name;
    opt_type type;
    int scope; /* GHL_OPT_* that may set it */
    size_t offset;
} opt_spec;

#define ALL_SCOPES (GHL_OPT_CLIENT | GHL_OPT_PER_CALL | GHL_OPT_BATCH)
#define AT(field) offsetof(ghl_options, field)

static const opt_spec specs[] = {
    {"token", T_STRING, GHL_OPT_CLIENT, AT(token)},
    {"base_url", T_STRING, GHL_OPT_CLIENT, AT(base_url)},
    {"version", T_STRING, GHL_OPT_CLIENT, AT(version)},
    {"timeout", T_SECONDS, ALL_SCOPES, AT(timeout)},
    {"connect_timeout", T_SECONDS, ALL_SCOPES, AT(connect_timeout)},
    {"retries", T_COUNT, ALL_SCOPES, AT(retries)},
    {"max_retry_delay", T_SECONDS_OR_ZERO, GHL_OPT_CLIENT, AT(max_retry_delay)},
    {"ssl_verify", T_BOOL, GHL_OPT_CLIENT, AT(ssl_verify)},
    {"cainfo", T_STRING, GHL_OPT_CLIENT, AT(cainfo)},
    {"proxy", T_STRING, GHL_OPT_CLIENT, AT(proxy)},
    {"user_agent", T_STRING, GHL_OPT_CLIENT, AT(user_agent)},
    {"max_body_size", T_SIZE, GHL_OPT_CLIENT, AT(max_body_size)},
    {"convert_enums", T_BOOL, GHL_OPT_CLIENT, AT(convert_enums)},
    {"concurrency", T_CONCURRENCY, GHL_OPT_BATCH, AT(concurrency)},
};

void ghl_options_defaults(ghl_options *o) {
    memset(o, 0, sizeof *o);
    o->base_url = GHL_BASE_URL;
    o->base_url_len = strlen(GHL_BASE_URL);
    o->version = GHL_API_VERSION;
    o->user_agent = GHL_USER_AGENT;
    o->timeout = 30;
    o->connect_timeout = 10;
    o->retries = 2;
    o->max_retry_delay = 30;
    o->concurrency = 8;
    o->max_body_size = 8 * 1024 * 1024;
    o->ssl_verify = 1;
    o->convert_enums = 1;
}

static int has_control_chars(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f) return 1;
    return 0;
}

/* An integer-valued number, on every Lua version. */
static int integral(lua_State *L, int idx, double *out) {
    double d;
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
    d = lua_tonumber(L, idx);
    *out = d;
    return d == floor(d) && fabs(d) < 9007199254740992.0;
}

static void read_one(lua_State *L, const opt_spec *s, ghl_options *o) {
    void *field = (char *)o + s->offset;
    int t = lua_type(L, -1);
    double d = 0;
    switch (s->type) {
    case T_STRING: {
        size_t n;
        const char *v;
        if (t != LUA_TSTRING) luaL_error(L, "ghl: option '%s' must be a string (got %s)", s->name, luaL_typename(L, -1));
        v = lua_tolstring(L, -1, &n);
        /* the token's value never goes into a message */
        if (has_control_chars(v, n) || strlen(v) != n)
            luaL_error(L, "ghl: option '%s' must not contain control characters", s->name);
        *(const char **)field = v;
        if (strcmp(s->name, "base_url") == 0) {
            if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
                luaL_error(L, "ghl: option 'base_url' must start with http:// or https://");
            while (n > 0 && v[n - 1] == '/') n--;
            o->base_url_len = n;
        }
        return;
    }
    case T_SECONDS:
    case T_SECONDS_OR_ZERO:
        if (t != LUA_TNUMBER) luaL_error(L, "ghl: option '%s' must be a number (got %s)", s->name, luaL_typename(L, -1));
        d = lua_tonumber(L, -1);
        if (s->type == T_SECONDS ? !(d > 0) : !(d >= 0))
            luaL_error(L, "ghl: option '%s' must be %s", s->name, s->type == T_SECONDS ? "> 0" : ">= 0");
        if (d > 1e7) d = 1e7; /* beyond any wait that matters, and safe to turn into ms */
        *(double *)field = d;
        return;
    case T_COUNT:
        if (!integral(L, -1, &d) || d < 0 || d > 10)
            luaL_error(L, "ghl: option '%s' must be an integer from 0 to 10", s->name);
        *(int *)field = (int)d;
        return;
    case T_CONCURRENCY:
        if (!integral(L, -1, &d) || d < 1 || d > GHL_MAX_CONCURRENCY)
            luaL_error(L, "ghl: option '%s' must be an integer from 1 to %d", s->name,
                       GHL_MAX_CONCURRENCY);
        *(int *)field = (int)d;
        return;
    case T_SIZE:
        if (!integral(L, -1, &d) || d < 1)
            luaL_error(L, "ghl: option '%s' must be an integer > 0", s->name);
        *(size_t *)field = (size_t)d;
        return;
    case T_BOOL:
        if (t != LUA_TBOOLEAN) luaL_error(L, "ghl: option '%s' must be a boolean (got %s)", s->name, luaL_typename(L, -1));
        *(int *)field = lua_toboolean(L, -1);
        return;
    }
}

void ghl_options_read(lua_State *L, int idx, ghl_options *o, int allowed) {
    size_t i, nspecs = sizeof specs / sizeof specs[0];
    if (!lua_isnoneornil(L, idx)) {
        if (lua_type(L, idx) != LUA_TTABLE)
            luaL_error(L, "ghl: options must be a table (got %s)", luaL_typename(L, idx));
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            const char *key;
            const opt_spec *s = NULL;
            if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "ghl: option names must be strings");
            key = lua_tostring(L, -2);
            for (i = 0; i < nspecs && s == NULL; i++)
                if (strcmp(specs[i].name, key) == 0) s = &specs[i];
            if (s == NULL || !(s->scope & allowed)) {
                if (s != NULL) luaL_error(L, "ghl: option '%s' cannot be given here", key);
                luaL_error(L, "ghl: unknown option '%s'", key);
            }
            read_one(L, s, o);
            lua_pop(L, 1);
        }
    }
    if (allowed & GHL_OPT_CLIENT) {
        const char *tok = o->token;
        size_t n;
        if (tok == NULL) tok = getenv("GHL_TOKEN");
        if (tok == NULL || tok[0] == '\0')
            luaL_error(L, "ghl: option 'token' is required (or set GHL_TOKEN)");
        for (n = 0; tok[n] != '\0'; n++)
            if ((unsigned char)tok[n] <= 0x20 || (unsigned char)tok[n] == 0x7f)
                luaL_error(L, "ghl: option 'token' must not contain spaces or control characters");
        o->token = tok;
    }
}

const char *ghl_check_id(lua_State *L, int idx, size_t *len) {
    size_t n, i;
    const char *id;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "ghl: bad argument 'id' (string expected, got %s)", luaL_typename(L, idx));
    id = lua_tolstring(L, idx, &n);
    if (n == 0 || n > GHL_MAX_ID_LEN)
        luaL_error(L, "ghl: bad argument 'id' (must be 1 to %d characters)", GHL_MAX_ID_LEN);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            luaL_error(L, "ghl: bad argument 'id' (only A-Z, a-z, 0-9, '_' and '-' are allowed)");
    }
    if (len != NULL) *len = n;
    return id;
}

long ghl_ms(double seconds) {
    double ms = ceil(seconds * 1000.0);
    return ms < 1 ? 1 : (long)ms;
}
