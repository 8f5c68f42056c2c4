/* Cutting secrets (the token, a proxy's password) out of text that reaches
 * the caller: libcurl's error text and whatever the server sends back. Plain
 * C, no Lua. */
#ifndef GHL_REDACT_H
#define GHL_REDACT_H

#include <stddef.h>

#include "buffer.h"

#define GHL_REDACTED "<redacted>"
#define GHL_MAX_SECRETS 64

typedef struct ghl_secrets {
    const char *text[GHL_MAX_SECRETS];
    size_t len[GHL_MAX_SECRETS];
    int owned[GHL_MAX_SECRETS]; /* text[i] is a copy of ours, freed with s */
    int count;
} ghl_secrets;

/* Collects the secrets of a token and a proxy URL (either may be NULL), and
 * the passwords of the proxy variables libcurl reads (http_proxy,
 * https_proxy, all_proxy, in either case); each as given, percent-decoded
 * and JSON-escaped, as a server may echo it. token and proxy must outlive
 * s. Returns 0, or -1 when memory runs out. */
int ghl_secrets_init(ghl_secrets *s, const char *token, const char *proxy);

/* Adds one more secret (with its forms), copied. Returns 0, or -1. */
int ghl_secrets_add(ghl_secrets *s, const char *text, size_t n);

void ghl_secrets_free(ghl_secrets *s);

/* The first secret in [p, end), or NULL; *which tells which one. */
const char *ghl_find_secret(const ghl_secrets *s, const char *p, const char *end, int *which);

/* Replaces every secret in b by GHL_REDACTED. Returns 0, or -1 when memory
 * runs out (b is then emptied rather than left holding a secret). */
int ghl_redact_buffer(ghl_buffer *b, const ghl_secrets *s);

/* The same for a NUL-terminated string in a fixed array of cap bytes; what no
 * longer fits is cut. A string that fills the array was cut by whoever
 * wrote it: if it ends with the start of a secret, that goes too. */
void ghl_redact_string(char *text, size_t cap, const ghl_secrets *s);

#endif
