#include "arguments.h"

#include <stdlib.h>
#include <string.h>

#include "encode.h"

/* Raises "ghl: bad argument '<name>' (table expected, got <type>)" unless
 * the value at idx is a table: the same words whichever function reads it. */
static void check_table(lua_State *L, int idx, const char *name) {
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "ghl: bad argument '%s' (table expected, got %s)", name, luaL_typename(L, idx));
}

/* Raises unless the table at idx holds each key of required ("a b "). */
static void check_required(lua_State *L, int idx, const char *required, const char *method, const char *what) {
    while (required != NULL && *required != '\0') {
        const char *end = strchr(required, ' ');
        lua_pushlstring(L, required, (size_t)(end - required));
        lua_pushvalue(L, -1);
        lua_rawget(L, idx);
        if (lua_isnil(L, -1)) luaL_error(L, "ghl: %s needs %s.%s", method, what, lua_tostring(L, -2));
        lua_pop(L, 2);
        required = end + 1;
    }
}

/* The page size a search asks for: query.limit, else the API's 20. */
static long page_size_of(lua_State *L, int query) {
    double n = 20;
    if (query == 0) return (long)n;
    lua_getfield(L, query, "limit");
    if (lua_type(L, -1) == LUA_TNUMBER)
        n = lua_tonumber(L, -1);
    else if (lua_type(L, -1) == LUA_TSTRING)
        n = strtod(lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
    if (!(n >= 0)) n = 0; /* NaN and below */
    return n > 1e9 ? 1000000000L : (long)n;
}

/* How many arguments a row's method takes after the client: its ids, a
 * query or a body, and the per-call options. */
static int row_arity(const ghl_endpoint *e) {
    int i, n = 1;
    for (i = 0; i < GHL_MAX_PATH_ARGS && e->id_names[i] != NULL; i++) n++;
    if (e->takes & GHL_TAKES_QUERY) n++;
    if (e->takes & GHL_TAKES_BODY) n++;
    return n;
}

int ghl_read_row_arguments(lua_State *L, const ghl_endpoint *e, int arg, ghl_request *r) {
    int i;
    lua_settop(L, arg + row_arity(e) - 1);
    r->endpoint = e;
    for (i = 0; i < GHL_MAX_PATH_ARGS && e->id_names[i] != NULL; i++)
        r->args[i] = ghl_check_named_id(L, arg++, e->id_names[i], &r->arg_len[i]);
    if (e->takes & GHL_TAKES_QUERY) {
        int query = arg++;
        if (lua_isnoneornil(L, query)) {
            lua_newtable(L); /* no query: as an empty one */
            check_required(L, lua_gettop(L), e->required, e->name, "query");
            lua_pop(L, 1);
            r->page_size = page_size_of(L, 0);
        } else {
            check_table(L, query, "query");
            check_required(L, query, e->required, e->name, "query");
            ghl_push_query(L, query, "query"); /* checks every value */
            r->query = lua_tolstring(L, -1, &r->query_len);
            r->page_size = page_size_of(L, query);
        }
    }
    if (e->takes & GHL_TAKES_BODY) {
        int body = arg++;
        check_table(L, body, "body");
        check_required(L, body, e->required, e->name, "body");
        ghl_push_json(L, body, "body");
        r->body = lua_tolstring(L, -1, &r->body_len);
    }
    return arg;
}

static const char *const request_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};

/* Whether c may not appear in a path, as itself or percent-decoded. */
static int bad_path_char(unsigned char c) {
    return c < 0x21 || c == 0x7f || c == '?' || c == '#' || c == '\\';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Raises unless path is one a request may take: starts with '/', at most
 * GHL_MAX_REQUEST_PATH bytes, no control character, space, '?', '#' or '\',
 * no "." or ".." segment, also once percent-decoded. */
static void check_request_path(lua_State *L, const char *path, size_t n) {
    size_t i, seglen = 0, dots = 0;
    if (n == 0 || path[0] != '/') luaL_error(L, "ghl: bad argument 'path' (must start with '/')");
    if (n > GHL_MAX_REQUEST_PATH)
        luaL_error(L, "ghl: bad argument 'path' (longer than %d bytes)", GHL_MAX_REQUEST_PATH);
    for (i = 1; i <= n; i++) {
        int c;
        if (i == n || path[i] == '/') {
            if (seglen == dots && (dots == 1 || dots == 2))
                luaL_error(L, "ghl: bad argument 'path' (a '.' or '..' segment)");
            seglen = dots = 0;
            continue;
        }
        seglen++;
        c = (unsigned char)path[i];
        if (c == '%' && i + 2 < n && hex_value(path[i + 1]) >= 0 && hex_value(path[i + 2]) >= 0) {
            c = hex_value(path[i + 1]) * 16 + hex_value(path[i + 2]);
            if (c == '/') luaL_error(L, "ghl: bad argument 'path' (an encoded '/')");
            i += 2;
        }
        if (bad_path_char((unsigned char)c))
            luaL_error(L, "ghl: bad argument 'path' (a space, control character, '?', '#' or '\\')");
        if (c == '.') dots++;
    }
}

/* Reads client:request's args table at idx into r (raw: own's unwrap); pushes what must stay
 * alive (query, body, version). */
static void read_request_args(lua_State *L, int idx, ghl_request *r, ghl_endpoint *own) {
    if (lua_isnoneornil(L, idx)) return;
    check_table(L, idx, "args");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k;
        lua_pop(L, 1);
        k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(k, "query") != 0 && strcmp(k, "json") != 0 && strcmp(k, "raw") != 0 && strcmp(k, "version") != 0)
            luaL_error(L, "ghl: bad argument 'args' (unknown key '%s')",
                       lua_type(L, -1) == LUA_TSTRING ? k : luaL_typename(L, -1));
    }
    lua_getfield(L, idx, "raw");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "ghl: bad argument 'args.raw' (boolean expected, got %s)", luaL_typename(L, -1));
    if (lua_toboolean(L, -1)) own->unwrap = GHL_UNWRAP_BYTES;
    lua_pop(L, 1);
    lua_getfield(L, idx, "query");
    if (!lua_isnil(L, -1)) {
        ghl_push_query(L, lua_gettop(L), "args.query");
        r->query = lua_tolstring(L, -1, &r->query_len);
        r->page_size = page_size_of(L, lua_gettop(L) - 1);
    }
    lua_getfield(L, idx, "json");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE)
            luaL_error(L, "ghl: bad argument 'args.json' (table expected, got %s)", luaL_typename(L, -1));
        ghl_push_json(L, lua_gettop(L), "args.json");
        r->body = lua_tolstring(L, -1, &r->body_len);
    }
    lua_getfield(L, idx, "version");
    if (!lua_isnil(L, -1)) {
        size_t n, i;
        const char *v;
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "ghl: bad argument 'args.version' (string expected, got %s)", luaL_typename(L, -1));
        v = lua_tolstring(L, -1, &n);
        for (i = 0; i < n; i++)
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                luaL_error(L, "ghl: bad argument 'args.version' (holds a control character)");
        if (n == 0) luaL_error(L, "ghl: bad argument 'args.version' (empty)");
        r->version = v;
    }
}

