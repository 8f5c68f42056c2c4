/* One HTTP exchange over a libcurl easy handle. Plain C, no Lua: libcurl's
 * callbacks only fill the C buffers below, so a Lua error can never unwind
 * through libcurl. */
#ifndef GHL_TRANSFER_H
#define GHL_TRANSFER_H

#include <curl/curl.h>

#include "buffer.h"

/* Which rate-limit headers the last response carried. */
enum {
    GHL_RL_MAX = 1 << 0,
    GHL_RL_REMAINING = 1 << 1,
    GHL_RL_INTERVAL = 1 << 2,
    GHL_RL_DAILY_LIMIT = 1 << 3,
    GHL_RL_DAILY_REMAINING = 1 << 4
};

typedef struct ghl_ratelimit {
    unsigned present; /* GHL_RL_* bits */
    long max, remaining, interval_ms, daily_limit, daily_remaining;
} ghl_ratelimit;

/* What stays the same for every request of a client. */
typedef struct ghl_transfer_config {
    struct curl_slist *headers; /* owned by the caller, outlives the transfer */
    const char *user_agent;
    const char *cainfo;         /* NULL: libcurl's default bundle */
    const char *proxy;          /* NULL: none set (libcurl still reads the environment) */
    int ssl_verify;
    int https;                  /* wait for a connection that may multiplex (HTTP/2) */
    size_t max_body;
} ghl_transfer_config;

typedef struct ghl_transfer {
    CURL *easy;
    size_t max_body;
    /* the response, reset before each attempt */
    long status;
    ghl_buffer body;
    ghl_ratelimit ratelimit;
    double retry_after;         /* seconds; < 0 when the header was absent */
    int too_large;              /* body went past max_body: transfer aborted */
    int out_of_memory;
    char error[CURL_ERROR_SIZE];
    void *item;                 /* what a multi handle runs it for; NULL: free */
} ghl_transfer;

/* Makes the easy handle and sets what never changes. Returns 0, or -1 when
 * libcurl could not make a handle. */
int ghl_transfer_init(ghl_transfer *t, const ghl_transfer_config *cfg);

/* Sets up the next request on the handle (for a multi handle to run). */
void ghl_transfer_prepare(ghl_transfer *t, const char *url, long timeout_ms,
                          long connect_timeout_ms);

/* prepare + curl_easy_perform. */
CURLcode ghl_transfer_perform(ghl_transfer *t, const char *url, long timeout_ms,
                              long connect_timeout_ms);

/* Called once a transfer run by a multi handle is done. */
void ghl_transfer_finish(ghl_transfer *t);

void ghl_transfer_cleanup(ghl_transfer *t);

#endif
