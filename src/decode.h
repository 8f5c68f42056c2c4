/* Turning what came back (or a body given by the caller) into the module's
 * returns: `message, nil, info` or `nil, errmsg, info`. */
#ifndef GHL_DECODE_H
#define GHL_DECODE_H

#include "compat.h"
#include "transfer.h"

typedef struct ghl_outcome {
    CURLcode code;          /* CURLE_OK when a whole response came */
    int too_large;
    size_t max_body;
    long status;            /* 0: no response */
    const char *body;
    size_t body_len;
    const char *curl_error; /* libcurl's error buffer, may be empty */
    const ghl_ratelimit *ratelimit; /* NULL: none known */
    double retry_after;     /* < 0: no Retry-After */
    int attempts;           /* 0: not from a request (decode_message) */
    const char *path;       /* "/conversations/messages/<id>", or NULL */
    int convert_enums;
} ghl_outcome;

/* Pushes the three return values. */
void ghl_push_outcome(lua_State *L, const ghl_outcome *o);

/* Pushes {max=..., remaining=..., ...}, or nil when none was present. */
void ghl_push_ratelimit(lua_State *L, const ghl_ratelimit *rl);

/* Loads the JSON decoder (lua-cjson, an instance of our own so the caller's
 * cjson settings stay theirs) and the MESSAGE_TYPES table into the registry.
 * The table is on top of the stack. */
void ghl_decode_open(lua_State *L);

/* Whether the bytes are well-formed UTF-8 (no overlongs, no surrogates). */
int ghl_utf8_valid(const char *s, size_t n);

#endif
