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
    double last_ratelimit_at;    /* monotonic seconds when it came */
    /* for get_messages: a multi handle and its transfers, made on first use;
     * each transfer is allocated on its own since libcurl keeps its address */
    CURLM *multi;
    ghl_transfer *pool[GHL_MAX_CONCURRENCY];
    int pool_size;
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

/* Options for one call on the client: its own settings, overridden by the
 * table at idx with the keys `allowed` admits. */
void ghl_client_call_options(lua_State *L, ghl_client *c, int idx, ghl_options *o, int allowed);

/* client:get_messages(ids [, opts]), in batch.c */
int ghl_client_get_messages(lua_State *L);

/* Frees the multi handle and its transfers (batch.c). */
void ghl_batch_release(ghl_client *c);

/* Monotonic clock, in seconds. */
double ghl_now(void);

/* Registers the client metatable; the module table is on top. */
void ghl_client_open(lua_State *L);

#endif
