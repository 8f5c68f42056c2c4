/* Reading and checking the options table shared by ghl.new, ghl.get_message
 * and ghl.get_message_request. Misuse raises an error naming the key. */
#ifndef GHL_OPTIONS_H
#define GHL_OPTIONS_H

#include <stddef.h>

#include "compat.h"

#define GHL_VERSION "0.1.0"
#define GHL_API_VERSION "2021-04-15"
#define GHL_BASE_URL "https://services.leadconnectorhq.com"
#define GHL_USER_AGENT "lua-ghl/" GHL_VERSION
#define GHL_MESSAGE_PATH "/conversations/messages/"
#define GHL_MAX_ID_LEN 128
#define GHL_MAX_CONCURRENCY 64

/* Which keys a call accepts. */
enum {
    GHL_OPT_CLIENT = 1,   /* everything ghl.new takes */
    GHL_OPT_PER_CALL = 2, /* timeout, connect_timeout, retries */
    GHL_OPT_BATCH = 4     /* concurrency */
};

typedef struct ghl_options {
    /* strings point into Lua values that the caller keeps on the stack */
    const char *token;
    const char *base_url;
    size_t base_url_len; /* without a trailing '/' */
    const char *version;
    const char *user_agent;
    const char *cainfo;
    const char *proxy;
    double timeout, connect_timeout, max_retry_delay;
    int retries;
    int concurrency;
    size_t max_body_size;
    int ssl_verify, convert_enums;
} ghl_options;

/* Fills o with the defaults of the contract. */
void ghl_options_defaults(ghl_options *o);

/* Reads the table at idx (none or nil: nothing) into o, keeping defaults for
 * what is absent. Raises on an unknown key for `allowed`, a wrong type or range,
 * or (GHL_OPT_CLIENT) a missing token. Never changes the table. */
void ghl_options_read(lua_State *L, int idx, ghl_options *o, int allowed);

/* Raises unless id is a string of 1-128 characters from [A-Za-z0-9_-]. */
const char *ghl_check_id(lua_State *L, int idx, size_t *len);

/* Milliseconds for libcurl, at least 1. */
long ghl_ms(double seconds);

#endif
