/* libFuzzer target: ghl.decode_message(body, status) on arbitrary bytes.
 *
 * Built by scripts/fuzz (`make fuzz`) with ghl's sources linked in and
 * -fsanitize=fuzzer,address,undefined. One Lua 5.4 state is made at start;
 * luaopen_ghl loads lua-cjson from package.cpath (Debian's path by default,
 * GHL_FUZZ_CPATH to change it).
 *
 * An input is two bytes of status (big-endian, mapped to 100..599) and the
 * body. Every input must give the contract's returns: `message, nil, info`
 * (2xx only) or `nil, errmsg, info` with errmsg one line starting "ghl: " and
 * info.kind "http" or "decode". Anything else, a raised error included,
 * aborts so that libFuzzer keeps the input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_ghl(lua_State *L);

#define DEFAULT_CPATH                                                                 \
    "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/lib/aarch64-linux-gnu/lua/5.4/?.so;" \
    "/usr/local/lib/lua/5.4/?.so;/usr/lib/lua/5.4/?.so"
#define MAX_INFO_BODY (64 * 1024)
#define MAX_SAFE_INTEGER 9007199254740991.0

static lua_State *L;
static int decode_ref = LUA_NOREF;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "decode_fuzz: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

#define CHECK(cond, what)             \
    do {                              \
        if (!(cond)) die(what, NULL); \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *cpath = getenv("GHL_FUZZ_CPATH");
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    CHECK(L != NULL, "no Lua state");
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, cpath != NULL && cpath[0] != '\0' ? cpath : DEFAULT_CPATH);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_pushcfunction(L, luaopen_ghl);
    if (lua_pcall(L, 0, 1, 0) != 0) die("luaopen_ghl failed", lua_tostring(L, -1));
    lua_getfield(L, -1, "decode_message");
    CHECK(lua_type(L, -1) == LUA_TFUNCTION, "ghl.decode_message is not a function");
    decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return 0;
}

/* The decoded message: no null object members, integral numbers within
 * +-(2^53 - 1) as integers, nothing but JSON's types. */
static void check_value(int idx, int depth) {
    int t = lua_type(L, idx);
    CHECK(depth < 2000, "nesting deeper than the decoder allows");
    if (t == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        CHECK(d == d && d - d == 0, "a number that is NaN or infinite");
        if (d >= -MAX_SAFE_INTEGER && d <= MAX_SAFE_INTEGER && d == floor(d))
            CHECK(lua_isinteger(L, idx), "an integral number left as a float");
        return;
    }
    if (t != LUA_TTABLE) {
        CHECK(t == LUA_TSTRING || t == LUA_TBOOLEAN || (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL),
              "a value of a type JSON does not make");
        return;
    }
    luaL_checkstack(L, 4, "decode_fuzz");
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING)
            CHECK(!(lua_type(L, -1) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL),
                  "a null object member kept");
        else
            CHECK(lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1, "a key that is not a string nor an index");
        check_value(-1, depth + 1);
        lua_pop(L, 1);
    }
}

static void check_returns(const char *body, size_t len, int status) {
    CHECK(lua_gettop(L) == 3, "not three returns");
    CHECK(lua_type(L, 3) == LUA_TTABLE, "info is not a table");
    lua_getfield(L, 3, "status");
    CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == status, "info.status is not the status");
    lua_pop(L, 1);

    if (!lua_isnil(L, 1)) {
        CHECK(lua_type(L, 1) == LUA_TTABLE, "a message that is not a table");
        CHECK(lua_isnil(L, 2), "a message and an errmsg");
        CHECK(status >= 200 && status <= 299, "a message from a non-2xx status");
        lua_getfield(L, 3, "kind");
        CHECK(lua_isnil(L, -1), "info.kind on success");
        lua_pop(L, 1);
        lua_getfield(L, 3, "body");
        CHECK(lua_isnil(L, -1), "info.body on success");
        lua_pop(L, 1);
        check_value(1, 0);
        return;
    }

    {
        size_t n, blen;
        const char *errmsg, *kind, *ibody;
        CHECK(lua_type(L, 2) == LUA_TSTRING, "errmsg is not a string");
        errmsg = lua_tolstring(L, 2, &n);
        CHECK(n >= 5 && memcmp(errmsg, "ghl: ", 5) == 0, "errmsg does not start with \"ghl: \"");
        CHECK(memchr(errmsg, '\n', n) == NULL && memchr(errmsg, '\r', n) == NULL, "errmsg is more than one line");
        lua_getfield(L, 3, "kind");
        CHECK(lua_type(L, -1) == LUA_TSTRING, "info.kind is not a string");
        kind = lua_tostring(L, -1);
        CHECK(strcmp(kind, "http") == 0 || strcmp(kind, "decode") == 0, "info.kind is neither http nor decode");
        CHECK((strcmp(kind, "http") == 0) == (status < 200 || status > 299), "info.kind does not match the status");
        lua_pop(L, 1);
        lua_getfield(L, 3, "body");
        if (len == 0) {
            CHECK(lua_isnil(L, -1), "info.body for an empty body");
        } else {
            CHECK(lua_type(L, -1) == LUA_TSTRING, "info.body is not a string");
            ibody = lua_tolstring(L, -1, &blen);
            CHECK(blen == (len < MAX_INFO_BODY ? len : MAX_INFO_BODY), "info.body has the wrong length");
            CHECK(memcmp(ibody, body, blen) == 0, "info.body is not the body");
        }
        lua_pop(L, 1);
        lua_getfield(L, 3, "message");
        CHECK(lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING, "info.message is not a string");
        lua_pop(L, 1);
        lua_getfield(L, 3, "trace_id");
        CHECK(lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING, "info.trace_id is not a string");
        lua_pop(L, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static unsigned long runs;
    const char *body;
    size_t len;
    int status;
    if (size < 2) return 0;
    status = 100 + (int)(((unsigned)data[0] << 8 | data[1]) % 500);
    body = (const char *)data + 2;
    len = size - 2;

    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
    lua_pushlstring(L, body, len);
    lua_pushinteger(L, status);
    if (lua_pcall(L, 2, 3, 0) != 0) die("decode_message raised", lua_tostring(L, -1));
    check_returns(body, len, status);
    lua_settop(L, 0);
    if (++runs % 4096 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
