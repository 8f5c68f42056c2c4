/* The options table shared by ghl.new, ghl.get_message and
 * ghl.get_message_request, and the per-call tables. Each option is one row
 * of GHL_OPTION_LIST: the struct, the defaults, the reader, the copy a client
 * keeps and the connection cache key all follow from that list. Misuse
 * raises an error naming the key. */
#ifndef GHL_OPTIONS_H
#define GHL_OPTIONS_H

#include <stddef.h>

#include "compat.h"

#define GHL_VERSION "0.1.0"
#define GHL_API_VERSION "2021-04-15"
#define GHL_BASE_URL "https://services.leadconnectorhq.com"
#define GHL_USER_AGENT "lua-ghl/" GHL_VERSION
#define GHL_MAX_ID_LEN 128
#define GHL_MAX_BASE_URL 1000
#define GHL_MAX_CONCURRENCY 64

/* Where an option may be given. */
enum {
    GHL_SCOPE_CLIENT = 1, /* ghl.new, ghl.get_message: part of a connection's identity */
    GHL_SCOPE_CALL = 2,   /* also per call; never splits connections */
    GHL_SCOPE_BATCH = 4   /* only get_messages' per-call table */
};

/* name, kind, scope, default. Kinds: STRING, SECRET (a string never shown),
 * BASE_URL, SECONDS (> 0), DELAY (>= 0), COUNT (0-10), CONCURRENCY (1-64),
 * SIZE (> 0), BOOL. */
#define GHL_OPTION_LIST(X)                                    \
    X(token, SECRET, GHL_SCOPE_CLIENT, NULL)                  \
    X(base_url, BASE_URL, GHL_SCOPE_CLIENT, GHL_BASE_URL)     \
    X(version, STRING, GHL_SCOPE_CLIENT, GHL_API_VERSION)     \
    X(timeout, SECONDS, GHL_SCOPE_CALL, 30)                   \
    X(connect_timeout, SECONDS, GHL_SCOPE_CALL, 10)           \
    X(retries, COUNT, GHL_SCOPE_CALL, 2)                      \
    X(max_retry_delay, DELAY, GHL_SCOPE_CLIENT, 30)           \
    X(ssl_verify, BOOL, GHL_SCOPE_CLIENT, 1)                  \
    X(cainfo, STRING, GHL_SCOPE_CLIENT, NULL)                 \
    X(proxy, SECRET, GHL_SCOPE_CLIENT, NULL)                  \
    X(user_agent, STRING, GHL_SCOPE_CLIENT, GHL_USER_AGENT)   \
    X(max_body_size, SIZE, GHL_SCOPE_CLIENT, 8 * 1024 * 1024) \
    X(convert_enums, BOOL, GHL_SCOPE_CLIENT, 1)               \
    X(concurrency, CONCURRENCY, GHL_SCOPE_BATCH, 8)

#define GHL_CTYPE_STRING const char *
#define GHL_CTYPE_SECRET const char *
#define GHL_CTYPE_BASE_URL const char *
#define GHL_CTYPE_SECONDS double
#define GHL_CTYPE_DELAY double
#define GHL_CTYPE_COUNT int
#define GHL_CTYPE_CONCURRENCY int
#define GHL_CTYPE_SIZE size_t
#define GHL_CTYPE_BOOL int

typedef struct ghl_options {
#define GHL_OPTION_FIELD(name, kind, scope, dflt) GHL_CTYPE_##kind name;
    GHL_OPTION_LIST(GHL_OPTION_FIELD)
#undef GHL_OPTION_FIELD
    size_t base_url_len;     /* without a trailing '/' */
    int token_fn;            /* token is a function: the stack index where it was left, else 0 */
    const void *token_fn_id; /* its identity, for the cache key */
} ghl_options;

/* Fills o with the defaults of the contract. */
void ghl_options_defaults(ghl_options *o);

/* Reads the table at idx (none or nil: nothing) into o over what it holds.
 * `scopes` says which GHL_SCOPE_* keys are accepted. Raises on an unknown key,
 * a wrong type or range. Never changes the table. Strings point into the
 * table's values, each of which is left on the stack to keep it alive. */
void ghl_options_read(lua_State *L, int idx, ghl_options *o, int scopes);

/* Fills in the token from GHL_TOKEN when none (or "") was given; raises when
 * there is none, or it holds spaces or control characters. */
void ghl_options_require_token(lua_State *L, ghl_options *o);

/* Pushes a string equal for two option sets exactly when their client-scope
 * options are equal: the key of a state's cached connections. */
void ghl_options_push_key(lua_State *L, const ghl_options *o);

/* Replaces every string of o by a copy of its own: in store (store_size
 * bytes, NULL: none) after the *store_used bytes taken (which it moves on)
 * while they fit, the others malloc'd. Returns 0, or -1 when memory runs
 * out (what was copied is freed again by ghl_options_free). */
int ghl_options_own(ghl_options *o, char *store, size_t store_size, size_t *store_used);

/* Wipes the secrets ghl_options_own copied and frees the copies outside
 * store (the same store, or NULL). */
void ghl_options_free(ghl_options *o, const char *store, size_t store_size);

/* Whether p points into the store_size bytes at store (NULL: none). */
int ghl_in_store(const char *p, const char *store, size_t store_size);

/* Raises unless the value at idx is an id: 1-128 characters of [A-Za-z0-9_-]. */
const char *ghl_check_id(lua_State *L, int idx, size_t *len);

/* Whether n bytes at s make a token: not empty, no space or control character. */
int ghl_token_valid(const char *s, size_t n);

/* The same for an id argument called name ("conversation_id"). */
const char *ghl_check_named_id(lua_State *L, int idx, const char *name, size_t *len);

/* Milliseconds for libcurl, at least 1. */
long ghl_ms(double seconds);

#endif
