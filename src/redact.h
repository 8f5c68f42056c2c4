/* Cutting secrets (the token, a proxy's password) out of text that reaches
 * the caller: libcurl's error text and whatever the server sends back. Plain
 * C, no Lua. */
#ifndef GHL_REDACT_H
#define GHL_REDACT_H

#include <stddef.h>

#include "buffer.h"

#define GHL_REDACTED "<redacted>"
#define GHL_MAX_SECRETS 3

typedef struct ghl_secrets {
    const char *text[GHL_MAX_SECRETS]; /* not owned, except `decoded` below */
    size_t len[GHL_MAX_SECRETS];
    int count;
    char *decoded; /* the proxy password percent-decoded, when that differs */
} ghl_secrets;

/* Collects the secrets of a token and a proxy URL (either may be NULL); the
 * strings must outlive s. Returns 0, or -1 when memory runs out. */
int ghl_secrets_init(ghl_secrets *s, const char *token, const char *proxy);

void ghl_secrets_free(ghl_secrets *s);

/* The first secret in [p, end), or NULL; *which tells which one. */
const char *ghl_find_secret(const ghl_secrets *s, const char *p, const char *end, int *which);

/* Replaces every secret in b by GHL_REDACTED. Returns 0, or -1 when memory
 * runs out (b is then emptied rather than left holding a secret). */
int ghl_redact_buffer(ghl_buffer *b, const ghl_secrets *s);

/* The same for a NUL-terminated string in a fixed array of cap bytes; what no
 * longer fits is cut. */
void ghl_redact_string(char *text, size_t cap, const ghl_secrets *s);

#endif
