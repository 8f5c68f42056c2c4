#include "response.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h> /* curl_getdate: an HTTP-date parser */

void ghl_response_reset(ghl_response *r, size_t keep) {
    /* field by field: the text arrays need only their first byte cleared */
    ghl_buffer_reset(&r->body, keep);
    r->status = 0;
    memset(&r->ratelimit, 0, sizeof r->ratelimit);
    r->retry_after = -1;
    r->too_large = r->out_of_memory = r->retryable = r->unsent = r->transport_code = 0;
    r->failure = GHL_FAIL_NONE;
    r->error[0] = '\0';
    r->content_type[0] = '\0';
}

void ghl_response_free(ghl_response *r) {
    ghl_buffer_free(&r->body);
}

/* Whether line starts with name (lower case, ':' included), in any case. */
static int starts_with(const char *line, size_t len, const char *name, size_t nlen) {
    size_t i;
    if (len < nlen) return 0;
    for (i = 0; i < nlen; i++)
        if (tolower((unsigned char)line[i]) != name[i]) return 0;
    return 1;
}

/* The trimmed value of a header line whose first `skip` bytes are its name. */
static const char *value_after(const char *line, size_t len, size_t skip, size_t *vlen) {
    size_t i = skip;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    while (len > i && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' ')) len--;
    *vlen = len - i;
    return line + i;
}

/* A non-negative decimal integer header value; -1 if it is not one. */
static long parse_count(const char *v, size_t n) {
    long x = 0;
    size_t i;
    if (n == 0 || n > 15) return -1;
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

/* Retry-After is either delta-seconds or an HTTP date. */
static double parse_retry_after(const char *v, size_t n) {
    char date[64];
    time_t when, now;
    struct timespec ts;
    long secs = parse_count(v, n);
    if (secs >= 0) return (double)secs;
    if (n == 0 || n >= sizeof date) return -1;
    memcpy(date, v, n);
    date[n] = '\0';
    when = curl_getdate(date, NULL);
    if (when == (time_t)-1) return -1;
    /* not time(NULL): on Linux it reads a coarse clock that can lag the
     * server's clock by a tick at a second's turn */
    clock_gettime(CLOCK_REALTIME, &ts);
    now = ts.tv_sec;
    return when > now ? difftime(when, now) : 0.0;
}

int ghl_response_header(ghl_response *r, const char *line, size_t len) {
    static const struct {
        const char *suffix; /* after "x-ratelimit-" */
        unsigned bit;
        size_t offset;
    } limits[] = {
        {"max:", GHL_RL_MAX, offsetof(ghl_ratelimit, max)},
        {"remaining:", GHL_RL_REMAINING, offsetof(ghl_ratelimit, remaining)},
        {"interval-milliseconds:", GHL_RL_INTERVAL, offsetof(ghl_ratelimit, interval_ms)},
        {"limit-daily:", GHL_RL_DAILY_LIMIT, offsetof(ghl_ratelimit, daily_limit)},
        {"daily-remaining:", GHL_RL_DAILY_REMAINING, offsetof(ghl_ratelimit, daily_remaining)},
    };
    static const char rl_prefix[] = "x-ratelimit-", content[] = "content-", ra[] = "retry-after:";
    size_t vlen, i;
    const char *v;
    if (len == 0) return 0;
    switch (line[0]) { /* the headers read here start with C, R or X */
    case 'C':
    case 'c':
        if (!starts_with(line, len, content, sizeof content - 1)) return 0;
        line += sizeof content - 1, len -= sizeof content - 1;
        if (r->wants_content_type && starts_with(line, len, "type:", 5)) {
            v = value_after(line, len, 5, &vlen);
            if (vlen >= sizeof r->content_type) vlen = sizeof r->content_type - 1;
            memcpy(r->content_type, v, vlen);
            r->content_type[vlen] = '\0';
            return 0;
        }
        if (!starts_with(line, len, "length:", 7)) return 0;
        v = value_after(line, len, 7, &vlen);
        {
            long n = parse_count(v, vlen);
            if (n >= 0 && (size_t)n > r->max_body) {
                r->too_large = 1; /* stop before reading a body we would refuse */
                return -1;
            }
        }
        return 0;
    case 'R':
    case 'r':
        if (starts_with(line, len, ra, sizeof ra - 1)) {
            v = value_after(line, len, sizeof ra - 1, &vlen);
            r->retry_after = parse_retry_after(v, vlen);
        }
        return 0;
    case 'X':
    case 'x':
        if (!starts_with(line, len, rl_prefix, sizeof rl_prefix - 1)) return 0;
        for (i = 0; i < sizeof limits / sizeof limits[0]; i++) {
            size_t slen = strlen(limits[i].suffix);
            if (starts_with(line + sizeof rl_prefix - 1, len - (sizeof rl_prefix - 1), limits[i].suffix, slen)) {
                long n;
                v = value_after(line, len, sizeof rl_prefix - 1 + slen, &vlen);
                n = parse_count(v, vlen);
                if (n >= 0) {
                    *(long *)((char *)&r->ratelimit + limits[i].offset) = n;
                    r->ratelimit.present |= limits[i].bit;
                }
                break;
            }
        }
        return 0;
    default: return 0;
    }
}

int ghl_response_body(ghl_response *r, const char *data, size_t n) {
    if (r->body.len + n > r->max_body) {
        r->too_large = 1;
        return -1;
    }
    if (ghl_buffer_append(&r->body, data, n) != 0) {
        r->out_of_memory = 1;
        return -1;
    }
    return 0;
}
