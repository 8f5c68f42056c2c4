/* What a request is, described once: the endpoint's row (method, path
 * template, whether a repeat is safe, how to unwrap the answer) and the
 * arguments of this call. Every transport sends what this says, and
 * ghl.get_message_request shows exactly that. Plain C, no Lua. */
#ifndef GHL_REQUEST_H
#define GHL_REQUEST_H

#include <stddef.h>

#include "options.h"

#define GHL_MAX_PATH 512
#define GHL_MAX_PATH_ARGS 2
#define GHL_MAX_HEADERS 6
/* what the transports decode */
#define GHL_ACCEPT_ENCODING "gzip, deflate"

/* How the body of a 2xx answer becomes the result. */
typedef enum {
    GHL_UNWRAP_MESSAGE /* body.message, else the body itself; needs a string id */
} ghl_unwrap;

typedef struct ghl_endpoint {
    const char *method;
    const char *path;  /* each "{}" is replaced by the next argument */
    int repeat_safe;   /* whether sending it twice does no harm */
    ghl_unwrap unwrap;
} ghl_endpoint;

extern const ghl_endpoint ghl_get_message_endpoint;

typedef struct ghl_request {
    const ghl_endpoint *endpoint;
    const char *args[GHL_MAX_PATH_ARGS]; /* checked ids, kept alive by the caller */
    size_t arg_len[GHL_MAX_PATH_ARGS];
} ghl_request;

typedef struct ghl_header {
    const char *name;
    const char *prefix; /* written before value ("Bearer "), or "" */
    const char *value;
} ghl_header;

/* Writes the request's path, NUL-terminated, into out (GHL_MAX_PATH bytes);
 * returns its length. */
size_t ghl_request_path(const ghl_request *r, char *out);

/* The headers every request of these options carries, in order; returns how
 * many were written to out (at most GHL_MAX_HEADERS). The User-Agent is one
 * of them. */
int ghl_request_headers(const ghl_options *o, ghl_header *out);

#endif
