#include "options.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_STRING, K_SECRET, K_BASE_URL, K_SECONDS, K_DELAY, K_COUNT, K_CONCURRENCY, K_SIZE, K_BOOL } opt_kind;

typedef struct opt_row {
    const char *name;
    opt_kind kind;
    int scope;
    size_t offset;
} opt_row;

static const opt_row rows[] = {
#define GHL_OPTION_ROW(name, kind, scope, dflt) {#name, K_##kind, scope, offsetof(ghl_options, name)},
    GHL_OPTION_LIST(GHL_OPTION_ROW)
#undef GHL_OPTION_ROW
};

#define NROWS (sizeof rows / sizeof rows[0])
#define FIELD(o, row, type) ((type *)((char *)(o) + (row)->offset))

static int is_string_kind(opt_kind k) {
    return k == K_STRING || k == K_SECRET || k == K_BASE_URL;
}

void ghl_options_defaults(ghl_options *o) {
    memset(o, 0, sizeof *o);
#define GHL_OPTION_DEFAULT(name, kind, scope, dflt) o->name = dflt;
    GHL_OPTION_LIST(GHL_OPTION_DEFAULT)
#undef GHL_OPTION_DEFAULT
    o->base_url_len = strlen(o->base_url);
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

static int host_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

/* A path prefix character: unreserved, sub-delims, ':' '@' '%' and '/'. */
static int path_char(unsigned char c) {
    return host_char(c) || strchr("!$&'()*+,;=:@%/", c) != NULL;
}

/* base_url is scheme "://" host [":" port] [path prefix], nothing else (no
 * user info, query or fragment). Returns the length without trailing '/', or
 * raises. */
static size_t check_base_url(lua_State *L, const char *v, size_t n) {
    size_t i = 0, start, seg;
    if (n > GHL_MAX_BASE_URL) luaL_error(L, "ghl: option 'base_url' is longer than %d bytes", GHL_MAX_BASE_URL);
    if (n >= 7 && memcmp(v, "http://", 7) == 0)
        i = 7;
    else if (n >= 8 && memcmp(v, "https://", 8) == 0)
        i = 8;
    else
        luaL_error(L, "ghl: option 'base_url' must start with http:// or https://");
    start = i;
    if (i < n && v[i] == '[') { /* an IPv6 literal */
        while (i < n && v[i] != ']') {
            unsigned char c = (unsigned char)v[i];
            if (i > start &&
                !(c == ':' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                luaL_error(L, "ghl: option 'base_url' has a bad IPv6 address");
            i++;
        }
        if (i >= n || i == start + 1) luaL_error(L, "ghl: option 'base_url' has a bad IPv6 address");
        i++;
    } else {
        while (i < n && host_char((unsigned char)v[i])) i++;
        if (i == start) luaL_error(L, "ghl: option 'base_url' has no host");
    }
    if (i < n && v[i] == ':') {
        long port = 0;
        size_t digits = 0;
        for (i++; i < n && v[i] >= '0' && v[i] <= '9' && digits < 6; i++, digits++) port = port * 10 + (v[i] - '0');
        if (digits == 0 || port < 1 || port > 65535)
            luaL_error(L, "ghl: option 'base_url' has a bad port (1 to 65535)");
    }
    if (i < n && v[i] != '/')
        luaL_error(L, "ghl: option 'base_url' must be scheme://host[:port][/path] (no user, query or fragment)");
    /* the path prefix: no query, fragment, '.' or '..' segment */
    for (seg = i; i <= n; i++) {
        if (i == n || v[i] == '/') {
            size_t len = i - seg;
            if ((len == 2 && v[seg + 1] == '.') || (len == 3 && v[seg + 1] == '.' && v[seg + 2] == '.'))
                luaL_error(L, "ghl: option 'base_url' must not hold '.' or '..' segments");
            seg = i;
            continue;
        }
        if (!path_char((unsigned char)v[i]))
            luaL_error(L, "ghl: option 'base_url' must be scheme://host[:port][/path] (no user, query or fragment)");
    }
    while (n > start && v[n - 1] == '/') n--;
    return n;
}

static void read_one(lua_State *L, const opt_row *r, ghl_options *o) {
    int t = lua_type(L, -1);
    double d = 0;
    switch (r->kind) {
    case K_STRING:
    case K_SECRET:
    case K_BASE_URL: {
        size_t n;
        const char *v;
        if (t == LUA_TFUNCTION && strcmp(r->name, "token") == 0) { /* a token provider */
            o->token = NULL;
            o->token_fn = lua_gettop(L); /* where it stays, below the key */
            o->token_fn_id = lua_topointer(L, -1);
            return;
        }
        if (t != LUA_TSTRING)
            luaL_error(L, "ghl: option '%s' must be a string%s (got %s)", r->name,
                       strcmp(r->name, "token") == 0 ? " or a function" : "", luaL_typename(L, -1));
        v = lua_tolstring(L, -1, &n);
        /* no value goes into a message: it may be a secret */
        if (has_control_chars(v, n)) luaL_error(L, "ghl: option '%s' must not contain control characters", r->name);
        if (r->kind == K_BASE_URL) o->base_url_len = check_base_url(L, v, n);
        if (strcmp(r->name, "token") == 0) o->token_fn = 0, o->token_fn_id = NULL;
        *FIELD(o, r, const char *) = v;
        return;
    }
    case K_SECONDS:
    case K_DELAY:
        if (t != LUA_TNUMBER)
            luaL_error(L, "ghl: option '%s' must be a number (got %s)", r->name, luaL_typename(L, -1));
        d = lua_tonumber(L, -1);
        if (r->kind == K_SECONDS ? !(d > 0) : !(d >= 0))
            luaL_error(L, "ghl: option '%s' must be %s", r->name, r->kind == K_SECONDS ? "> 0" : ">= 0");
        if (d > 1e7) d = 1e7; /* beyond any wait that matters, and safe to turn into ms */
        *FIELD(o, r, double) = d;
        return;
    case K_COUNT:
        if (!integral(L, -1, &d) || d < 0 || d > 10)
            luaL_error(L, "ghl: option '%s' must be an integer from 0 to 10", r->name);
        *FIELD(o, r, int) = (int)d;
        return;
    case K_CONCURRENCY:
        if (!integral(L, -1, &d) || d < 1 || d > GHL_MAX_CONCURRENCY)
            luaL_error(L, "ghl: option '%s' must be an integer from 1 to %d", r->name, GHL_MAX_CONCURRENCY);
        *FIELD(o, r, int) = (int)d;
        return;
    case K_SIZE:
        if (!integral(L, -1, &d) || d < 1) luaL_error(L, "ghl: option '%s' must be an integer > 0", r->name);
        *FIELD(o, r, size_t) = (size_t)d;
        return;
    case K_BOOL:
        if (t != LUA_TBOOLEAN)
            luaL_error(L, "ghl: option '%s' must be a boolean (got %s)", r->name, luaL_typename(L, -1));
        *FIELD(o, r, int) = lua_toboolean(L, -1);
        return;
    }
}

static const opt_row *find_row(const char *key, size_t len) {
    size_t i;
    if (strlen(key) != len) return NULL; /* "token\0x" is no option */
    for (i = 0; i < NROWS; i++)
        if (strcmp(rows[i].name, key) == 0) return &rows[i];
    return NULL;
}

void ghl_options_read(lua_State *L, int idx, ghl_options *o, int scopes) {
    if (lua_isnoneornil(L, idx)) return;
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "ghl: options must be a table (got %s)", luaL_typename(L, idx));
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t len;
        const char *key;
        const opt_row *r;
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "ghl: option names must be strings");
        key = lua_tolstring(L, -2, &len);
        r = find_row(key, len);
        /* a key with a NUL byte is shown only up to it */
        if (r == NULL) luaL_error(L, "ghl: unknown option '%s'", key);
        if (!(r->scope & scopes)) luaL_error(L, "ghl: option '%s' cannot be given here", key);
        read_one(L, r, o);
        if (is_string_kind(r->kind)) {
            /* keep the string on the stack, below the key: o points into it,
             * and a finalizer could take it out of the caller's table */
            luaL_checkstack(L, 3, "ghl: too many options");
            lua_insert(L, -2);
            if (o->token_fn == lua_gettop(L)) o->token_fn--; /* the provider moved down too */
        } else {
            lua_pop(L, 1);
        }
    }
}

