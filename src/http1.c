#include "http1.h"

#include <stdio.h>
#include <string.h>

#define MAX_HEAD (64 * 1024)
#define MAX_LINE 4096 /* a chunk-size or trailer line */

enum { HEAD, LENGTH, TO_CLOSE, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, DONE };

void ghl_http1_start(ghl_http1 *h) {
    ghl_buffer pending = h->pending;
    memset(h, 0, sizeof *h);
    pending.len = 0;
    h->pending = pending;
    h->phase = HEAD;
}

void ghl_http1_free(ghl_http1 *h) {
    ghl_buffer_free(&h->pending);
}

static ghl_http1_result broken(ghl_http1 *h, const char *why) {
    h->why = why;
    return GHL_HTTP1_BROKEN;
}

static ghl_http1_result too_large(ghl_http1 *h, ghl_response *r) {
    h->phase = DONE;
    if (!r->too_large) r->out_of_memory = 1; /* the one other way a body append fails */
    return GHL_HTTP1_TOO_LARGE;
}

/* Whether [p, p + n) starts with the lower-case name (':' included), in any case. */
static int has_name(const char *p, size_t n, const char *name, size_t len) {
    size_t i;
    if (n < len) return 0;
    for (i = 0; i < len; i++)
        if (p[i] != name[i] && !(p[i] >= 'A' && p[i] <= 'Z' && p[i] + 32 == name[i])) return 0;
    return 1;
}

/* Whether [p, p + n) holds the lower-case word, in any case. */
static int holds_word(const char *p, size_t n, const char *word) {
    size_t len = strlen(word);
    for (; n >= len; p++, n--)
        if (has_name(p, len, word, len)) return 1;
    return 0;
}

#define NAME(s) s, sizeof s - 1

/* The "\r\n\r\n" that ends a head in [p, p + n), or NULL. */
static const char *find_blank_line(const char *p, size_t n) {
    const char *end = p + n;
    while (end - p >= 4 && (p = memchr(p, '\r', (size_t)(end - p) - 3)) != NULL) {
        if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') return p;
        p++;
    }
    return NULL;
}

/* The status line and header lines of one response, up to (not including)
 * the empty line: into r, and the framing of its body into h. */
static ghl_http1_result read_head(ghl_http1 *h, ghl_response *r, const char *p, size_t len) {
    const char *end = p + len, *eol;
    long length = -1;
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' || p[9] < '1' ||
        p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return broken(h, "bad status line");
    h->keep = p[7] == '1';
    h->chunked = 0;
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    memset(&r->ratelimit, 0, sizeof r->ratelimit);
    r->retry_after = -1;
    h->answered = 1;
    for (p = memchr(p, '\n', len); p != NULL && ++p < end; p = eol) {
        size_t n;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) eol = end;
        n = (size_t)(eol - p);
        if (ghl_response_header(r, p, n) != 0) return too_large(h, r);
        if (has_name(p, n, NAME("content-length:"))) {
            const char *v = p + 15;
            long x = 0;
            int digits = 0;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            for (; v < eol && *v >= '0' && *v <= '9' && digits < 16; v++, digits++) x = x * 10 + (*v - '0');
            while (v < eol && (*v == ' ' || *v == '\t' || *v == '\r')) v++;
            if (digits == 0 || v != eol) return broken(h, "bad Content-Length");
            length = x;
        } else if (has_name(p, n, NAME("transfer-encoding:"))) {
            h->chunked = holds_word(p + 18, n - 18, "chunked");
        } else if (has_name(p, n, NAME("connection:"))) {
            if (holds_word(p + 11, n - 11, "close")) h->keep = 0;
        }
    }
    if (r->status < 200) { /* an interim answer: the real one follows */
        h->phase = HEAD;
    } else if (r->status == 204 || r->status == 304) {
        h->length_known = 1;
        h->phase = DONE;
    } else if (h->chunked) {
        h->phase = CHUNK_SIZE;
    } else if (length >= 0) {
        h->length_known = 1;
        h->remaining = length;
        h->phase = length > 0 ? LENGTH : DONE;
    } else {
        h->phase = TO_CLOSE;
    }
    return GHL_HTTP1_MORE;
}

/* The head, from *p on: read once its empty line is in (held in pending
 * while it comes in pieces). */
static ghl_http1_result feed_head(ghl_http1 *h, ghl_response *r, const char **p, size_t *n) {
    const char *e;
    size_t used;
    ghl_http1_result res;
    if (h->pending.len == 0) {
        e = find_blank_line(*p, *n);
        if (e != NULL) {
            used = (size_t)(e - *p) + 4;
            res = read_head(h, r, *p, (size_t)(e - *p));
            *p += used;
            *n -= used;
            return res;
        }
    }
    {
        size_t before = h->pending.len, from = before >= 3 ? before - 3 : 0;
        if (ghl_buffer_append(&h->pending, *p, *n) != 0) return too_large(h, r);
        e = find_blank_line(h->pending.data + from, h->pending.len - from);
        if (e == NULL) {
            *p += *n;
            *n = 0;
            return h->pending.len > MAX_HEAD ? broken(h, "response head over 64 KiB") : GHL_HTTP1_MORE;
        }
        used = (size_t)(e - h->pending.data) + 4 - before;
        res = read_head(h, r, h->pending.data, (size_t)(e - h->pending.data));
        h->pending.len = 0;
        *p += used;
        *n -= used;
        return res;
    }
}

