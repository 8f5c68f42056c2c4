/* The client handle: a libcurl connection kept between calls, owned by a
 * userdata so that every resource is freed by close, __gc or __close. */
#ifndef GHL_CLIENT_H
#define GHL_CLIENT_H

#include "compat.h"
#include "options.h"
#include "transfer.h"

#define GHL_CLIENT_MT "ghl.client"

typedef struct ghl_client {
    int closed;
    ghl_transfer transfer;       /* for one message at a time */
    ghl_transfer_config config;  /* strings below are the client's own copies */
    char *url;                   /* base_url, then room for the path and an id */
    size_t base_len;
    double timeout, connect_timeout, max_retry_delay;
    int retries, convert_enums;
    unsigned long rng;
    ghl_ratelimit last_ratelimit;
} ghl_client;

/* Pushes a new client made from checked options. */
ghl_client *ghl_client_new(lua_State *L, const ghl_options *o);

/* Raises unless the value at idx is an open client. */
ghl_client *ghl_client_check(lua_State *L, int idx);

/* Writes the request path for id into the client's URL buffer; returns the
 * full URL. */
const char *ghl_client_url(ghl_client *c, const char *id, size_t idlen);

/* Turns a finished attempt into returns (three values). */
void ghl_client_push_outcome(lua_State *L, ghl_client *c, ghl_transfer *t, CURLcode code,
                             int attempts, const char *path);

/* Registers the client metatable; the module table is on top. */
void ghl_client_open(lua_State *L);

#endif