int ghl_token_valid(const char *s, size_t n) {
    size_t i;
    if (n == 0) return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f) return 0;
    return 1;
}

void ghl_options_require_token(lua_State *L, ghl_options *o) {
    const char *tok = o->token;
    if (o->token_fn) return; /* asked for when first needed */
    if (tok == NULL || tok[0] == '\0') tok = getenv("GHL_TOKEN");
    if (tok == NULL || tok[0] == '\0') luaL_error(L, "ghl: option 'token' is required (or set GHL_TOKEN)");
    if (!ghl_token_valid(tok, strlen(tok)))
        luaL_error(L, "ghl: option 'token' must not contain spaces or control characters");
    o->token = tok;
}

void ghl_options_push_key(lua_State *L, const ghl_options *o) {
    luaL_Buffer b;
    size_t i;
    luaL_buffinit(L, &b);
    for (i = 0; i < NROWS; i++) {
        const opt_row *r = &rows[i];
        if (r->scope != GHL_SCOPE_CLIENT) continue;
        if (is_string_kind(r->kind)) {
            const char *s = *FIELD(o, r, const char *);
            /* each string ends in a NUL; an absent one is a lone \1; a provider \2 and its identity */
            if (s == NULL && strcmp(r->name, "token") == 0 && o->token_fn_id != NULL) {
                luaL_addchar(&b, '\2');
                luaL_addlstring(&b, (const char *)&o->token_fn_id, sizeof o->token_fn_id);
            } else if (s == NULL)
                luaL_addchar(&b, '\1');
            else
                luaL_addlstring(&b, s, r->kind == K_BASE_URL ? o->base_url_len : strlen(s));
            luaL_addchar(&b, '\0');
        } else if (r->kind == K_SIZE) {
            size_t v = *FIELD(o, r, size_t);
            luaL_addlstring(&b, (const char *)&v, sizeof v);
        } else if (r->kind == K_SECONDS || r->kind == K_DELAY) {
            double v = *FIELD(o, r, double);
            luaL_addlstring(&b, (const char *)&v, sizeof v);
        } else {
            int v = *FIELD(o, r, int);
            luaL_addlstring(&b, (const char *)&v, sizeof v);
        }
    }
    luaL_pushresult(&b);
}

