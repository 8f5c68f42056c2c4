#include "encode.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "buffer.h"
#include "shape.h"

#define SCRATCH_MT "ghl.scratch"
#define MAX_DEPTH 64
#define MAX_KEY_SHOWN 60

/* ---- a byte buffer owned by a userdata: a raise anywhere frees it ---- */

typedef struct scratch {
    ghl_buffer buf;
} scratch;

static int scratch_gc(lua_State *L) {
    scratch *s = luaL_checkudata(L, 1, SCRATCH_MT);
    ghl_buffer_free(&s->buf);
    return 0;
}

static scratch *push_scratch(lua_State *L) {
    scratch *s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    if (luaL_newmetatable(L, SCRATCH_MT)) {
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return s;
}

static void put(lua_State *L, scratch *s, const char *p, size_t n) {
    if (ghl_buffer_append(&s->buf, p, n) != 0) luaL_error(L, "ghl: out of memory");
}

#define PUT_LITERAL(L, s, lit) put((L), (s), (lit), sizeof(lit) - 1)

/* Replaces the scratch userdata at idx by the string it holds. */
static void scratch_to_string(lua_State *L, int idx, scratch *s) {
    lua_pushlstring(L, s->buf.len ? s->buf.data : "", s->buf.len);
    lua_replace(L, idx);
    ghl_buffer_free(&s->buf);
}

/* ---- numbers ---- */

/* Whether the number at idx is integral (and so written without a
 * fraction); *v gets its value. */
static int integral(lua_State *L, int idx, double *v) {
    *v = lua_tonumber(L, idx);
#if GHL_HAS_INTEGERS
    if (lua_isinteger(L, idx)) return 1;
#endif
    return *v == floor(*v) && fabs(*v) < 9.2e18;
}

static void put_number(lua_State *L, scratch *s, int idx) {
    char num[40];
    double v;
    if (integral(L, idx, &v)) {
#if GHL_HAS_INTEGERS
        if (lua_isinteger(L, idx))
            snprintf(num, sizeof num, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        else
#endif
            snprintf(num, sizeof num, "%.0f", v);
    } else {
        snprintf(num, sizeof num, "%.17g", v);
    }
    put(L, s, num, strlen(num));
}

/* ---- query strings ---- */

static void put_percent_encoded(lua_State *L, scratch *s, const char *p, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            put(L, s, (const char *)&c, 1);
        } else {
            char e[3];
            e[0] = '%', e[1] = hex[c >> 4], e[2] = hex[c & 15];
            put(L, s, e, 3);
        }
    }
}

static int bad_query_value(lua_State *L, const char *what, const char *key, const char *why) {
    return luaL_error(L, "ghl: bad %s value for '%s' (%s)", what, key, why);
}

/* Appends one scalar (string, integral number, boolean), encoded. */
static void put_query_scalar(lua_State *L, scratch *s, int idx, const char *what, const char *key) {
    size_t len;
    const char *p;
    double v;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        p = lua_tolstring(L, idx, &len);
        put_percent_encoded(L, s, p, len);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            PUT_LITERAL(L, s, "true");
        else
            PUT_LITERAL(L, s, "false");
        return;
    case LUA_TNUMBER:
        if (!integral(L, idx, &v)) bad_query_value(L, what, key, "a number with a fraction");
        put_number(L, s, idx);
        return;
    case LUA_TTABLE: bad_query_value(L, what, key, "a nested table"); return;
    default: bad_query_value(L, what, key, luaL_typename(L, idx));
    }
}

/* Appends the value at idx: a scalar, or a sequence of them comma-joined. */
static void put_query_value(lua_State *L, scratch *s, int idx, const char *what, const char *key) {
    int i, n;
    if (lua_type(L, idx) != LUA_TTABLE) {
        put_query_scalar(L, s, idx, what, key);
        return;
    }
    n = (int)lua_rawlen(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* a sequence: keys 1..n and nothing else */
        double k;
        int ok = lua_type(L, -2) == LUA_TNUMBER && integral(L, -2, &k) && k >= 1 && k <= n;
        lua_pop(L, 1);
        if (!ok) bad_query_value(L, what, key, "a table that is not a sequence");
    }
    for (i = 1; i <= n; i++) {
        if (i > 1) PUT_LITERAL(L, s, ",");
        lua_rawgeti(L, idx, i);
        put_query_scalar(L, s, lua_gettop(L), what, key);
        lua_pop(L, 1);
    }
}