/* The next CRLF-ended line from *p on (a chunk size, a chunk's end, a
 * trailer): 1 with it in *line, *len (held in pending while it comes in
 * pieces), 0 when more bytes are needed, -1 when it is too long. */
static int take_line(ghl_http1 *h, const char **p, size_t *n, const char **line, size_t *len) {
    const char *nl = memchr(*p, '\n', *n);
    size_t used;
    if (nl == NULL) {
        if (ghl_buffer_append(&h->pending, *p, *n) != 0) return -1;
        *p += *n;
        *n = 0;
        return h->pending.len > MAX_LINE ? -1 : 0;
    }
    used = (size_t)(nl - *p) + 1;
    if (h->pending.len == 0) {
        *line = *p;
        *len = used;
    } else {
        if (ghl_buffer_append(&h->pending, *p, used) != 0) return -1;
        *line = h->pending.data;
        *len = h->pending.len;
    }
    *p += used;
    *n -= used;
    if (*len > MAX_LINE) return -1;
    if (*len < 2 || (*line)[*len - 2] != '\r') return -1; /* a bare LF */
    *len -= 2;
    return 1;
}

/* Body bytes, at most `remaining` of them when the length is known. */
static ghl_http1_result take_body(ghl_http1 *h, ghl_response *r, const char **p, size_t *n, int counted) {
    size_t take = *n;
    if (counted && (unsigned long long)take > (unsigned long long)h->remaining) take = (size_t)h->remaining;
    if (take > 0 && ghl_response_body(r, *p, take) != 0) return too_large(h, r);
    *p += take;
    *n -= take;
    if (counted) h->remaining -= (long long)take;
    return GHL_HTTP1_MORE;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A chunk-size line: hex digits after any spaces, then extensions (ignored). */
static int chunk_size(const char *line, size_t len, long long *size) {
    size_t i = 0;
    int digits = 0, d;
    long long x = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    for (; i < len && (d = hex_digit(line[i])) >= 0; i++) {
        if (++digits > 15) return -1;
        x = x * 16 + d;
    }
    if (digits == 0) return -1;
    *size = x;
    return 0;
}

ghl_http1_result ghl_http1_feed(ghl_http1 *h, ghl_response *r, const char *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ghl_http1_result res = GHL_HTTP1_MORE;
        const char *line;
        size_t len;
        int got;
        switch (h->phase) {
        case HEAD: res = feed_head(h, r, &p, &n); break;
        case LENGTH:
            res = take_body(h, r, &p, &n, 1);
            if (res == GHL_HTTP1_MORE && h->remaining == 0) h->phase = DONE;
            break;
        case TO_CLOSE: res = take_body(h, r, &p, &n, 0); break;
        case CHUNK_DATA:
            res = take_body(h, r, &p, &n, 1);
            if (res == GHL_HTTP1_MORE && h->remaining == 0) h->phase = CHUNK_END;
            break;
        case CHUNK_SIZE:
        case CHUNK_END:
        case TRAILERS:
            got = take_line(h, &p, &n, &line, &len);
            if (got < 0) {
                if (h->phase == CHUNK_END) return broken(h, "bad chunk end");
                return broken(h, h->phase == CHUNK_SIZE ? "bad chunk size line" : "bad trailer");
            }
            if (got == 0) break;
            if (h->phase == CHUNK_SIZE) {
                if (chunk_size(line, len, &h->remaining) != 0) return broken(h, "bad chunk size line");
                h->phase = h->remaining > 0 ? CHUNK_DATA : TRAILERS;
            } else if (h->phase == CHUNK_END) {
                if (len != 0) return broken(h, "bad chunk end");
                h->phase = CHUNK_SIZE;
            } else if (len == 0) { /* the empty line after the trailers */
                h->phase = DONE;
            }
            h->pending.len = 0;
            break;
        default: /* DONE: bytes after the response */ h->extra = 1; return GHL_HTTP1_DONE;
        }
        if (res != GHL_HTTP1_MORE) return res;
    }
    return h->phase == DONE ? GHL_HTTP1_DONE : GHL_HTTP1_MORE;
}

ghl_http1_result ghl_http1_end(ghl_http1 *h) {
    switch (h->phase) {
    case DONE: return GHL_HTTP1_DONE;
    case TO_CLOSE: /* no framing: the body ends with the connection */
        h->keep = 0;
        h->phase = DONE;
        return GHL_HTTP1_DONE;
    case HEAD: return broken(h, "the connection closed while reading the headers");
    case LENGTH:
        snprintf(h->text, sizeof h->text, "transfer closed with %lld bytes remaining to read", h->remaining);
        return broken(h, h->text);
    default: return broken(h, "the connection closed inside the chunked body");
    }
}

int ghl_http1_keep(const ghl_http1 *h) {
    return h->phase == DONE && h->keep && !h->extra && (h->chunked || h->length_known);
}