int ghl_read_request(lua_State *L, int arg, ghl_request *r, ghl_endpoint *own) {
    int m;
    size_t n;
    const char *method, *path;
    if (lua_type(L, arg) != LUA_TSTRING)
        luaL_error(L, "ghl: bad argument 'method' (string expected, got %s)", luaL_typename(L, arg));
    method = lua_tostring(L, arg);
    for (m = 0; request_methods[m] != NULL && strcmp(method, request_methods[m]) != 0; m++) {
    }
    if (request_methods[m] == NULL)
        luaL_error(L, "ghl: bad argument 'method' (GET, POST, PUT, PATCH or DELETE expected)");
    if (lua_type(L, arg + 1) != LUA_TSTRING)
        luaL_error(L, "ghl: bad argument 'path' (string expected, got %s)", luaL_typename(L, arg + 1));
    path = lua_tolstring(L, arg + 1, &n);
    check_request_path(L, path, n);
    own->name = "request";
    own->method = request_methods[m];
    own->repeat_safe = strcmp(own->method, "POST") != 0 && strcmp(own->method, "PATCH") != 0;
    own->unwrap = GHL_UNWRAP_ANY;
    own->accept_json = 1;
    r->endpoint = own;
    r->path = path;
    r->path_len = n;
    lua_settop(L, arg + 3);
    read_request_args(L, arg + 2, r, own);
    return arg + 3;
}

const ghl_endpoint *ghl_find_row(const char *name) {
    const ghl_endpoint *e;
    for (e = ghl_endpoints; e->name != NULL; e++)
        if (strcmp(e->name, name) == 0) return e;
    return NULL;
}

int ghl_read_call(lua_State *L, const char *name, int arg, ghl_request *r, ghl_endpoint *own) {
    const ghl_endpoint *e;
    if (strcmp(name, "get_message") == 0) {
        r->endpoint = &ghl_get_message_endpoint;
        r->args[0] = ghl_check_id(L, arg, &r->arg_len[0]);
        lua_settop(L, arg + 1);
        return arg + 1;
    }
    if (strcmp(name, "request") == 0) return ghl_read_request(L, arg, r, own);
    if ((e = ghl_find_row(name)) == NULL) luaL_error(L, "ghl: no method '%s'", name);
    return ghl_read_row_arguments(L, e, arg, r);
}

/* ---- ghl.oauth_token ---- */

static const char *const oauth_options[] = {"base_url",   "timeout", "connect_timeout", "retries",    "max_retry_delay",
                                            "ssl_verify", "cainfo",  "proxy",           "user_agent", NULL};

const char *const ghl_oauth_secrets[] = {"client_secret", "refresh_token", "code", "access_token", NULL};

void ghl_check_oauth_options(lua_State *L, int idx) {
    int i;
    if (lua_isnoneornil(L, idx)) return;
    check_table(L, idx, "opts");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        lua_pop(L, 1);
        for (i = 0; oauth_options[i] != NULL && strcmp(oauth_options[i], k) != 0; i++) {
        }
        if (oauth_options[i] == NULL)
            luaL_error(L, "ghl: option '%s' cannot be given to oauth_token", lua_type(L, -1) == LUA_TSTRING ? k : "?");
    }
}

void ghl_read_oauth_form(lua_State *L, int idx, ghl_request *r) {
    check_table(L, idx, "form");
    r->endpoint = &ghl_oauth_token_endpoint;
    ghl_push_query(L, idx, "form");
    r->body = lua_tolstring(L, -1, &r->body_len);
    r->body_type = "application/x-www-form-urlencoded";
}
