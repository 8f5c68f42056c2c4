/* memmem */
#define _GNU_SOURCE
#include "redact.h"

#include <stdlib.h>
#include <string.h>

static void add(ghl_secrets *s, const char *text, size_t len) {
    if (len == 0 || s->count == GHL_MAX_SECRETS) return;
    s->text[s->count] = text;
    s->len[s->count] = len;
    s->count++;
}

static int hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ghl_secrets_init(ghl_secrets *s, const char *token, const char *proxy) {
    const char *user, *at, *colon;
    memset(s, 0, sizeof *s);
    if (token != NULL) add(s, token, strlen(token));
    if (proxy == NULL) return 0;
    /* scheme://user:password@host...: the password is the secret */
    user = strstr(proxy, "://");
    user = user ? user + 3 : proxy;
    at = strchr(user, '@');
    colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (colon == NULL || colon + 1 == at) return 0;
    add(s, colon + 1, (size_t)(at - colon - 1));
    if (memchr(colon + 1, '%', (size_t)(at - colon - 1)) != NULL) {
        const char *p;
        size_t n = 0;
        s->decoded = malloc((size_t)(at - colon));
        if (s->decoded == NULL) return -1;
        for (p = colon + 1; p < at; p++) {
            if (*p == '%' && p + 2 < at && hex(p[1]) >= 0 && hex(p[2]) >= 0) {
                s->decoded[n++] = (char)(hex(p[1]) * 16 + hex(p[2]));
                p += 2;
            } else {
                s->decoded[n++] = *p;
            }
        }
        add(s, s->decoded, n);
    }
    return 0;
}

void ghl_secrets_free(ghl_secrets *s) {
    if (s->decoded != NULL) {
        memset(s->decoded, 0, s->len[s->count - 1]);
        free(s->decoded);
    }
    memset(s, 0, sizeof *s);
}

const char *ghl_find_secret(const ghl_secrets *s, const char *p, const char *end, int *which) {
    const char *best = NULL;
    int i;
    for (i = 0; i < s->count; i++) {
        const char *q = memmem(p, (size_t)(end - p), s->text[i], s->len[i]);
        if (q != NULL && (best == NULL || q < best)) {
            best = q;
            *which = i;
        }
    }
    return best;
}

int ghl_redact_buffer(ghl_buffer *b, const ghl_secrets *s) {
    ghl_buffer out = {NULL, 0, 0};
    const char *p, *end, *hit;
    int which = 0, ok = 0;
    if (b->len == 0 || s->count == 0) return 0;
    p = b->data;
    end = p + b->len;
    if (ghl_find_secret(s, p, end, &which) == NULL) return 0;
    while ((hit = ghl_find_secret(s, p, end, &which)) != NULL) {
        ok = ghl_buffer_append(&out, p, (size_t)(hit - p)) |
             ghl_buffer_append(&out, GHL_REDACTED, sizeof GHL_REDACTED - 1);
        if (ok != 0) break;
        p = hit + s->len[which];
    }
    if (ok == 0) ok = ghl_buffer_append(&out, p, (size_t)(end - p));
    memset(b->data, 0, b->len);
    ghl_buffer_free(b);
    if (ok != 0) {
        ghl_buffer_free(&out);
        return -1;
    }
    *b = out;
    return 0;
}

void ghl_redact_string(char *text, size_t cap, const ghl_secrets *s) {
    ghl_buffer b = {NULL, 0, 0};
    size_t n = strlen(text);
    if (s->count == 0 || n == 0) return;
    if (ghl_buffer_append(&b, text, n) != 0 || ghl_redact_buffer(&b, s) != 0) {
        text[0] = '\0'; /* out of memory: say nothing rather than a secret */
    } else {
        size_t keep = b.len < cap ? b.len : cap - 1;
        memcpy(text, b.data, keep);
        text[keep] = '\0';
    }
    ghl_buffer_free(&b);
}