int ghl_options_own(ghl_options *o, char *store, size_t store_size, size_t *store_used) {
    size_t i, used = store_used != NULL ? *store_used : 0;
    int ok = 1;
    for (i = 0; i < NROWS; i++) {
        const char **field = FIELD(o, &rows[i], const char *);
        size_t n;
        char *copy = NULL;
        if (!is_string_kind(rows[i].kind) || *field == NULL) continue;
        n = rows[i].kind == K_BASE_URL ? o->base_url_len : strlen(*field);
        if (store != NULL && n + 1 <= store_size - used) {
            copy = store + used;
            used += n + 1;
        } else if (ok) {
            copy = malloc(n + 1);
        }
        if (copy != NULL) {
            memcpy(copy, *field, n);
            copy[n] = '\0';
        } else {
            ok = 0;
        }
        *field = copy; /* NULL after a failure: ghl_options_free skips it */
    }
    if (store_used != NULL) *store_used = used;
    return ok ? 0 : -1;
}

int ghl_in_store(const char *p, const char *store, size_t store_size) {
    /* compared as addresses: p need not point into store */
    return store != NULL && (size_t)p - (size_t)store < store_size;
}

void ghl_options_free(ghl_options *o, const char *store, size_t store_size) {
    size_t i;
    for (i = 0; i < NROWS; i++) {
        char **field = FIELD(o, &rows[i], char *);
        if (!is_string_kind(rows[i].kind) || *field == NULL) continue;
        if (rows[i].kind == K_SECRET) memset(*field, 0, strlen(*field));
        if (!ghl_in_store(*field, store, store_size)) free(*field);
        *field = NULL;
    }
}

/* [A-Za-z0-9_-] */
static const unsigned char id_chars[256] = {
    ['-'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1,
    ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

const char *ghl_check_named_id(lua_State *L, int idx, const char *name, size_t *len) {
    size_t n, i;
    const char *id;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "ghl: bad argument '%s' (string expected, got %s)", name, luaL_typename(L, idx));
    id = lua_tolstring(L, idx, &n);
    if (n == 0 || n > GHL_MAX_ID_LEN)
        luaL_error(L, "ghl: bad argument '%s' (must be 1 to %d characters)", name, GHL_MAX_ID_LEN);
    for (i = 0; i < n; i++)
        if (!id_chars[(unsigned char)id[i]])
            luaL_error(L, "ghl: bad argument '%s' (only A-Z, a-z, 0-9, '_' and '-' are allowed)", name);
    if (len != NULL) *len = n;
    return id;
}

const char *ghl_check_id(lua_State *L, int idx, size_t *len) {
    return ghl_check_named_id(L, idx, "id", len);
}

long ghl_ms(double seconds) {
    double ms = ceil(seconds * 1000.0);
    return ms < 1 ? 1 : (long)ms;
}
