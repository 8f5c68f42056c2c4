/* memmem */
#define _GNU_SOURCE
#include "redact.h"

#include <stdlib.h>
#include <string.h>

/* Returns 1 when added, 0 when known already (or empty), -1 when full:
 * then the caller fails rather than let a secret through. */
static int add(ghl_secrets *s, const char *text, size_t len, int owned) {
    int i;
    if (len == 0) return 0;
    for (i = 0; i < s->count; i++)
        if (s->len[i] == len && memcmp(s->text[i], text, len) == 0) return 0; /* known already */
    if (s->count == GHL_MAX_SECRETS) return -1;
    s->text[s->count] = text;
    s->len[s->count] = len;
    s->owned[s->count] = owned;
    s->count++;
    return 1;
}

/* Adds a copy of ours of n bytes at p. Returns 0, or -1. */
static int add_copy(ghl_secrets *s, const char *p, size_t n) {
    char *copy = malloc(n ? n : 1);
    if (copy == NULL) return -1;
    memcpy(copy, p, n);
    switch (add(s, copy, n, 1)) {
    case 1: return 0;
    case 0:
        memset(copy, 0, n);
        free(copy);
        return 0;
    default:
        memset(copy, 0, n);
        free(copy);
        return -1;
    }
}

static int hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Adds text and the forms a server may echo it in: percent-decoded, and
 * escaped as in a JSON string. Returns 0, or -1. */
static int add_with_forms(ghl_secrets *s, const char *text, size_t n, int owned_copy) {
    static const char digits[] = "0123456789abcdef";
    char small[512], *buf = small;
    size_t i, m = 0, need = n * 6;
    int rc = 0;
    if (n == 0) return 0;
    if (owned_copy)
        rc = add_copy(s, text, n);
    else if (add(s, text, n, 0) < 0)
        rc = -1;
    if (need > sizeof small && (buf = malloc(need)) == NULL) return -1;
    for (i = 0; i < n; i++) { /* percent-decoded */
        if (text[i] == '%' && i + 2 < n && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
            buf[m++] = (char)(hex(text[i + 1]) * 16 + hex(text[i + 2]));
            i += 2;
        } else {
            buf[m++] = text[i];
        }
    }
    if (rc == 0 && m != n) rc = add_copy(s, buf, m);
    m = 0;
    for (i = 0; i < n; i++) { /* JSON-escaped (as most encoders write "/" too) */
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\' || c == '/') {
            buf[m++] = '\\';
            buf[m++] = (char)c;
        } else if (c < 0x20) {
            buf[m++] = '\\', buf[m++] = 'u', buf[m++] = '0', buf[m++] = '0';
            buf[m++] = digits[c >> 4], buf[m++] = digits[c & 15];
        } else {
            buf[m++] = (char)c;
        }
    }
    if (rc == 0 && m != n) rc = add_copy(s, buf, m);
    memset(buf, 0, need < sizeof small ? need : sizeof small);
    if (buf != small) {
        memset(buf, 0, need);
        free(buf);
    }
    return rc;
}

/* The password of scheme://user:password@host..., or NULL; *n its length. */
static const char *proxy_password(const char *proxy, size_t *n) {
    const char *user, *at, *colon;
    user = strstr(proxy, "://");
    user = user ? user + 3 : proxy;
    at = strchr(user, '@');
    colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (colon == NULL || colon + 1 == at) return NULL;
    *n = (size_t)(at - colon - 1);
    return colon + 1;
}

int ghl_secrets_init(ghl_secrets *s, const char *token, const char *proxy) {
    static const char *const env[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                      "all_proxy",  "ALL_PROXY",  NULL};
    const char *pw;
    size_t n;
    int i;
    s->count = 0; /* the arrays are written as it grows */
    if (token != NULL && add_with_forms(s, token, strlen(token), 0) != 0) return -1;
    if (proxy != NULL && (pw = proxy_password(proxy, &n)) != NULL && add_with_forms(s, pw, n, 0) != 0) return -1;
    /* the environment may change later: ours are copies */
    for (i = 0; env[i] != NULL; i++) {
        const char *v = getenv(env[i]);
        if (v != NULL && (pw = proxy_password(v, &n)) != NULL && add_with_forms(s, pw, n, 1) != 0) return -1;
    }
    return 0;
}

int ghl_secrets_add(ghl_secrets *s, const char *text, size_t n) {
    return add_with_forms(s, text, n, 1);
}

void ghl_secrets_free(ghl_secrets *s) {
    int i;
    for (i = 0; i < s->count; i++) {
        if (!s->owned[i]) continue;
        memset((char *)s->text[i], 0, s->len[i]);
        free((char *)s->text[i]);
    }
    s->count = 0;
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
    ghl_buffer out = {NULL, 0, 0, 0};
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

/* text filled its array, so it was cut: a secret's first bytes at its end go. */
static void cut_secret_start(char *text, size_t cap, const ghl_secrets *s) {
    size_t n = strlen(text), best = 0;
    int i;
    for (i = 0; i < s->count; i++) {
        size_t k = s->len[i] - 1 < n ? s->len[i] - 1 : n;
        for (; k > best; k--)
            if (memcmp(text + n - k, s->text[i], k) == 0) break;
        if (k > best) best = k;
    }
    if (best == 0) return;
    n -= best;
    if (n + sizeof GHL_REDACTED > cap) n = cap - sizeof GHL_REDACTED;
    memcpy(text + n, GHL_REDACTED, sizeof GHL_REDACTED);
}

void ghl_redact_string(char *text, size_t cap, const ghl_secrets *s) {
    ghl_buffer b = {NULL, 0, 0, 0};
    size_t n = strlen(text);
    if (s->count == 0 || n == 0) return;
    if (n + 1 >= cap) cut_secret_start(text, cap, s);
    n = strlen(text);
    if (ghl_buffer_append(&b, text, n) != 0 || ghl_redact_buffer(&b, s) != 0) {
        text[0] = '\0'; /* out of memory: say nothing rather than a secret */
    } else {
        size_t keep = b.len < cap ? b.len : cap - 1;
        memcpy(text, b.data, keep);
        text[keep] = '\0';
    }
    ghl_buffer_free(&b);
}
