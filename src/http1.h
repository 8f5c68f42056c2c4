/* One HTTP/1.1 response read from the bytes a transport hands over, in
 * whatever pieces they come (ghl.resty's cosockets): the status line and the
 * headers into a ghl_response (status, the headers ghl reads), any 1xx
 * interim answer skipped, then the body, framed by Content-Length, chunked
 * coding or the end of the connection, into the response's body with
 * max_body_size checked as it grows. Plain C, no Lua, no I/O. */
#ifndef GHL_HTTP1_H
#define GHL_HTTP1_H

#include <stddef.h>

#include "buffer.h"
#include "response.h"

typedef enum {
    GHL_HTTP1_MORE,      /* give more bytes */
    GHL_HTTP1_DONE,      /* the whole response is in */
    GHL_HTTP1_TOO_LARGE, /* the body passed max_body_size (or memory ran out): stop reading */
    GHL_HTTP1_BROKEN     /* not a response, or cut short: `why` says how */
} ghl_http1_result;

typedef struct ghl_http1 {
    int phase;
    ghl_buffer pending;  /* a head, chunk-size or trailer line split between pieces */
    long long remaining; /* of the Content-Length body or of the current chunk */
    int chunked, length_known, keep;
    int extra;       /* bytes came after the end of the response */
    int answered;    /* a status line came */
    const char *why; /* for BROKEN: what was wrong */
    char text[64];   /* room for a `why` with a number in it */
} ghl_http1;

/* Starts reading a new response (also after a finished one). */
void ghl_http1_start(ghl_http1 *h);

/* Reads the next n bytes of the response into r. */
ghl_http1_result ghl_http1_feed(ghl_http1 *h, ghl_response *r, const char *data, size_t n);

/* The connection ended: DONE when the body runs to the end of the
 * connection, else BROKEN (cut short). */
ghl_http1_result ghl_http1_end(ghl_http1 *h);

/* After DONE: whether the connection may carry another request. */
int ghl_http1_keep(const ghl_http1 *h);

void ghl_http1_free(ghl_http1 *h);

#endif