/* Whether the string at a sorts before the one at b, bytewise. */
static int key_before(lua_State *L, int a, int b) {
    size_t la, lb;
    const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
    int c = memcmp(sa, sb, la < lb ? la : lb);
    return c < 0 || (c == 0 && la < lb);
}

/* Pushes a sequence of the (string) keys of the table at idx, sorted;
 * returns how many. */
static int push_sorted_keys(lua_State *L, int idx, const char *what) {
    int keys, n = 0, i, j;
    lua_newtable(L);
    keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            const char *type = luaL_typename(L, -1), *shown = type;
            if (lua_type(L, -1) == LUA_TBOOLEAN) shown = lua_toboolean(L, -1) ? "true" : "false";
            if (lua_type(L, -1) == LUA_TNUMBER) {
                lua_pushvalue(L, -1);
                shown = lua_tostring(L, -1); /* the copy becomes the text */
            }
            luaL_error(L, "ghl: bad %s key '%s' (a string expected, got %s)", what, shown, type);
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, ++n);
    }
    for (i = 2; i <= n; i++) { /* insertion sort: a query has a handful of keys */
        lua_rawgeti(L, keys, i);
        for (j = i - 1; j >= 1; j--) {
            lua_rawgeti(L, keys, j);
            if (!key_before(L, -2, -1)) {
                lua_pop(L, 1);
                break;
            }
            lua_rawseti(L, keys, j + 1);
        }
        lua_rawseti(L, keys, j + 1);
    }
    return n;
}

void ghl_push_query(lua_State *L, int idx, const char *what) {
    int keys, n, i, out;
    scratch *s;
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "ghl: bad argument '%s' (a table expected, got %s)", what, luaL_typename(L, idx));
    luaL_checkstack(L, 8, "ghl");
    s = push_scratch(L);
    out = lua_gettop(L);
    n = push_sorted_keys(L, idx, what);
    keys = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *name;
        if (i > 1) PUT_LITERAL(L, s, "&");
        lua_rawgeti(L, keys, i);
        name = lua_tolstring(L, -1, &len);
        put_percent_encoded(L, s, name, len);
        PUT_LITERAL(L, s, "=");
        lua_rawget(L, idx);
        put_query_value(L, s, lua_gettop(L), what, name);
        lua_pop(L, 1);
    }
    lua_settop(L, out);
    scratch_to_string(L, out, s);
}

/* ---- JSON ---- */

/* Where a value is, for errors: "body.meta.list[2]". */
typedef struct json_path {
    const struct json_path *up;
    int key; /* stack index of the string key; 0: an array element */
    int index;
} json_path;

static void push_path(lua_State *L, const json_path *p, const char *what) {
    if (p == NULL) {
        lua_pushstring(L, what);
        return;
    }
    push_path(L, p->up, what);
    if (p->key != 0) {
        size_t len;
        const char *k = lua_tolstring(L, p->key, &len);
        lua_pushliteral(L, ".");
        lua_pushlstring(L, k, len > MAX_KEY_SHOWN ? MAX_KEY_SHOWN : len);
        lua_concat(L, 3);
    } else {
        lua_pushfstring(L, "[%d]", p->index);
        lua_concat(L, 2);
    }
}

static int bad_json(lua_State *L, const json_path *p, const char *what, const char *why) {
    push_path(L, p, what);
    return luaL_error(L, "ghl: bad value at '%s' (%s)", lua_tostring(L, -1), why);
}

