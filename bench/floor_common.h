/* What floor.c and multi_floor.c share: the growing body buffer libcurl
 * writes into, the monotonic clock, the request settings ghl uses, and
 * cjson.decode in an embedded Lua 5.4 state. */
#ifndef FLOOR_COMMON_H
#define FLOOR_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf;

/* CURLOPT_WRITEFUNCTION for a buf passed as CURLOPT_WRITEDATA. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    buf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL) return 0;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return n;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The request headers ghl sends. */
static struct curl_slist *request_headers(void) {
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Authorization: Bearer bench-token");
    headers = curl_slist_append(headers, "Version: 2021-04-15");
    headers = curl_slist_append(headers, "Accept: application/json");
    return headers;
}

/* What ghl asks for in CURLOPT_ACCEPT_ENCODING. */
#define FLOOR_ACCEPT_ENCODING "gzip, deflate"

/* The easy-handle options ghl sets; the body goes to *body. accept_encoding
 * NULL leaves CURLOPT_ACCEPT_ENCODING unset: no Accept-Encoding header, and
 * libcurl decodes nothing. */
static void setup_easy(CURL *e, struct curl_slist *headers, const char *cainfo, const char *accept_encoding,
                       buf *body) {
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "lua-ghl/0.1.0");
    if (accept_encoding != NULL) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, accept_encoding);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    if (cainfo != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, cainfo);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
}

/* A Lua state holding cjson.decode in the registry at *ref; NULL (after
 * printing why, prefixed by prog) if cjson does not load. */
static lua_State *open_decoder(const char *prog, int *ref) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, "return require('cjson').new().decode") != LUA_OK) {
        fprintf(stderr, "%s: %s\n", prog, lua_tostring(L, -1));
        return NULL;
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return L;
}

/* Decodes b with the decoder at ref; 0 if it gave a table. */
static int decode_body(lua_State *L, int ref, const buf *b) {
    int ok;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, b->data, b->len);
    ok = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE;
    lua_pop(L, 1);
    return ok ? 0 : -1;
}

#endif
