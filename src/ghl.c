/* ghl: HighLevel's Conversations API for Lua. The module entry point. */
#include <pthread.h>
#include <string.h>

#include <curl/curl.h>

#include "client.h"
#include "compat.h"
#include "exchange.h"
#include "options.h"
#include "shape.h"
#include "webhook.h"

#define EXPORT __attribute__((visibility("default")))

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

/* libcurl's global init, once per process, whichever thread gets here first. */
static void init_curl(void) {
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ghl.decode_message(body [, status]) */
static int ghl_decode_message(lua_State *L) {
    ghl_response r;
    ghl_shape s;
    size_t len;
    const char *body = luaL_checklstring(L, 1, &len);
    lua_Number status = luaL_optnumber(L, 2, 200);
    if (status < 100 || status > 999 || status != (lua_Number)(long)status)
        luaL_error(L, "ghl: bad argument 'status' (an HTTP status from 100 to 999 expected)");
    memset(&r, 0, sizeof r);
    r.status = (long)status;
    r.body.data = (char *)body; /* read only; the string stays at index 1 */
    r.body.len = len;
    r.retry_after = -1;
    memset(&s, 0, sizeof s);
    s.response = &r;
    s.convert_enums = 1;
    ghl_shape_push(L, &s);
    return 3;
}

/* ghl.convert_type(message): the `type` rule, in place; returns message. */
static int ghl_lua_convert_type(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    ghl_convert_type(L, 1);
    return 1;
}

/* ghl.build_info(): what this ghl.so was built against and runs with, for
 * diagnostics (Neovim's :checkhealth ghl): the Lua headers, libcurl's version,
 * its TLS library, HTTP/2. A new table on every call. */
static int ghl_build_info(lua_State *L) {
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, GHL_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushliteral(L, LUA_VERSION); /* the headers it was compiled with: "Lua 5.1" for LuaJIT */
    lua_setfield(L, -2, "lua");
    lua_pushstring(L, v->version);
    lua_setfield(L, -2, "libcurl");
    if (v->ssl_version != NULL) {
        lua_pushstring(L, v->ssl_version);
        lua_setfield(L, -2, "tls");
    }
    lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
    lua_setfield(L, -2, "http2");
    return 1;
}

EXPORT int luaopen_ghl(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"decode_message", ghl_decode_message},
        {"convert_type", ghl_lua_convert_type},
        {"build_info", ghl_build_info},
        {NULL, NULL},
    };
    pthread_once(&curl_once, init_curl);
    if (curl_init_result != CURLE_OK) luaL_error(L, "ghl: libcurl could not be initialised");

    lua_newtable(L);
    luaL_setfuncs(L, functions, 0);
    ghl_client_open(L);
    ghl_exchange_open(L);
    ghl_webhook_open(L);
    lua_pushliteral(L, GHL_VERSION);
    lua_setfield(L, -2, "VERSION");
    lua_pushliteral(L, GHL_API_VERSION);
    lua_setfield(L, -2, "API_VERSION");
    lua_pushliteral(L, GHL_BASE_URL);
    lua_setfield(L, -2, "BASE_URL");
    lua_pushlightuserdata(L, NULL); /* the same value as cjson.null and ngx.null */
    lua_setfield(L, -2, "null");
    ghl_shape_open(L);
    lua_setfield(L, -2, "MESSAGE_TYPES");
    return 1;
}