static void put_json_string(lua_State *L, scratch *s, int idx, const json_path *p, const char *what) {
    static const char hex[] = "0123456789abcdef";
    size_t i, n, from = 0;
    const char *str = lua_tolstring(L, idx, &n);
    if (!ghl_utf8_valid(str, n)) bad_json(L, p, what, "a string that is not valid UTF-8");
    PUT_LITERAL(L, s, "\"");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)str[i];
        char e[6];
        size_t elen = 2;
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) continue;
        put(L, s, str + from, i - from);
        from = i + 1;
        e[0] = '\\';
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default: e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15]; elen = 6;
        }
        put(L, s, e, elen);
    }
    put(L, s, str + from, n - from);
    PUT_LITERAL(L, s, "\"");
}

/* Whether the table at idx is an array (keys 1..n, n > 0); *n gets n. An
 * empty table is an object, unless it carries lua-cjson's array_mt or
 * empty_array_mt (OpenResty's cjson). Mixed or other keys raise. */
static int is_array(lua_State *L, int idx, int *n, const json_path *p, const char *what) {
    int count = 0, strings = 0;
    double max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        double k;
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_type(L, -1) == LUA_TNUMBER && integral(L, -1, &k) && k >= 1) {
            count++;
            if (k > max) max = k;
        } else {
            bad_json(L, p, what, "a key that is neither a string nor a positive integer");
        }
    }
    if (count > 0 && strings > 0) bad_json(L, p, what, "a table with both string and integer keys");
    if (count > 0 && max != count) bad_json(L, p, what, "an array with holes (use ghl.null)");
    *n = count;
    return count > 0 || ghl_json_array_marked(L, idx);
}

static void put_json(lua_State *L, scratch *s, int idx, const json_path *p, const char *what, int depth);

static void put_json_table(lua_State *L, scratch *s, int idx, const json_path *p, const char *what, int depth) {
    int i, n, first = 1;
    json_path here;
    if (depth >= MAX_DEPTH) bad_json(L, p, what, "nested too deep (a cycle?)");
    luaL_checkstack(L, 6, "ghl");
    here.up = p;
    if (is_array(L, idx, &n, p, what)) {
        here.key = 0;
        PUT_LITERAL(L, s, "[");
        for (i = 1; i <= n; i++) {
            if (i > 1) PUT_LITERAL(L, s, ",");
            here.index = i;
            lua_rawgeti(L, idx, i);
            put_json(L, s, lua_gettop(L), &here, what, depth + 1);
            lua_pop(L, 1);
        }
        PUT_LITERAL(L, s, "]");
        return;
    }
    PUT_LITERAL(L, s, "{");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (!first) PUT_LITERAL(L, s, ",");
        first = 0;
        here.key = lua_gettop(L) - 1;
        here.index = 0;
        put_json_string(L, s, here.key, p, what);
        PUT_LITERAL(L, s, ":");
        put_json(L, s, lua_gettop(L), &here, what, depth + 1);
        lua_pop(L, 1);
    }
    PUT_LITERAL(L, s, "}");
}

static void put_json(lua_State *L, scratch *s, int idx, const json_path *p, const char *what, int depth) {
    double v;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: put_json_string(L, s, idx, p, what); return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            PUT_LITERAL(L, s, "true");
        else
            PUT_LITERAL(L, s, "false");
        return;
    case LUA_TNUMBER:
        v = lua_tonumber(L, idx);
        if (isnan(v) || isinf(v)) bad_json(L, p, what, "NaN or infinity");
        put_number(L, s, idx);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* ghl.null, cjson.null */
            PUT_LITERAL(L, s, "null");
            return;
        }
        break;
    case LUA_TTABLE: put_json_table(L, s, idx, p, what, depth); return;
    default: break;
    }
    bad_json(L, p, what, luaL_typename(L, idx));
}

void ghl_push_json(lua_State *L, int idx, const char *what) {
    scratch *s;
    int out;
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    s = push_scratch(L);
    out = lua_gettop(L);
    put_json(L, s, idx, NULL, what, 0);
    scratch_to_string(L, out, s);
}
