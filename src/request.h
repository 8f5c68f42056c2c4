/* What a request is, described once: the endpoint's row (method, path
 * template, whether a repeat is safe, how to unwrap the answer) and the
 * arguments of this call (path ids, query, body). Every transport sends what
 * this says, and ghl.get_message_request shows exactly that. Adding an
 * endpoint is a row in ghl_endpoints. Plain C, no Lua. */
#ifndef GHL_REQUEST_H
#define GHL_REQUEST_H

#include <stddef.h>

#include "buffer.h"
#include "options.h"

#define GHL_MAX_PATH_ARGS 2
#define GHL_MAX_HEADERS 6
#define GHL_MAX_REQUEST_PATH 2048 /* client:request's own paths */

/* what the transports decode */
#define GHL_ACCEPT_ENCODING "gzip, deflate"

/* How the body of a 2xx answer becomes the result. */
typedef enum {
    GHL_UNWRAP_MESSAGE,      /* body.message, else the body itself; needs a string id */
    GHL_UNWRAP_EMAIL,        /* body.emailMessage, else the body itself; needs a string id */
    GHL_UNWRAP_OBJECT,       /* the object itself, its traceId taken out */
    GHL_UNWRAP_MESSAGE_PAGE, /* {messages, next_page, last_message_id} from body.messages */
    GHL_UNWRAP_SEARCH_PAGE,  /* {conversations, total, next} */
    GHL_UNWRAP_BYTES,        /* the body as it came, and its Content-Type */
    GHL_UNWRAP_ANY           /* any JSON object or array (an object's traceId taken out); empty: true */
} ghl_unwrap;

/* What a method takes after its path ids. */
enum { GHL_TAKES_QUERY = 1, GHL_TAKES_BODY = 2 };

typedef struct ghl_endpoint {
    const char *name; /* the client method */
    const char *method;
    const char *path;                        /* each "{}" is replaced by the next id; NULL: the request's own path */
    const char *id_names[GHL_MAX_PATH_ARGS]; /* the ids' argument names, for errors */
    int repeat_safe;                         /* whether sending it twice does no harm */
    ghl_unwrap unwrap;
    int takes;            /* GHL_TAKES_* */
    const char *required; /* keys the query or body must hold, each followed by a space */
    int accept_json;      /* sends Accept: application/json */
    int no_auth;          /* sends no Authorization (the token endpoint itself) */
    int private_body;     /* its bodies may hold secrets: info.body is never given */
} ghl_endpoint;

extern const ghl_endpoint ghl_get_message_endpoint;

/* POST /oauth/token (ghl.oauth_token): a form, no token, never repeated
 * once it may have arrived, no info.body. */
extern const ghl_endpoint ghl_oauth_token_endpoint;

/* The client methods that are nothing but their row, ended by a NULL name. */
extern const ghl_endpoint ghl_endpoints[];

typedef struct ghl_request {
    const ghl_endpoint *endpoint;
    const char *args[GHL_MAX_PATH_ARGS]; /* checked ids, kept alive by the caller */
    size_t arg_len[GHL_MAX_PATH_ARGS];
    const char *path; /* endpoint->path == NULL: this path (checked) */
    size_t path_len;
    const char *query; /* encoded, without '?'; NULL: none */
    size_t query_len;
    const char *body; /* NULL: none */
    size_t body_len;
    const char *body_type; /* its Content-Type; NULL: application/json */
    const char *version;   /* this request's Version header; NULL: the client's */
    long page_size;        /* a search page: the limit asked for */
} ghl_request;

typedef struct ghl_header {
    const char *name;
    const char *prefix; /* written before value ("Bearer "), or "" */
    const char *value;
} ghl_header;

/* The number of bytes of the request's path (no query), and the path itself
 * written to out (that many bytes and a NUL). */
size_t ghl_request_path_len(const ghl_request *r);
void ghl_request_write_path(const ghl_request *r, char *out);

/* Replaces out by base, the path and "?query". Returns 0, or -1 when
 * memory runs out. */
int ghl_request_url(const ghl_request *r, const char *base, size_t base_len, ghl_buffer *out);

/* The headers this request carries, in order (r NULL: a GET of a message);
 * returns how many were written to out (at most GHL_MAX_HEADERS). */
int ghl_request_headers(const ghl_options *o, const ghl_request *r, ghl_header *out);

/* Whether the request carries just the headers of a GET of a message, so a
 * transport may reuse one list made for those. */
int ghl_request_has_common_headers(const ghl_request *r);

#endif
