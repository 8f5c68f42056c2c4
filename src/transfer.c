#include "transfer.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bodies larger than this are not kept between requests. */
#define GHL_BUFFER_KEEP (256 * 1024)

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    ghl_transfer *t = userdata;
    size_t n = size * nmemb;
    if (t->body.len + n > t->max_body) {
        t->too_large = 1;
        return 0; /* aborts the transfer: nothing more is read */
    }
    if (ghl_buffer_append(&t->body, data, n) != 0) {
        t->out_of_memory = 1;
        return 0;
    }
    return n;
}

/* Case-insensitive "Name:" match; returns the start of the trimmed value. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *vlen) {
    size_t nlen = strlen(name), i;
    if (len <= nlen || line[nlen] != ':') return NULL;
    for (i = 0; i < nlen; i++)
        if (tolower((unsigned char)line[i]) != tolower((unsigned char)name[i])) return NULL;
    i = nlen + 1;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    while (len > i && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
        len--;
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
    time_t when;
    long secs = parse_count(v, n);
    if (secs >= 0) return (double)secs;
    if (n == 0 || n >= sizeof date) return -1;
    memcpy(date, v, n);
    date[n] = '\0';
    when = curl_getdate(date, NULL);
    if (when == (time_t)-1) return -1;
    return when > time(NULL) ? difftime(when, time(NULL)) : 0.0;
}

static void reset_response(ghl_transfer *t) {
    t->status = 0;
    memset(&t->ratelimit, 0, sizeof t->ratelimit);
    t->retry_after = -1;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata) {
    static const struct {
        const char *name;
        unsigned bit;
        size_t offset;
    } limits[] = {
        {"X-RateLimit-Max", GHL_RL_MAX, offsetof(ghl_ratelimit, max)},
        {"X-RateLimit-Remaining", GHL_RL_REMAINING, offsetof(ghl_ratelimit, remaining)},
        {"X-RateLimit-Interval-Milliseconds", GHL_RL_INTERVAL, offsetof(ghl_ratelimit, interval_ms)},
        {"X-RateLimit-Limit-Daily", GHL_RL_DAILY_LIMIT, offsetof(ghl_ratelimit, daily_limit)},
        {"X-RateLimit-Daily-Remaining", GHL_RL_DAILY_REMAINING,
         offsetof(ghl_ratelimit, daily_remaining)},
    };
    ghl_transfer *t = userdata;
    size_t len = size * nmemb, vlen, i;
    const char *v;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        reset_response(t); /* a new response starts (e.g. after 100 Continue) */
        return len;
    }
    switch (line[0]) { /* the headers read here start with C, R or X */
    case 'C': case 'c': case 'R': case 'r': case 'X': case 'x':
        break;
    default:
        return len;
    }
    if ((v = header_value(line, len, "Content-Length", &vlen)) != NULL) {
        long n = parse_count(v, vlen);
        if (n >= 0 && (size_t)n > t->max_body) {
            t->too_large = 1; /* stop before reading a body we would refuse */
            return 0;
        }
        return len;
    }
    if ((v = header_value(line, len, "Retry-After", &vlen)) != NULL) {
        t->retry_after = parse_retry_after(v, vlen);
        return len;
    }
    for (i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if ((v = header_value(line, len, limits[i].name, &vlen)) != NULL) {
            long n = parse_count(v, vlen);
            if (n >= 0) {
                *(long *)((char *)&t->ratelimit + limits[i].offset) = n;
                t->ratelimit.present |= limits[i].bit;
            }
            break;
        }
    }
    return len;
}

int ghl_transfer_init(ghl_transfer *t, const ghl_transfer_config *cfg) {
    CURL *e = curl_easy_init();
    if (e == NULL) return -1;
    t->easy = e;
    t->max_body = cfg->max_body;
    reset_response(t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* hosts are multi-threaded */
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, cfg->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, cfg->user_agent);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip, deflate");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->ssl_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->ssl_verify ? 2L : 0L);
    if (cfg->cainfo != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, cfg->cainfo);
    if (cfg->proxy != NULL) curl_easy_setopt(e, CURLOPT_PROXY, cfg->proxy);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* over TLS, ALPN soon tells whether a connection multiplexes (HTTP/2):
     * wait for that rather than open more; plain HTTP/1.1 never does */
    if (cfg->https) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    return 0;
}

void ghl_transfer_prepare(ghl_transfer *t, const char *url, long timeout_ms,
                          long connect_timeout_ms) {
    reset_response(t);
    ghl_buffer_reset(&t->body, GHL_BUFFER_KEEP);
    t->too_large = 0;
    t->out_of_memory = 0;
    t->error[0] = '\0';
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
}

void ghl_transfer_finish(ghl_transfer *t) {
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    t->status = status;
}

CURLcode ghl_transfer_perform(ghl_transfer *t, const char *url, long timeout_ms,
                              long connect_timeout_ms) {
    CURLcode code;
    ghl_transfer_prepare(t, url, timeout_ms, connect_timeout_ms);
    code = curl_easy_perform(t->easy);
    ghl_transfer_finish(t);
    return code;
}

void ghl_transfer_cleanup(ghl_transfer *t) {
    if (t->easy != NULL) curl_easy_cleanup(t->easy);
    t->easy = NULL;
    ghl_buffer_free(&t->body);
}
