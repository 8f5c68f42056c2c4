/* One HTTP exchange over a libcurl easy handle, run by batch.c's multi
 * handle. Plain C, no Lua: libcurl's callbacks only fill the response, so a
 * Lua error can never unwind through libcurl. */
#ifndef GHL_TRANSFER_H
#define GHL_TRANSFER_H

#include <curl/curl.h>

#include "redact.h"
#include "request.h"
#include "response.h"

/* The sockets libcurl opened for a client, so that after fork() they can be
 * let go without a byte being written to or read from them. */
typedef struct ghl_sockets {
    curl_socket_t *fds;
    int count, cap;
} ghl_sockets;

/* What stays the same for every request of a client. */
typedef struct ghl_transport_config {
    const char *base_url; /* no trailing '/' */
    size_t base_len;
    const ghl_options *options; /* for the headers of requests that differ from the common ones */
    struct curl_slist *headers; /* the common headers (ghl_request_has_common_headers) */
    const char *cainfo;         /* NULL: libcurl's default bundle */
    const char *proxy;          /* NULL: none set (libcurl still reads the environment) */
    int ssl_verify;
    int https; /* wait for a connection that may multiplex (HTTP/2) */
    size_t max_body;
    const ghl_secrets *secrets; /* cut out of libcurl's error text */
    ghl_sockets *sockets;
} ghl_transport_config;

typedef struct ghl_transfer {
    CURL *easy;
    ghl_response response;
    const ghl_transport_config *config;
    void *job;                           /* what the multi handle runs it for; NULL: idle */
    long timeout_ms, connect_timeout_ms; /* as set on the handle; 0: not yet */
    int plain_get;                       /* the handle is set for a GET with the common headers */
    struct curl_slist *own_headers;      /* this request's, when not the common ones */
} ghl_transfer;

/* Makes the easy handle and sets what never changes. Returns CURLE_OK or why
 * not (the handle is then cleaned up again). */
CURLcode ghl_transfer_init(ghl_transfer *t, const ghl_transport_config *cfg);

/* The header lines of request r (NULL: a GET of a message), as libcurl
 * takes them; NULL when memory runs out. */
struct curl_slist *ghl_header_list(const ghl_options *o, const ghl_request *r);

/* Sets up request r on the handle, to url; r, its body and url must last
 * until the transfer ends. Returns CURLE_OK, or the code of the option that
 * could not be set. */
CURLcode ghl_transfer_prepare(ghl_transfer *t, const ghl_request *r, const char *url, long timeout_ms,
                              long connect_timeout_ms);

/* Records how the transfer ended: status, failure kind, libcurl's text (with
 * secrets cut out). */
void ghl_transfer_finish(ghl_transfer *t, CURLcode code);

void ghl_transfer_cleanup(ghl_transfer *t);

/* Points every socket in s at /dev/null, so that closing them (TLS
 * close_notify included) touches nothing another process still uses. */
void ghl_sockets_orphan(ghl_sockets *s);

void ghl_sockets_free(ghl_sockets *s);

#endif
