/* What came back for one attempt: status, the headers ghl reads, the body.
 * Filled by a transport (libcurl here, nginx cosockets through the same
 * header reader), read by retry.c and the shaper. Plain C, no Lua. */
#ifndef GHL_RESPONSE_H
#define GHL_RESPONSE_H

#include <stddef.h>

#include "buffer.h"

#define GHL_ERROR_SIZE 256
/* Bodies larger than this are not kept between requests. */
#define GHL_BUFFER_KEEP (256 * 1024)

/* Which rate-limit headers the response carried. */
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

/* Why an attempt got no whole response. */
typedef enum {
    GHL_FAIL_NONE = 0,
    GHL_FAIL_NETWORK, /* refused, reset, DNS, cut short ... */
    GHL_FAIL_TIMEOUT,
    GHL_FAIL_TLS,
    GHL_FAIL_DECODE, /* the transfer encoding (gzip, deflate) was corrupt */
    GHL_FAIL_SETUP   /* the transport could not set the request up */
} ghl_failure;

typedef struct ghl_response {
    long status; /* 0: no response */
    ghl_ratelimit ratelimit;
    double retry_after; /* seconds; < 0 when absent */
    ghl_buffer body;
    size_t max_body;
    int too_large; /* more than max_body: reading stopped */
    int out_of_memory;
    ghl_failure failure;
    int transport_code;         /* the transport's own code (CURLcode), 0 if none */
    int retryable;              /* the failure is one a retry may cure */
    int unsent;                 /* the request provably never reached the server */
    char error[GHL_ERROR_SIZE]; /* the transport's text, may be empty */
    int wants_content_type;     /* keep the Content-Type below (set before the attempt) */
    char content_type[128];     /* the Content-Type header's value, cut to fit; may be empty */
} ghl_response;

/* Empties r for the next attempt, giving back a body buffer above keep
 * bytes (wants_content_type and max_body stay). */
void ghl_response_reset(ghl_response *r, size_t keep);

/* Reads one header line ("Name: value\r\n"). Returns 0, or -1 when a
 * Content-Length says the body is more than max_body (too_large is set). */
int ghl_response_header(ghl_response *r, const char *line, size_t len);

/* Appends body bytes; returns 0, or -1 (too_large or out_of_memory set). */
int ghl_response_body(ghl_response *r, const char *data, size_t n);

void ghl_response_free(ghl_response *r);

#endif
